//! `causal_conv1d`: Mamba's depthwise causal convolution on the GPU, with the semantics of the
//! `causal_conv1d` package's `causal_conv1d_fn` (prefill) and `causal_conv1d_update` (decode):
//!
//! ```text
//! y[b,d,t] = act(bias[d] + Σ_{k<W} w[d,k] · x[b,d,t − W + 1 + k])     act = SiLU or identity
//! ```
//!
//! with x at t < 0 taken from an initial state (the W − 1 inputs before t = 0, oldest first) or
//! zero, and the final state the last W − 1 inputs (the initial state in front when L < W − 1).
//! W is 2, 3 or 4; weight (D, W) (reshape Mamba's (D, 1, W) conv1d weight), bias (D), states f32.
//! x and y share one dtype, f32, f16 or bf16 (halves are widened on load and y is rounded to
//! nearest even on store; the math is f32); a y of another dtype is an error naming y.
//!
//! **Views.** x and y are [`View`]s of shape (Bt, D, L) with any strides: channel-first
//! `t.view()` of (Bt, D, L), channel-last `t.view().permute(&[0, 2, 1])` of (Bt, L, D), or a
//! column window of a packed projection (Mamba's in_proj output (T, 2·D_in), x = its first D_in
//! columns: `t.view().narrow(1, 0, d_in)?.unsqueeze(0)?.permute(&[0, 2, 1])?`). The kernel binds
//! the whole buffers and addresses them through offset and strides. An output view that would
//! write an element twice (overlapping strides) is refused, as is y sharing a buffer with an
//! input or the states.
//!
//! **Sequences.** Batched: each b is one sequence, with optional `initial_states` and
//! `final_states` (Bt, D, W − 1) (the same tensor for both updates it in place). Packed (ragged,
//! no padding): x (1, D, T) and `cu_seqlens` (S + 1) i32 (0, …, T): the convolution restarts at
//! each sequence start; with a `state_pool` (Pool, D, W − 1) and `slots` (S) i32, sequence s's
//! final state is written to pool row slots\[s\] (and its initial state read from it when
//! `pool_initial`), so decoding continues with [`CausalConv1dUpdate`]. A slot < 0 or ≥ Pool
//! skips the sequence (y = 0 on its tokens, the pool untouched); two sequences with one slot
//! race; tokens outside every sequence get y = 0.
//!
//! **Decode** ([`CausalConv1dUpdate`]): x, y (Bt, D) views, one token per request; conv_state
//! (Pool, D, W − 1) updated in place (shift left, append x), rows chosen by optional `slots` (Bt)
//! i32 as `state_update` does (skipped: y row 0, state untouched). It runs the same kernel with
//! each token a sequence of its own.
//!
//! One dispatch computes y (reading the old states); a second, recorded after it in the same
//! batch, writes the final states, each (sequence, channel) row by one invocation that reads it
//! whole first: so in-place states are safe.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::{Batch, Binding, DType, Gpu, Kernel, Shader, Tensor, View};
use crate::shader::{wgsl, Access, Flag, Flags, KernelInterface, Variant};
use std::sync::Arc;

pub use crate::spec::causal_conv1d::{
    writes_once, ConvDims, ConvShapes, ConvUpdateDims, ConvUpdateShapes,
};

/// The WGSL kernel (one for every device: no subgroup or workgroup operations).
pub const SHADER: Shader = wgsl!("ssm/causal_conv1d");

const WG: usize = 256;
/// Outputs per invocation (the shader's CHUNK) where nothing else is chosen: consecutive times
/// of one channel.
const CHUNK: usize = 8;

/// Outputs per invocation of a prefill (batched rows or packed sequences) on `gpu`: 64 on a CPU device, whose per-invocation
/// work (the channels' taps, the index divisions, filling the window) is paid in per-lane loops
/// and is then spread over 8× the outputs (64 measured fastest of 8, 32, 64 and 128 on lavapipe:
/// the README); [`CHUNK`] on a GPU, where more, shorter
/// invocations keep more of the device busy at prefill sizes.
fn prefill_chunk(gpu: &Gpu) -> usize {
    if gpu.adapter_info().device_type == wgpu::DeviceType::Cpu {
        64
    } else {
        CHUNK
    }
}

