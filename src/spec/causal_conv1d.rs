//! Shapes of the causal depthwise convolution (`causal_conv1d_fn`) and its one-token decode step
//! (`causal_conv1d_update`), and their validation.
//!
//! Prefill: x (Bt, D, L); weight (D, W) with W in 2..=4; bias (D); either batched sequences with
//! optional initial_states and final_states (Bt, D, W − 1), or packed ragged sequences: x
//! (1, D, T), cu_seqlens (S + 1), and optionally a state pool (Pool, D, W − 1) with slots (S).
//! Decode step: x (Bt, D); conv_state (Pool, D, W − 1) (Pool = Bt without slots); slots (Bt).
//! D is read from x, W from weight; every other input is checked against them.

use super::{named, Named};
use crate::error::{Error, Result};

/// The widths the kernels accept (Mamba uses 4; the state holds W − 1 ≤ 3 inputs).
pub const WIDTHS: std::ops::RangeInclusive<usize> = 2..=4;

/// Sizes of one prefill call, derived from (and validated against) the input shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvDims {
    /// Bt (1 for packed ragged sequences).
    pub batch: usize,
    /// D (channels).
    pub dim: usize,
    /// L, or T packed tokens.
    pub len: usize,
    /// W (taps).
    pub width: usize,
    /// S when the sequences are packed (`cu_seqlens` given).
    pub seqs: Option<usize>,
    /// Rows of the state pool, when packed sequences keep their states in one.
    pub pool: Option<usize>,
}

impl ConvDims {
    /// W − 1: the inputs a state holds.
    pub fn state_len(&self) -> usize {
        self.width - 1
    }
}

/// Shapes of the prefill inputs (`None` for an absent optional tensor).
#[derive(Clone, Copy, Debug)]
pub struct ConvShapes<'a> {
    /// x.
    pub x: &'a [usize],
    /// weight.
    pub weight: &'a [usize],
    /// bias.
    pub bias: Option<&'a [usize]>,
    /// initial_states (batched).
    pub initial_states: Option<&'a [usize]>,
    /// final_states (batched).
    pub final_states: Option<&'a [usize]>,
    /// cu_seqlens (ragged).
    pub cu_seqlens: Option<&'a [usize]>,
    /// state_pool (ragged).
    pub state_pool: Option<&'a [usize]>,
    /// slots (ragged, with the pool).
    pub slots: Option<&'a [usize]>,
}

/// Check weight (D, W) against D and the accepted widths; W on success.
fn width(weight: &[usize], dim: usize) -> Result<usize> {
    let spelled = format!("(D, W) = [{dim}, W] with W in 2..=4");
    if weight.len() != 2 || weight[0] != dim || !WIDTHS.contains(&weight[1]) {
        return Err(Error::shape("weight", spelled, weight));
    }
    Ok(weight[1])
}

/// Check an optional bias (D).
fn bias(bias: Option<&[usize]>, x: Named, d_axis: usize) -> Result<()> {
    if let Some(shape) = bias {
        let dim = x.shape[d_axis];
        let t = named("bias", shape).rank(1, format!("(D) = [{dim}]"))?;
        x.agree(d_axis, t, 0, "D")?;
    }
    Ok(())
}

/// Check a state tensor (rows, D, W − 1) with `rows` read from nowhere (`None`: any, > 0) or
/// fixed; returns its rows.
fn state(name: &str, shape: &[usize], rows: Option<usize>, dim: usize, w: usize) -> Result<usize> {
    let spelled = match rows {
        Some(r) => format!("(Bt, D, W - 1) = [{r}, {dim}, {}]", w - 1),
        None => format!("(Pool, D, W - 1) = [Pool, {dim}, {}] with Pool > 0", w - 1),
    };
    let ok = shape.len() == 3
        && shape[1] == dim
        && shape[2] == w - 1
        && shape[0] > 0
        && rows.is_none_or(|r| r == shape[0]);
    if !ok {
        return Err(Error::shape(name, spelled, shape));
    }
    Ok(shape[0])
}

