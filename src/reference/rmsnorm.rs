//! CPU reference of `rmsnorm`: y[r, i] = x[r, i] / sqrt(mean_i(x[r, i]²) + eps) · w\[i\], in f64.

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
