//! CPU reference of `diagonal_scan` (the S4D / S5 diagonal scan): the sequential recurrence in f64.
//! `x_t = Λ̄ ⊙ x_{t−1} + B̄ u_t`, `y_t = 2·Re(C̃·x_t) + D·u_t` per (batch, channel), with Λ̄, B̄ from
//! [`crate::hippo::discretise_diagonal`] applied to each channel's modes and step.
//! Layouts as the GPU op: u (Bt, H, L); lambda, b, c (H, N, 2) as [re, im]; dt, d (H).

use crate::error::{Error, Result};
use crate::hippo::{discretise_diagonal, Discretisation, C64};

use crate::spec::diagonal_scan::DiagonalSsmHost;
pub use crate::spec::diagonal_scan::Dims;

fn complex(v: &[f32], i: usize) -> C64 {
    C64::new(v[2 * i] as f64, v[2 * i + 1] as f64)
}

/// y (Bt, H, L) of the diagonal scan, sequentially in f64.
#[allow(clippy::too_many_arguments)]
pub fn diagonal_scan(
    dims: Dims,
    u: &[f32],
    lambda: &[f32],
    b: &[f32],
    c: &[f32],
    dt: &[f32],
    d: &[f32],
    method: Discretisation,
) -> Result<Vec<f64>> {
    let Dims {
        batch,
        channels,
        len,
        modes,
    } = dims;
    let per = channels * modes * 2;
    if u.len() != batch * channels * len
        || lambda.len() != per
        || b.len() != per
        || c.len() != per
        || dt.len() != channels
        || d.len() != channels
    {
        return Err(Error::invalid(format!(
            "diagonal_scan reference: input lengths do not match {dims:?}"
        )));
    }
    let mut y = vec![0.0; u.len()];
    for h in 0..channels {
        let lam: Vec<C64> = (0..modes).map(|n| complex(lambda, h * modes + n)).collect();
        let bt: Vec<C64> = (0..modes).map(|n| complex(b, h * modes + n)).collect();
        let ct: Vec<C64> = (0..modes).map(|n| complex(c, h * modes + n)).collect();
        let (ad, bd) = discretise_diagonal(&lam, &bt, dt[h] as f64, method)?;
        for bi in 0..batch {
            let row = (bi * channels + h) * len;
            let mut x = vec![C64::new(0.0, 0.0); modes];
            for t in 0..len {
                let ut = u[row + t] as f64;
                let mut acc = d[h] as f64 * ut;
                for n in 0..modes {
                    x[n] = ad[n] * x[n] + bd[n] * ut;
                    acc += 2.0 * (ct[n] * x[n]).re;
                }
                y[row + t] = acc;
            }
        }
    }
    Ok(y)
}

impl DiagonalSsmHost {
    /// The CPU reference on these parameters: y (Bt, H, L) for u (Bt, H, L).
    pub fn reference(
        &self,
        batch: usize,
        len: usize,
        u: &[f32],
        method: Discretisation,
    ) -> Result<Vec<f64>> {
        diagonal_scan(
            self.dims(batch, len),
            u,
            &self.lambda,
            &self.b,
            &self.c,
            &self.dt,
            &self.d,
            method,
        )
    }
}
