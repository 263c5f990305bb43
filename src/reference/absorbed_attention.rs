//! CPU reference of `absorbed_attention`: MLA attention in the absorbed form on a paged latent
//! cache, in f64 with straightforward loops (no online softmax, no splitting).
//!
//! Query tokens are packed: sequence b's are rows query_starts\[b\] .. query_starts\[b + 1\]
//! (q_len_b of them); the uniform form (Bt, S_q, …) is the case query_starts\[b\] = b·S_q.
//! For query token i < q_len_b of sequence b and head h:
//! s_j = scale·(q_lat\[row, h\]·c_j + q_rope\[row, h\]·k_rope_j) for keys
//! j < seq_len_b − q_len_b + i + 1 (bottom-right causal, clamped to [0, max_blocks·block_size]);
//! o_lat\[row, h\] = Σ_j softmax(s)_j c_j, or zeros when the query sees no key. Key j is cache
//! row `block_table[b, j / block_size]·block_size + j % block_size` of width d_c + d_R =
//! [c | k_rope].

pub use crate::spec::absorbed_attention::Dims;

/// o_lat (Bt, S_q, H, d_c) from q_lat (Bt, S_q, H, d_c), q_rope (Bt, S_q, H, d_R), the cache
/// (num_blocks, block_size, d_c + d_R), block_table (Bt, max_blocks) and seq_lens (Bt).
/// Keys whose block id is ≥ the number of cache pages are skipped (never read).
pub fn absorbed_attention(
    dims: Dims,
    q_lat: &[f32],
    q_rope: &[f32],
    cache: &[f32],
    block_table: &[u32],
    seq_lens: &[u32],
    scale: f32,
) -> Vec<f64> {
    let starts: Vec<u32> = (0..=dims.bt).map(|b| (b * dims.s_q) as u32).collect();
    absorbed_attention_packed(
        dims,
        &starts,
        q_lat,
        q_rope,
        cache,
        block_table,
        seq_lens,
        scale,
    )
}

/// The packed form: o_lat (T, H, d_c) from q_lat (T, H, d_c) and q_rope (T, H, d_R) whose rows
/// query_starts\[b\] .. query_starts\[b + 1\] belong to sequence b (T = `dims.tokens`), and the
/// cache, block_table and seq_lens as in [`absorbed_attention`].
#[allow(clippy::too_many_arguments)]
pub fn absorbed_attention_packed(
    dims: Dims,
    query_starts: &[u32],
    q_lat: &[f32],
    q_rope: &[f32],
    cache: &[f32],
    block_table: &[u32],
    seq_lens: &[u32],
    scale: f32,
) -> Vec<f64> {
    let Dims {
        bt,
        tokens,
        h,
        d_c,
        d_r,
        block_size,
        max_blocks,
        ..
    } = dims;
    let w = d_c + d_r;
    let num_blocks = cache.len() / (block_size * w);
    let cap = (max_blocks * block_size) as i64;
    let mut out = vec![0.0f64; tokens * h * d_c];
    for b in 0..bt {
        let first = query_starts[b] as usize;
        let q_len = query_starts[b + 1] as usize - first;
        for i in 0..q_len {
            let visible = (seq_lens[b] as i64 - q_len as i64 + i as i64 + 1).clamp(0, cap) as usize;
            // The cache rows this query sees (skipping pages the table does not hold).
            let rows: Vec<&[f32]> = (0..visible)
                .filter_map(|j| {
                    let blk = block_table[b * max_blocks + j / block_size] as usize;
                    (blk < num_blocks).then(|| {
                        let slot = blk * block_size + j % block_size;
                        &cache[slot * w..(slot + 1) * w]
                    })
                })
                .collect();
            for hh in 0..h {
                let q = (first + i) * h + hh;
                let ql = &q_lat[q * d_c..(q + 1) * d_c];
                let qr = &q_rope[q * d_r..(q + 1) * d_r];
                let scores: Vec<f64> = rows
                    .iter()
                    .map(|row| {
                        let nope: f64 = (0..d_c).map(|d| ql[d] as f64 * row[d] as f64).sum();
                        let rope: f64 = (0..d_r).map(|d| qr[d] as f64 * row[d_c + d] as f64).sum();
                        scale as f64 * (nope + rope)
                    })
                    .collect();
                if scores.is_empty() {
                    continue;
                }
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                let o = &mut out[q * d_c..(q + 1) * d_c];
                for (row, wgt) in rows.iter().zip(&weights) {
                    for d in 0..d_c {
                        o[d] += wgt / total * row[d] as f64;
                    }
                }
            }
        }
    }
    out
}