/// The activation applied to the convolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// y = conv (no activation).
    #[default]
    Identity,
    /// y = conv · sigmoid(conv), as Mamba applies it.
    Silu,
}

/// GPU inputs of a prefill call (see the module docs for the two ways to give sequences).
#[derive(Clone, Copy, Debug)]
pub struct CausalConv1dInputs<'a> {
    /// x (Bt, D, L) f32, f16 or bf16, any strides; (1, D, T) with `cu_seqlens`.
    pub x: &'a View,
    /// weight (D, W) f32, W in 2..=4.
    pub weight: &'a Tensor,
    /// Optional bias (D) f32.
    pub bias: Option<&'a Tensor>,
    /// Activation.
    pub activation: Activation,
    /// Batched: initial states (Bt, D, W − 1) f32 (zeros when absent).
    pub initial_states: Option<&'a Tensor>,
    /// Batched: final states (Bt, D, W − 1) f32, written (may be `initial_states` itself).
    pub final_states: Option<&'a Tensor>,
    /// Packed: sequence offsets (S + 1) i32, 0 … T.
    pub cu_seqlens: Option<&'a Tensor>,
    /// Packed: conv-state pool (Pool, D, W − 1) f32; each sequence's final state is written at
    /// its slot.
    pub state_pool: Option<&'a Tensor>,
    /// Packed: pool row per sequence (S) i32 (< 0 or ≥ Pool skips the sequence).
    pub slots: Option<&'a Tensor>,
    /// Packed: read each sequence's initial state from its pool row (else zeros).
    pub pool_initial: bool,
}

impl<'a> CausalConv1dInputs<'a> {
    /// Batched inputs with no bias, no states and no activation.
    pub fn new(x: &'a View, weight: &'a Tensor) -> Self {
        Self {
            x,
            weight,
            bias: None,
            activation: Activation::Identity,
            initial_states: None,
            final_states: None,
            cu_seqlens: None,
            state_pool: None,
            slots: None,
            pool_initial: false,
        }
    }

    /// Validate dtypes and shapes; the sizes on success.
    pub fn dims(&self) -> Result<ConvDims> {
        self.x.dtype().expect_float("x")?;
        for (name, t) in [
            ("weight", Some(self.weight)),
            ("bias", self.bias),
            ("initial_states", self.initial_states),
            ("final_states", self.final_states),
            ("state_pool", self.state_pool),
        ] {
            if let Some(t) = t {
                t.expect_dtype(name, DType::F32)?;
            }
        }
        for (name, t) in [("cu_seqlens", self.cu_seqlens), ("slots", self.slots)] {
            if let Some(t) = t {
                t.expect_dtype(name, DType::I32)?;
            }
        }
        ConvDims::from_shapes(&ConvShapes {
            x: self.x.shape(),
            weight: self.weight.shape(),
            bias: self.bias.map(|t| t.shape()),
            initial_states: self.initial_states.map(|t| t.shape()),
            final_states: self.final_states.map(|t| t.shape()),
            cu_seqlens: self.cu_seqlens.map(|t| t.shape()),
            state_pool: self.state_pool.map(|t| t.shape()),
            slots: self.slots.map(|t| t.shape()),
        })
    }
}

/// GPU inputs of a decode step.
#[derive(Clone, Copy, Debug)]
pub struct CausalConv1dUpdateInputs<'a> {
    /// x (Bt, D) f32, f16 or bf16, any strides: one token per request.
    pub x: &'a View,
    /// conv_state (Pool, D, W − 1) f32, updated in place (Pool = Bt without slots).
    pub conv_state: &'a Tensor,
    /// weight (D, W) f32.
    pub weight: &'a Tensor,
    /// Optional bias (D) f32.
    pub bias: Option<&'a Tensor>,
    /// Activation.
    pub activation: Activation,
    /// Optional pool row per request (Bt) i32 (< 0 or ≥ Pool skips the request).
    pub slots: Option<&'a Tensor>,
}

