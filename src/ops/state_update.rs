//! `state_update`: the one-token Mamba-1 decode step on the GPU, with the names, layouts and
//! semantics of `mamba_ssm`'s `selective_state_update`:
//!
//! ```text
//! dt = dt + dt_bias; if dt_softplus: dt = softplus(dt)
//! state[s,d,n] = exp(dt·A[d,n])·state[s,d,n] + dt·B[b,g,n]·x[b,d];   out[b,d] = (Σ_n state·C + D·x)·silu(z)
//! ```
//!
//! Layouts (row-major): state (Pool, D, N), updated in place; x, dt, z, out (Bt, D);
//! B, C (Bt, N) or (Bt, G, N) (channel d uses group d / (D/G)); A (D, N); D, dt_bias (D).
//! [`StateUpdate::record`] takes whole tensors; [`StateUpdate::record_views`] takes x, dt, B, C,
//! z and out as strided [`View`]s (any offset and row stride, unit-stride rows; dt one contiguous
//! block: see [`StateUpdateViews`]), which is how a Mamba model feeds it the column windows of
//! its packed projections without copies.
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
//! D, dt_bias, the slots and dt are copied into one scratch buffer owned by the op (a few
//! kilobytes per step) so the kernel stays within 8 storage bindings. That copy is one buffer
//! copy per input, which is why a dt view must be one contiguous block (and, for halves, start
//! on a whole 4-byte word: an even element offset); a Mamba block's dt is dt_proj's whole output.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::Batch;
use crate::runtime::Gpu;
use crate::runtime::{DType, Tensor, View};
use crate::runtime::{Kernel, Shader};
use crate::shader::{wgsl, Access, Flags, KernelInterface, Variant};
use std::sync::{Arc, Mutex};

/// The WGSL kernel (one for every device: the host runs one invocation per row, so no
/// cross-invocation reduction, subgroup or otherwise, executes).
pub const SHADER: Shader = wgsl!("ssm/state_update");

const WG: usize = 256;

pub use crate::spec::state_update::{UpdateDims, UpdateShapes};

/// GPU inputs of the decode step. `state` is updated in place.
#[derive(Clone, Copy, Debug)]
pub struct StateUpdateInputs<'a> {
    /// state (Pool, D, N) f32, f16 or bf16, updated in place (Pool = Bt without slots).
    pub state: &'a Tensor,
    /// x (Bt, D).
    pub x: &'a Tensor,
    /// dt (Bt, D).
    pub dt: &'a Tensor,
    /// A (D, N).
    pub a: &'a Tensor,
    /// B (Bt, N) or (Bt, G, N).
    pub b: &'a Tensor,
    /// C (Bt, N) or (Bt, G, N).
    pub c: &'a Tensor,
    /// Optional skip weight D (D).
    pub d: Option<&'a Tensor>,
    /// Optional gate z (Bt, D).
    pub z: Option<&'a Tensor>,
    /// Optional dt_bias (D).
    pub dt_bias: Option<&'a Tensor>,
    /// Optional state slot per request (Bt) i32; negative (or ≥ Pool) skips the request.
    pub state_batch_indices: Option<&'a Tensor>,
    /// Apply softplus to dt + dt_bias.
    pub dt_softplus: bool,
}

impl StateUpdateInputs<'_> {
    /// Validate dtypes and shapes; the sizes on success.
    pub fn dims(&self) -> Result<UpdateDims> {
        self.with_views(|v| v.dims())
    }

    /// Call `f` with these inputs as whole-tensor views.
    fn with_views<T>(&self, f: impl FnOnce(&StateUpdateViews) -> T) -> T {
        let (x, dt, b, c) = (self.x.view(), self.dt.view(), self.b.view(), self.c.view());
        let z = self.z.map(Tensor::view);
        f(&StateUpdateViews {
            state: self.state,
            x: &x,
            dt: &dt,
            a: self.a,
            b: &b,
            c: &c,
            d: self.d,
            z: z.as_ref(),
            dt_bias: self.dt_bias,
            state_batch_indices: self.state_batch_indices,
            dt_softplus: self.dt_softplus,
        })
    }
}