impl ConvDims {
    /// Derive the sizes from x (Bt, D, L) and weight (D, W) and check every other shape.
    /// Batched states and packed sequences exclude each other; slots come with a pool and the
    /// reverse.
    pub fn from_shapes(s: &ConvShapes) -> Result<Self> {
        let x = named("x", s.x).rank(3, "(Bt, D, L)")?;
        let [bt, dim, len] = [s.x[0], s.x[1], s.x[2]];
        if bt == 0 || dim == 0 || len == 0 {
            return Err(Error::shape("x", "(Bt, D, L) with every size > 0", s.x));
        }
        let w = width(s.weight, dim)?;
        bias(s.bias, x, 1)?;
        let mut dims = ConvDims {
            batch: bt,
            dim,
            len,
            width: w,
            seqs: None,
            pool: None,
        };
        let Some(cu) = s.cu_seqlens else {
            for (name, t) in [("state_pool", s.state_pool), ("slots", s.slots)] {
                if t.is_some() {
                    return Err(Error::invalid(format!(
                        "`{name}` is for packed sequences: give cu_seqlens too, or use \
                         initial_states / final_states"
                    )));
                }
            }
            for (name, t) in [
                ("initial_states", s.initial_states),
                ("final_states", s.final_states),
            ] {
                if let Some(shape) = t {
                    state(name, shape, Some(bt), dim, w)?;
                }
            }
            return Ok(dims);
        };
        if bt != 1 {
            return Err(Error::shape(
                "x",
                format!("(1, D, T) = [1, {dim}, {len}] (packed sequences, with cu_seqlens)"),
                s.x,
            ));
        }
        for (name, t) in [
            ("initial_states", s.initial_states),
            ("final_states", s.final_states),
        ] {
            if t.is_some() {
                return Err(Error::invalid(format!(
                    "`{name}` is for batched sequences: packed sequences (cu_seqlens) keep their \
                     states in state_pool at slots"
                )));
            }
        }
        if cu.len() != 1 || cu[0] < 2 {
            return Err(Error::shape(
                "cu_seqlens",
                "(S + 1) with S ≥ 1 sequences",
                cu,
            ));
        }
        let seqs = cu[0] - 1;
        dims.seqs = Some(seqs);
        match (s.state_pool, s.slots) {
            (None, None) => {}
            (Some(pool), Some(slots)) => {
                dims.pool = Some(state("state_pool", pool, None, dim, w)?);
                if slots.len() != 1 || slots[0] != seqs {
                    return Err(Error::shape(
                        "slots",
                        format!("(S) = [{seqs}] (one per sequence of cu_seqlens)"),
                        slots,
                    ));
                }
            }
            (Some(_), None) => {
                return Err(Error::invalid(
                    "`state_pool` needs `slots`: the pool row of each sequence",
                ))
            }
            (None, Some(_)) => {
                return Err(Error::invalid(
                    "`slots` needs `state_pool`: the rows they index",
                ))
            }
        }
        Ok(dims)
    }
}

/// Sizes of one decode step, derived from (and validated against) the input shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvUpdateDims {
    /// Bt (requests, one token each).
    pub batch: usize,
    /// D (channels).
    pub dim: usize,
    /// W (taps).
    pub width: usize,
    /// Rows of the conv-state pool (= Bt without slots).
    pub pool: usize,
    /// Whether slot indices are used.
    pub slots: bool,
}

/// Shapes of the decode step's inputs.
#[derive(Clone, Copy, Debug)]
pub struct ConvUpdateShapes<'a> {
    /// x.
    pub x: &'a [usize],
    /// conv_state.
    pub conv_state: &'a [usize],
    /// weight.
    pub weight: &'a [usize],
    /// bias.
    pub bias: Option<&'a [usize]>,
    /// slots.
    pub slots: Option<&'a [usize]>,
}

