//! `state_update`: the one-token decode step on the GPU, with the names, layouts and semantics
//! of `mamba_ssm`'s `selective_state_update`, in its Mamba-1 form (per channel) and its
//! multi-head Mamba-2 form (one kernel body for both):
//!
//! ```text
//! Mamba-1: dt = dt[b,d] + dt_bias[d]; if dt_softplus: dt = softplus(dt)
//!          state[s,d,n] = exp(dt·A[d,n])·state[s,d,n] + dt·B[b,g,n]·x[b,d]
//!          out[b,d] = (Σ_n state·C + D[d]·x)·silu(z)
//! heads:   dt = clamp(softplus?(dt[b,h] + dt_bias[h]), lo, hi)
//!          state[s,h,p,n] = exp(dt·A[h])·state[s,h,p,n] + dt·B[b,g,n]·x[b,h,p]   (g = h / (H/G))
//!          out[b,h,p] = (Σ_n state·C[b,g,n] + D·x[b,h,p])·silu(z[b,h,p])   (D = D[h] or D[h,p])
//! ```
//!
//! Mamba-1 layouts (row-major): state (Pool, D, N), updated in place; x, dt, z, out (Bt, D);
//! B, C (Bt, N) or (Bt, G, N) (channel d uses group d / (D/G)); A (D, N); D, dt_bias (D).
//! [`StateUpdate::record`] takes whole tensors; [`StateUpdate::record_views`] takes x, dt, B, C,
//! z and out as strided [`View`]s (any offset and row stride, unit-stride rows; dt one contiguous
//! block: see [`StateUpdateViews`]), which is how a Mamba model feeds it the column windows of
//! its packed projections without copies.
//!
//! Multi-head layouts: state (Pool, H, P, N); x, z, out (Bt, H, P); dt (Bt, H); A (H); B, C
//! (Bt, G, N) with G dividing H; D (H) or (H, P); dt_bias (H); `dt_limit` (lo, hi) clamps dt
//! after softplus unless it is the default (0, +inf). [`StateUpdate::record_heads`] takes views
//! ([`StateUpdateHeadsViews`]), [`StateUpdate::record_heads_tensors`] whole tensors. The kernel
//! sees the Mamba-1 form as H = D heads of P = 1 channel.
//!
//! Dtypes, as `mamba_ssm` allows: the activations x, dt, B, C, z and out share x's dtype, f32,
//! f16 or bf16 (halves are widened on load and out is rounded to nearest even on store; the math
//! is f32); A, D and dt_bias are f32. The pooled recurrent state is f32, f16 or bf16 as the
//! caller chooses, independently of the activations (a half pool halves a decode server's state
//! memory): it is read widened, updated in f32 and stored rounded to nearest even each step. A
//! mismatch is an [`Error::DType`] naming the tensor and x (or the state).
//! Optional `state_batch_indices` (Bt) i32 map request b onto state row slot\[b\] of a larger pool
//! (Pool rows); without them Pool = Bt and request b uses row b. **A negative slot (the usual pad
//! slot −1), or one ≥ Pool, skips the request: its state row is untouched and its out row is set
//! to 0** (so padding never leaks stale or NaN values downstream). Two requests with the same slot
//! race; callers must not do that.
//!
//! The small per-step inputs are copied into one scratch buffer owned by the op (a few
//! kilobytes per step) so the kernel stays within 8 storage bindings: D, dt_bias, the slots, and
//! in the Mamba-1 form dt (one buffer copy, which is why a Mamba-1 dt view must be one
//! contiguous block and, for halves, start on a whole 4-byte word: an even element offset; a
//! Mamba block's dt is dt_proj's whole output), in the heads form A (H). The heads form instead
//! binds dt's own buffer where the Mamba-1 form binds A (D, N) and reads dt (Bt, H) in place
//! through its offset and row stride, so dt may be the last H columns of a Mamba-2 in_proj
//! output (any row stride, any offset, halves included) with no copy and no extra dispatch.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::Batch;
use crate::runtime::Gpu;
use crate::runtime::{DType, Tensor, View};
use crate::runtime::{Kernel, Shader};
use crate::shader::{wgsl, Access, Flag, Flags, KernelInterface, Variant};
use std::sync::{Arc, Mutex};

