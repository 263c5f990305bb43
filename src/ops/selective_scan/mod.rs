//! `selective_scan`: the Mamba-1 selective scan on the GPU, with the names, layouts and semantics
//! of `mamba_ssm`'s `selective_scan_ref`:
//!
//! ```text
//! dt = delta + delta_bias;  if delta_softplus: dt = softplus(dt);   x_{-1} = initial_state or 0
//! x_t[n] = exp(dt_t·A[d,n])·x_{t-1}[n] + dt_t·B_t[n]·u_t;   y_t = (Σ_n C_t[n]·x_t[n] + D[d]·u_t)·silu(z_t)
//! ```
//!
//! Layouts (row-major): u, delta, z, out (Bt, D, L); A (D, N); B and C each (D, N) constant,
//! (Bt, N, L) variable or (Bt, G, N, L) grouped (channel d uses group d / (D/G)); D, delta_bias
//! (D); initial_state, last_state (Bt, D, N). N ≤ 256.
//!
//! Dtypes, `mamba_ssm`'s convention: u, delta, z and out share u's dtype (f32, f16 or bf16); B
//! and C are each f32 or u's dtype; A, D, delta_bias, initial_state and last_state are f32.
//! Halves are widened on load and out is rounded to u's dtype once, on store; the math is f32.
//! A mismatch is an [`Error::DType`] naming the tensor and the dtype it needed. With half out
//! and N > 16 the row-sequential strategy would round out once per pass of 16 states, so the
//! chunked strategy runs instead ([`SelectiveScan::strategy_for_dtype`]).
//!
//! One dispatch per call for any L (more only when a tensor exceeds one storage binding or the
//! workgroup grid), with one of two strategies ([`ScanStrategy`]) taking the same inputs and
//! writing the same outputs:
//!
//! - **row-sequential**: one invocation per (batch, channel) row walks L sequentially with 16
//!   states at a time in registers (`shaders/ssm/selective_scan.wgsl`, which says why: no
//!   barriers, no shared memory). Fastest when Bt·D rows fill the device, but not parallel in
//!   time: its latency is L dependent steps.
//! - **chunked parallel-in-time**: one workgroup per row walks L in chunks of 512 steps; inside a
//!   chunk each invocation composes its run of 4 steps, a workgroup scan combines the runs
//!   (`shaders/ssm/selective_scan_chunked.wgsl`: subgroup shuffles, its `SUBGROUP` variant, when
//!   [`Gpu::has_subgroups`], else shared memory) and the chunk's end state is carried to the next
//!   chunk inside the workgroup (no inter-workgroup waiting).
//!
//! [`ScanStrategy::Auto`] picks, on a GPU, the chunked scan when `Bt·D·ceil(N/16) < 2048` and
//! `L > 512`: a row-sequential walk of a long L over a handful of rows leaves the GPU idle (a few
//! invocations per device, each L steps long), while the chunked scan spreads L over a workgroup
//! of 128 invocations per row. Otherwise rows already fill the device and the barrier-free row
//! walk wins. On a CPU device (lavapipe) Auto always walks rows: every workgroup barrier there
//! switches between SIMD fibers, and the chunked scan measured slower at every size (release
//! `bench --quick`, GPU timestamps: Bt=1 D=4 N=16 L=8192 row-sequential 4.2 ms, chunked 26.7 ms;
//! Bt=1 D=256 N=16 L=256 row-sequential 5.3 ms, chunked 80.6 ms). Both strategies are tested on
//! every device through [`SelectiveScan::with_strategy`].
//!
//! A, D and delta_bias are packed into one scratch buffer owned by the op
//! (a recorded copy) so the kernel stays within 8 storage bindings; initial_state is copied into
//! last_state, which the kernel then updates in place (passing the same tensor for both is
//! allowed). Outputs must not alias inputs otherwise.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::Gpu;
use crate::runtime::{Batch, Binding};
use crate::runtime::{DType, Tensor};
use crate::runtime::{Kernel, Shader};
use crate::shader::{wgsl, Access, Flag, Flags, KernelInterface, Variant};
use std::sync::{Arc, Mutex};

/// The row-sequential WGSL body (subgroup shuffles of B_t and C_t under `SUBGROUP`).
pub const SHADER: Shader = wgsl!("ssm/selective_scan");

