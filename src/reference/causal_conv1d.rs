//! CPU reference of the causal depthwise convolution, mirroring `causal_conv1d`'s
//! `causal_conv1d_fn` (prefill) and `causal_conv1d_update` (one token) in f64. For a sequence of
//! inputs in(0..n) of channel d, with W taps:
//!
//! ```text
//! y(t) = act(bias[d] + Σ_{k<W} w[d,k] · in(t − W + 1 + k))          act = SiLU or identity
//! in(j) for j < 0: element j + W − 1 of the initial state (the W − 1 inputs before t = 0,
//!                  oldest first), or 0 without one
//! final state = in(n − W + 1 .. n): the last W − 1 inputs (initial state in front if n < W − 1)
//! ```
//!
//! Layouts (row-major, logical): x and y (Bt, D, L); weight (D, W); bias (D); states
//! (rows, D, W − 1). Packed sequences: Bt = 1, sequence s is tokens cu_seqlens\[s\] ..
//! cu_seqlens\[s + 1\], its state row slots\[s\] of the pool (a slot < 0 or ≥ Pool skips the
//! sequence: y = 0 on its tokens, its row untouched). The decode step is one token per request.

use crate::error::{Error, Result};
use crate::reference::selective_scan::silu;
use crate::spec::causal_conv1d::{ConvDims, ConvUpdateDims};

/// Host inputs of a prefill call (flat row-major slices, layouts of the module docs).
#[derive(Clone, Copy, Debug)]
pub struct ConvHost<'a> {
    /// Sizes (build with [`ConvDims::from_shapes`]).
    pub dims: ConvDims,
    /// x (Bt, D, L).
    pub x: &'a [f32],
    /// weight (D, W).
    pub weight: &'a [f32],
    /// bias (D).
    pub bias: Option<&'a [f32]>,
    /// Apply SiLU.
    pub silu: bool,
    /// Batched initial states (Bt, D, W − 1).
    pub initial_states: Option<&'a [f32]>,
    /// Packed sequences: cu_seqlens (S + 1).
    pub cu_seqlens: Option<&'a [i32]>,
    /// Packed sequences: the state pool (Pool, D, W − 1) before the call.
    pub state_pool: Option<&'a [f32]>,
    /// Packed sequences: the pool row of each sequence (S).
    pub slots: Option<&'a [i32]>,
    /// Packed sequences: read each sequence's initial state from its pool row (else zeros).
    pub pool_initial: bool,
}

/// Outputs of the reference prefill, in f64.
#[derive(Clone, Debug)]
pub struct ConvOutput {
    /// y (Bt, D, L).
    pub y: Vec<f64>,
    /// Batched: the final states (Bt, D, W − 1). Packed with a pool: the whole pool after the
    /// call. Packed without a pool: empty.
    pub states: Vec<f64>,
}

fn check_len(name: &str, spelled: &str, shape: &[usize], got: usize) -> Result<()> {
    if shape.iter().product::<usize>() != got {
        return Err(Error::shape(name, format!("{spelled} = {shape:?}"), &[got]));
    }
    Ok(())
}

/// One channel of one sequence: y for each of `x`'s inputs and the final state, given the
/// initial state (`None`: zeros).
fn convolve(
    x: &[f64],
    w: &[f64],
    bias: f64,
    silu_on: bool,
    initial: Option<&[f64]>,
) -> (Vec<f64>, Vec<f64>) {
    let keep = w.len() - 1;
    // The initial state followed by the inputs: in(j) sits at padded[j + W − 1].
    let mut padded: Vec<f64> = initial.map_or(vec![0.0; keep], |s| s.to_vec());
    padded.extend_from_slice(x);
    let y = (0..x.len())
        .map(|t| {
            let v = bias + (0..w.len()).map(|k| w[k] * padded[t + k]).sum::<f64>();
            if silu_on {
                silu(v)
            } else {
                v
            }
        })
        .collect();
    let last = padded[padded.len() - keep..].to_vec();
    (y, last)
}