impl ConvUpdateDims {
    /// Derive the sizes from x (Bt, D) and weight (D, W) and check the others.
    pub fn from_shapes(s: &ConvUpdateShapes) -> Result<Self> {
        let x = named("x", s.x).rank(2, "(Bt, D)")?;
        let [bt, dim] = [s.x[0], s.x[1]];
        if bt == 0 || dim == 0 {
            return Err(Error::shape("x", "(Bt, D) with every size > 0", s.x));
        }
        let w = width(s.weight, dim)?;
        bias(s.bias, x, 1)?;
        let rows = if s.slots.is_some() { None } else { Some(bt) };
        let pool = state("conv_state", s.conv_state, rows, dim, w)?;
        if let Some(slots) = s.slots {
            let t = named("slots", slots).rank(1, format!("(Bt) = [{bt}]"))?;
            x.agree(0, t, 0, "Bt")?;
        }
        Ok(Self {
            batch: bt,
            dim,
            width: w,
            pool,
            slots: s.slots.is_some(),
        })
    }
}

/// Whether a strided layout (`shape`, `strides` in elements) maps distinct indices to distinct
/// elements, so that writing through it writes no element twice. Sufficient test: with the
/// dimensions of size > 1 ordered by stride, each stride passes the farthest element the
/// smaller ones reach. It rejects some exotic interleavings that happen not to collide; no
/// layout an op needs (row-major, permuted, a window of a wider tensor) is among them.
pub fn writes_once(shape: &[usize], strides: &[usize]) -> bool {
    let mut dims: Vec<(usize, usize)> = shape
        .iter()
        .zip(strides)
        .filter(|(&n, _)| n > 1)
        .map(|(&n, &s)| (s, n))
        .collect();
    dims.sort_unstable();
    let mut reach = 0; // the largest offset the dimensions so far reach
    for (stride, n) in dims {
        if stride <= reach {
            return false;
        }
        reach += (n - 1) * stride;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_that_write_once() {
        assert!(writes_once(&[2, 3, 4], &[12, 4, 1]));
        assert!(writes_once(&[2, 3, 4], &[12, 1, 3])); // channel-last permuted
        assert!(writes_once(&[1, 5, 7], &[0, 1, 10])); // column window of a (7, 10) tensor
        assert!(writes_once(&[1, 1, 1], &[0, 0, 0]));
        assert!(!writes_once(&[2, 3], &[0, 1]));
        assert!(!writes_once(&[2, 3], &[2, 1])); // rows overlap by one element
        assert!(!writes_once(&[4, 4], &[1, 1]));
    }

    #[test]
    fn widths_and_packed_sequences() {
        let base = ConvShapes {
            x: &[2, 5, 7],
            weight: &[5, 4],
            bias: None,
            initial_states: None,
            final_states: None,
            cu_seqlens: None,
            state_pool: None,
            slots: None,
        };
        assert_eq!(ConvDims::from_shapes(&base).unwrap().width, 4);
        let err = ConvDims::from_shapes(&ConvShapes {
            weight: &[5, 5],
            ..base
        })
        .unwrap_err();
        assert!(err.to_string().contains("`weight`"), "{err}");
        let err = ConvDims::from_shapes(&ConvShapes {
            cu_seqlens: Some(&[3]),
            ..base
        })
        .unwrap_err();
        assert!(err.to_string().contains("`x`"), "{err}");
        let packed = ConvShapes {
            x: &[1, 5, 7],
            cu_seqlens: Some(&[3]),
            state_pool: Some(&[4, 5, 3]),
            slots: Some(&[2]),
            ..base
        };
        let d = ConvDims::from_shapes(&packed).unwrap();
        assert_eq!((d.seqs, d.pool), (Some(2), Some(4)));
        let err = ConvDims::from_shapes(&ConvShapes {
            slots: Some(&[3]),
            ..packed
        })
        .unwrap_err();
        assert!(err.to_string().contains("`slots`"), "{err}");
    }
}
