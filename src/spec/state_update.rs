//! Shapes of the one-token decode step.
//!
//! Mamba-1 ([`UpdateDims`]): state (Pool, D, N) (Pool = Bt without slots); x, dt, z, out
//! (Bt, D); B, C (Bt, N) or (Bt, G, N); A (D, N); D, dt_bias (D); state_batch_indices (Bt). Bt
//! and D are read from x, N from A; every other input is checked against them.
//!
//! Multi-head, Mamba-2 ([`HeadsDims`]): state (Pool, H, P, N); x, z, out (Bt, H, P); dt (Bt, H);
//! A (H); B, C (Bt, G, N) with G dividing H; D (H) or (H, P); dt_bias (H); state_batch_indices
//! (Bt). Bt, H and P are read from x, G and N from B.

use super::{named, Named};
use crate::error::{Error, Result};

/// Sizes of one decode step, derived from (and validated against) the input shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateDims {
    /// Bt (requests).
    pub batch: usize,
    /// D (channels).
    pub dim: usize,
    /// N (state size).
    pub n: usize,
    /// Rows of the state pool (= Bt without slots).
    pub pool: usize,
    /// G of B (1 for (Bt, N)).
    pub b_groups: usize,
    /// G of C (1 for (Bt, N)).
    pub c_groups: usize,
    /// Whether slot indices are used.
    pub slots: bool,
}

/// Shapes of the decode step's inputs (`None` for an absent optional tensor).
#[derive(Clone, Copy, Debug)]
pub struct UpdateShapes<'a> {
    /// state.
    pub state: &'a [usize],
    /// x.
    pub x: &'a [usize],
    /// dt.
    pub dt: &'a [usize],
    /// A.
    pub a: &'a [usize],
    /// B.
    pub b: &'a [usize],
    /// C.
    pub c: &'a [usize],
    /// D.
    pub d: Option<&'a [usize]>,
    /// z.
    pub z: Option<&'a [usize]>,
    /// dt_bias.
    pub dt_bias: Option<&'a [usize]>,
    /// state_batch_indices.
    pub slots: Option<&'a [usize]>,
}

/// Groups G of B or C (`t`): (Bt, N) or (Bt, G, N), checked against x (Bt, D) and A (D, N).
fn groups(t: Named, x: Named, a: Named) -> Result<usize> {
    let (bt, dim, n) = (x.shape[0], x.shape[1], a.shape[1]);
    match t.shape.len() {
        2 => {
            x.agree(0, t, 0, "Bt")?;
            a.agree(1, t, 1, "N")?;
            Ok(1)
        }
        3 => {
            x.agree(0, t, 0, "Bt")?;
            a.agree(1, t, 2, "N")?;
            let g = t.shape[1];
            if g == 0 || dim % g != 0 {
                return Err(Error::shape(
                    t.name,
                    format!("(Bt, G, N) = [{bt}, G, {n}] with G dividing D = {dim}"),
                    t.shape,
                ));
            }
            Ok(g)
        }
        _ => Err(Error::shape(
            t.name,
            format!(
                "(Bt, N) = [{bt}, {n}] or (Bt, G, N) = [{bt}, G, {n}] with G dividing D = {dim}"
            ),
            t.shape,
        )),
    }
}