/// GPU inputs of the decode step with the activations as strided [`View`]s, so they can be read
/// straight out of the packed projections that made them (a Mamba block's B and C are column
/// windows of x_proj's output, z one of in_proj's). `state` is updated in place.
///
/// Layout rules (checked by [`StateUpdate::record_views`], which refuses others with
/// [`Error::Invalid`] naming the view): elements within a row are consecutive (the last
/// dimension's stride is 1 where it has more than one element); x, z, B and C may have any row
/// stride (and B, C any group stride) and any offset; out (Bt, D) may have any offset and a row
/// stride ≥ D (so no element is written twice). dt must be one contiguous block of Bt·D elements
/// (row stride D, any offset; for half activations an even offset): the op copies it with one
/// buffer copy into its scratch buffer, which keeps the kernel within 8 storage bindings. Half
/// views need no alignment otherwise: the kernel addresses halves one element at a time.
/// out must not overlap any input.
#[derive(Clone, Copy, Debug)]
pub struct StateUpdateViews<'a> {
    /// state (Pool, D, N) f32, f16 or bf16, contiguous, updated in place.
    pub state: &'a Tensor,
    /// x (Bt, D).
    pub x: &'a View,
    /// dt (Bt, D), one contiguous block.
    pub dt: &'a View,
    /// A (D, N), contiguous.
    pub a: &'a Tensor,
    /// B (Bt, N) or (Bt, G, N).
    pub b: &'a View,
    /// C (Bt, N) or (Bt, G, N).
    pub c: &'a View,
    /// Optional skip weight D (D).
    pub d: Option<&'a Tensor>,
    /// Optional gate z (Bt, D).
    pub z: Option<&'a View>,
    /// Optional dt_bias (D).
    pub dt_bias: Option<&'a Tensor>,
    /// Optional state slot per request (Bt) i32; negative (or ≥ Pool) skips the request.
    pub state_batch_indices: Option<&'a Tensor>,
    /// Apply softplus to dt + dt_bias.
    pub dt_softplus: bool,
}

impl StateUpdateViews<'_> {
    /// Validate dtypes and shapes (not the strides: [`StateUpdate::record_views`] does); the
    /// sizes on success.
    pub fn dims(&self) -> Result<UpdateDims> {
        let act = self.x.dtype();
        if !act.is_float() {
            return Err(Error::DType {
                name: "x".into(),
                expected: "f32, f16 or bf16".into(),
                got: act.to_string(),
            });
        }
        let acts = [
            ("x", Some(self.x)),
            ("dt", Some(self.dt)),
            ("B", Some(self.b)),
            ("C", Some(self.c)),
            ("z", self.z),
        ];
        for (name, v) in acts {
            let Some(v) = v else { continue };
            if v.dtype() != act {
                return Err(Error::DType {
                    name: name.into(),
                    expected: format!("{act} (x's dtype: the activations share one dtype)"),
                    got: v.dtype().to_string(),
                });
            }
        }
        self.state.dtype().expect_float("state")?;
        for (name, t) in [
            ("A", Some(self.a)),
            ("D", self.d),
            ("dt_bias", self.dt_bias),
        ] {
            if let Some(t) = t {
                t.expect_dtype(name, DType::F32)?;
            }
        }
        if let Some(s) = self.state_batch_indices {
            if s.dtype() != DType::I32 {
                return Err(Error::DType {
                    name: "state_batch_indices".into(),
                    expected: "i32".into(),
                    got: s.dtype().to_string(),
                });
            }
        }
        UpdateDims::from_shapes(&UpdateShapes {
            state: self.state.shape(),
            x: self.x.shape(),
            dt: self.dt.shape(),
            a: self.a.shape(),
            b: self.b.shape(),
            c: self.c.shape(),
            d: self.d.map(|t| t.shape()),
            z: self.z.map(|t| t.shape()),
            dt_bias: self.dt_bias.map(|t| t.shape()),
            slots: self.state_batch_indices.map(|t| t.shape()),
        })
    }

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

