//! The HiPPO online function-approximation demo, shared by `ssm-mla hippo` and the web page:
//! a smooth signal is fed through the ZOH-discretised memory of a measure and state size N, and
//! the history is reconstructed from the final state with the measure's basis. Exact f64 host
//! math, no GPU.

use super::{discretise, legs_online, reconstruct, simulate, transition, Discretisation, Measure};
use crate::error::{Error, Result};
use std::f64::consts::PI;

/// Largest N the demo accepts (dense f64 matrices, thousands of steps).
pub const MAX_N: usize = 128;

/// The reconstructed stretch: times (oldest first) and the signal there.
pub struct Demo {
    /// Times, oldest first.
    pub times: Vec<f64>,
    /// The signal at those times.
    pub signal: Vec<f64>,
}

fn base(t: f64) -> f64 {
    (2.0 * PI * 0.9 * t).sin() + 0.6 * (2.0 * PI * 1.7 * t + 0.4).cos() + 0.3 * (5.1 * t).sin()
}

/// The signal each measure is shown on, how long it is fed, and the lag range reconstructed.
fn setup(measure: Measure) -> (fn(f64) -> f64, f64, f64, usize) {
    match measure {
        // (signal, time fed, lags shown, steps per unit time)
        Measure::LegT => (
            |t| base(t) + 0.5 * (2.0 * PI * 3.3 * t + 0.2).sin(),
            3.0,
            1.0,
            4000,
        ),
        Measure::FouT => (
            |t| (1.5 * (2.0 * PI * t).cos()).exp() + 0.3 * (2.0 * PI * t).sin() - 1.5,
            12.0,
            1.0,
            4000,
        ),
        Measure::LagT => (|t| base(t) * (1.0 - (-t * t).exp()), 3.0, 1.0, 1000),
        Measure::LegS => (|x| base(1.6 * x), 1.0, 1.0, 1000),
    }
}

/// The demo for one measure and state size `n`: the signal fed through the ZOH-discretised
/// memory (LegS: its scale-invariant online update), and the history reconstructed from the
/// final state at the shown times.
pub fn reconstruction(measure: Measure, n: usize) -> Result<(Demo, Vec<f64>)> {
    let (f, t_end, shown, per_unit) = setup(measure);
    let steps = (t_end * per_unit as f64).round() as usize;
    let dt = t_end / steps as f64;
    let u: Vec<f64> = (0..steps).map(|k| f((k as f64 + 0.5) * dt)).collect();
    let state = if measure == Measure::LegS {
        legs_online(n, &u, Discretisation::Zoh)?
    } else {
        let (a, b) = transition(measure, n)?;
        let (ad, bd) = discretise(&a, &b, dt, Discretisation::Zoh)?;
        simulate(&ad, &bd, &u)
            .pop()
            .ok_or_else(|| Error::invalid("empty signal"))?
    };
    let points = 400;
    // Oldest first: lag `shown` down to 0 (LegS: lags are fractions of the history).
    let lags: Vec<f64> = (0..=points)
        .map(|i| shown * (points - i) as f64 / points as f64)
        .collect();
    let times: Vec<f64> = lags.iter().map(|&s| t_end - s).collect();
    let signal = times.iter().map(|&t| f(t)).collect();
    Ok((Demo { times, signal }, reconstruct(measure, &state, &lags)))
}