impl UpdateDims {
    /// Derive the sizes from x (Bt, D) and A (D, N) and check every other shape against them.
    /// A size that disagrees between two inputs is reported with both ([`Error::Mismatch`]).
    pub fn from_shapes(s: &UpdateShapes) -> Result<Self> {
        let x = named("x", s.x).rank(2, "(Bt, D)")?;
        let [bt, dim] = [s.x[0], s.x[1]];
        if bt == 0 || dim == 0 {
            return Err(Error::shape("x", "(Bt, D) with every size > 0", s.x));
        }
        let a = named("A", s.a).rank(2, format!("(D, N) = [{dim}, N] with N > 0"))?;
        x.agree(1, a, 0, "D")?;
        let n = s.a[1];
        if n == 0 {
            return Err(Error::shape(
                "A",
                format!("(D, N) = [{dim}, N] with N > 0"),
                s.a,
            ));
        }
        x.same_shape(named("dt", s.dt), "(Bt, D)", &["Bt", "D"])?;
        let state = named("state", s.state);
        let pool = if s.slots.is_some() {
            let spelled = format!("(Pool, D, N) = [Pool, {dim}, {n}] with Pool > 0");
            state.rank(3, spelled.as_str())?;
            x.agree(1, state, 1, "D")?;
            a.agree(1, state, 2, "N")?;
            if s.state[0] == 0 {
                return Err(Error::shape("state", spelled, s.state));
            }
            s.state[0]
        } else {
            state.rank(3, format!("(Bt, D, N) = [{bt}, {dim}, {n}]"))?;
            x.agree(0, state, 0, "Bt")?;
            x.agree(1, state, 1, "D")?;
            a.agree(1, state, 2, "N")?;
            bt
        };
        let b_groups = groups(named("B", s.b), x, a)?;
        let c_groups = groups(named("C", s.c), x, a)?;
        for (name, shape) in [("D", s.d), ("dt_bias", s.dt_bias)] {
            if let Some(shape) = shape {
                let t = named(name, shape).rank(1, format!("(D) = [{dim}]"))?;
                x.agree(1, t, 0, "D")?;
            }
        }
        if let Some(z) = s.z {
            x.same_shape(named("z", z), "(Bt, D)", &["Bt", "D"])?;
        }
        if let Some(slots) = s.slots {
            let t = named("state_batch_indices", slots).rank(1, format!("(Bt) = [{bt}]"))?;
            x.agree(0, t, 0, "Bt")?;
        }
        Ok(Self {
            batch: bt,
            dim,
            n,
            pool,
            b_groups,
            c_groups,
            slots: s.slots.is_some(),
        })
    }
}

/// Sizes of one multi-head (Mamba-2) decode step, derived from (and validated against) the
/// input shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadsDims {
    /// Bt (requests).
    pub batch: usize,
    /// H (heads).
    pub heads: usize,
    /// P (channels per head).
    pub head_dim: usize,
    /// N (state size).
    pub n: usize,
    /// Rows of the state pool (= Bt without slots).
    pub pool: usize,
    /// G of B.
    pub b_groups: usize,
    /// G of C.
    pub c_groups: usize,
    /// Whether slot indices are used.
    pub slots: bool,
}

impl HeadsDims {
    /// Channels D = H·P.
    pub fn channels(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Derive the sizes from x (Bt, H, P) and B (Bt, G, N) and check every other shape against
    /// them. A size that disagrees between two inputs is reported with both
    /// ([`Error::Mismatch`]); a wrong rank names the tensor and the expected shape.
    pub fn from_shapes(s: &UpdateShapes) -> Result<Self> {
        let x = named("x", s.x).rank(3, "(Bt, H, P)")?;
        let [bt, h, p] = [s.x[0], s.x[1], s.x[2]];
        if bt == 0 || h == 0 || p == 0 {
            return Err(Error::shape("x", "(Bt, H, P) with every size > 0", s.x));
        }
        let b_spelled = format!("(Bt, G, N) = [{bt}, G, N] with G dividing H = {h} and N > 0");
        let b = named("B", s.b).rank(3, b_spelled.as_str())?;
        x.agree(0, b, 0, "Bt")?;
        let n = s.b[2];
        let b_groups = s.b[1];
        if n == 0 || b_groups == 0 || h % b_groups != 0 {
            return Err(Error::shape("B", b_spelled, s.b));
        }
        let c_spelled = format!("(Bt, G, N) = [{bt}, G, {n}] with G dividing H = {h}");
        let c = named("C", s.c).rank(3, c_spelled.as_str())?;
        x.agree(0, c, 0, "Bt")?;
        b.agree(2, c, 2, "N")?;
        let c_groups = s.c[1];
        if c_groups == 0 || h % c_groups != 0 {
            return Err(Error::shape("C", c_spelled, s.c));
        }
        let dt = named("dt", s.dt).rank(2, format!("(Bt, H) = [{bt}, {h}]"))?;
        x.agree(0, dt, 0, "Bt")?;
        x.agree(1, dt, 1, "H")?;
        let a = named("A", s.a).rank(1, format!("(H) = [{h}]"))?;
        x.agree(1, a, 0, "H")?;
        let state = named("state", s.state);
        let pool = if s.slots.is_some() {
            let spelled = format!("(Pool, H, P, N) = [Pool, {h}, {p}, {n}] with Pool > 0");
            state.rank(4, spelled.as_str())?;
            if s.state[0] == 0 {
                return Err(Error::shape("state", spelled, s.state));
            }
            s.state[0]
        } else {
            state.rank(4, format!("(Bt, H, P, N) = [{bt}, {h}, {p}, {n}]"))?;
            x.agree(0, state, 0, "Bt")?;
            bt
        };
        x.agree(1, state, 1, "H")?;
        x.agree(2, state, 2, "P")?;
        b.agree(2, state, 3, "N")?;
        if let Some(d) = s.d {
            let t = named("D", d);
            match d.len() {
                1 => x.agree(1, t, 0, "H")?,
                2 => {
                    x.agree(1, t, 0, "H")?;
                    x.agree(2, t, 1, "P")?;
                }
                _ => {
                    return Err(Error::shape(
                        "D",
                        format!("(H) = [{h}] or (H, P) = [{h}, {p}]"),
                        d,
                    ))
                }
            }
        }
        if let Some(bias) = s.dt_bias {
            let t = named("dt_bias", bias).rank(1, format!("(H) = [{h}]"))?;
            x.agree(1, t, 0, "H")?;
        }
        if let Some(z) = s.z {
            x.same_shape(named("z", z), "(Bt, H, P)", &["Bt", "H", "P"])?;
        }
        if let Some(slots) = s.slots {
            let t = named("state_batch_indices", slots).rank(1, format!("(Bt) = [{bt}]"))?;
            x.agree(0, t, 0, "Bt")?;
        }
        Ok(Self {
            batch: bt,
            heads: h,
            head_dim: p,
            n,
            pool,
            b_groups,
            c_groups,
            slots: s.slots.is_some(),
        })
    }
}

/// Check a `dt_limit` (lo, hi): both not NaN and lo ≤ hi. Whether it clamps at all is
/// [`limit_applies`].
pub fn check_dt_limit(limit: (f32, f32)) -> Result<()> {
    let (lo, hi) = limit;
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(Error::invalid(format!(
            "dt_limit ({lo}, {hi}): expected lo ≤ hi, neither NaN"
        )));
    }
    Ok(())
}