/// The WGSL kernel (one for every device: the host runs one invocation per row, so no
/// cross-invocation reduction, subgroup or otherwise, executes).
pub const SHADER: Shader = wgsl!("ssm/state_update");

const WG: usize = 256;

use crate::spec::state_update::limit_applies;
pub use crate::spec::state_update::{HeadsDims, UpdateDims, UpdateShapes};

mod dispatch;
mod inputs;

use dispatch::{Form, Step, Uniforms};

use inputs::row_layout;
pub use inputs::{
    StateUpdateHeadsInputs, StateUpdateHeadsViews, StateUpdateInputs, StateUpdateViews,
};

/// What the kernel is passed: its `Uniforms`, then the state pool, x, A (Mamba-1) or dt's
/// buffer (heads), the packed small inputs (D, dt_bias, slots, and dt (Mamba-1) or A (heads)),
/// B, C, z (x when absent) and out.
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[
        ("state", Access::ReadWrite),
        ("x", Access::Read),
        ("adt", Access::Read),
        ("pk", Access::Read),
        ("bmat", Access::Read),
        ("cmat", Access::Read),
        ("zgate", Access::Read),
        ("out", Access::ReadWrite),
    ],
};

/// The kernel (f32 activations).
pub const KERNEL: Variant = SHADER.variant(Flags::NONE, INTERFACE);

/// The kernel with half activations, in [`crate::ops::HALF_STORAGE`] order: f16 in u32 words,
/// native f16, bf16.
pub const HALF: [Variant; 3] = crate::ops::half_variants(KERNEL);

/// The kernel for an f32 state pool with N a multiple of 4 (state and A read as vec4), f32
/// activations; what the host runs whenever the shapes allow.
pub const VEC4: Variant = SHADER.variant(Flags::of(&[Flag::Vec4]), INTERFACE);

/// [`VEC4`] with half activations, in [`crate::ops::HALF_STORAGE`] order.
pub const HALF_VEC4: [Variant; 3] = crate::ops::half_variants(VEC4);

/// [`VEC4`] whose subgroups share B and C by broadcast: what CPU adapters with subgroups of at
/// least 8 invocations run.
pub const VEC4_SHARED: Variant =
    SHADER.variant(Flags::of(&[Flag::Vec4, Flag::Subgroup]), INTERFACE);

/// [`VEC4_SHARED`] with half activations, in [`crate::ops::HALF_STORAGE`] order.
pub const HALF_VEC4_SHARED: [Variant; 3] = crate::ops::half_variants(VEC4_SHARED);

/// The kernel with a half state pool (the second stored role), with each activation dtype a
/// device pairs it with ([`crate::ops::half_b_variants`]).
pub const HALF_STATE: [Variant; 10] = crate::ops::half_b_variants(KERNEL);

/// Error unless out has x's dtype (the activations share one dtype).
fn check_out_dtype(out: &View, act: DType) -> Result<()> {
    if out.dtype() != act {
        return Err(Error::DType {
            name: "out".into(),
            expected: format!("{act} (x's dtype: the activations share one dtype)"),
            got: out.dtype().to_string(),
        });
    }
    Ok(())
}

/// A built decode-step op: the pipeline plus a reusable scratch buffer for the packed small
/// per-step inputs.
#[derive(Clone, Debug)]
pub struct StateUpdate {
    kernel: Arc<Kernel>,
    scratch: Arc<Mutex<Option<Tensor>>>,
    /// Requests per invocation of the subgroup-sharing kernel, when set by the caller.
    requests: Option<usize>,
}

