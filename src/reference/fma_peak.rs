//! CPU reference of `fma_peak`: the same 8 × 4 chains x ← x·m + c in f64.

use crate::spec::fma_peak::FmaPeakParams;

/// out\[i\] = Σ over chains k < 8 and lanes l < 4 of the chain started at seed\[i\] + k/64 + l/256.
pub fn fma_peak(seed: &[f32], params: FmaPeakParams) -> Vec<f64> {
    let (m, c) = (params.m as f64, params.c as f64);
    seed.iter()
        .map(|&s| {
            let mut total = 0.0;
            for k in 0..8 {
                for l in 0..4 {
                    let mut x = s as f64 + k as f64 / 64.0 + l as f64 / 256.0;
                    for _ in 0..params.iters {
                        x = x * m + c;
                    }
                    total += x;
                }
            }
            total
        })
        .collect()
}
