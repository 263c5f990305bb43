//! CPU reference of `rmsnorm`: y[r, i] = x[r, i] / sqrt(mean_i(x[r, i]²) + eps) · w\[i\], in f64;
//! and of its gated, grouped form ([`rmsnorm_gated`], Mamba-2's `MambaRMSNormGated`).

/// RMSNorm of `rows` rows of width `d`; row r of x starts at `x_offset + r·x_stride`. Returns
/// (rows, d) contiguous.
pub fn rmsnorm(
    x: &[f32],
    rows: usize,
    d: usize,
    x_offset: usize,
    x_stride: usize,
    w: &[f32],
    eps: f64,
) -> Vec<f64> {
    let xs: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut out = Vec::with_capacity(rows * d);
    for r in 0..rows {
        let row = &xs[x_offset + r * x_stride..x_offset + r * x_stride + d];
        out.extend(rmsnorm_row(row, w, eps));
    }
    out
}

/// RMSNorm of one f64 row.
pub fn rmsnorm_row(x: &[f64], w: &[f32], eps: f64) -> Vec<f64> {
    let mean_sq = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (mean_sq + eps).sqrt();
    x.iter().zip(w).map(|(&v, &g)| v * inv * g as f64).collect()
}

/// Host inputs of the gated, grouped norm (Mamba-2's `MambaRMSNormGated`): `rows` rows of
/// width d = len(w); row r of x at `x_offset + r·x_stride`, of z at `z_offset + r·z_stride`.
#[derive(Clone, Copy, Debug)]
pub struct GatedHost<'a> {
    /// x.
    pub x: &'a [f32],
    /// (offset, row stride) of x's rows.
    pub x_rows: (usize, usize),
    /// The gate z.
    pub z: &'a [f32],
    /// (offset, row stride) of z's rows.
    pub z_rows: (usize, usize),
    /// w (d).
    pub w: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Elements per group (dividing d).
    pub group_size: usize,
    /// Normalise, then gate (true); or gate, then normalise (false, transformers' default).
    pub norm_before_gate: bool,
    /// eps.
    pub eps: f64,
}

/// The gated, grouped norm on the CPU, in f64: per row and per group k of `group_size`
/// elements, with silu(z) = z / (1 + exp(−z)),
///
/// ```text
/// norm_before_gate = false:  h = x·silu(z);  y = h / sqrt(mean_k(h²) + eps) · w
/// norm_before_gate = true:   y = x / sqrt(mean_k(x²) + eps) · w · silu(z)
/// ```
///
/// Returns (rows, d) contiguous.
pub fn rmsnorm_gated(g: &GatedHost) -> Vec<f64> {
    let d = g.w.len();
    let silu = |v: f64| v / (1.0 + (-v).exp());
    let mut out = Vec::with_capacity(g.rows * d);
    for r in 0..g.rows {
        let xr = &g.x[g.x_rows.0 + r * g.x_rows.1..][..d];
        let zr = &g.z[g.z_rows.0 + r * g.z_rows.1..][..d];
        for k in (0..d).step_by(g.group_size) {
            let range = k..k + g.group_size;
            let gates: Vec<f64> = zr[range.clone()].iter().map(|&v| silu(v as f64)).collect();
            let mut h: Vec<f64> = xr[range.clone()].iter().map(|&v| v as f64).collect();
            if !g.norm_before_gate {
                h.iter_mut().zip(&gates).for_each(|(v, s)| *v *= s);
            }
            let mut y = rmsnorm_row(&h, &g.w[range], g.eps);
            if g.norm_before_gate {
                y.iter_mut().zip(&gates).for_each(|(v, s)| *v *= s);
            }
            out.extend(y);
        }
    }
    out
}
