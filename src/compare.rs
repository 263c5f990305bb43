//! Comparing GPU output with the CPU reference: |out − ref| ≤ atol + rtol·|ref| elementwise
//! (the conformance criterion). NaN in the output where the reference is finite always fails, so a kernel that
//! leaves a poisoned element unwritten is caught.

/// Absolute and relative tolerance.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Absolute part.
    pub atol: f64,
    /// Relative part.
    pub rtol: f64,
}

impl Tolerance {
    /// A tolerance.
    pub const fn new(atol: f64, rtol: f64) -> Self {
        Self { atol, rtol }
    }
}

/// The outcome of a comparison.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Elements compared.
    pub len: usize,
    /// Largest |out − ref|.
    pub max_abs: f64,
    /// Largest |out − ref| / |ref| over elements with |ref| > atol.
    pub max_rel: f64,
    /// Elements outside the tolerance.
    pub failures: usize,
    /// Index of the worst element relative to its allowance, with (out, ref).
    pub worst: Option<(usize, f64, f64)>,
}

impl Comparison {
    /// Whether every element is within tolerance.
    pub fn passed(&self) -> bool {
        self.failures == 0
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} outside tolerance, max abs err {:.3e}, max rel err {:.3e}",
            self.failures, self.len, self.max_abs, self.max_rel
        )?;
        if let Some((i, o, r)) = self.worst {
            write!(f, ", worst at [{i}]: got {o:e}, want {r:e}")?;
        }
        Ok(())
    }
}

/// Compare `out` with `reference` elementwise. Lengths must match (a mismatch counts every
/// element as failed).
pub fn compare(out: &[f32], reference: &[f64], tol: Tolerance) -> Comparison {
    let mut c = Comparison {
        len: reference.len(),
        max_abs: 0.0,
        max_rel: 0.0,
        failures: 0,
        worst: None,
    };
    if out.len() != reference.len() {
        c.failures = reference.len().max(out.len()).max(1);
        return c;
    }
    let mut worst_ratio = -1.0f64;
    for (i, (&o, &r)) in out.iter().zip(reference).enumerate() {
        let o = o as f64;
        let ok;
        let ratio;
        if r.is_nan() {
            ok = o.is_nan();
            ratio = if ok { 0.0 } else { f64::INFINITY };
        } else if r.is_infinite() {
            ok = o == r;
            ratio = if ok { 0.0 } else { f64::INFINITY };
        } else {
            let err = (o - r).abs();
            let allowed = tol.atol + tol.rtol * r.abs();
            ok = err <= allowed; // false for NaN
            ratio = if err.is_nan() {
                f64::INFINITY
            } else {
                err / allowed
            };
            if err.is_finite() {
                c.max_abs = c.max_abs.max(err);
                if r.abs() > tol.atol {
                    c.max_rel = c.max_rel.max(err / r.abs());
                }
            } else {
                c.max_abs = f64::INFINITY;
            }
        }
        if !ok {
            c.failures += 1;
        }
        if ratio > worst_ratio {
            worst_ratio = ratio;
            c.worst = Some((i, o, r));
        }
    }
    c
}
