//! CPU reference of `rope`: rotary position embedding of d_R-wide vectors at a token's position.
//! Pair i (x\[2i\], x[2i+1]) when interleaved, else (x\[i\], x[i + d_R/2]), rotates by the angle
//! pos·inv_freq\[i\]; cos and sin are multiplied by `attn_factor` (YaRN's mscale ratio):
//! (a, b) ← (a·cos − b·sin, b·cos + a·sin). Computed in f64.

/// Rotate one vector in place.
pub fn rope_vec(x: &mut [f64], pos: f64, inv_freq: &[f64], interleave: bool, attn_factor: f64) {
    let half = x.len() / 2;
    for (i, &f) in inv_freq.iter().enumerate().take(half) {
        let (ia, ib) = if interleave {
            (2 * i, 2 * i + 1)
        } else {
            (i, i + half)
        };
        let angle = pos * f;
        let (c, s) = (angle.cos() * attn_factor, angle.sin() * attn_factor);
        let (a, b) = (x[ia], x[ib]);
        x[ia] = a * c - b * s;
        x[ib] = b * c + a * s;
    }
}

/// Rope over `tokens × heads` vectors of width `d`: vector (t, h) starts at
/// `offset + t·token_stride + h·head_stride` of x and is rotated at `positions[t]`. Returns
/// (tokens, heads, d) contiguous.
#[allow(clippy::too_many_arguments)]
pub fn rope(
    x: &[f32],
    tokens: usize,
    heads: usize,
    d: usize,
    offset: usize,
    token_stride: usize,
    head_stride: usize,
    positions: &[u32],
    inv_freq: &[f64],
    interleave: bool,
    attn_factor: f64,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(tokens * heads * d);
    for (t, &pos) in positions.iter().enumerate().take(tokens) {
        for h in 0..heads {
            let base = offset + t * token_stride + h * head_stride;
            let mut v: Vec<f64> = x[base..base + d].iter().map(|&a| a as f64).collect();
            rope_vec(&mut v, pos as f64, inv_freq, interleave, attn_factor);
            out.extend(v);
        }
    }
    out
}