/// The prefill on the CPU.
pub fn causal_conv1d(inp: &ConvHost) -> Result<ConvOutput> {
    let s = inp.dims;
    let (bt, dd, ll, ww, keep) = (s.batch, s.dim, s.len, s.width, s.state_len());
    check_len("x", "(Bt, D, L)", &[bt, dd, ll], inp.x.len())?;
    check_len("weight", "(D, W)", &[dd, ww], inp.weight.len())?;
    if let Some(b) = inp.bias {
        check_len("bias", "(D)", &[dd], b.len())?;
    }
    let wide = |v: &[f32]| -> Vec<f64> { v.iter().map(|&a| a as f64).collect() };
    let weight = wide(inp.weight);
    let bias = |d: usize| inp.bias.map_or(0.0, |b| b[d] as f64);
    let mut y = vec![0.0; bt * dd * ll];
    let Some(cu) = inp.cu_seqlens else {
        if let Some(init) = inp.initial_states {
            check_len(
                "initial_states",
                "(Bt, D, W - 1)",
                &[bt, dd, keep],
                init.len(),
            )?;
        }
        let mut states = vec![0.0; bt * dd * keep];
        for b in 0..bt {
            for d in 0..dd {
                let row = (b * dd + d) * ll;
                let init = inp
                    .initial_states
                    .map(|v| wide(&v[(b * dd + d) * keep..][..keep]));
                let (yr, last) = convolve(
                    &wide(&inp.x[row..row + ll]),
                    &weight[d * ww..(d + 1) * ww],
                    bias(d),
                    inp.silu,
                    init.as_deref(),
                );
                y[row..row + ll].copy_from_slice(&yr);
                states[(b * dd + d) * keep..][..keep].copy_from_slice(&last);
            }
        }
        return Ok(ConvOutput { y, states });
    };
    let seqs = s
        .seqs
        .ok_or_else(|| Error::invalid("cu_seqlens given but dims.seqs is None"))?;
    check_len("cu_seqlens", "(S + 1)", &[seqs + 1], cu.len())?;
    let mut pool: Vec<f64> = inp.state_pool.map(wide).unwrap_or_default();
    let pool_rows = s.pool.unwrap_or(0);
    check_len(
        "state_pool",
        "(Pool, D, W - 1)",
        &[pool_rows, dd, keep],
        pool.len(),
    )?;
    for seq in 0..seqs {
        let start = cu[seq].clamp(0, ll as i32) as usize;
        let end = (cu[seq + 1].max(0) as usize).clamp(start, ll);
        let slot = match inp.slots {
            Some(slots) => {
                let slot = slots[seq];
                if slot < 0 || slot as usize >= pool_rows {
                    continue; // skipped sequence: y stays 0 on its tokens, its row untouched
                }
                Some(slot as usize)
            }
            None => None,
        };
        for d in 0..dd {
            let init = slot
                .filter(|_| inp.pool_initial)
                .map(|r| pool[(r * dd + d) * keep..][..keep].to_vec());
            let xs: Vec<f64> = (start..end).map(|t| inp.x[d * ll + t] as f64).collect();
            let (yr, last) = convolve(
                &xs,
                &weight[d * ww..(d + 1) * ww],
                bias(d),
                inp.silu,
                init.as_deref(),
            );
            y[d * ll + start..d * ll + end].copy_from_slice(&yr);
            if let Some(r) = slot {
                pool[(r * dd + d) * keep..][..keep].copy_from_slice(&last);
            }
        }
    }
    Ok(ConvOutput { y, states: pool })
}

/// Host inputs of a decode step.
#[derive(Clone, Copy, Debug)]
pub struct ConvUpdateHost<'a> {
    /// Sizes (build with [`ConvUpdateDims::from_shapes`]).
    pub dims: ConvUpdateDims,
    /// x (Bt, D): one token per request.
    pub x: &'a [f32],
    /// conv_state (Pool, D, W − 1) before the step.
    pub conv_state: &'a [f32],
    /// weight (D, W).
    pub weight: &'a [f32],
    /// bias (D).
    pub bias: Option<&'a [f32]>,
    /// Apply SiLU.
    pub silu: bool,
    /// The pool row of each request (Bt); < 0 or ≥ Pool skips it.
    pub slots: Option<&'a [i32]>,
}

/// Outputs of the reference decode step, in f64.
#[derive(Clone, Debug)]
pub struct ConvUpdateOutput {
    /// y (Bt, D).
    pub y: Vec<f64>,
    /// The whole conv-state pool (Pool, D, W − 1) after the step.
    pub conv_state: Vec<f64>,
}

/// One decode step on the CPU: window = old state followed by x; y = act(bias + w·window); the
/// state becomes the window's last W − 1 values.
pub fn causal_conv1d_update(inp: &ConvUpdateHost) -> Result<ConvUpdateOutput> {
    let s = inp.dims;
    let (bt, dd, ww, keep) = (s.batch, s.dim, s.width, s.width - 1);
    check_len("x", "(Bt, D)", &[bt, dd], inp.x.len())?;
    check_len("weight", "(D, W)", &[dd, ww], inp.weight.len())?;
    check_len(
        "conv_state",
        "(Pool, D, W - 1)",
        &[s.pool, dd, keep],
        inp.conv_state.len(),
    )?;
    if let Some(slots) = inp.slots {
        check_len("slots", "(Bt)", &[bt], slots.len())?;
    }
    let mut state: Vec<f64> = inp.conv_state.iter().map(|&v| v as f64).collect();
    let mut y = vec![0.0; bt * dd];
    for b in 0..bt {
        let row = match inp.slots {
            Some(slots) if slots[b] < 0 || slots[b] as usize >= s.pool => continue,
            Some(slots) => slots[b] as usize,
            None => b,
        };
        for d in 0..dd {
            let old = &mut state[(row * dd + d) * keep..][..keep];
            let mut window = old.to_vec();
            window.push(inp.x[b * dd + d] as f64);
            let w = &inp.weight[d * ww..(d + 1) * ww];
            let v = inp.bias.map_or(0.0, |b| b[d] as f64)
                + (0..ww).map(|k| w[k] as f64 * window[k]).sum::<f64>();
            y[b * dd + d] = if inp.silu { silu(v) } else { v };
            old.copy_from_slice(&window[1..]);
        }
    }
    Ok(ConvUpdateOutput {
        y,
        conv_state: state,
    })
}