/// Whether a `dt_limit` clamps: any limit but the default (0, +inf), as `mamba_ssm` applies it
/// (so dt without softplus may stay negative under the default).
pub fn limit_applies(limit: (f32, f32)) -> bool {
    limit != (0.0, f32::INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disagreements_name_both_tensors() {
        let shapes = UpdateShapes {
            state: &[2, 5, 16],
            x: &[2, 5],
            dt: &[2, 5],
            a: &[4, 16],
            b: &[2, 16],
            c: &[2, 16],
            d: None,
            z: None,
            dt_bias: None,
            slots: None,
        };
        let err = UpdateDims::from_shapes(&shapes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensors `x` (2, 5) and `A` (4, 16) disagree on D: 5 vs 4"
        );
        let err = UpdateDims::from_shapes(&UpdateShapes {
            a: &[5, 16],
            c: &[2, 2, 8],
            ..shapes
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensors `A` (5, 16) and `C` (2, 2, 8) disagree on N: 16 vs 8"
        );
    }

    #[test]
    fn heads_shapes() {
        let shapes = UpdateShapes {
            state: &[2, 4, 3, 8],
            x: &[2, 4, 3],
            dt: &[2, 4],
            a: &[4],
            b: &[2, 2, 8],
            c: &[2, 1, 8],
            d: Some(&[4, 3]),
            z: Some(&[2, 4, 3]),
            dt_bias: Some(&[4]),
            slots: None,
        };
        let d = HeadsDims::from_shapes(&shapes).unwrap();
        assert_eq!(
            (d.heads, d.head_dim, d.n, d.b_groups, d.c_groups),
            (4, 3, 8, 2, 1)
        );
        let err = HeadsDims::from_shapes(&UpdateShapes { a: &[3], ..shapes }).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensors `x` (2, 4, 3) and `A` (3) disagree on H: 4 vs 3"
        );
        let err = HeadsDims::from_shapes(&UpdateShapes {
            b: &[2, 3, 8],
            ..shapes
        })
        .unwrap_err();
        assert!(err.to_string().contains("`B`"), "{err}");
        let err = HeadsDims::from_shapes(&UpdateShapes {
            d: Some(&[4, 2]),
            ..shapes
        })
        .unwrap_err();
        assert!(err.to_string().contains("`D`"), "{err}");
    }
}
