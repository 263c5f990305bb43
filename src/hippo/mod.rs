//! HiPPO memory: the continuous-time linear ODEs `c'(t) = A c(t) + B f(t)`
//! whose state `c` holds the coefficients of the input's history in an orthogonal basis, their
//! discretisations, and the diagonal (S4D / S5) systems derived from them. Everything here is
//! exact host math in f64 on `nalgebra` matrices; the GPU side is
//! [`crate::ops::diagonal_scan`].
//!
//! - [`transition`]: `(A, B)` of LegT, LegS, LagT, FouT for any `N`, and [`basis`] /
//!   [`reconstruct`]: the functions `g_n` such that the history is `f(t − s) ≈ Σ c_n g_n(s)`.
//! - [`discretise`] (dense) and [`discretise_diagonal`] (complex diagonal): forward Euler,
//!   backward Euler, bilinear, ZOH ([`Discretisation`]). Dense ZOH uses a real matrix
//!   exponential of the block matrix `[[A, B], [0, 0]]` (Van Loan), so `A` need not be invertible.
//! - [`legs_online`]: the scale-invariant LegS memory `c' = (A c + B f) / t` fed step by step.
//! - [`diagonal`]: LegS's normal-plus-low-rank split, the unitary eigendecomposition of the
//!   normal part, and S4D-Lin / S4D-Inv initialisations, giving [`diagonal::DiagonalSsm`]s.
//!
//! # Conventions
//! Lags `s` are measured backwards from the present (`s = 0` is the newest input).
//!
//! **LegT** (window θ, [`legt`]): `A[n,k] = −(2n+1)^½ (2k+1)^½ · (1 if n ≥ k else (−1)^(n−k)) / θ`,
//! `B[n] = (2n+1)^½ / θ`. With this sign convention the state holds the coefficients of the last
//! window in `g_n(s) = (2n+1)^½ · P_n(1 − 2s/θ)` for `s ∈ [0, θ]` (Legendre `P_n`, orthonormal under
//! the uniform measure `ds/θ`). This is HiPPO's LegT (Gu et al. 2020, arXiv:2008.07669,
//! Appendix D.1) up to the overall sign of `A` (they write `c' = −A c + B f`); the LMU matrices
//! are the same system in the unnormalised basis.
//!
//! **LegS** ([`legs`]): `A[n,k] = −(2n+1)^½ (2k+1)^½` if `n > k`, `−(n+1)` if `n = k`, 0 above;
//! `B[n] = (2n+1)^½`. As the time-varying system `c' = (A c + B f)/t` it holds the whole history
//! `[0, t]` rescaled to `[0, 1]`: `f(t·(1 − s)) ≈ Σ c_n g_n(s)`, `g_n(s) = (2n+1)^½ P_n(1 − 2s)`,
//! `s ∈ [0, 1]` (HiPPO Appendix D.3). As an LTI system (S4) the same `(A, B)` is used with a step Δ.
//!
//! **LagT** ([`lagt`]): `A = −(½ I + strictly-lower ones)`, `B = 1`. The state holds the history in
//! the Laguerre functions `g_n(s) = L_n(s) · e^(−s/2)`, `s ∈ [0, ∞)`, orthonormal under `ds`
//! (HiPPO Appendix D.2, with the exponential tilt folded into the basis). Derivation: with
//! `c_n(t) = ∫₀^∞ f(t−s) L_n(s) e^(−s/2) ds`, integrating by parts gives
//! `c_n' = f(t) L_n(0) + ∫ f(t−s) (L_n' − ½ L_n) e^(−s/2) ds` and `L_n' = −Σ_{k<n} L_k`, `L_n(0) = 1`.
//!
//! **FouT** ([`fout`]), translated Fourier over a unit window: basis `g_0 = 1`,
//! `g_{2k−1}(s) = √2 cos(2πks)`, `g_{2k}(s) = √2 sin(2πks)` (k = 1, 2, …), truncated to N
//! functions, orthonormal on `[0, 1]`. With `c_n(t) = ∫₀¹ f(t−s) g_n(s) ds`, integrating by parts:
//! `c_n' = g_n(0) f(t) − g_n(1) f(t−1) + ∫₀¹ f(t−s) g_n'(s) ds`. Here `g_n(0) = g_n(1) = b_n`
//! (`b = [1, √2, 0, √2, 0, …]`: 1 for the constant, √2 for cosines, 0 for sines),
//! `g'` of a cosine is `−2πk` times its sine and of a sine `+2πk` times its cosine, and the
//! unknown `f(t−1)` is replaced by its reconstruction `Σ_m c_m g_m(1) = bᵀc`. So
//! `A = D − b bᵀ`, `B = b` with `D[cos_k, sin_k] = −2πk`, `D[sin_k, cos_k] = 2πk` (a cosine whose
//! sine does not fit in N has that coupling truncated). This is the FouT system of Gu, Johnson,
//! Timalsina, Rudra, Ré, "How to Train Your HiPPO" (arXiv:2206.12037, ICLR 2023; §4 and its
//! appendix on Fourier bases), obtained with the recipe of HiPPO Appendix D; the form above is
//! self-contained and checked by `tests/hippo.rs`.