impl CausalConv1dUpdateInputs<'_> {
    /// Validate dtypes and shapes; the sizes on success.
    pub fn dims(&self) -> Result<ConvUpdateDims> {
        self.x.dtype().expect_float("x")?;
        self.conv_state.expect_dtype("conv_state", DType::F32)?;
        self.weight.expect_dtype("weight", DType::F32)?;
        if let Some(b) = self.bias {
            b.expect_dtype("bias", DType::F32)?;
        }
        if let Some(s) = self.slots {
            s.expect_dtype("slots", DType::I32)?;
        }
        ConvUpdateDims::from_shapes(&ConvUpdateShapes {
            x: self.x.shape(),
            conv_state: self.conv_state.shape(),
            weight: self.weight.shape(),
            bias: self.bias.map(|t| t.shape()),
            slots: self.slots.map(|t| t.shape()),
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    flags: u32,
    batch: u32,
    dim: u32,
    len: u32,
    width: u32,
    seqs: u32,
    pool: u32,
    items: u32,
    x_off: u32,
    x_sb: u32,
    x_sd: u32,
    x_st: u32,
    y_off: u32,
    y_sb: u32,
    y_sd: u32,
    y_st: u32,
    _pad: [u32; 4],
}

/// What the kernel is passed: its `Uniforms`, then x, weight, bias, batched initial states,
/// cu_seqlens, slots (an input stands in for each absent one), the states written (batched
/// final states or the pool) and y.
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[
        ("x", Access::Read),
        ("weight", Access::Read),
        ("bias", Access::Read),
        ("init", Access::Read),
        ("cu_seqlens", Access::Read),
        ("slots", Access::Read),
        ("states", Access::ReadWrite),
        ("y", Access::ReadWrite),
    ],
};

/// The kernel (f32 x and y).
pub const KERNEL: Variant = SHADER.variant(Flags::NONE, INTERFACE);

/// The kernel with half x and y, in [`crate::ops::HALF_STORAGE`] order: f16 in u32 words,
/// native f16, bf16.
pub const HALF: [Variant; 3] = crate::ops::half_variants(KERNEL);

/// The kernel whose outputs pass reads x and writes y 4 channels per 16-byte access: what
/// batched f32 rows run when both views are channel-contiguous and aligned
/// ([`CausalConv1d::reads_channel_quads`]).
pub const VEC4: Variant = SHADER.variant(Flags::of(&[Flag::Vec4]), INTERFACE);

/// Whether the views' layout lets the outputs pass take 4 channels per 16-byte access: f32,
/// channel stride 1, D and every other stride and offset a multiple of 4.
fn channel_quads(dtype: DType, dim: usize, x: (u32, [u32; 3]), y: (u32, [u32; 3])) -> bool {
    let aligned =
        |(off, s): (u32, [u32; 3])| s[1] == 1 && off % 4 == 0 && s[0] % 4 == 0 && s[2] % 4 == 0;
    dtype == DType::F32 && dim % 4 == 0 && aligned(x) && aligned(y)
}

/// Which of the two passes a pipeline runs (the shader's MODE).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Outputs,
    /// The outputs, 4 channels per access ([`VEC4`]).
    Quads,
    States,
}

/// The pipeline (from the context's cache) for x and y of `dtype`, specialised to one pass and,
/// for the outputs, to packed (ragged or one-token) sequences or batched rows, so that neither
/// pays for the other's code, and to `chunk` outputs per invocation. The states pass reads
/// neither: one pipeline serves both layouts.
fn kernel_for(
    gpu: &Gpu,
    dtype: DType,
    pass: Pass,
    packed: bool,
    chunk: usize,
) -> Result<Arc<Kernel>> {
    let storage = match pass {
        Pass::Quads => Flags::of(&[Flag::Vec4]),
        _ => crate::ops::storage_flags(gpu, "x", dtype)?,
    };
    let constants: &[(&str, f64)] = match pass {
        Pass::States => &[("MODE", 1.0)],
        _ => &[("CHUNK", chunk as f64), ("PACKED", packed as u32 as f64)],
    };
    gpu.kernel(&SHADER.variant(storage, INTERFACE), constants)
}