/// Offset and strides of a view whose elements within a row are consecutive: (offset, row
/// stride, group stride) for a (Bt, D), (Bt, N) or (Bt, G, N) view (group stride 0 for 2-D).
/// Error naming the view when its last dimension is not unit-stride.
fn row_layout(v: &View, name: &str) -> Result<(u32, u32, u32)> {
    let (off, st) = v.index_u32(name)?;
    let shape = v.shape();
    let last = shape.len() - 1;
    if shape[last] > 1 && st[last] != 1 {
        return Err(Error::invalid(format!(
            "view `{name}` of shape {shape:?} has strides {:?}: state_update needs the elements \
             of a row consecutive (last stride 1)",
            v.strides()
        )));
    }
    // A dimension of size 1 is never stepped along; its stride is irrelevant and set to 0.
    let along = |k: usize| if shape[k] > 1 { st[k] } else { 0 };
    Ok(match last {
        1 => (off, along(0), 0),
        _ => (off, along(0), along(1)),
    })
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    rows: u32,
    dim: u32,
    n: u32,
    tpr: u32,
    b_groups: u32,
    c_groups: u32,
    pool: u32,
    flags: u32,
    p_d: u32,
    p_bias: u32,
    p_slot: u32,
    p_dt: u32,
    x_off: u32,
    x_rs: u32,
    z_off: u32,
    z_rs: u32,
    o_off: u32,
    o_rs: u32,
    b_off: u32,
    b_rs: u32,
    b_gs: u32,
    c_off: u32,
    c_rs: u32,
    c_gs: u32,
}

