//! The HiPPO theory, checked numerically on the CPU (f64, small sizes):
//! - online function approximation: LegT (sliding window) and LegS (whole history) memories fed
//!   a smooth signal reconstruct it from their state, with the error shrinking monotonically
//!   over N = 4, 8, 16, 32 (FouT and LagT too, on signals suited to them);
//! - the diagonalised (normal) LegS system reproduces the dense one;
//! - each discretisation converges to the continuous solution at its known order (forward and
//!   backward Euler 1, bilinear 2) and ZOH is exact for piecewise-constant input.

use nalgebra::{DMatrix, DVector};
use ssm_mla::hippo::diagonal::{legs_diagonal, legs_normal_eig, legs_nplr, s4d, s4d_inv, s4d_lin};
use ssm_mla::hippo::{
    basis, discretise, discretise_diagonal, legendre, legs_online, reconstruct, simulate,
    transition, Discretisation, Measure, C64,
};
use std::f64::consts::PI;

const NS: [usize; 4] = [4, 8, 16, 32];

/// A smooth test signal with a few incommensurate frequencies.
fn signal(t: f64) -> f64 {
    (2.0 * PI * 0.9 * t).sin() + 0.6 * (2.0 * PI * 1.7 * t + 0.4).cos() + 0.3 * (5.1 * t).sin()
}

