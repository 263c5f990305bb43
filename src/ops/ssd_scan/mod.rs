//! `ssd_scan`: the Mamba-2 SSD (state-space duality) chunked scan on the GPU, with the names,
//! layouts and semantics of `mamba_ssm`'s `mamba_chunk_scan_combined`:
//!
//! ```text
//! dt ← dt + dt_bias;  if dt_softplus: dt ← softplus(dt);  if dt_limit ≠ (0, ∞): dt ← clamp(dt, lo, hi)
//! h_t[p,n] = exp(dt_t·A_h)·h_{t-1}[p,n] + dt_t·x_t[p]·B_t[n];   y_t[p] = (Σ_n C_t[n]·h_t[p,n] + D·x_t[p])·silu(z_t[p])
//! ```
//!
//! Layouts: batched ([`SsdScan::record`]) x, z, out (Bt, L, H, P); dt (Bt, L, H); A, dt_bias
//! (H); B, C (Bt, L, G, N), head h reading group h / (H/G); D (H) or (H, P); initial_states,
//! final_states (Bt, H, P, N). Packed ([`SsdScan::record_packed`], what a model's prefill runs):
//! token-major (T, …) strided [`View`]s of ragged sequences cut by `cu_seqlens`, and a state pool
//! (Pool, H, P, N) in which sequence s starts from row `slots[s]` and leaves its final state. The
//! batched form runs through the packed one (its sequences are L tokens each; the pool is
//! final_states). Everything is f32. N ≤ 256, P ≤ 128, chunk size Q a multiple of 16 in 16..=256.
//!
//! The chunked algorithm, five dispatches (`shaders/ssm/ssd_*.wgsl`) whatever L:
//! 1. `ssd_chunk_cumsum`: per (chunk, head) dt processed and the inclusive cumsum of dt·A;
//! 2. `ssd_chunk_cb`: per (chunk, group) CB = C·Bᵀ (Q × Q, tiles above the diagonal skipped);
//! 3. `ssd_chunk_state`: per (chunk, head) the chunk's own state Σ_s exp(cum_last − cum_s)·dt_s·x_s ⊗ B_s;
//! 4. `ssd_state_passing`: per sequence, the states scanned across its chunks from the pool row,
//!    each chunk's state replaced by the state entering it, the final state left in the pool;
//! 5. `ssd_chunk_scan`: per (chunk, head, tile) Y_off + Y_diag, D and the gate.
//!
//! Chunks never cross a sequence boundary: each sequence is cut into ceil(L_s/Q) chunks (the
//! last one partial), listed in a small table the host uploads with the segment table that
//! stage 4 walks. The result depends on Q only through rounding.
//!
//! **Windows.** The scratch holds K·G·Q² floats of CB and K·H·P·N of chunk states for K chunks,
//! and each must fit one storage binding (`max_storage_buffer_binding_size`, 128 MiB by
//! default), as must each activation's bound range. When the whole call does not fit, its chunks
//! are processed in windows of consecutive chunks, five dispatches per window, each activation
//! bound over the window's tokens only; a sequence cut by a window boundary continues in the
//! next window from the state the previous one left in its pool row. Mamba-2-2.7b's shapes
//! (H = 80, P = 64, N = 128) need this past about 12K tokens at Q = 256.
//!
//! A, dt_bias, D and the tables are copied into one op-owned scratch buffer (`table`) so that
//! no stage needs more than 8 storage bindings; dt/cum, CB and the chunk states are further
//! op-owned scratch buffers, reused across calls.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::{Batch, DType, Gpu, Kernel, Shader, Tensor, View};
use crate::shader::{wgsl, Access, Flag, Flags, KernelInterface, Variant};
use std::sync::{Arc, Mutex};

pub use crate::spec::ssd_scan::{
    check_chunk_size, DLayout, SsdDims, SsdShapes, DEFAULT_CHUNK, MAX_CHUNK, MAX_N, MAX_P,
    MIN_CHUNK,
};

mod plan;
mod record;
mod validate;

/// Stage 1: dt and its cumsum per (chunk, head).
pub const CUMSUM_SHADER: Shader = wgsl!("ssm/ssd_chunk_cumsum");
/// Stage 2: C·Bᵀ per (chunk, group).
pub const CB_SHADER: Shader = wgsl!("ssm/ssd_chunk_cb");
/// Stage 3: each chunk's own state.
pub const STATE_SHADER: Shader = wgsl!("ssm/ssd_chunk_state");
/// Stage 4: the state scan across chunks.
pub const PASSING_SHADER: Shader = wgsl!("ssm/ssd_state_passing");
/// Stage 5: the outputs.
pub const SCAN_SHADER: Shader = wgsl!("ssm/ssd_chunk_scan");