pub mod demo;
pub mod diagonal;

use crate::error::{Error, Result};
use nalgebra::{Complex, DMatrix, DVector};
use std::f64::consts::PI;

/// Complex f64.
pub type C64 = Complex<f64>;

/// A HiPPO measure (which basis and which weighting of the history the state represents).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Measure {
    /// Translated Legendre: uniform weight on a sliding window `[t − θ, t]` (θ = 1 here).
    LegT,
    /// Scaled Legendre: uniform weight on the whole history `[0, t]`.
    LegS,
    /// Translated Laguerre: exponentially decaying weight on `(−∞, t]`.
    LagT,
    /// Translated Fourier: uniform weight on `[t − 1, t]`, trigonometric basis.
    FouT,
}

impl Measure {
    /// All measures.
    pub const ALL: [Measure; 4] = [Measure::LegT, Measure::LegS, Measure::LagT, Measure::FouT];

    /// Lowercase name as on the command line (`legt`, `legs`, `lagt`, `fout`).
    pub fn name(self) -> &'static str {
        match self {
            Measure::LegT => "legt",
            Measure::LegS => "legs",
            Measure::LagT => "lagt",
            Measure::FouT => "fout",
        }
    }
}

impl std::fmt::Display for Measure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Measure {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Measure::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown HiPPO measure {s:?} (expected legt, legs, lagt or fout)"
                ))
            })
    }
}

fn check_n(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid("HiPPO state size N must be at least 1"));
    }
    Ok(())
}

/// `(A, B)` of `measure` with state size `n` (LegT with window θ = 1). See the module docs for
/// each convention.
pub fn transition(measure: Measure, n: usize) -> Result<(DMatrix<f64>, DVector<f64>)> {
    match measure {
        Measure::LegT => legt(n, 1.0),
        Measure::LegS => legs(n),
        Measure::LagT => lagt(n),
        Measure::FouT => fout(n),
    }
}

/// LegT with window `theta` (> 0).
pub fn legt(n: usize, theta: f64) -> Result<(DMatrix<f64>, DVector<f64>)> {
    check_n(n)?;
    if theta.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !theta.is_finite() {
        return Err(Error::invalid(format!(
            "LegT window θ must be positive, got {theta}"
        )));
    }
    let r = |i: usize| ((2 * i + 1) as f64).sqrt();
    let a = DMatrix::from_fn(n, n, |i, k| {
        let sign = if i >= k || (k - i) % 2 == 0 {
            1.0
        } else {
            -1.0
        };
        -r(i) * r(k) * sign / theta
    });
    let b = DVector::from_fn(n, |i, _| r(i) / theta);
    Ok((a, b))
}

/// LegS.
pub fn legs(n: usize) -> Result<(DMatrix<f64>, DVector<f64>)> {
    check_n(n)?;
    let r = |i: usize| ((2 * i + 1) as f64).sqrt();
    let a = DMatrix::from_fn(n, n, |i, k| match i.cmp(&k) {
        std::cmp::Ordering::Greater => -r(i) * r(k),
        std::cmp::Ordering::Equal => -((i + 1) as f64),
        std::cmp::Ordering::Less => 0.0,
    });
    let b = DVector::from_fn(n, |i, _| r(i));
    Ok((a, b))
}