/// The chunked parallel-in-time WGSL body.
pub const CHUNKED_SHADER: Shader = wgsl!("ssm/selective_scan_chunked");

/// Steps per chunk of the chunked kernel (workgroup of 128 invocations × 4 steps each).
pub const CHUNK: usize = 512;
/// Workgroup size of the chunked kernel (a constant in its WGSL).
const CHUNKED_WG: u32 = 128;
pub use crate::ops::scan_strategy::{ScanStrategy, AUTO_MAX_ROW_PASSES, AUTO_MIN_LEN};

impl ScanStrategy {
    /// The concrete strategy (never `Auto`) for a selective scan of these sizes on a device of
    /// this type ([`ScanStrategy::resolve_sizes`] with rows = Bt·D).
    pub fn resolve(self, dims: &ScanDims, device: wgpu::DeviceType) -> ScanStrategy {
        self.resolve_sizes(dims.batch * dims.dim, dims.n, dims.len, device)
    }
}

/// Largest state size N the kernel supports.
pub const MAX_N: usize = 256;
/// Rows (batch, channel) per workgroup: 64, or 16 when 64 would leave fewer than 16 workgroups
/// (one invocation per row; small workgroups keep a CPU device's threads busy at small sizes).
fn rows_per_workgroup(rows: usize) -> usize {
    if rows >= 64 * 16 {
        64
    } else {
        16
    }
}

pub use crate::spec::selective_scan::{BcLayout, ScanDims, ScanShapes};

/// GPU inputs of the selective scan (layouts and dtypes of the module docs).
#[derive(Clone, Copy, Debug)]
pub struct SelectiveScanInputs<'a> {
    /// u (Bt, D, L).
    pub u: &'a Tensor,
    /// delta (Bt, D, L).
    pub delta: &'a Tensor,
    /// A (D, N).
    pub a: &'a Tensor,
    /// B: (D, N), (Bt, N, L) or (Bt, G, N, L).
    pub b: &'a Tensor,
    /// C: (D, N), (Bt, N, L) or (Bt, G, N, L).
    pub c: &'a Tensor,
    /// Optional skip weight D (D).
    pub d: Option<&'a Tensor>,
    /// Optional gate z (Bt, D, L).
    pub z: Option<&'a Tensor>,
    /// Optional delta_bias (D).
    pub delta_bias: Option<&'a Tensor>,
    /// Optional initial_state (Bt, D, N).
    pub initial_state: Option<&'a Tensor>,
    /// Apply softplus to delta + delta_bias.
    pub delta_softplus: bool,
}