/// The uniform block every stage takes (`Params` in `shaders/ssm/ssd_io.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    heads: u32,
    head_dim: u32,
    n: u32,
    groups: u32,
    q: u32,
    nk: u32,
    k0: u32,
    nseg: u32,
    seg0: u32,
    flags: u32,
    p_a: u32,
    p_bias: u32,
    p_d: u32,
    p_chunks: u32,
    p_segs: u32,
    tok0: u32,
    lo: f32,
    hi: f32,
    pool: u32,
    hpg: u32,
    x_view: [u32; 4],
    dt_view: [u32; 4],
    b_view: [u32; 4],
    c_view: [u32; 4],
    z_view: [u32; 4],
    o_view: [u32; 4],
}

const PARAMS: usize = std::mem::size_of::<Uniforms>();

/// Stage 1's interface.
pub const CUMSUM_INTERFACE: KernelInterface = KernelInterface {
    params: PARAMS,
    bindings: &[
        ("table", Access::Read),
        ("dt", Access::Read),
        ("dtcum", Access::ReadWrite),
    ],
};
/// Stage 2's interface.
pub const CB_INTERFACE: KernelInterface = KernelInterface {
    params: PARAMS,
    bindings: &[
        ("table", Access::Read),
        ("bmat", Access::Read),
        ("cmat", Access::Read),
        ("cb", Access::ReadWrite),
    ],
};
/// Stage 3's interface.
pub const STATE_INTERFACE: KernelInterface = KernelInterface {
    params: PARAMS,
    bindings: &[
        ("table", Access::Read),
        ("x", Access::Read),
        ("bmat", Access::Read),
        ("dtcum", Access::Read),
        ("states", Access::ReadWrite),
    ],
};
/// Stage 4's interface.
pub const PASSING_INTERFACE: KernelInterface = KernelInterface {
    params: PARAMS,
    bindings: &[
        ("table", Access::Read),
        ("dtcum", Access::Read),
        ("states", Access::ReadWrite),
        ("pool", Access::ReadWrite),
    ],
};
/// Stage 5's interface.
pub const SCAN_INTERFACE: KernelInterface = KernelInterface {
    params: PARAMS,
    bindings: &[
        ("table", Access::Read),
        ("x", Access::Read),
        ("cmat", Access::Read),
        ("zgate", Access::Read),
        ("dtcum", Access::Read),
        ("cb", Access::Read),
        ("states", Access::Read),
        ("out", Access::ReadWrite),
    ],
};

/// Stage 1.
pub const CUMSUM: Variant = CUMSUM_SHADER.variant(Flags::NONE, CUMSUM_INTERFACE);
/// Stage 2.
pub const CB: Variant = CB_SHADER.variant(Flags::NONE, CB_INTERFACE);
/// Stage 3.
pub const STATE: Variant = STATE_SHADER.variant(Flags::NONE, STATE_INTERFACE);
/// Stage 4.
pub const PASSING: Variant = PASSING_SHADER.variant(Flags::NONE, PASSING_INTERFACE);
/// Stage 5.
pub const SCAN: Variant = SCAN_SHADER.variant(Flags::NONE, SCAN_INTERFACE);

const VEC4_FLAGS: Flags = Flags::of(&[Flag::Vec4]);
/// Stage 2 as register tiles with vec4 loads (CPU devices, aligned layouts).
pub const CB_VEC4: Variant = CB_SHADER.variant(VEC4_FLAGS, CB_INTERFACE);
/// Stage 3 as register tiles with vec4 loads.
pub const STATE_VEC4: Variant = STATE_SHADER.variant(VEC4_FLAGS, STATE_INTERFACE);
/// Stage 4 on 4 state elements per invocation (N a multiple of 4).
pub const PASSING_VEC4: Variant = PASSING_SHADER.variant(VEC4_FLAGS, PASSING_INTERFACE);
/// Stage 5 as register tiles with vec4 loads.
pub const SCAN_VEC4: Variant = SCAN_SHADER.variant(VEC4_FLAGS, SCAN_INTERFACE);