/// LagT.
pub fn lagt(n: usize) -> Result<(DMatrix<f64>, DVector<f64>)> {
    check_n(n)?;
    let a = DMatrix::from_fn(n, n, |i, k| match i.cmp(&k) {
        std::cmp::Ordering::Greater => -1.0,
        std::cmp::Ordering::Equal => -0.5,
        std::cmp::Ordering::Less => 0.0,
    });
    Ok((a, DVector::from_element(n, 1.0)))
}

/// Frequency and kind of FouT basis function `i`: (k, is_sine); k = 0 for the constant.
fn fourier_index(i: usize) -> (usize, bool) {
    if i == 0 {
        (0, false)
    } else {
        (i.div_ceil(2), i % 2 == 0)
    }
}

/// FouT (unit window).
pub fn fout(n: usize) -> Result<(DMatrix<f64>, DVector<f64>)> {
    check_n(n)?;
    let b = DVector::from_fn(n, |i, _| match fourier_index(i) {
        (0, _) => 1.0,
        (_, false) => 2f64.sqrt(),
        (_, true) => 0.0,
    });
    let mut a = -(&b * b.transpose());
    for i in 0..n {
        let (k, sine) = fourier_index(i);
        if k == 0 {
            continue;
        }
        let w = 2.0 * PI * k as f64;
        if sine {
            a[(i, i - 1)] += w; // (sin_k)' = 2πk cos_k
        } else if i + 1 < n {
            a[(i, i + 1)] -= w; // (cos_k)' = −2πk sin_k
        }
    }
    Ok((a, b))
}

/// Legendre polynomials `P_0..P_{n−1}` at `x` (three-term recurrence).
pub fn legendre(n: usize, x: f64) -> Vec<f64> {
    let mut p = Vec::with_capacity(n);
    for k in 0..n {
        let v = match k {
            0 => 1.0,
            1 => x,
            _ => {
                let k = k as f64;
                ((2.0 * k - 1.0) * x * p[p.len() - 1] - (k - 1.0) * p[p.len() - 2]) / k
            }
        };
        p.push(v);
    }
    p
}

/// Laguerre polynomials `L_0..L_{n−1}` at `x`.
pub fn laguerre(n: usize, x: f64) -> Vec<f64> {
    let mut l = Vec::with_capacity(n);
    for k in 0..n {
        let v = match k {
            0 => 1.0,
            1 => 1.0 - x,
            _ => {
                let j = (k - 1) as f64; // L_{j+1} = ((2j+1−x) L_j − j L_{j−1}) / (j+1)
                ((2.0 * j + 1.0 - x) * l[k - 1] - j * l[k - 2]) / (j + 1.0)
            }
        };
        l.push(v);
    }
    l
}

/// The reconstruction basis `g_0(s)..g_{n−1}(s)` of `measure` at lag `s` (module docs): LegT
/// `s ∈ [0, 1]` (window θ = 1; for another window pass `s/θ`), LegS `s ∈ [0, 1]` as a fraction of
/// the history, LagT `s ≥ 0`, FouT `s ∈ [0, 1]`.
pub fn basis(measure: Measure, n: usize, s: f64) -> Vec<f64> {
    let norm = |k: usize| ((2 * k + 1) as f64).sqrt();
    match measure {
        Measure::LegT | Measure::LegS => legendre(n, 1.0 - 2.0 * s)
            .into_iter()
            .enumerate()
            .map(|(k, p)| norm(k) * p)
            .collect(),
        Measure::LagT => {
            let tilt = (-s / 2.0).exp();
            laguerre(n, s).into_iter().map(|l| l * tilt).collect()
        }
        Measure::FouT => (0..n)
            .map(|i| match fourier_index(i) {
                (0, _) => 1.0,
                (k, false) => 2f64.sqrt() * (2.0 * PI * k as f64 * s).cos(),
                (k, true) => 2f64.sqrt() * (2.0 * PI * k as f64 * s).sin(),
            })
            .collect(),
    }
}