impl StateUpdate {
    /// Build (or fetch from the cache) the pipeline.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(Self {
            kernel: gpu.kernel(&KERNEL, &[])?,
            scratch: Arc::new(Mutex::new(None)),
            requests: None,
        })
    }

    /// Have each invocation of the subgroup-sharing kernel walk `requests` requests of its
    /// channel (clamped to 1..=Bt at each step) instead of the automatic choice
    /// ([`StateUpdate::requests_per_invocation`]): for tuning and for tests. Kernels other than
    /// the subgroup-sharing one always walk one request.
    pub fn with_requests_per_invocation(mut self, requests: usize) -> Self {
        self.requests = Some(requests);
        self
    }

    /// How many requests of a channel one invocation walks in a Mamba-1 step of `bt` requests
    /// of `dim` channels with an N-state `state_dtype` pool on `gpu`. More than one only where
    /// the subgroup-sharing kernel runs (CPU adapters with subgroups of at least 8, f32 state,
    /// N % 4 = 0) and A's row fits in registers (N ≤ 16): the channel's A row, dt_bias and D are
    /// then loaded once for all of them. Up to 8, fewer where the grid would leave a CPU thread
    /// with fewer than two workgroups. The heads form walks one unless
    /// [`StateUpdate::with_requests_per_invocation`] says otherwise.
    pub fn requests_per_invocation(
        &self,
        gpu: &Gpu,
        bt: usize,
        dim: usize,
        n: usize,
        state_dtype: DType,
    ) -> usize {
        self.walk(gpu, bt, dim, n, state_dtype, false)
    }

    /// [`StateUpdate::requests_per_invocation`] for either form (the heads form walks one
    /// unless told otherwise): the one place the dispatch and the public query decide it.
    fn walk(
        &self,
        gpu: &Gpu,
        bt: usize,
        dim: usize,
        n: usize,
        state_dtype: DType,
        heads_form: bool,
    ) -> usize {
        if !(state_dtype == DType::F32 && n % 4 == 0 && crate::ops::shares_loads_by_subgroup(gpu)) {
            return 1;
        }
        match self.requests {
            Some(r) => r.clamp(1, bt.max(1)),
            // Without A's row in registers (N > 16 or the heads form) a walk saves only dt_bias
            // and D, which measured no faster, and slower in the heads form (the README).
            None if n <= 16 && !heads_form => {
                dispatch::requests_per_invocation(bt, dim.div_ceil(WG), crate::ops::cpu_threads())
            }
            None => 1,
        }
    }

    /// Record one decode step on whole tensors: `inputs.state` is updated in place and `out`
    /// (Bt, D) written. Shapes are validated first; on error nothing is recorded.
    pub fn record(
        &self,
        batch: &mut Batch,
        inputs: &StateUpdateInputs,
        out: &Tensor,
    ) -> Result<()> {
        let out = out.view();
        inputs.with_views(|v| self.record_views(batch, v, &out))
    }

    /// Record one decode step on strided views (the layout rules are on
    /// [`StateUpdateViews`]): `inputs.state` is updated in place and the (Bt, D) view `out`
    /// written. Everything is validated first; on error nothing is recorded.
    pub fn record_views(
        &self,
        batch: &mut Batch,
        inputs: &StateUpdateViews,
        out: &View,
    ) -> Result<()> {
        let dims = inputs.dims()?;
        let (bt, dim) = (dims.batch, dims.dim);
        let act = inputs.x.dtype();
        check_out_dtype(out, act)?;
        out.expect("out", "(Bt, D)", &[bt, dim], act)?;
        let (o_off, o_rs, _) = row_layout(out, "out")?;
        if bt > 1 && (o_rs as usize) < dim {
            return Err(Error::invalid(format!(
                "view `out` of shape {:?} with strides {:?} would write an element twice (row \
                 stride < D = {dim})",
                out.shape(),
                out.strides()
            )));
        }
        let (dt_off, _) = inputs.dt.index_u32("dt")?;
        let dt_block = dim <= 1 || inputs.dt.strides()[1] == 1;
        let dt_rows = bt <= 1 || inputs.dt.strides()[0] == dim;
        if !dt_block || !dt_rows || (act.size() == 2 && dt_off % 2 != 0) {
            return Err(Error::invalid(format!(
                "view `dt` of shape {:?} with strides {:?} at offset {dt_off}: state_update needs \
                 dt as one contiguous block (strides [D, 1]{}); the multi-head form \
                 (`record_heads`) reads any row stride",
                inputs.dt.shape(),
                inputs.dt.strides(),
                if act.size() == 2 {
                    ", at an even offset for halves"
                } else {
                    ""
                }
            )));
        }
        let x = row_layout(inputs.x, "x")?;
        let z = inputs.z.map(|z| row_layout(z, "z")).transpose()?;
        self.dispatch(
            batch,
            &Step {
                state: inputs.state,
                x: inputs.x,
                x_layout: (x.0, x.1, 1),
                b: inputs.b,
                c: inputs.c,
                z: inputs.z.zip(z.map(|z| (z.0, z.1, 1))),
                out,
                out_layout: (o_off, o_rs, 1),
                d: inputs.d,
                d_strides: (1, 0),
                dt_bias: inputs.dt_bias,
                slots: inputs.state_batch_indices,
                dt_softplus: inputs.dt_softplus,
                limit: None,
                form: Form::Channels {
                    dt: inputs.dt,
                    dt_off,
                    a: inputs.a,
                },
                batch: bt,
                heads: dim,
                head_dim: 1,
                n: dims.n,
                pool: dims.pool,
                b_groups: dims.b_groups,
                c_groups: dims.c_groups,
            },
        )
    }

    /// Record one multi-head (Mamba-2) decode step on strided views (the layout rules are on
    /// [`StateUpdateHeadsViews`]): `inputs.state` (Pool, H, P, N) is updated in place and the
    /// (Bt, H, P) view `out` written. Everything is validated first; on error nothing is
    /// recorded.
    pub fn record_heads(
        &self,
        batch: &mut Batch,
        inputs: &StateUpdateHeadsViews,
        out: &View,
    ) -> Result<()> {
        let dims = inputs.dims()?;
        let (bt, h, p) = (dims.batch, dims.heads, dims.head_dim);
        let act = inputs.x.dtype();
        check_out_dtype(out, act)?;
        out.expect("out", "(Bt, H, P)", &[bt, h, p], act)?;
        if !crate::spec::causal_conv1d::writes_once(out.shape(), out.strides()) {
            return Err(Error::invalid(format!(
                "view `out` of shape {:?} with strides {:?} would write an element twice",
                out.shape(),
                out.strides()
            )));
        }
        let (dt_off, dt_rs, _) = row_layout(inputs.dt, "dt")?;
        let x_layout = row_layout(inputs.x, "x")?;
        let out_layout = row_layout(out, "out")?;
        let z = inputs.z.map(|z| row_layout(z, "z")).transpose()?;
        let d_strides = match inputs.d.map(|d| d.shape().len()) {
            Some(2) => (p as u32, 1),
            _ => (1, 0),
        };
        self.dispatch(
            batch,
            &Step {
                state: inputs.state,
                x: inputs.x,
                x_layout,
                b: inputs.b,
                c: inputs.c,
                z: inputs.z.zip(z),
                out,
                out_layout,
                d: inputs.d,
                d_strides,
                dt_bias: inputs.dt_bias,
                slots: inputs.state_batch_indices,
                dt_softplus: inputs.dt_softplus,
                limit: limit_applies(inputs.dt_limit).then_some(inputs.dt_limit),
                form: Form::Heads {
                    dt: inputs.dt,
                    dt_off,
                    dt_rs,
                    a: inputs.a,
                },
                batch: bt,
                heads: h,
                head_dim: p,
                n: dims.n,
                pool: dims.pool,
                b_groups: dims.b_groups,
                c_groups: dims.c_groups,
            },
        )
    }

    /// Record one multi-head decode step on whole tensors: `inputs.state` is updated in place
    /// and `out` (Bt, H, P) written. Shapes are validated first; on error nothing is recorded.
    pub fn record_heads_tensors(
        &self,
        batch: &mut Batch,
        inputs: &StateUpdateHeadsInputs,
        out: &Tensor,
    ) -> Result<()> {
        let out = out.view();
        inputs.with_views(|v| self.record_heads(batch, v, &out))
    }

    /// Bytes that must move and FLOPs of one step. Per (row, state): exp, the dt·A multiply, two
    /// multiplies for dt·B·x, the state FMA and the C FMA (8 FLOPs); per row: bias add, softplus
    /// (3), D FMA (2), silu gate (4) when enabled. The activations (x, dt, B, C, z, out) count
    /// at the width of `act` (x's dtype), the state at the width of `state`, A, D, dt_bias and
    /// slots at 4 bytes.
    pub fn cost(dims: &UpdateDims, opts: UpdateOptions, act: DType, state: DType) -> Cost {
        let (rows, n) = ((dims.batch * dims.dim) as u64, dims.n as u64);
        let bt = dims.batch as u64;
        let states = 2 * rows * n; // state rows read and written
        let mut wide = dims.dim as u64 * n; // A
        let mut acts = 2 * rows // x, dt
            + bt * (dims.b_groups + dims.c_groups) as u64 * n
            + rows; // out
        let mut per_row = 8 * n;
        if opts.d {
            wide += dims.dim as u64;
            per_row += 2;
        }
        if opts.z {
            acts += rows;
            per_row += 4;
        }
        if opts.dt_bias {
            wide += dims.dim as u64;
            per_row += 1;
        }
        if opts.dt_softplus {
            per_row += 3;
        }
        if dims.slots {
            wide += bt;
        }
        Cost {
            bytes: 4 * wide + act.size() as u64 * acts + state.size() as u64 * states,
            flops: rows * per_row,
        }
    }
}