const SHARED_FLAGS: Flags = Flags::of(&[Flag::Vec4, Flag::Subgroup]);
/// [`STATE_VEC4`] whose 8 lanes (one workgroup) share their x loads by subgroup broadcast, 16
/// rows of P per invocation: CPU devices with subgroups of at least 8, N a multiple of 64 (the
/// lanes' 8 column blocks of N then lie in one row block of P).
pub const STATE_VEC4_SHARED: Variant = STATE_SHADER.variant(SHARED_FLAGS, STATE_INTERFACE);
/// [`SCAN_VEC4`] whose 8 lanes share their C, CB and decay loads by subgroup broadcast, 16 rows
/// of the chunk per invocation: CPU devices with subgroups of at least 8, P a multiple of 64
/// (the lanes' 8 column blocks of P then lie in one row block of the chunk).
pub const SCAN_VEC4_SHARED: Variant = SCAN_SHADER.variant(SHARED_FLAGS, SCAN_INTERFACE);

const HAS_D: u32 = 1;
const D_PER_P: u32 = 2;
const HAS_Z: u32 = 4;
const HAS_BIAS: u32 = 8;
const SOFTPLUS: u32 = 16;
const CLAMP: u32 = 32;

/// Output rows and columns of one workgroup tile of the matmul stages (`TILE` in
/// `shaders/ssm/ssd_tile.wgsl`).
const TILE: usize = 32;
/// Invocations per workgroup of stage 1 and stage 4.
const CUMSUM_WG: usize = 64;
const PASSING_WG: usize = 256;
/// Invocations per workgroup of the register-tile stages (2, 3 and 5 with `VEC4`), each owning
/// a 4 × 8 (stage 2) or 8 × 8 (stages 3 and 5) block (`shaders/ssm/ssd_tile.wgsl`).
const REG_WG: usize = 64;
/// Invocations per workgroup of the subgroup-sharing stages: one subgroup of 8 lanes, whose 8
/// column blocks (N or P a multiple of 64) share one row block, so the row side's loads are
/// the same for every lane and one lane loads each.
const SHARED_WG: usize = 8;
/// Rows per invocation of the subgroup-sharing stages (rows of P in stage 3, of the chunk in
/// stage 5; 8 in the other register form): their lanes share the rows' loads, so more rows
/// spread each lane's own loads (B; x and the states) over more FMAs. The chunk size is a
/// multiple of 16.
const SHARED_ROWS: usize = 16;

/// Packed (token-major, ragged) inputs of [`SsdScan::record_packed`], f32; every activation a
/// strided [`View`] so that x, B, C, z and dt are read straight out of the projections and the
/// convolution that made them.
#[derive(Clone, Copy, Debug)]
pub struct SsdPackedInputs<'a> {
    /// x (T, H, P).
    pub x: &'a View,
    /// dt (T, H), before bias, softplus and clamp.
    pub dt: &'a View,
    /// A (H), one negative scalar per head.
    pub a: &'a Tensor,
    /// B (T, G, N): head h reads group h / (H/G).
    pub b: &'a View,
    /// C (T, G, N).
    pub c: &'a View,
    /// Optional skip weight D, (H) or (H, P).
    pub d: Option<&'a Tensor>,
    /// Optional gate z (T, H, P): out ← out·silu(z).
    pub z: Option<&'a View>,
    /// Optional dt_bias (H).
    pub dt_bias: Option<&'a Tensor>,
    /// Apply softplus to dt + dt_bias.
    pub dt_softplus: bool,
    /// Clamp range of dt (applied unless it is the default (0, ∞), as `mamba_ssm`).
    pub dt_limit: (f32, f32),
    /// Chunk size Q: a multiple of 16 in 16..=256 (Mamba-2 uses 256).
    pub chunk_size: usize,
    /// Token offsets of the S sequences: S + 1 non-decreasing values from 0 to T.
    pub cu_seqlens: &'a [u32],
    /// Pool row of each sequence (S distinct values < Pool).
    pub slots: &'a [u32],
}

/// Batched inputs of [`SsdScan::record`]: whole contiguous f32 tensors.
#[derive(Clone, Copy, Debug)]
pub struct SsdInputs<'a> {
    /// x (Bt, L, H, P).
    pub x: &'a Tensor,
    /// dt (Bt, L, H).
    pub dt: &'a Tensor,
    /// A (H).
    pub a: &'a Tensor,
    /// B (Bt, L, G, N).
    pub b: &'a Tensor,
    /// C (Bt, L, G, N).
    pub c: &'a Tensor,
    /// Optional D, (H) or (H, P).
    pub d: Option<&'a Tensor>,
    /// Optional gate z (Bt, L, H, P).
    pub z: Option<&'a Tensor>,
    /// Optional dt_bias (H).
    pub dt_bias: Option<&'a Tensor>,
    /// Optional initial_states (Bt, H, P, N); zero when absent.
    pub initial_states: Option<&'a Tensor>,
    /// Apply softplus to dt + dt_bias.
    pub dt_softplus: bool,
    /// Clamp range of dt ((0, ∞) for none).
    pub dt_limit: (f32, f32),
    /// Chunk size Q.
    pub chunk_size: usize,
}

