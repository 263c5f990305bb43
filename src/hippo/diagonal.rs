//! Diagonal SSMs from HiPPO (S4D / S5): LegS's normal-plus-low-rank split `A = A_N − P Pᵀ`
//! (`P[n] = (n+½)^½`), the unitary eigendecomposition `A_N = V Λ Vᴴ` (`A_N = −½I + S` with `S`
//! skew-symmetric, so `Λ = −½ + iμ` with `μ` real and `V` unitary), and the S4D-Lin / S4D-Inv
//! initialisations.
//!
//! Conjugate-pair convention: a real system `(A_N, B, C)` of size N becomes
//! `x̃' = Λ x̃ + B̃ u`, `y = 2·Re(C̃ · x̃)` over ⌈N/2⌉ modes: one mode of each conjugate pair
//! (`Im λ > 0`), with `B̃ = Vᴴ B`, `C̃ = C V` on that mode; for odd N the one real eigenvalue is kept
//! with `C̃` halved so that the factor 2 is right. Dropping `P Pᵀ` is what S4D-LegS does: the
//! diagonal system equals the dense *normal* system `(A_N, B, C)` exactly, not the full LegS one.

use super::{discretise_diagonal, legs, Discretisation, C64};
use crate::error::{Error, Result};
use nalgebra::{DMatrix, DVector};
use std::f64::consts::PI;

/// A complex diagonal SSM in the conjugate-pair convention: modes `λ_m`, input weights `B̃_m`,
/// output weights `C̃_m`; `y = 2·Re(Σ_m C̃_m x_m)` (+ a feed-through `D·u` held elsewhere).
#[derive(Clone, Debug, PartialEq)]
pub struct DiagonalSsm {
    /// Continuous-time eigenvalues Λ (Re < 0 for a stable system).
    pub lambda: Vec<C64>,
    /// Input projection B̃.
    pub b: Vec<C64>,
    /// Output projection C̃.
    pub c: Vec<C64>,
}

impl DiagonalSsm {
    /// Number of complex modes.
    pub fn modes(&self) -> usize {
        self.lambda.len()
    }

    /// Output `y_k = 2·Re(C̃·x_k) + d·u_k` of the system discretised with step `dt` and `method`,
    /// from `x_0 = 0`, computed sequentially in f64.
    pub fn output(&self, u: &[f64], dt: f64, method: Discretisation, d: f64) -> Result<Vec<f64>> {
        let (ad, bd) = discretise_diagonal(&self.lambda, &self.b, dt, method)?;
        let mut x = vec![C64::new(0.0, 0.0); self.modes()];
        Ok(u.iter()
            .map(|&uk| {
                let mut y = 0.0;
                for m in 0..x.len() {
                    x[m] = ad[m] * x[m] + bd[m] * uk;
                    y += 2.0 * (self.c[m] * x[m]).re;
                }
                y + d * uk
            })
            .collect())
    }
}

/// LegS's normal-plus-low-rank split: `(A_N, P, B)` with `A = A_N − P Pᵀ`.
pub fn legs_nplr(n: usize) -> Result<(DMatrix<f64>, DVector<f64>, DVector<f64>)> {
    let (a, b) = legs(n)?;
    let p = DVector::from_fn(n, |i, _| (i as f64 + 0.5).sqrt());
    let a_normal = a + &p * p.transpose();
    Ok((a_normal, p, b))
}

