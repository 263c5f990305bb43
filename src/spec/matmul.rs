//! Layout of a (batched, strided) matrix product `y[g, m, n] = Σ_k x[g, m, k] · w(g, n, k)
//! (+ bias[n])`: `w(g, n, k) = W[n, k]` for a PyTorch `Linear` weight (`w_trans`), or `W[k, n]`;
//! every operand has an element offset and strides between batch entries and rows.

use super::named;
use crate::error::{Error, Result};

/// Sizes and strided layout of a (batched) matrix product; all offsets and strides in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulDims {
    /// Batch entries G.
    pub g: usize,
    /// Rows of x and y.
    pub m: usize,
    /// Columns of y.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// x[g, m, k] = x[x_off + g·x_gs + m·x_rs + k].
    pub x_off: usize,
    /// x stride between batch entries.
    pub x_gs: usize,
    /// x stride between rows.
    pub x_rs: usize,
    /// Offset of w(0, 0, 0).
    pub w_off: usize,
    /// w stride between batch entries (0 shares one weight).
    pub w_gs: usize,
    /// w stride between rows of W (rows are n when `w_trans`, else k).
    pub w_rs: usize,
    /// W is [N, K] (PyTorch `Linear`) when true, [K, N] when false.
    pub w_trans: bool,
    /// y[g, m, n] = y[y_off + g·y_gs + m·y_rs + n].
    pub y_off: usize,
    /// y stride between batch entries.
    pub y_gs: usize,
    /// y stride between rows.
    pub y_rs: usize,
}

impl MatmulDims {
    /// y (M, N) = x (M, K) · Wᵀ with W [N, K], all contiguous.
    pub fn linear(m: usize, n: usize, k: usize) -> Self {
        Self {
            g: 1,
            m,
            n,
            k,
            x_off: 0,
            x_gs: m * k,
            x_rs: k,
            w_off: 0,
            w_gs: 0,
            w_rs: k,
            w_trans: true,
            y_off: 0,
            y_gs: m * n,
            y_rs: n,
        }
    }

    /// A PyTorch `Linear` y (…, N) = x (…, K) · Wᵀ (+ bias (N)) from the shapes of x and w
    /// [N, K]: the layout and the shape y must have. K is read from w and checked on x, N from
    /// w and checked on the bias.
    pub fn linear_from_shapes(
        x: &[usize],
        w: &[usize],
        bias: Option<&[usize]>,
    ) -> Result<(Self, Vec<usize>)> {
        let wn = named("w", w).rank(2, "[N, K]")?;
        let (n, k) = (w[0], w[1]);
        let xn = named("x", x);
        if x.is_empty() {
            return Err(Error::shape("x", format!("(…, K) with K = {k}"), x));
        }
        wn.agree(1, xn, x.len() - 1, "K")?;
        if let Some(b) = bias {
            let b = named("bias", b).rank(1, format!("(N) = [{n}]"))?;
            wn.agree(0, b, 0, "N")?;
        }
        let lead = &x[..x.len() - 1];
        let mut y = lead.to_vec();
        y.push(n);
        Ok((Self::linear(lead.iter().product(), n, k), y))
    }

    /// Index of x[g, m, k].
    pub fn x_index(&self, g: usize, m: usize, k: usize) -> usize {
        self.x_off + g * self.x_gs + m * self.x_rs + k
    }

    /// Index of w(g, n, k).
    pub fn w_index(&self, g: usize, n: usize, k: usize) -> usize {
        if self.w_trans {
            self.w_off + g * self.w_gs + n * self.w_rs + k
        } else {
            self.w_off + g * self.w_gs + k * self.w_rs + n
        }
    }

    /// Index of y[g, m, n].
    pub fn y_index(&self, g: usize, m: usize, n: usize) -> usize {
        self.y_off + g * self.y_gs + m * self.y_rs + n
    }

    /// Whether the product has no output elements (G, M or N is 0).
    pub fn is_empty(&self) -> bool {
        self.g == 0 || self.m == 0 || self.n == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_shapes() {
        let (dims, y) = MatmulDims::linear_from_shapes(&[2, 5, 3], &[4, 3], Some(&[4])).unwrap();
        assert_eq!((dims.m, dims.n, dims.k, y), (10, 4, 3, vec![2, 5, 4]));
        assert_eq!(
            MatmulDims::linear_from_shapes(&[2, 3], &[4, 2], None)
                .unwrap_err()
                .to_string(),
            "tensors `w` (4, 2) and `x` (2, 3) disagree on K: 2 vs 3"
        );
        assert_eq!(
            MatmulDims::linear_from_shapes(&[2, 3], &[4, 3], Some(&[3]))
                .unwrap_err()
                .to_string(),
            "tensors `w` (4, 3) and `bias` (3) disagree on N: 4 vs 3"
        );
    }
}