/// Which optional inputs a scan uses (for [`SsdScan::cost`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SsdOptions {
    /// D given, and its layout.
    pub d: Option<DLayout>,
    /// z given.
    pub z: bool,
    /// dt_bias given.
    pub dt_bias: bool,
    /// softplus applied.
    pub dt_softplus: bool,
    /// initial states given.
    pub initial_states: bool,
}

/// The pipelines of stages 2, 3 and 5 in one form: staged tiles with scalar loads, or
/// (`VEC4`) register tiles with vec4 loads.
#[derive(Clone, Debug)]
struct Stages {
    cb: Arc<Kernel>,
    state: Arc<Kernel>,
    scan: Arc<Kernel>,
}

/// The subgroup-sharing forms of stages 3 and 5.
#[derive(Clone, Debug)]
struct Shared {
    state: Arc<Kernel>,
    scan: Arc<Kernel>,
}

/// A built SSD scan: the pipelines and the op-owned scratch buffers.
#[derive(Clone, Debug)]
pub struct SsdScan {
    cumsum: Arc<Kernel>,
    /// Staged tiles; the only form for unaligned layouts.
    staged: Stages,
    /// Stages 3 and 5 as register tiles whose lanes share loads by subgroup broadcast, one
    /// subgroup of [`SHARED_WG`] lanes per workgroup (CPU devices with subgroups of at least 8;
    /// `None` elsewhere), for N (stage 3) or P (stage 5) a multiple of 64.
    shared: Option<Shared>,
    /// Register tiles for aligned layouts on CPU devices (`None` elsewhere).
    register: Option<Stages>,
    /// Stage 4 on scalars, and on vec4s for N a multiple of 4 (on any device).
    passing: Arc<Kernel>,
    passing_vec4: Arc<Kernel>,
    /// table (u32), dtcum, cb, states.
    scratch: Arc<[Mutex<Option<Tensor>>; 4]>,
}