impl StateUpdate {
    /// Bytes that must move and FLOPs of one multi-head step. Per (row, state): the decay
    /// multiply and the state FMA, two multiplies for dt·B·x and the C FMA (6 FLOPs: the decay
    /// is one exp per row); per row (Bt·H·P): the exp and dt·A (2), the D FMA (2) and the silu
    /// gate (4) when enabled; per (Bt, H): the bias add, softplus (3) and the clamp (2) as
    /// enabled (counted per row, as the kernel does them). Activations count at the width of
    /// `act`, the state at `state`'s, A, D (as (H)), dt_bias and slots at 4 bytes.
    pub fn cost_heads(dims: &HeadsDims, opts: UpdateOptions, act: DType, state: DType) -> Cost {
        let (rows, n) = ((dims.batch * dims.channels()) as u64, dims.n as u64);
        let (bt, h) = (dims.batch as u64, dims.heads as u64);
        let states = 2 * rows * n;
        let mut wide = h; // A
        let mut acts = rows // x
            + bt * h // dt
            + bt * (dims.b_groups + dims.c_groups) as u64 * n
            + rows; // out
        let mut per_row = 6 * n + 2 + 2;
        if opts.d {
            wide += h;
            per_row += 2;
        }
        if opts.z {
            acts += rows;
            per_row += 4;
        }
        if opts.dt_bias {
            wide += h;
            per_row += 1;
        }
        if opts.dt_softplus {
            per_row += 3;
        }
        if dims.slots {
            wide += bt;
        }
        Cost {
            bytes: 4 * wide + act.size() as u64 * acts + state.size() as u64 * states,
            flops: rows * per_row,
        }
    }
}