impl SelectiveScanInputs<'_> {
    /// Validate dtypes and shapes; the sizes on success.
    pub fn dims(&self) -> Result<ScanDims> {
        let act = self.u.dtype();
        act.expect_float("u")?;
        let same = [("delta", Some(self.delta)), ("z", self.z)];
        for (name, t) in same {
            let Some(t) = t else { continue };
            if t.dtype() != act {
                return Err(Error::DType {
                    name: name.into(),
                    expected: format!("{act} (u's dtype: u, delta, z and out share one dtype)"),
                    got: t.dtype().to_string(),
                });
            }
        }
        for (name, t) in [("B", self.b), ("C", self.c)] {
            if t.dtype() != DType::F32 && t.dtype() != act {
                return Err(Error::DType {
                    name: name.into(),
                    expected: format!("f32 or {act} (u's dtype)"),
                    got: t.dtype().to_string(),
                });
            }
        }
        let wide = [
            ("A", Some(self.a)),
            ("D", self.d),
            ("delta_bias", self.delta_bias),
            ("initial_state", self.initial_state),
        ];
        for (name, t) in wide {
            if let Some(t) = t {
                t.expect_dtype(name, DType::F32)?;
            }
        }
        ScanDims::from_shapes(&ScanShapes {
            u: self.u.shape(),
            delta: self.delta.shape(),
            a: self.a.shape(),
            b: self.b.shape(),
            c: self.c.shape(),
            d: self.d.map(|t| t.shape()),
            z: self.z.map(|t| t.shape()),
            delta_bias: self.delta_bias.map(|t| t.shape()),
            initial_state: self.initial_state.map(|t| t.shape()),
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    rows: u32,
    row0: u32,
    dim: u32,
    len: u32,
    n: u32,
    b_groups: u32,
    c_groups: u32,
    flags: u32,
    off_x: u32,
    off_b: u32,
    off_c: u32,
    off_s: u32,
    p_d: u32,
    p_bias: u32,
    pad0: u32,
    pad1: u32,
    // The packed form's views, tables and pool (zero otherwise; see packed.rs).
    u_view: [u32; 3],
    delta_view: [u32; 3],
    z_view: [u32; 3],
    out_view: [u32; 3],
    b_view: [u32; 4],
    c_view: [u32; 4],
    p_cu: u32,
    p_slot: u32,
    pool: u32,
    pad2: u32,
}

/// What all three kernels are passed: their `Uniforms`, then u, delta, the packed per-channel
/// parameters (A, D, delta_bias), B, C, z (u when absent), out and the state.
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[
        ("u", Access::Read),
        ("delta", Access::Read),
        ("chan", Access::Read),
        ("bmat", Access::Read),
        ("cmat", Access::Read),
        ("zgate", Access::Read),
        ("out", Access::ReadWrite),
        ("state", Access::ReadWrite),
    ],
};

/// The row-sequential kernel.
pub const ROWS: Variant = SHADER.variant(Flags::NONE, INTERFACE);

/// The row-sequential kernel whose subgroups share B_t and C_t by shuffles (CPU adapters with
/// subgroups of at least 8 invocations).
pub const ROWS_SHARED: Variant = SHADER.variant(Flags::of(&[Flag::Subgroup]), INTERFACE);

/// [`ROWS_SHARED`] reading and writing 4 steps of a row per access (f32, L % 4 = 0): what CPU
/// adapters run on such rows.
pub const ROWS_SHARED_VEC4: Variant =
    SHADER.variant(Flags::of(&[Flag::Subgroup, Flag::Vec4]), INTERFACE);

/// [`ROWS_SHARED`] with half activations, in [`crate::ops::HALF_STORAGE`] order.
pub const ROWS_SHARED_HALF: [Variant; 3] = crate::ops::half_variants(ROWS_SHARED);

/// The chunked kernel with a shared-memory workgroup scan.
pub const CHUNKED: Variant = CHUNKED_SHADER.variant(Flags::NONE, INTERFACE);

/// The chunked kernel with a subgroup workgroup scan (used when the device has `SUBGROUP` and
/// its subgroup size divides the workgroup size).
pub const CHUNKED_SUBGROUP: Variant =
    CHUNKED_SHADER.variant(Flags::of(&[Flag::Subgroup]), INTERFACE);

/// The row-sequential kernel with half u, delta, z, out (and B, C where they are halves), in
/// [`crate::ops::HALF_STORAGE`] order: f16 in u32 words, native f16, bf16.
pub const ROWS_HALF: [Variant; 3] = crate::ops::half_variants(ROWS);

/// [`CHUNKED`] with half activations, in [`crate::ops::HALF_STORAGE`] order.
pub const CHUNKED_HALF: [Variant; 3] = crate::ops::half_variants(CHUNKED);

/// [`CHUNKED_SUBGROUP`] with half activations, in [`crate::ops::HALF_STORAGE`] order.
pub const CHUNKED_SUBGROUP_HALF: [Variant; 3] = crate::ops::half_variants(CHUNKED_SUBGROUP);

/// States the row-sequential kernel holds in registers per pass (`NS` in its WGSL).
const ROW_STATES: usize = 16;

const B_VARIABLE: u32 = 1;
const C_VARIABLE: u32 = 2;
const HAS_D: u32 = 4;
const HAS_Z: u32 = 8;
const HAS_BIAS: u32 = 16;
const SOFTPLUS: u32 = 32;
const HAS_INIT: u32 = 64;

/// A built selective-scan op: the pipeline plus a reusable scratch buffer for the packed
/// per-channel parameters.
#[derive(Clone, Debug)]
pub struct SelectiveScan {
    kernel: Arc<Kernel>,
    kernel_small: Arc<Kernel>,
    chunked: Arc<Kernel>,
    chunked_subgroups: bool,
    rows_flags: Flags,
    rows_vec4: bool,
    strategy: ScanStrategy,
    device: wgpu::DeviceType,
    scratch: Arc<Mutex<Option<Tensor>>>,
}

mod packed;
pub use packed::PackedScanInputs;
mod plan;
mod record;

/// A window of elements `[first, end)` of a tensor as a binding: (binding, element index where
/// it starts). The start is rounded down to the device's offset alignment (≥ 4 bytes), so for
/// halves it is an even element: the kernel's element i - off keeps i's lane in its u32 word.
/// The end is rounded up to a whole word (tensors are padded to 4 bytes).
pub(crate) fn window(gpu: &Gpu, t: &Tensor, first: usize, end: usize) -> Result<(Binding, u32)> {
    let align = gpu.limits().min_storage_buffer_offset_alignment.max(4) as usize;
    let es = t.dtype().size();
    let start_byte = (first * es) / align * align;
    let size = ((end * es).next_multiple_of(4) - start_byte).max(4) as u64;
    let off = u32::try_from(start_byte / es).map_err(|_| Error::Limit {
        what: "a tensor offset".into(),
        detail: "more than 2^32 elements".into(),
    })?;
    if start_byte == 0 && end == t.len() {
        return Ok((t.into(), 0));
    }
    Ok((Binding::range(t, start_byte as u64, size), off))
}

fn limit(what: String, detail: String) -> Error {
    Error::Limit { what, detail }
}

impl SelectiveScan {
    /// Build (or fetch from the cache) the pipelines with [`ScanStrategy::Auto`].
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Self::with_strategy(gpu, ScanStrategy::Auto)
    }

    /// Build (or fetch from the cache) the pipelines for `strategy`: the row-sequential kernel
    /// and the chunked one (its subgroup variant when the device has subgroups whose size
    /// divides the chunked workgroup of 128, else the shared-memory variant).
    pub fn with_strategy(gpu: &Gpu, strategy: ScanStrategy) -> Result<Self> {
        let max_sg = gpu.adapter_info().subgroup_max_size.max(1);
        let chunked_subgroups =
            gpu.has_subgroups() && max_sg <= CHUNKED_WG && CHUNKED_WG % max_sg == 0;
        let chunked = if chunked_subgroups {
            &CHUNKED_SUBGROUP
        } else {
            &CHUNKED
        };
        // The row kernel shares B_t and C_t across a subgroup by shuffles where that pays.
        let rows = if crate::ops::shares_loads_by_subgroup(gpu) {
            &ROWS_SHARED
        } else {
            &ROWS
        };
        Ok(Self {
            kernel: gpu.kernel(rows, &[("WG", 64.0)])?,
            kernel_small: gpu.kernel(rows, &[("WG", 16.0)])?,
            chunked: gpu.kernel(chunked, &[])?,
            chunked_subgroups,
            rows_flags: rows.flags,
            // Every row and binding window on a vec4: windows start at multiples of the offset
            // alignment.
            rows_vec4: rows.flags.contains(Flag::Subgroup)
                && gpu.limits().min_storage_buffer_offset_alignment % 16 == 0,
            strategy,
            device: gpu.adapter_info().device_type,
            scratch: Arc::new(Mutex::new(None)),
        })
    }

    /// The strategy this op was built with (possibly `Auto`).
    pub fn strategy(&self) -> ScanStrategy {
        self.strategy
    }

    /// The concrete strategy a call with these sizes and f32 u records (never `Auto`).
    pub fn strategy_for(&self, dims: &ScanDims) -> ScanStrategy {
        self.strategy.resolve(dims, self.device)
    }

    /// The concrete strategy a call with these sizes and u of `dtype` records (never `Auto`):
    /// [`Self::strategy_for`], except that half out with N > 16 always runs chunked (the
    /// row-sequential kernel adds its passes of 16 states in out, which would round out to the
    /// half once per pass; the chunked kernel sums all N in registers and rounds once).
    pub fn strategy_for_dtype(&self, dims: &ScanDims, dtype: DType) -> ScanStrategy {
        if dtype.is_half() && dims.n > ROW_STATES {
            return ScanStrategy::ChunkedParallel;
        }
        self.strategy_for(dims)
    }

    /// Whether the chunked strategy runs its subgroup variant on this device.
    pub fn uses_subgroups(&self) -> bool {
        self.chunked_subgroups
    }

    /// Whether the row-sequential kernel shares B_t and C_t across subgroups on this device
    /// ([`ROWS_SHARED`]: CPU adapters with subgroups of at least 8 invocations).
    pub fn rows_share_bc(&self) -> bool {
        self.rows_flags.contains(Flag::Subgroup)
    }

    /// Whether the row-sequential kernel runs f32 rows of `len` steps as [`ROWS_SHARED_VEC4`]:
    /// on the devices where it shares B_t and C_t (CPUs, where every storage access is a loop
    /// over the SIMD lanes, so that 4 steps per access cut the accesses 4×), for L % 4 = 0.
    pub fn rows_read_vec4(&self, len: usize) -> bool {
        self.rows_vec4 && len % 4 == 0
    }

    /// Bytes that must move and FLOPs of one scan. FLOPs per (row, step, state): exp, two
    /// multiplies for dt·B·u, an FMA for the state, an FMA for C·x (8); per (row, step): the bias
    /// add, softplus (exp, log, add: 3), the D FMA (2), silu and the gate (exp, add, divide,
    /// multiply: 4), each when enabled.
    pub fn cost(dims: &ScanDims, inputs: ScanOptions) -> Cost {
        Self::cost_as(dims, inputs, DType::F32, DType::F32)
    }

    /// [`Self::cost`] with u, delta, z and out of `act` and B, C of `bc`, each counted at its
    /// real width (A, D, delta_bias and the states at 4 bytes).
    pub fn cost_as(dims: &ScanDims, inputs: ScanOptions, act: DType, bc: DType) -> Cost {
        let (rows, l, n) = (
            (dims.batch * dims.dim) as u64,
            dims.len as u64,
            dims.n as u64,
        );
        let bc_elems =
            |layout: BcLayout| -> u64 { layout.shape(dims).iter().product::<usize>() as u64 };
        let mut acts = 3 * rows * l; // u, delta, out
        let mut wide = dims.dim as u64 * n + rows * n; // A, last_state
        let bcs = bc_elems(dims.b) + bc_elems(dims.c);
        let mut per_step = 8 * n;
        if inputs.d {
            wide += dims.dim as u64;
            per_step += 2;
        }
        if inputs.z {
            acts += rows * l;
            per_step += 4;
        }
        if inputs.delta_bias {
            wide += dims.dim as u64;
            per_step += 1;
        }
        if inputs.delta_softplus {
            per_step += 3;
        }
        if inputs.initial_state {
            wide += rows * n;
        }
        Cost {
            bytes: 4 * wide + act.size() as u64 * acts + bc.size() as u64 * bcs,
            flops: rows * l * per_step,
        }
    }
}