const HAS_BIAS: u32 = 1;
const SILU: u32 = 2;
const RAGGED: u32 = 4;
const UNIT_SEQS: u32 = 8;
const HAS_INIT: u32 = 16;
const INIT_IN_STATES: u32 = 32;
const HAS_SLOTS: u32 = 64;
const D_FAST: u32 = 128;

/// A (Bt, D, L) view's offset and strides for the uniforms, checked to fit 32-bit indices.
fn strides3(v: &View, name: &str) -> Result<(u32, [u32; 3])> {
    let (off, s) = v.index_u32(name)?;
    Ok((off, [s[0], s[1], s[2]]))
}

/// Error unless `y` writes each element once and shares no buffer with the `others`.
fn check_output(y: &View, others: &[(&str, Option<&Tensor>)]) -> Result<()> {
    if !writes_once(y.shape(), y.strides()) {
        return Err(Error::invalid(format!(
            "output view `y` of shape {:?} with strides {:?} would write some elements twice \
             (its strides overlap)",
            y.shape(),
            y.strides()
        )));
    }
    for (name, t) in others {
        if t.is_some_and(|t| t.buffer() == y.tensor().buffer()) {
            return Err(Error::invalid(format!(
                "output view `y` shares its tensor with `{name}`: give y a tensor of its own"
            )));
        }
    }
    Ok(())
}

/// Error when the written `states` tensor is also one of the read-only inputs.
fn check_states(states: &Tensor, name: &str, others: &[(&str, Option<&Tensor>)]) -> Result<()> {
    for (other, t) in others {
        if t.is_some_and(|t| t.buffer() == states.buffer()) {
            return Err(Error::invalid(format!(
                "`{name}` is written and must not share a tensor with `{other}`"
            )));
        }
    }
    Ok(())
}

fn groups(items: usize) -> Result<u32> {
    u32::try_from(items.div_ceil(WG)).map_err(|_| Error::Limit {
        what: format!("{items} invocations"),
        detail: "more than 2^32 workgroups".into(),
    })
}

fn items_u32(items: usize) -> Result<u32> {
    u32::try_from(items).map_err(|_| Error::Limit {
        what: format!("{items} outputs"),
        detail: "the kernel indexes with 32-bit integers".into(),
    })
}

/// A built causal-convolution op (prefill; the decode step is [`CausalConv1dUpdate`]).
#[derive(Clone, Debug)]
pub struct CausalConv1d {
    /// Bound as `states` when no states are written: WebGPU refuses one buffer bound twice
    /// where either binding is writable, so y cannot stand in.
    spare_states: Tensor,
}

impl CausalConv1d {
    /// Whether batched rows with these x and y views (shape (Bt, D, L)) run the outputs pass 4
    /// channels per 16-byte access ([`VEC4`]): f32, channel-contiguous (channel stride 1), D
    /// and every other stride and offset a multiple of 4 (a channel-last activation, or a
    /// column window of one at a multiple-of-4 offset).
    pub fn reads_channel_quads(x: &View, y: &View) -> bool {
        match (strides3(x, "x"), strides3(y, "y")) {
            (Ok(xl), Ok(yl)) => channel_quads(x.dtype(), x.shape()[1], xl, yl),
            _ => false,
        }
    }