/// Which optional inputs a step uses (for [`StateUpdate::cost`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateOptions {
    /// D given.
    pub d: bool,
    /// z given.
    pub z: bool,
    /// dt_bias given.
    pub dt_bias: bool,
    /// softplus applied.
    pub dt_softplus: bool,
}

impl StateUpdateInputs<'_> {
    /// The options this input set uses.
    pub fn options(&self) -> UpdateOptions {
        UpdateOptions {
            d: self.d.is_some(),
            z: self.z.is_some(),
            dt_bias: self.dt_bias.is_some(),
            dt_softplus: self.dt_softplus,
        }
    }
}

/// Run one step and wait: updates `inputs.state` in place and returns out (Bt, D) of x's dtype.
pub fn state_update(gpu: &Gpu, inputs: &StateUpdateInputs) -> Result<Tensor> {
    let dims = inputs.dims()?;
    let op = StateUpdate::new(gpu)?;
    let out = gpu.empty(&[dims.batch, dims.dim], inputs.x.dtype())?;
    let mut batch = gpu.batch();
    op.record(&mut batch, inputs, &out)?;
    batch.run()?;
    Ok(out)
}

/// Run one multi-head step and wait: updates `inputs.state` in place and returns out
/// (Bt, H, P) of x's dtype.
pub fn state_update_heads(gpu: &Gpu, inputs: &StateUpdateHeadsInputs) -> Result<Tensor> {
    let dims = inputs.dims()?;
    let op = StateUpdate::new(gpu)?;
    let out = gpu.empty(&[dims.batch, dims.heads, dims.head_dim], inputs.x.dtype())?;
    let mut batch = gpu.batch();
    op.record_heads_tensors(&mut batch, inputs, &out)?;
    batch.run()?;
    Ok(out)
}
