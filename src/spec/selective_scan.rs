//! Shapes of the Mamba-1 selective scan: u, delta, z, out (Bt, D, L); A (D, N); B and C each
//! (D, N) constant, (Bt, N, L) variable or (Bt, G, N, L) grouped (channel d uses group
//! d / (D/G)); D, delta_bias (D); initial_state, last_state (Bt, D, N). Bt, D and L are read
//! from u, N from A; every other input is checked against them.

use super::{named, Named};
use crate::error::{Error, Result};

/// How B or C is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BcLayout {
    /// (D, N): the same for every step and batch.
    Constant,
    /// (Bt, G, N, L): per step, shared by D/G channels; (Bt, N, L) is `Grouped(1)`.
    Grouped(usize),
}

impl BcLayout {
    /// Shape of a tensor with this layout.
    pub fn shape(self, dims: &ScanDims) -> Vec<usize> {
        match self {
            BcLayout::Constant => vec![dims.dim, dims.n],
            BcLayout::Grouped(g) => vec![dims.batch, g, dims.n, dims.len],
        }
    }

    /// The shape spelled symbolically.
    pub fn spelled(self) -> String {
        match self {
            BcLayout::Constant => "(D, N)".into(),
            BcLayout::Grouped(_) => "(Bt, G, N, L)".into(),
        }
    }

    /// Groups G (1 for a constant layout).
    pub fn groups(self) -> usize {
        match self {
            BcLayout::Constant => 1,
            BcLayout::Grouped(g) => g,
        }
    }
}

/// Sizes of one selective scan, derived from (and validated against) the input shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanDims {
    /// Bt.
    pub batch: usize,
    /// D (channels).
    pub dim: usize,
    /// L (steps).
    pub len: usize,
    /// N (state size per channel).
    pub n: usize,
    /// Layout of B.
    pub b: BcLayout,
    /// Layout of C.
    pub c: BcLayout,
}

/// Shapes of the scan's inputs (`None` for an absent optional tensor).
#[derive(Clone, Copy, Debug)]
pub struct ScanShapes<'a> {
    /// u.
    pub u: &'a [usize],
    /// delta.
    pub delta: &'a [usize],
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
    /// delta_bias.
    pub delta_bias: Option<&'a [usize]>,
    /// initial_state.
    pub initial_state: Option<&'a [usize]>,
}

const BTDL: [&str; 3] = ["Bt", "D", "L"];

/// The layout of B or C (`t`), its sizes checked against u (Bt, D, L) and A (D, N).
fn bc_layout(t: Named, u: Named, a: Named) -> Result<BcLayout> {
    let ([bt, dim, l], n) = ([u.shape[0], u.shape[1], u.shape[2]], a.shape[1]);
    match t.shape.len() {
        2 => {
            u.agree(1, t, 0, "D")?;
            a.agree(1, t, 1, "N")?;
            Ok(BcLayout::Constant)
        }
        3 => {
            u.agree(0, t, 0, "Bt")?;
            a.agree(1, t, 1, "N")?;
            u.agree(2, t, 2, "L")?;
            Ok(BcLayout::Grouped(1))
        }
        4 => {
            u.agree(0, t, 0, "Bt")?;
            a.agree(1, t, 2, "N")?;
            u.agree(2, t, 3, "L")?;
            let g = t.shape[1];
            if g == 0 || dim % g != 0 {
                return Err(Error::shape(
                    t.name,
                    format!("(Bt, G, N, L) = [{bt}, G, {n}, {l}] with G dividing D = {dim}"),
                    t.shape,
                ));
            }
            Ok(BcLayout::Grouped(g))
        }
        _ => Err(Error::shape(
            t.name,
            format!(
                "(D, N) = [{dim}, {n}], (Bt, N, L) = [{bt}, {n}, {l}] or (Bt, G, N, L) = \
                 [{bt}, G, {n}, {l}] with G dividing D"
            ),
            t.shape,
        )),
    }
}

impl ScanDims {
    /// Derive the sizes from u (Bt, D, L) and A (D, N) and check every other shape against them.
    /// A size that disagrees between two inputs is reported with both ([`Error::Mismatch`]).
    pub fn from_shapes(s: &ScanShapes) -> Result<Self> {
        let u = named("u", s.u).rank(3, "(Bt, D, L)")?;
        let [bt, dim, l] = [s.u[0], s.u[1], s.u[2]];
        if bt == 0 || dim == 0 || l == 0 {
            return Err(Error::shape("u", "(Bt, D, L) with every size > 0", s.u));
        }
        u.same_shape(named("delta", s.delta), "(Bt, D, L)", &BTDL)?;
        let a = named("A", s.a).rank(2, format!("(D, N) = [{dim}, N] with N > 0"))?;
        u.agree(1, a, 0, "D")?;
        let n = s.a[1];
        if n == 0 {
            return Err(Error::shape(
                "A",
                format!("(D, N) = [{dim}, N] with N > 0"),
                s.a,
            ));
        }
        let b = bc_layout(named("B", s.b), u, a)?;
        let c = bc_layout(named("C", s.c), u, a)?;
        for (name, shape) in [("D", s.d), ("delta_bias", s.delta_bias)] {
            if let Some(shape) = shape {
                let t = named(name, shape).rank(1, format!("(D) = [{dim}]"))?;
                u.agree(1, t, 0, "D")?;
            }
        }
        if let Some(z) = s.z {
            u.same_shape(named("z", z), "(Bt, D, L)", &BTDL)?;
        }
        if let Some(h) = s.initial_state {
            let h =
                named("initial_state", h).rank(3, format!("(Bt, D, N) = [{bt}, {dim}, {n}]"))?;
            u.agree(0, h, 0, "Bt")?;
            u.agree(1, h, 1, "D")?;
            a.agree(1, h, 2, "N")?;
        }
        Ok(Self {
            batch: bt,
            dim,
            len: l,
            n,
            b,
            c,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes<'a>(a: &'a [usize], b: &'a [usize]) -> ScanShapes<'a> {
        ScanShapes {
            u: &[1, 4, 16],
            delta: &[1, 4, 16],
            a,
            b,
            c: &[1, 4, 16],
            d: None,
            z: None,
            delta_bias: None,
            initial_state: None,
        }
    }

    #[test]
    fn disagreements_name_both_tensors() {
        let err = ScanDims::from_shapes(&shapes(&[4, 5], &[1, 8, 16])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensors `A` (4, 5) and `B` (1, 8, 16) disagree on N: 5 vs 8"
        );
        let err = ScanDims::from_shapes(&shapes(&[5, 4], &[1, 4, 16])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensors `u` (1, 4, 16) and `A` (5, 4) disagree on D: 4 vs 5"
        );
        let ok = ScanDims::from_shapes(&shapes(&[4, 4], &[1, 2, 4, 16])).unwrap();
        assert_eq!(
            (ok.n, ok.b, ok.c),
            (4, BcLayout::Grouped(2), BcLayout::Grouped(1))
        );
    }
}
