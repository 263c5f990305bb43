//! CPU reference of `absorbed_attention`: MLA attention in the absorbed form on a paged latent
//! cache, in f64 with straightforward loops (no online softmax, no splitting).
//!
//! For sequence b, query token i < S_q, head h:
//! s_j = scale·(q_lat\[b,i,h\]·c_j + q_rope\[b,i,h\]·k_rope_j) for keys j < seq_len_b − S_q + i + 1
//! (bottom-right causal, clamped to [0, max_blocks·block_size]); o_lat\[b,i,h\] = Σ_j softmax(s)_j c_j,
//! or zeros when the query sees no key. Key j is cache row
//! `block_table[b, j / block_size]·block_size + j % block_size` of width d_c + d_R = [c | k_rope].

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
    let Dims {
        bt,
        s_q,
        h,
        d_c,
        d_r,
        block_size,
        max_blocks,
    } = dims;
    let w = d_c + d_r;
    let num_blocks = cache.len() / (block_size * w);
    let cap = (max_blocks * block_size) as i64;
    let mut out = vec![0.0f64; bt * s_q * h * d_c];
    for b in 0..bt {
        for i in 0..s_q {
            let visible = (seq_lens[b] as i64 - s_q as i64 + i as i64 + 1).clamp(0, cap) as usize;
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
                let q = (b * s_q + i) * h + hh;
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