/// Largest modulus of a complex matrix's entries.
fn cmax<R: nalgebra::Dim, C: nalgebra::Dim, S: nalgebra::RawStorage<C64, R, C>>(
    m: &nalgebra::Matrix<C64, R, C, S>,
) -> f64 {
    m.iter().map(|z| z.norm()).fold(0.0, f64::max)
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn lags(count: usize, end: f64) -> Vec<f64> {
    (0..=count).map(|i| end * i as f64 / count as f64).collect()
}

fn assert_decreasing(what: &str, errors: &[f64]) {
    for w in errors.windows(2) {
        assert!(
            w[1] < w[0],
            "{what}: error does not shrink with N: {errors:?}"
        );
    }
}

/// Feed `f` through the ZOH-discretised LTI memory for `windows` unit windows, sampling at step
/// midpoints (second order in Δ), and return the max reconstruction error over the last window.
fn lti_reconstruction_error(
    measure: Measure,
    n: usize,
    windows: usize,
    f: &dyn Fn(f64) -> f64,
) -> f64 {
    let steps_per_unit = 4000;
    let dt = 1.0 / steps_per_unit as f64;
    let (a, b) = transition(measure, n).unwrap();
    let (ad, bd) = discretise(&a, &b, dt, Discretisation::Zoh).unwrap();
    let total = windows * steps_per_unit;
    let u: Vec<f64> = (0..total).map(|k| f((k as f64 + 0.5) * dt)).collect();
    let c = simulate(&ad, &bd, &u).pop().unwrap();
    let t = windows as f64;
    let s = lags(200, 1.0);
    let want: Vec<f64> = s.iter().map(|&s| f(t - s)).collect();
    max_abs_diff(&reconstruct(measure, &c, &s), &want)
}

#[test]
fn legt_reconstructs_the_last_window_better_as_n_grows() {
    // Up to 3.3 cycles per window, so that N = 16 does not yet hold it all.
    let rich = |t: f64| signal(t) + 0.5 * (2.0 * PI * 3.3 * t + 0.2).sin();
    let errors: Vec<f64> = NS
        .iter()
        .map(|&n| lti_reconstruction_error(Measure::LegT, n, 3, &rich))
        .collect();
    eprintln!("LegT max error over the window, N = {NS:?}: {errors:?}");
    assert_decreasing("LegT", &errors);
    assert!(errors[0] > 0.1, "N=4 cannot hold this signal: {errors:?}");
    assert!(
        errors[3] < 2e-3,
        "N=32 must reconstruct the window: {errors:?}"
    );
}

#[test]
fn legs_reconstructs_the_whole_history_better_as_n_grows() {
    // History [0, 1] in L steps; the memory is scale invariant so the unit does not matter.
    let steps = 2000;
    let f = |x: f64| signal(1.6 * x);
    let u: Vec<f64> = (0..steps)
        .map(|k| f((k as f64 + 0.5) / steps as f64))
        .collect();
    let s = lags(200, 1.0);
    let want: Vec<f64> = s.iter().map(|&s| f(1.0 - s)).collect();
    // ZOH: exact in log time for the piecewise-constant input. (HiPPO's bilinear scheme with
    // A/k is poorly resolved in the first steps for large N and stalls near N = 16.)
    let method = Discretisation::Zoh;
    let errors: Vec<f64> = NS
        .iter()
        .map(|&n| {
            let c = legs_online(n, &u, method).unwrap();
            max_abs_diff(&reconstruct(Measure::LegS, &c, &s), &want)
        })
        .collect();
    eprintln!("LegS ({method}) max error over the history, N = {NS:?}: {errors:?}");
    assert_decreasing("LegS", &errors);
    assert!(errors[0] > 0.05, "{method}: {errors:?}");
    assert!(errors[3] < 2e-3, "{method}: {errors:?}");
}

#[test]
fn fout_and_lagt_memories_converge_too() {
    // FouT: a smooth periodic signal of period 1 (the window) with geometrically decaying
    // harmonics (modified Bessel I_k(1.5)), so every N leaves some out.
    let periodic = |t: f64| (1.5 * (2.0 * PI * t).cos()).exp() + 0.3 * (2.0 * PI * t).sin() - 1.5;
    let fout: Vec<f64> = [3usize, 5, 9, 17]
        .iter()
        .map(|&n| lti_reconstruction_error(Measure::FouT, n, 12, &periodic))
        .collect();
    eprintln!("FouT max error, N = [3, 5, 9, 17]: {fout:?}");
    assert_decreasing("FouT", &fout);
    assert!(fout[3] < 2e-2, "{fout:?}");
    // LagT: the basis L_n(s)·e^(−s/2) is orthonormal in L²(ds) over all lags, and LagT's A is
    // triangular, so the state is exactly the projection of the history (zero before t = 0) and
    // the relative L² error is sqrt(‖f‖² − ‖c‖²)/‖f‖ (Parseval), shrinking with N.
    let history = |t: f64| signal(t) * (1.0 - (-t * t).exp());
    let (dt, steps) = (1e-3, 3000);
    let u: Vec<f64> = (0..steps).map(|k| history((k as f64 + 0.5) * dt)).collect();
    let norm2: f64 = u.iter().map(|v| v * v * dt).sum();
    let lagt: Vec<f64> = NS
        .iter()
        .map(|&n| {
            let (a, b) = transition(Measure::LagT, n).unwrap();
            let (ad, bd) = discretise(&a, &b, dt, Discretisation::Zoh).unwrap();
            let c = simulate(&ad, &bd, &u).pop().unwrap();
            ((norm2 - c.norm_squared()).max(0.0) / norm2).sqrt()
        })
        .collect();
    eprintln!("LagT relative L² error of the history, N = {NS:?}: {lagt:?}");
    assert_decreasing("LagT", &lagt);
    assert!(lagt[3] < 0.9, "{lagt:?}");
}

#[test]
fn bases_are_orthonormal_under_their_measures() {
    // Gauss-free check: a fine midpoint rule is plenty for polynomials of degree < 64.
    let m = 20_000;
    for measure in [Measure::LegT, Measure::LegS, Measure::FouT] {
        let n = 9;
        let mut gram = DMatrix::<f64>::zeros(n, n);
        for i in 0..m {
            let s = (i as f64 + 0.5) / m as f64;
            let g = DVector::from_vec(basis(measure, n, s));
            gram += &g * g.transpose() / m as f64;
        }
        let err = (gram - DMatrix::identity(n, n)).abs().max();
        assert!(err < 1e-6, "{measure}: Gram matrix off identity by {err}");
    }
    // Laguerre functions on [0, ∞), truncated at 60.
    let (n, m, end) = (6, 60_000, 60.0);
    let mut gram = DMatrix::<f64>::zeros(n, n);
    for i in 0..m {
        let s = (i as f64 + 0.5) * end / m as f64;
        let g = DVector::from_vec(basis(Measure::LagT, n, s));
        gram += &g * g.transpose() * (end / m as f64);
    }
    let err = (gram - DMatrix::identity(n, n)).abs().max();
    assert!(err < 1e-5, "LagT: Gram matrix off identity by {err}");
    assert_eq!(legendre(3, 0.5), vec![1.0, 0.5, -0.125]);
}

#[test]
fn matrices_have_their_closed_forms() {
    let (a, b) = transition(Measure::LegS, 3).unwrap();
    let s3 = 3f64.sqrt();
    let s5 = 5f64.sqrt();
    let want =
        DMatrix::from_row_slice(3, 3, &[-1.0, 0.0, 0.0, -s3, -2.0, 0.0, -s5, -s3 * s5, -3.0]);
    assert!((a - want).abs().max() < 1e-15);
    assert!((b - DVector::from_vec(vec![1.0, s3, s5])).abs().max() < 1e-15);
    let (a, _) = transition(Measure::LegT, 3).unwrap();
    assert!((a[(0, 1)] - s3).abs() < 1e-15 && (a[(0, 2)] + s5).abs() < 1e-15);
    assert!((a[(2, 0)] + s5).abs() < 1e-15 && (a[(1, 1)] + 3.0).abs() < 1e-15);
    let (a, b) = transition(Measure::LagT, 3).unwrap();
    assert_eq!(a[(0, 0)], -0.5);
    assert_eq!(a[(2, 0)], -1.0);
    assert_eq!(a[(0, 2)], 0.0);
    assert_eq!(b.as_slice(), &[1.0, 1.0, 1.0]);
    // FouT: skew part plus −b bᵀ.
    let (a, b) = transition(Measure::FouT, 5).unwrap();
    let skew = &a + &b * b.transpose();
    assert!((&skew + skew.transpose()).abs().max() < 1e-12);
    assert!((skew[(1, 2)] + 2.0 * PI).abs() < 1e-12 && (skew[(3, 4)] + 4.0 * PI).abs() < 1e-12);
    // LegS normal + low rank.
    let (an, p, _) = legs_nplr(7).unwrap();
    let (a, _) = transition(Measure::LegS, 7).unwrap();
    assert!((&an - &p * p.transpose() - a).abs().max() < 1e-13);
    let skew = an + DMatrix::identity(7, 7) * 0.5;
    assert!((&skew + skew.transpose()).abs().max() < 1e-13);
    assert!(transition(Measure::LegT, 0).is_err());
    assert!("LEGS".parse::<Measure>().unwrap() == Measure::LegS);
    assert!("legx".parse::<Measure>().is_err());
}

#[test]
fn legs_normal_part_has_a_unitary_eigendecomposition() {
    for n in [1usize, 2, 7, 16] {
        let (an, _, _) = legs_nplr(n).unwrap();
        let (lambda, v) = legs_normal_eig(n).unwrap();
        let vh = v.adjoint();
        let eye = DMatrix::<C64>::identity(n, n);
        assert!(cmax(&(&vh * &v - &eye)) < 1e-10, "N={n}: V not unitary");
        let d = DMatrix::from_diagonal(&DVector::from_vec(lambda.clone()));
        let rebuilt = &v * d * vh;
        let an_c = an.map(|x| C64::new(x, 0.0));
        assert!(cmax(&(rebuilt - an_c)) < 1e-10, "N={n}: V Λ Vᴴ ≠ A_N");
        assert!(lambda.iter().all(|l| (l.re + 0.5).abs() < 1e-12));
    }
}

/// y = C x of the dense normal LegS system vs 2·Re(C̃ x̃) of its diagonal form.
#[test]
fn diagonal_legs_reproduces_the_dense_normal_system() {
    for n in [15usize, 16] {
        let c: Vec<f64> = (0..n)
            .map(|i| ((i * 7 + 3) % 11) as f64 / 5.0 - 1.0)
            .collect();
        let ssm = legs_diagonal(n, &c).unwrap();
        assert_eq!(ssm.modes(), n.div_ceil(2));
        let (an, _, b) = legs_nplr(n).unwrap();
        let u: Vec<f64> = (0..400).map(|k| signal(k as f64 * 0.01)).collect();
        for method in Discretisation::ALL {
            let dt = 0.01;
            let (ad, bd) = discretise(&an, &b, dt, method).unwrap();
            let dense: Vec<f64> = simulate(&ad, &bd, &u)
                .iter()
                .map(|x| x.iter().zip(&c).map(|(x, c)| x * c).sum::<f64>() + 0.3 * 0.0)
                .collect();
            let diag = ssm.output(&u, dt, method, 0.0).unwrap();
            let scale = dense.iter().fold(1.0f64, |m, y| m.max(y.abs()));
            let err = max_abs_diff(&dense, &diag);
            assert!(
                err < 1e-9 * scale,
                "N={n} {method}: diagonal vs dense {err:e}"
            );
        }
    }
}

/// The diagonal formulas equal the dense ones conjugated by V (all four methods).
#[test]
fn diagonal_discretisation_matches_dense_under_similarity() {
    let n = 8;
    let (an, _, b) = legs_nplr(n).unwrap();
    let (lambda, v) = legs_normal_eig(n).unwrap();
    let bt: Vec<C64> = (v.adjoint() * b.map(|x| C64::new(x, 0.0)))
        .iter()
        .copied()
        .collect();
    for method in Discretisation::ALL {
        let dt = 0.05;
        let (ad, bd) = discretise(&an, &b, dt, method).unwrap();
        let (lbar, bbar) = discretise_diagonal(&lambda, &bt, dt, method).unwrap();
        let ad2 = &v * DMatrix::from_diagonal(&DVector::from_vec(lbar)) * v.adjoint();
        let bd2 = &v * DVector::from_vec(bbar);
        assert!(
            cmax(&(ad2 - ad.map(|x| C64::new(x, 0.0)))) < 1e-10,
            "{method} Ā"
        );
        assert!(
            cmax(&(bd2 - bd.map(|x| C64::new(x, 0.0)))) < 1e-10,
            "{method} B̄"
        );
    }
}

/// Classic RK4 of x' = A x + B u(t) from x(0) = x0 over [t0, t1] in `steps` steps.
fn rk4(
    a: &DMatrix<f64>,
    b: &DVector<f64>,
    u: &dyn Fn(f64) -> f64,
    x0: DVector<f64>,
    t0: f64,
    t1: f64,
    steps: usize,
) -> DVector<f64> {
    let h = (t1 - t0) / steps as f64;
    let f = |t: f64, x: &DVector<f64>| a * x + b * u(t);
    let mut x = x0;
    for i in 0..steps {
        let t = t0 + i as f64 * h;
        let k1 = f(t, &x);
        let k2 = f(t + h / 2.0, &(&x + &k1 * (h / 2.0)));
        let k3 = f(t + h / 2.0, &(&x + &k2 * (h / 2.0)));
        let k4 = f(t + h, &(&x + &k3 * h));
        x += (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (h / 6.0);
    }
    x
}

#[test]
fn discretisations_converge_at_their_orders() {
    let (a, b) = transition(Measure::LegS, 6).unwrap();
    let u = |t: f64| (3.0 * t).cos() + 0.5;
    let horizon = 1.0;
    let exact = rk4(&a, &b, &u, DVector::zeros(6), 0.0, horizon, 20_000);
    for (method, order) in [
        (Discretisation::ForwardEuler, 1.0),
        (Discretisation::BackwardEuler, 1.0),
        (Discretisation::Bilinear, 2.0),
        (Discretisation::Zoh, 2.0),
    ] {
        let errors: Vec<f64> = [40usize, 80, 160, 320]
            .iter()
            .map(|&k| {
                let dt = horizon / k as f64;
                let (ad, bd) = discretise(&a, &b, dt, method).unwrap();
                // Input at step midpoints: the sample that keeps bilinear and ZOH second order.
                let samples: Vec<f64> = (0..k).map(|i| u((i as f64 + 0.5) * dt)).collect();
                let x = simulate(&ad, &bd, &samples).pop().unwrap();
                (x - &exact).abs().max()
            })
            .collect();
        let observed: Vec<f64> = errors.windows(2).map(|w| (w[0] / w[1]).log2()).collect();
        eprintln!("{method}: errors {errors:?}, observed orders {observed:?}");
        for p in observed {
            assert!(
                (p - order).abs() < 0.15,
                "{method}: order {p}, want {order}"
            );
        }
    }
}

#[test]
fn zoh_is_exact_for_piecewise_constant_input() {
    for measure in [Measure::LegT, Measure::LegS, Measure::FouT] {
        let n = 6;
        let (a, b) = transition(measure, n).unwrap();
        let levels = [0.7, -1.2, 0.3, 2.0, -0.4, 1.1, 0.0, -0.9];
        for dt in [0.05, 0.2] {
            let (ad, bd) = discretise(&a, &b, dt, Discretisation::Zoh).unwrap();
            let x = simulate(&ad, &bd, &levels).pop().unwrap();
            let mut exact = DVector::zeros(n);
            for (i, &level) in levels.iter().enumerate() {
                let t0 = i as f64 * dt;
                exact = rk4(&a, &b, &|_| level, exact, t0, t0 + dt, 4000);
            }
            let err = (x - &exact).abs().max();
            assert!(err < 1e-10, "{measure} Δ={dt}: ZOH off by {err:e}");
            // And the textbook form B̄ = A⁻¹(Ā − I)B agrees with the block exponential.
            // (FouT's A is singular for even N: the block exponential needs no inverse.)
            if let Some(inv) = a.clone().try_inverse() {
                let bd2 = &inv * ((&ad - DMatrix::identity(n, n)) * &b);
                assert!(
                    (bd2 - &bd).abs().max() < 1e-10,
                    "{measure}: ZOH B̄ forms differ"
                );
            }
        }
    }
}

#[test]
fn s4d_initialisations_have_their_closed_forms() {
    let lin = s4d_lin(4);
    assert_eq!(lin[0], C64::new(-0.5, 0.0));
    assert!((lin[3].im - 3.0 * PI).abs() < 1e-12);
    let inv = s4d_inv(4); // N = 8: imag = 8/π (8/(2m+1) − 1)
    assert!((inv[0].im - 8.0 / PI * 7.0).abs() < 1e-12);
    assert!((inv[3].im - 8.0 / PI * (8.0 / 7.0 - 1.0)).abs() < 1e-12);
    let ssm = s4d(lin, vec![C64::new(1.0, 0.0); 4]).unwrap();
    assert_eq!(ssm.b, vec![C64::new(1.0, 0.0); 4]);
    assert!(s4d(s4d_inv(3), vec![]).is_err());
    // The impulse response of a single S4D mode is 2·Re(C B̄ Λ̄^k).
    let y = ssm
        .output(&[1.0, 0.0, 0.0], 0.1, Discretisation::Zoh, 0.0)
        .unwrap();
    assert!(y.iter().all(|v| v.is_finite()) && y[0] > y[2]);
}

#[test]
fn bad_arguments_are_errors() {
    let (a, b) = transition(Measure::LegS, 4).unwrap();
    assert!(discretise(&a, &b, 0.0, Discretisation::Zoh).is_err());
    assert!(discretise(&a, &b, f64::NAN, Discretisation::Bilinear).is_err());
    assert!(discretise(&a, &DVector::zeros(3), 0.1, Discretisation::Zoh).is_err());
    // I − ΔA singular: A = I/Δ for backward Euler.
    let eye = DMatrix::identity(2, 2);
    assert!(discretise(&eye, &DVector::zeros(2), 1.0, Discretisation::BackwardEuler).is_err());
    assert!(legs_diagonal(4, &[1.0; 3]).is_err());
    assert!(discretise_diagonal(&[C64::new(-1.0, 0.0)], &[], 0.1, Discretisation::Zoh).is_err());
}
