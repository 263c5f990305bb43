//! Shapes of the one-token Mamba-1 decode step: state (Pool, D, N) (Pool = Bt without slots);
//! x, dt, z, out (Bt, D); B, C (Bt, N) or (Bt, G, N); A (D, N); D, dt_bias (D);
//! state_batch_indices (Bt). Bt and D are read from x, N from A; every other input is checked
//! against them.

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
}