    /// Build (or fetch from the cache) the f32 outputs pipeline; the others a call needs are
    /// built on first use.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        kernel_for(gpu, DType::F32, Pass::Outputs, false, prefill_chunk(gpu))?;
        Ok(Self {
            spare_states: gpu.empty(&[4], DType::F32)?,
        })
    }

    /// Record the prefill: y (Bt, D, L) (any strides that write each element once) and, when
    /// asked, the final states. Everything is validated first; on error nothing is recorded.
    pub fn record(&self, batch: &mut Batch, inputs: &CausalConv1dInputs, y: &View) -> Result<()> {
        let dims = inputs.dims()?;
        let (bt, dim, len) = (dims.batch, dims.dim, dims.len);
        y.expect("y", "(Bt, D, L) like x", &[bt, dim, len], inputs.x.dtype())?;
        let reads = [
            ("x", Some(inputs.x.tensor())),
            ("weight", Some(inputs.weight)),
            ("bias", inputs.bias),
            ("initial_states", inputs.initial_states),
            ("cu_seqlens", inputs.cu_seqlens),
            ("slots", inputs.slots),
        ];
        let written = inputs.final_states.or(inputs.state_pool);
        let written_name = if inputs.final_states.is_some() {
            "final_states"
        } else {
            "state_pool"
        };
        let mut with_states = reads.to_vec();
        with_states.push((written_name, written));
        check_output(y, &with_states)?;
        if let Some(s) = written {
            // Batched initial and final states may be one tensor (updated in place).
            let others: Vec<_> = reads
                .iter()
                .copied()
                .filter(|(n, t)| {
                    !(*n == "initial_states" && t.is_some_and(|t| t.buffer() == s.buffer()))
                })
                .collect();
            check_states(s, written_name, &others)?;
        }
        let (x_off, xs) = strides3(inputs.x, "x")?;
        let (y_off, ys) = strides3(y, "y")?;
        let mut flags = 0;
        if inputs.bias.is_some() {
            flags |= HAS_BIAS;
        }
        if inputs.activation == Activation::Silu {
            flags |= SILU;
        }
        // Consecutive invocations take consecutive channels when channels are closer together
        // in x than times are (channel-last), else consecutive times.
        if xs[1] < xs[2] {
            flags |= D_FAST;
        }
        let mut init = inputs.initial_states;
        // State rows mode 1 writes: one per batch row, or per packed sequence.
        let seqs = dims.seqs.unwrap_or(bt);
        // Outputs per invocation (a chunk that crosses a sequence start walks it as two
        // segments).
        let chunk = prefill_chunk(batch.gpu());
        // Batched rows whose views allow it take 4 channels per invocation.
        let quads =
            dims.seqs.is_none() && channel_quads(inputs.x.dtype(), dim, (x_off, xs), (y_off, ys));
        let (out_pass, channels_per_item) = if quads {
            (Pass::Quads, 4)
        } else {
            (Pass::Outputs, 1)
        };
        if dims.seqs.is_some() {
            flags |= RAGGED;
            if inputs.state_pool.is_some() {
                flags |= HAS_SLOTS;
                if inputs.pool_initial {
                    flags |= HAS_INIT | INIT_IN_STATES;
                }
            }
        } else if let Some(i) = inputs.initial_states {
            flags |= HAS_INIT;
            if written.is_some_and(|s| s.buffer() == i.buffer()) {
                // In place: read the old rows through the written binding, which must not
                // also be bound read-only.
                flags |= INIT_IN_STATES;
                init = None;
            }
        }
        let uniforms = Uniforms {
            flags,
            batch: bt as u32,
            dim: dim as u32,
            len: len as u32,
            width: dims.width as u32,
            seqs: seqs as u32,
            pool: dims.pool.unwrap_or(bt) as u32,
            items: items_u32(bt * dim / channels_per_item * len.div_ceil(chunk))?,
            x_off,
            x_sb: xs[0],
            x_sd: xs[1],
            x_st: xs[2],
            y_off,
            y_sb: ys[0],
            y_sd: ys[1],
            y_st: ys[2],
            _pad: [0; 4],
        };
        let bindings = |states: Option<&Tensor>| -> [Binding; 8] {
            let w = inputs.weight;
            [
                inputs.x.tensor().into(),
                w.into(),
                inputs.bias.unwrap_or(w).into(),
                init.unwrap_or(w).into(),
                inputs.cu_seqlens.unwrap_or(w).into(),
                inputs.slots.unwrap_or(w).into(),
                // Without states, a spare buffer stands in (mode 0 never writes states).
                states.unwrap_or(&self.spare_states).into(),
                y.tensor().into(),
            ]
        };
        let out_groups = groups(bt * dim / channels_per_item * len.div_ceil(chunk))?;
        let state_items = seqs * dim;
        let state_groups = groups(state_items)?;
        let gpu = batch.gpu();
        gpu.grid(out_groups)?;
        gpu.grid(state_groups)?;
        let (dtype, packed) = (inputs.x.dtype(), dims.seqs.is_some());
        let out_kernel = kernel_for(gpu, dtype, out_pass, packed, chunk)?;
        let state_kernel = match written {
            Some(_) => Some(kernel_for(gpu, dtype, Pass::States, packed, chunk)?),
            None => None,
        };
        batch.dispatch(&out_kernel, &uniforms, &bindings(written), out_groups)?;
        if let (Some(s), Some(kernel)) = (written, state_kernel) {
            let u = Uniforms {
                items: items_u32(state_items)?,
                ..uniforms
            };
            batch.dispatch(&kernel, &u, &bindings(Some(s)), state_groups)?;
        }
        Ok(())
    }

    /// Bytes that must move and FLOPs of a prefill: x read and y written once (at the width of
    /// `act`, their dtype), weight, bias, states read and written (f32); per output W FMAs
    /// (2·W FLOPs), the bias add, and 4 for SiLU (exp, add, divide, multiply).
    pub fn cost(dims: &ConvDims, bias: bool, silu: bool, states: bool, act: DType) -> Cost {
        let outputs = (dims.batch * dims.dim * dims.len) as u64;
        let rows = dims.seqs.unwrap_or(dims.batch) as u64 * dims.dim as u64;
        let mut elems = (dims.dim * dims.width) as u64;
        let mut per = 2 * dims.width as u64;
        if bias {
            elems += dims.dim as u64;
            per += 1;
        }
        if silu {
            per += 4;
        }
        if states {
            elems += 2 * rows * dims.state_len() as u64;
        }
        Cost {
            bytes: 4 * elems + 2 * outputs * act.size() as u64,
            flops: outputs * per,
        }
    }
}