/// `Σ c_n g_n(s)` at each lag in `lags` (see [`basis`]).
pub fn reconstruct(measure: Measure, c: &DVector<f64>, lags: &[f64]) -> Vec<f64> {
    lags.iter()
        .map(|&s| {
            basis(measure, c.len(), s)
                .iter()
                .zip(c.iter())
                .map(|(g, c)| g * c)
                .sum()
        })
        .collect()
}

/// How a continuous system becomes a recurrence `x_k = Ā x_{k−1} + B̄ u_k` with step Δ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Discretisation {
    /// `Ā = I + ΔA`, `B̄ = ΔB` (order 1).
    ForwardEuler,
    /// `Ā = (I − ΔA)⁻¹`, `B̄ = ΔĀB` (order 1).
    BackwardEuler,
    /// `Ā = (I − ΔA/2)⁻¹(I + ΔA/2)`, `B̄ = (I − ΔA/2)⁻¹ΔB` (order 2; Tustin).
    Bilinear,
    /// `Ā = exp(ΔA)`, `B̄ = A⁻¹(Ā − I)B` (exact for input held constant over each step).
    Zoh,
}

impl Discretisation {
    /// All four.
    pub const ALL: [Discretisation; 4] = [
        Discretisation::ForwardEuler,
        Discretisation::BackwardEuler,
        Discretisation::Bilinear,
        Discretisation::Zoh,
    ];

    /// Short name (`forward-euler`, `backward-euler`, `bilinear`, `zoh`).
    pub fn name(self) -> &'static str {
        match self {
            Discretisation::ForwardEuler => "forward-euler",
            Discretisation::BackwardEuler => "backward-euler",
            Discretisation::Bilinear => "bilinear",
            Discretisation::Zoh => "zoh",
        }
    }
}

impl std::fmt::Display for Discretisation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn check_dt(dt: f64) -> Result<()> {
    if dt.is_finite() && dt > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "step Δ must be finite and positive, got {dt}"
        )))
    }
}

fn singular(what: &str, dt: f64) -> Error {
    Error::invalid(format!("{what} is singular at Δ = {dt}"))
}

/// Discretise a dense `(A, B)` with step `dt`. ZOH uses `exp(Δ·[[A, B], [0, 0]]) = [[Ā, B̄], [0, 1]]`,
/// which equals `B̄ = A⁻¹(Ā − I)B` whenever `A` is invertible and needs no inverse.
pub fn discretise(
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    dt: f64,
    method: Discretisation,
) -> Result<(DMatrix<f64>, DVector<f64>)> {
    let n = a.nrows();
    if a.ncols() != n || b.len() != n {
        return Err(Error::shape(
            "B",
            format!("(N) with A (N, N), N = {n}"),
            &[b.len()],
        ));
    }
    check_dt(dt)?;
    let eye = DMatrix::<f64>::identity(n, n);
    match method {
        Discretisation::ForwardEuler => Ok((&eye + a * dt, b * dt)),
        Discretisation::BackwardEuler => {
            let lu = (&eye - a * dt).lu();
            let ad = lu.try_inverse().ok_or_else(|| singular("I − ΔA", dt))?;
            let bd = &ad * b * dt;
            Ok((ad, bd))
        }
        Discretisation::Bilinear => {
            let lu = (&eye - a * (dt / 2.0)).lu();
            let ad = lu
                .solve(&(&eye + a * (dt / 2.0)))
                .ok_or_else(|| singular("I − ΔA/2", dt))?;
            let bd = lu
                .solve(&(b * dt))
                .ok_or_else(|| singular("I − ΔA/2", dt))?;
            Ok((ad, bd))
        }
        Discretisation::Zoh => {
            let mut m = DMatrix::<f64>::zeros(n + 1, n + 1);
            m.view_mut((0, 0), (n, n)).copy_from(&(a * dt));
            m.view_mut((0, n), (n, 1)).copy_from(&(b * dt));
            let e = m.exp();
            Ok((
                e.view((0, 0), (n, n)).into_owned(),
                DVector::from_iterator(n, e.view((0, n), (n, 1)).iter().copied()),
            ))
        }
    }
}