/// What the kernel is passed: its `Uniforms`, then the state pool, x, A, the packed small inputs
/// (D, dt_bias, slots, dt), B, C, z (x when absent) and out.
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[
        ("state", Access::ReadWrite),
        ("x", Access::Read),
        ("amat", Access::Read),
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

/// The kernel with a half state pool (the second stored role), with each activation dtype a
/// device pairs it with ([`crate::ops::half_b_variants`]).
pub const HALF_STATE: [Variant; 10] = crate::ops::half_b_variants(KERNEL);

const HAS_D: u32 = 1;
const HAS_Z: u32 = 2;
const HAS_BIAS: u32 = 4;
const SOFTPLUS: u32 = 8;
const HAS_SLOTS: u32 = 16;

/// A built decode-step op: the pipeline plus a reusable scratch buffer for the packed small
/// per-step inputs.
#[derive(Clone, Debug)]
pub struct StateUpdate {
    kernel: Arc<Kernel>,
    scratch: Arc<Mutex<Option<Tensor>>>,
}

impl StateUpdate {
    /// Build (or fetch from the cache) the pipeline.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(Self {
            kernel: gpu.kernel(&KERNEL, &[])?,
            scratch: Arc::new(Mutex::new(None)),
        })
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
        let (bt, dim, n) = (dims.batch, dims.dim, dims.n);
        let act = inputs.x.dtype();
        if out.dtype() != act {
            return Err(Error::DType {
                name: "out".into(),
                expected: format!("{act} (x's dtype: the activations share one dtype)"),
                got: out.dtype().to_string(),
            });
        }
        out.expect("out", "(Bt, D)", &[bt, dim], act)?;
        let (x_off, x_rs, _) = row_layout(inputs.x, "x")?;
        let (b_off, b_rs, b_gs) = row_layout(inputs.b, "B")?;
        let (c_off, c_rs, c_gs) = row_layout(inputs.c, "C")?;
        let (z_off, z_rs, _) = match inputs.z {
            Some(z) => row_layout(z, "z")?,
            None => (0, 0, 0),
        };
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
                 dt as one contiguous block (strides [D, 1]{})",
                inputs.dt.shape(),
                inputs.dt.strides(),
                if act.size() == 2 {
                    ", at an even offset for halves"
                } else {
                    ""
                }
            )));
        }
        let gpu = batch.gpu();
        let storage = crate::ops::storage_flags(gpu, "x", act)?.union(crate::ops::storage_flags_b(
            gpu,
            "state",
            inputs.state.dtype(),
        )?);
        let kernel = if storage == Flags::NONE {
            self.kernel.clone()
        } else {
            gpu.kernel(&SHADER.variant(storage, INTERFACE), &[])?
        };
        let rows = bt * dim;
        if dims.pool * dim * n >= u32::MAX as usize {
            return Err(Error::Limit {
                what: format!("state of {} elements", dims.pool * dim * n),
                detail: "the kernel indexes with 32-bit integers".into(),
            });
        }
        let max_bind = gpu.max_binding_bytes();
        if inputs.state.size_bytes() > max_bind {
            return Err(Error::Limit {
                what: format!("state of shape {:?}", inputs.state.shape()),
                detail: format!("max_storage_buffer_binding_size = {max_bind}"),
            });
        }
        let dt_start = dt_off as u64 * act.size() as u64;
        // One invocation per row (it loops over the N states): measured on lavapipe (Bt=1 D=2048
        // N=16) 0.3-0.9 ms against 4-5 ms with 16 per row and 1.4 ms with 4, the split rows
        // costing a barrier and a shared-memory sum per workgroup. The shader supports any
        // power of two ≤ 32 (more invocations per row suit a GPU when Bt·D is small).
        let tpr = 1;
        let per_wg = WG / tpr;
        let p_d = 0;
        let p_bias = dim;
        let p_slot = 2 * dim;
        let p_dt = 2 * dim + bt;
        let pk_len = p_dt + rows;
        let scratch = {
            let mut slot = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Some(t) if t.len() >= pk_len => t.clone(),
                _ => {
                    let t = gpu.empty(&[pk_len.next_power_of_two()], DType::F32)?;
                    *slot = Some(t.clone());
                    t
                }
            }
        };
        let groups = u32::try_from(rows.div_ceil(per_wg)).map_err(|_| Error::Limit {
            what: format!("{rows} rows"),
            detail: "more than 2^32 workgroups".into(),
        })?;
        gpu.grid(groups)?;
        if let Some(d) = inputs.d {
            batch.copy(d, 0, &scratch, (p_d * 4) as u64, (dim * 4) as u64)?;
        }
        if let Some(bias) = inputs.dt_bias {
            batch.copy(bias, 0, &scratch, (p_bias * 4) as u64, (dim * 4) as u64)?;
        }
        if let Some(s) = inputs.state_batch_indices {
            batch.copy(s, 0, &scratch, (p_slot * 4) as u64, (bt * 4) as u64)?;
        }
        // dt's raw bytes (halves two to a word), rounded up to whole words: tensors are padded.
        let dt_bytes = (rows * act.size()).next_multiple_of(4) as u64;
        batch.copy(
            inputs.dt.tensor(),
            dt_start,
            &scratch,
            (p_dt * 4) as u64,
            dt_bytes,
        )?;
        let mut flags = 0;
        for (on, bit) in [
            (inputs.d.is_some(), HAS_D),
            (inputs.z.is_some(), HAS_Z),
            (inputs.dt_bias.is_some(), HAS_BIAS),
            (inputs.dt_softplus, SOFTPLUS),
            (inputs.state_batch_indices.is_some(), HAS_SLOTS),
        ] {
            if on {
                flags |= bit;
            }
        }
        let uniforms = Uniforms {
            rows: rows as u32,
            dim: dim as u32,
            n: n as u32,
            tpr: tpr as u32,
            b_groups: dims.b_groups as u32,
            c_groups: dims.c_groups as u32,
            pool: dims.pool as u32,
            flags,
            p_d: p_d as u32,
            p_bias: p_bias as u32,
            p_slot: p_slot as u32,
            p_dt: p_dt as u32,
            x_off,
            x_rs,
            z_off,
            z_rs,
            o_off,
            o_rs,
            b_off,
            b_rs,
            b_gs,
            c_off,
            c_rs,
            c_gs,
        };
        batch.dispatch(
            &kernel,
            &uniforms,
            &[
                inputs.state.into(),
                inputs.x.tensor().into(),
                inputs.a.into(),
                (&scratch).into(),
                inputs.b.tensor().into(),
                inputs.c.tensor().into(),
                inputs.z.unwrap_or(inputs.x).tensor().into(),
                out.tensor().into(),
            ],
            groups,
        )
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