/// Which optional inputs a scan uses (for [`SelectiveScan::cost`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// D given.
    pub d: bool,
    /// z given.
    pub z: bool,
    /// delta_bias given.
    pub delta_bias: bool,
    /// softplus applied.
    pub delta_softplus: bool,
    /// initial_state given.
    pub initial_state: bool,
}

impl SelectiveScanInputs<'_> {
    /// The options this input set uses.
    pub fn options(&self) -> ScanOptions {
        ScanOptions {
            d: self.d.is_some(),
            z: self.z.is_some(),
            delta_bias: self.delta_bias.is_some(),
            delta_softplus: self.delta_softplus,
            initial_state: self.initial_state.is_some(),
        }
    }
}

/// Run one scan and wait: returns (out of u's dtype, last_state f32) as new tensors.
pub fn selective_scan(gpu: &Gpu, inputs: &SelectiveScanInputs) -> Result<(Tensor, Tensor)> {
    let dims = inputs.dims()?;
    let op = SelectiveScan::new(gpu)?;
    let out = gpu.empty(&[dims.batch, dims.dim, dims.len], inputs.u.dtype())?;
    let last = gpu.empty(&[dims.batch, dims.dim, dims.n], DType::F32)?;
    let mut batch = gpu.batch();
    op.record(&mut batch, inputs, &out, &last)?;
    batch.run()?;
    Ok((out, last))
}