/// A built decode-step op: one token per request through the conv-state pool.
#[derive(Clone, Debug)]
pub struct CausalConv1dUpdate {
    /// Built by [`CausalConv1dUpdate::new`] only (the pipelines live in the context's cache).
    _built: (),
}

impl CausalConv1dUpdate {
    /// Build (or fetch from the cache) the f32 outputs pipeline; the others a call needs are
    /// built on first use.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        kernel_for(gpu, DType::F32, Pass::Outputs, true, CHUNK)?;
        Ok(Self { _built: () })
    }

    /// Record one step: y (Bt, D) written, `inputs.conv_state` updated in place. Everything is
    /// validated first; on error nothing is recorded.
    pub fn record(
        &self,
        batch: &mut Batch,
        inputs: &CausalConv1dUpdateInputs,
        y: &View,
    ) -> Result<()> {
        let dims = inputs.dims()?;
        let (bt, dim) = (dims.batch, dims.dim);
        y.expect("y", "(Bt, D) like x", &[bt, dim], inputs.x.dtype())?;
        // One-token sequences: the packed pipelines.
        let gpu = batch.gpu();
        let out_kernel = kernel_for(gpu, inputs.x.dtype(), Pass::Outputs, true, CHUNK)?;
        let state_kernel = kernel_for(gpu, inputs.x.dtype(), Pass::States, true, CHUNK)?;
        let reads = [
            ("x", Some(inputs.x.tensor())),
            ("weight", Some(inputs.weight)),
            ("bias", inputs.bias),
            ("slots", inputs.slots),
        ];
        let mut with_state = reads.to_vec();
        with_state.push(("conv_state", Some(inputs.conv_state)));
        check_output(y, &with_state)?;
        check_states(inputs.conv_state, "conv_state", &reads)?;
        // The step is the packed prefill with each token a sequence: (Bt, D) seen as (1, D, T).
        let (x_off, xs) = inputs.x.index_u32("x")?;
        let (y_off, ys) = y.index_u32("y")?;
        let mut flags = UNIT_SEQS | HAS_INIT | INIT_IN_STATES;
        if inputs.bias.is_some() {
            flags |= HAS_BIAS;
        }
        if inputs.activation == Activation::Silu {
            flags |= SILU;
        }
        if inputs.slots.is_some() {
            flags |= HAS_SLOTS;
        }
        if xs[1] < xs[0] {
            flags |= D_FAST;
        }
        // Mode 0 walks chunks of CHUNK tokens (each its own sequence); mode 1 one row each.
        let out_items = dim * bt.div_ceil(CHUNK);
        let items = bt * dim;
        let uniforms = Uniforms {
            flags,
            batch: 1,
            dim: dim as u32,
            len: bt as u32,
            width: dims.width as u32,
            seqs: bt as u32,
            pool: dims.pool as u32,
            items: items_u32(out_items)?,
            x_off,
            x_sb: 0,
            x_sd: xs[1],
            x_st: xs[0],
            y_off,
            y_sb: 0,
            y_sd: ys[1],
            y_st: ys[0],
            _pad: [0; 4],
        };
        let w = inputs.weight;
        let bindings: [Binding; 8] = [
            inputs.x.tensor().into(),
            w.into(),
            inputs.bias.unwrap_or(w).into(),
            w.into(),
            w.into(),
            inputs.slots.unwrap_or(w).into(),
            inputs.conv_state.into(),
            y.tensor().into(),
        ];
        let (g_out, g) = (groups(out_items)?, groups(items)?);
        batch.gpu().grid(g)?;
        batch.dispatch(&out_kernel, &uniforms, &bindings, g_out)?;
        batch.dispatch(
            &state_kernel,
            &Uniforms {
                items: items_u32(items)?,
                ..uniforms
            },
            &bindings,
            g,
        )
    }

    /// Bytes that must move and FLOPs of one step: x read and y written (at the width of `act`,
    /// their dtype), the state rows read and written, weight and bias read (f32); per output
    /// 2·W FLOPs, the bias add, 4 for SiLU.
    pub fn cost(dims: &ConvUpdateDims, bias: bool, silu: bool, act: DType) -> Cost {
        let rows = (dims.batch * dims.dim) as u64;
        let mut elems = 2 * rows * (dims.width - 1) as u64 + (dims.dim * dims.width) as u64;
        let mut per = 2 * dims.width as u64;
        if bias {
            elems += dims.dim as u64;
            per += 1;
        }
        if silu {
            per += 4;
        }
        Cost {
            bytes: 4 * elems + 2 * rows * act.size() as u64,
            flops: rows * per,
        }
    }
}

/// Run a prefill and wait: y (Bt, D, L) as a new contiguous tensor (final states, when asked,
/// land in the tensors the inputs name).
pub fn causal_conv1d(gpu: &Gpu, inputs: &CausalConv1dInputs) -> Result<Tensor> {
    let dims = inputs.dims()?;
    let y = gpu.empty(&[dims.batch, dims.dim, dims.len], DType::F32)?;
    let mut batch = gpu.batch();
    CausalConv1d::new(gpu)?.record(&mut batch, inputs, &y.view())?;
    batch.run()?;
    Ok(y)
}

/// Run one decode step and wait: y (Bt, D) as a new tensor; the conv state is updated in place.
pub fn causal_conv1d_update(gpu: &Gpu, inputs: &CausalConv1dUpdateInputs) -> Result<Tensor> {
    let dims = inputs.dims()?;
    let y = gpu.empty(&[dims.batch, dims.dim], DType::F32)?;
    let mut batch = gpu.batch();
    CausalConv1dUpdate::new(gpu)?.record(&mut batch, inputs, &y.view())?;
    batch.run()?;
    Ok(y)
}