/// Eigendecomposition of LegS's normal part: `(Λ, V)` with `A_N = V diag(Λ) Vᴴ`, all N
/// eigenvalues sorted by imaginary part, `V` unitary. Computed as the Hermitian eigenproblem of
/// `−i·S` (`S = A_N + ½I`, skew-symmetric).
pub fn legs_normal_eig(n: usize) -> Result<(Vec<C64>, DMatrix<C64>)> {
    let (a_normal, _, _) = legs_nplr(n)?;
    let s = a_normal + DMatrix::<f64>::identity(n, n) * 0.5;
    let h = s.map(|v| C64::new(0.0, -v));
    let eig = nalgebra::SymmetricEigen::try_new(h, 1e-15, 10_000).ok_or_else(|| {
        Error::invalid(format!("LegS N={n}: eigendecomposition did not converge"))
    })?;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| eig.eigenvalues[i].total_cmp(&eig.eigenvalues[j]));
    // S v = i μ v  ⇒  A_N v = (−½ + iμ) v.
    let lambda = order
        .iter()
        .map(|&i| C64::new(-0.5, eig.eigenvalues[i]))
        .collect();
    let v = DMatrix::from_fn(n, n, |r, c| eig.eigenvectors[(r, order[c])]);
    Ok((lambda, v))
}

/// The diagonal (conjugate-pair) form of the dense normal LegS system `(A_N, B, C)` with output
/// row `c` (length N): ⌈N/2⌉ modes (see the module docs).
pub fn legs_diagonal(n: usize, c: &[f64]) -> Result<DiagonalSsm> {
    if c.len() != n {
        return Err(Error::shape("C", format!("(N) = [{n}]"), &[c.len()]));
    }
    let (_, _, b) = legs_nplr(n)?;
    let (lambda, v) = legs_normal_eig(n)?;
    let scale = lambda.iter().map(|l| l.im.abs()).fold(1.0, f64::max);
    let tol = 1e-9 * scale;
    let mut out = DiagonalSsm {
        lambda: Vec::new(),
        b: Vec::new(),
        c: Vec::new(),
    };
    for (j, &l) in lambda.iter().enumerate() {
        if l.im < -tol {
            continue;
        }
        let col = v.column(j);
        let bt: C64 = col.iter().zip(b.iter()).map(|(v, &b)| v.conj() * b).sum();
        let mut ct: C64 = col.iter().zip(c.iter()).map(|(v, &c)| v * c).sum();
        let mut l = l;
        if l.im.abs() <= tol {
            ct /= 2.0; // the real mode is counted twice by 2·Re(·)
            l.im = 0.0;
        }
        out.lambda.push(l);
        out.b.push(bt);
        out.c.push(ct);
    }
    if out.modes() != n.div_ceil(2) {
        return Err(Error::invalid(format!(
            "LegS N={n}: expected {} conjugate pairs, found {} (eigenvalues too close)",
            n.div_ceil(2),
            out.modes()
        )));
    }
    Ok(out)
}

/// S4D-Lin modes: `λ_m = −½ + iπm`, m = 0..modes (Gu et al. 2022, "On the Parameterization and
/// Initialization of Diagonal State Space Models", arXiv:2206.11893).
pub fn s4d_lin(modes: usize) -> Vec<C64> {
    (0..modes).map(|m| C64::new(-0.5, PI * m as f64)).collect()
}

/// S4D-Inv modes: `λ_m = −½ + i·(N/π)·(N/(2m+1) − 1)` with `N = 2·modes` the real state size
/// before conjugate halving (as in the S4D reference code), m = 0..modes.
pub fn s4d_inv(modes: usize) -> Vec<C64> {
    let n = 2.0 * modes as f64;
    (0..modes)
        .map(|m| C64::new(-0.5, n / PI * (n / (2 * m + 1) as f64 - 1.0)))
        .collect()
}

/// An S4D system with the given modes, `B̃ = 1` and output weights `c`.
pub fn s4d(lambda: Vec<C64>, c: Vec<C64>) -> Result<DiagonalSsm> {
    if c.len() != lambda.len() {
        return Err(Error::shape(
            "C",
            format!("(modes) = [{}]", lambda.len()),
            &[c.len()],
        ));
    }
    let b = vec![C64::new(1.0, 0.0); lambda.len()];
    Ok(DiagonalSsm { lambda, b, c })
}
