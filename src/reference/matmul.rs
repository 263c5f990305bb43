//! CPU reference of `matmul`: y[g, m, n] = Σ_k x[g, m, k] · w(g, n, k) (+ bias\[n\]), with the
//! strided layout of [`MatmulDims`] (w(g, n, k) = W[n, k] for a PyTorch `Linear` weight, or
//! W[k, n] when not transposed). Accumulates in f64.

use crate::spec::matmul::MatmulDims;

/// The matmul over every (g, m, n) of `dims`. Returns a vector as long as `y_len` in which the
/// elements the op writes hold the result and all others are NaN.
pub fn matmul(
    dims: &MatmulDims,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y_len: usize,
) -> Vec<f64> {
    let mut y = vec![f64::NAN; y_len];
    for g in 0..dims.g {
        for m in 0..dims.m {
            for n in 0..dims.n {
                let mut acc = 0.0f64;
                for k in 0..dims.k {
                    acc += x[dims.x_index(g, m, k)] as f64 * w[dims.w_index(g, n, k)] as f64;
                }
                if let Some(b) = bias {
                    acc += b[n] as f64;
                }
                y[dims.y_index(g, m, n)] = acc;
            }
        }
    }
    y
}

/// Plain y (M, N) = x (M, K) · Wᵀ (+ b) with W row-major [N, K] (a PyTorch `Linear`), in f64.
pub fn linear(
    x: &[f64],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
) -> Vec<f64> {
    let mut y = vec![0.0; m * n];
    for r in 0..m {
        let xr = &x[r * k..(r + 1) * k];
        for c in 0..n {
            let wr = &w[c * k..(c + 1) * k];
            let mut acc: f64 = xr.iter().zip(wr).map(|(&a, &b)| a * b as f64).sum();
            if let Some(b) = bias {
                acc += b[c] as f64;
            }
            y[r * n + c] = acc;
        }
    }
    y
}
