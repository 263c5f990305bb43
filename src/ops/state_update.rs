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
//! kilobytes per step) so the kernel stays within 8 storage bindings.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::Batch;
use crate::runtime::Gpu;
use crate::runtime::{DType, Tensor};
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
        let named = [
            ("state", Some(self.state)),
            ("x", Some(self.x)),
            ("dt", Some(self.dt)),
            ("A", Some(self.a)),
            ("B", Some(self.b)),
            ("C", Some(self.c)),
            ("D", self.d),
            ("z", self.z),
            ("dt_bias", self.dt_bias),
        ];
        let act = self.x.dtype();
        if !act.is_float() {
            return Err(Error::DType {
                name: "x".into(),
                expected: "f32, f16 or bf16".into(),
                got: act.to_string(),
            });
        }
        for (name, t) in named {
            let Some(t) = t else { continue };
            if matches!(name, "x" | "dt" | "B" | "C" | "z") {
                if t.dtype() != act {
                    return Err(Error::DType {
                        name: name.into(),
                        expected: format!("{act} (x's dtype: the activations share one dtype)"),
                        got: t.dtype().to_string(),
                    });
                }
            } else if name == "state" {
                t.dtype().expect_float(name)?;
            } else {
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

    /// Record one decode step: `inputs.state` is updated in place and `out` (Bt, D) written.
    /// Shapes are validated first; on error nothing is recorded.
    pub fn record(
        &self,
        batch: &mut Batch,
        inputs: &StateUpdateInputs,
        out: &Tensor,
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
        batch.copy(inputs.dt, 0, &scratch, (p_dt * 4) as u64, dt_bytes)?;
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
        };
        batch.dispatch(
            &kernel,
            &uniforms,
            &[
                inputs.state.into(),
                inputs.x.into(),
                inputs.a.into(),
                (&scratch).into(),
                inputs.b.into(),
                inputs.c.into(),
                inputs.z.unwrap_or(inputs.x).into(),
                out.into(),
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