impl SsdScan {
    /// Build (or fetch from the cache) the pipelines: the staged tiles everywhere, and on a CPU
    /// device (lavapipe, where barriers and staging loads are what cost) the register tiles.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let passing = gpu.kernel(&PASSING, &[("WG", PASSING_WG as f64)])?;
        let passing_vec4 = gpu.kernel(&PASSING_VEC4, &[("WG", PASSING_WG as f64)])?;
        let register = if gpu.adapter_info().device_type == wgpu::DeviceType::Cpu {
            let wg = [("WG", REG_WG as f64)];
            Some(Stages {
                cb: gpu.kernel(&CB_VEC4, &wg)?,
                state: gpu.kernel(&STATE_VEC4, &wg)?,
                scan: gpu.kernel(&SCAN_VEC4, &wg)?,
            })
        } else {
            None
        };
        let shared = if register.is_some() && crate::ops::shares_loads_by_subgroup(gpu) {
            let wg = ("WG", SHARED_WG as f64);
            Some(Shared {
                state: gpu.kernel(&STATE_VEC4_SHARED, &[wg, ("ROWS", SHARED_ROWS as f64)])?,
                scan: gpu.kernel(&SCAN_VEC4_SHARED, &[wg, ("ROWS", SHARED_ROWS as f64)])?,
            })
        } else {
            None
        };
        Ok(Self {
            shared,
            cumsum: gpu.kernel(&CUMSUM, &[("WG", CUMSUM_WG as f64)])?,
            staged: Stages {
                cb: gpu.kernel(&CB, &[])?,
                state: gpu.kernel(&STATE, &[])?,
                scan: gpu.kernel(&SCAN, &[])?,
            },
            register,
            passing,
            passing_vec4,
            scratch: Arc::new(Default::default()),
        })
    }

    /// Scratch buffer `which` (0 table u32, 1 dtcum, 2 cb, 3 states) holding at least `len`
    /// elements, grown when needed (never past one storage binding when `len` fits one).
    fn scratch_of(&self, gpu: &Gpu, which: usize, len: usize) -> Result<Tensor> {
        let dtype = if which == 0 { DType::U32 } else { DType::F32 };
        let mut slot = self.scratch[which]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(t) if t.len() >= len => Ok(t.clone()),
            _ => {
                let cap = (gpu.max_binding_bytes() / 4) as usize;
                let size = len.next_power_of_two().min(cap).max(len).max(1);
                let t = gpu.empty(&[size], dtype)?;
                *slot = Some(t.clone());
                Ok(t)
            }
        }
    }

    /// Bytes that must move and FLOPs of a batched scan of `dims` (Bt sequences of L tokens)
    /// with chunks of `chunk_size`. Bytes: x, dt, B, C, z, out, A, D, dt_bias and the states
    /// once each (4 bytes). FLOPs, counted plainly for the chunked algorithm (an FMA is two, an
    /// exp one): per (token, head) dt·A and the cumsum (2) plus the bias (1) and softplus (3);
    /// per chunk of q tokens and group, C·Bᵀ over the causal half, N·q(q+1); per chunk and
    /// head: the chunk state 2·P·N·q plus its weights (3 per token), the state pass
    /// 2·P·N + 1, Y_off 2·P·N·q plus its decay (q exps, P·q multiplies), Y_diag P·q(q+1) plus
    /// the decayed CB (4 per pair, q(q+1)/2 pairs); per output D (2) and the gate (4).
    pub fn cost(dims: &SsdDims, opts: SsdOptions, chunk_size: usize) -> Cost {
        let lens = vec![dims.len; dims.batch];
        Self::cost_of_lengths(dims, &lens, opts, chunk_size)
    }

    /// [`Self::cost`] for sequences of the given lengths (the packed form).
    pub fn cost_of_lengths(
        dims: &SsdDims,
        lens: &[usize],
        opts: SsdOptions,
        chunk_size: usize,
    ) -> Cost {
        let (h, p, g, n) = (
            dims.heads as u64,
            dims.head_dim as u64,
            dims.groups as u64,
            dims.n as u64,
        );
        let t: u64 = lens.iter().map(|&l| l as u64).sum();
        let q_max = chunk_size.max(1);
        let mut flops = 0u64;
        for &l in lens {
            let mut left = l;
            while left > 0 {
                let q = left.min(q_max) as u64;
                left -= q as usize;
                let pairs = q * (q + 1) / 2;
                flops += g * 2 * n * pairs;
                flops += h * (2 * p * n * q + 3 * q);
                flops += h * (2 * p * n + 1);
                flops += h * (2 * p * n * q + q + p * q);
                flops += h * (2 * p * pairs + 4 * pairs);
            }
        }
        let mut per_token_head = 2;
        if opts.dt_bias {
            per_token_head += 1;
        }
        if opts.dt_softplus {
            per_token_head += 3;
        }
        flops += t * h * per_token_head;
        let mut per_out = 0;
        if opts.d.is_some() {
            per_out += 2;
        }
        if opts.z {
            per_out += 4;
        }
        flops += t * h * p * per_out;
        let s = lens.len() as u64;
        let mut elems = 2 * t * h * p + t * h + 2 * t * g * n + h + s * h * p * n;
        if opts.z {
            elems += t * h * p;
        }
        if opts.dt_bias {
            elems += h;
        }
        match opts.d {
            Some(DLayout::PerHead) => elems += h,
            Some(DLayout::PerChannel) => elems += h * p,
            None => {}
        }
        if opts.initial_states {
            elems += s * h * p * n;
        }
        Cost {
            bytes: 4 * elems,
            flops,
        }
    }
}

impl SsdInputs<'_> {
    /// The options this input set uses (D's layout from its shape).
    pub fn options(&self) -> SsdOptions {
        SsdOptions {
            d: self.d.map(|d| {
                if d.shape().len() == 2 {
                    DLayout::PerChannel
                } else {
                    DLayout::PerHead
                }
            }),
            z: self.z.is_some(),
            dt_bias: self.dt_bias.is_some(),
            dt_softplus: self.dt_softplus,
            initial_states: self.initial_states.is_some(),
        }
    }
}

/// Run one batched scan and wait: returns (out (Bt, L, H, P), final_states (Bt, H, P, N)).
pub fn ssd_scan(gpu: &Gpu, inputs: &SsdInputs) -> Result<(Tensor, Tensor)> {
    let (dims, _) = SsdDims::from_shapes(&validate::shapes_of(inputs))?;
    let op = SsdScan::new(gpu)?;
    let out = gpu.empty(
        &[dims.batch, dims.len, dims.heads, dims.head_dim],
        DType::F32,
    )?;
    let finals = gpu.empty(&[dims.batch, dims.heads, dims.head_dim, dims.n], DType::F32)?;
    let mut batch = gpu.batch();
    op.record(&mut batch, inputs, &out, &finals)?;
    batch.run()?;
    Ok((out, finals))
}

fn limit(what: String, detail: String) -> Error {
    Error::Limit { what, detail }
}