/// `exp(z) − 1` without cancellation for small |z|.
pub fn expm1_complex(z: C64) -> C64 {
    if z.norm() < 1e-5 {
        z + z * z / 2.0 + z * z * z / 6.0
    } else {
        z.exp() - 1.0
    }
}

/// Discretise a complex diagonal system elementwise: returns `(Λ̄, B̄)`. ZOH uses
/// `B̄ = (exp(Δλ) − 1)/λ · B̃` (with the limit `Δ·B̃` at λ = 0).
pub fn discretise_diagonal(
    lambda: &[C64],
    b: &[C64],
    dt: f64,
    method: Discretisation,
) -> Result<(Vec<C64>, Vec<C64>)> {
    if lambda.len() != b.len() {
        return Err(Error::shape(
            "B",
            format!("(N) like Λ, N = {}", lambda.len()),
            &[b.len()],
        ));
    }
    check_dt(dt)?;
    let one = C64::new(1.0, 0.0);
    let mut ad = Vec::with_capacity(lambda.len());
    let mut bd = Vec::with_capacity(lambda.len());
    for (&l, &bb) in lambda.iter().zip(b) {
        let z = l * dt;
        let (a, g) = match method {
            Discretisation::ForwardEuler => (one + z, C64::new(dt, 0.0)),
            Discretisation::BackwardEuler => {
                let a = one / (one - z);
                (a, a * dt)
            }
            Discretisation::Bilinear => {
                let inv = one / (one - z / 2.0);
                ((one + z / 2.0) * inv, inv * dt)
            }
            Discretisation::Zoh => {
                let g = if z.norm() == 0.0 {
                    C64::new(dt, 0.0)
                } else {
                    expm1_complex(z) / z * dt
                };
                (z.exp(), g)
            }
        };
        if !(a.re.is_finite() && a.im.is_finite() && g.re.is_finite() && g.im.is_finite()) {
            return Err(singular("the diagonal discretisation", dt));
        }
        ad.push(a);
        bd.push(g * bb);
    }
    Ok((ad, bd))
}

/// Run `x_k = Ā x_{k−1} + B̄ u_k` from `x_0 = 0` and return every state `x_1..x_L`.
pub fn simulate(ad: &DMatrix<f64>, bd: &DVector<f64>, u: &[f64]) -> Vec<DVector<f64>> {
    let mut x = DVector::zeros(bd.len());
    u.iter()
        .map(|&uk| {
            x = ad * &x + bd * uk;
            x.clone()
        })
        .collect()
}

/// The LegS memory `c' = (A c + B f)/t` fed with `u_k`, the value of f on `((k−1)h, kh]`, for
/// k = 1..L (any step h: the system is scale invariant). Returns the final state, which
/// reconstructs the whole history: `f(t(1 − s)) ≈ Σ c_n g_n(s)`. Per step, with `A_k = A/k`:
/// Euler and bilinear apply [`discretise`] to `(A/k, B/k)` with Δ = 1 (HiPPO's scheme); ZOH is
/// exact for the piecewise-constant input: `Ā_k = exp(A ln(k/(k−1)))`,
/// `B̄_k = A⁻¹(Ā_k − I)B`, and the first step sets `c = −A⁻¹B f_1 = e_0 f_1`.
pub fn legs_online(n: usize, u: &[f64], method: Discretisation) -> Result<DVector<f64>> {
    let (a, b) = legs(n)?;
    let mut c = DVector::zeros(n);
    let inv_a = a
        .clone()
        .try_inverse()
        .ok_or_else(|| Error::invalid("LegS A is singular"))?;
    for (i, &f) in u.iter().enumerate() {
        let k = (i + 1) as f64;
        match method {
            Discretisation::Zoh => {
                if i == 0 {
                    c = -(&inv_a * &b) * f;
                } else {
                    let ad = (&a * (k / (k - 1.0)).ln()).exp();
                    let bd = &inv_a * ((&ad - DMatrix::identity(n, n)) * &b);
                    c = &ad * &c + bd * f;
                }
            }
            m => {
                let (ad, bd) = discretise(&(&a / k), &(&b / k), 1.0, m)?;
                c = &ad * &c + bd * f;
            }
        }
    }
    Ok(c)
}
