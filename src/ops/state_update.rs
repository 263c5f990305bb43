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
use crate::shader::{wgsl, Access, Flags, KernelInterface, Variant};
use std::sync::{Arc, Mutex};

/// The WGSL kernel (one for every device: the host runs one invocation per row, so no
/// cross-invocation reduction, subgroup or otherwise, executes).
pub const SHADER: Shader = wgsl!("ssm/state_update");

const WG: usize = 256;

use crate::spec::state_update::{check_dt_limit, limit_applies};
pub use crate::spec::state_update::{HeadsDims, UpdateDims, UpdateShapes};

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
        check_dtypes(&Dtypes {
            x: self.x,
            dt: self.dt,
            b: self.b,
            c: self.c,
            z: self.z,
            state: self.state,
            a: self.a,
            d: self.d,
            dt_bias: self.dt_bias,
            slots: self.state_batch_indices,
        })?;
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

/// GPU inputs of the multi-head (Mamba-2) decode step, `mamba_ssm`'s `selective_state_update`
/// with heads: channel (h, p) uses dt\[b,h\], A\[h\] (for every n), dt_bias\[h\], D\[h\] or
/// D\[h,p\], and B, C group h / (H/G). `state` is updated in place.
///
/// Layout rules (checked by [`StateUpdate::record_heads`], which refuses others with
/// [`Error::Invalid`] naming the view): the innermost dimension of every view is unit-stride
/// (where it has more than one element); x, z (Bt, H, P) may have any offset, row stride and
/// head stride, B, C (Bt, G, N) any offset, row stride and group stride, and **dt (Bt, H) any
/// offset and row stride** (it is read in place, so the last H columns of a packed in_proj
/// output work, halves at odd offsets included); out (Bt, H, P) any offset and strides that
/// write no element twice. out and the state must not share a buffer with any input.
#[derive(Clone, Copy, Debug)]
pub struct StateUpdateHeadsViews<'a> {
    /// state (Pool, H, P, N) f32, f16 or bf16, contiguous, updated in place (Pool = Bt without
    /// slots).
    pub state: &'a Tensor,
    /// x (Bt, H, P).
    pub x: &'a View,
    /// dt (Bt, H), any row stride.
    pub dt: &'a View,
    /// A (H) f32, one scalar per head.
    pub a: &'a Tensor,
    /// B (Bt, G, N), G dividing H.
    pub b: &'a View,
    /// C (Bt, G, N), G dividing H.
    pub c: &'a View,
    /// Optional skip weight D (H) or (H, P) f32.
    pub d: Option<&'a Tensor>,
    /// Optional gate z (Bt, H, P).
    pub z: Option<&'a View>,
    /// Optional dt_bias (H) f32.
    pub dt_bias: Option<&'a Tensor>,
    /// Optional state slot per request (Bt) i32; negative (or ≥ Pool) skips the request.
    pub state_batch_indices: Option<&'a Tensor>,
    /// Apply softplus to dt + dt_bias.
    pub dt_softplus: bool,
    /// Clamp dt (after softplus) to \[lo, hi\]; the default (0, +inf) clamps nothing, as in
    /// `mamba_ssm` (dt without softplus may then stay negative).
    pub dt_limit: (f32, f32),
}

impl StateUpdateHeadsViews<'_> {
    /// Validate dtypes and shapes (not the strides: [`StateUpdate::record_heads`] does); the
    /// sizes on success.
    pub fn dims(&self) -> Result<HeadsDims> {
        check_dtypes(&Dtypes {
            x: self.x,
            dt: self.dt,
            b: self.b,
            c: self.c,
            z: self.z,
            state: self.state,
            a: self.a,
            d: self.d,
            dt_bias: self.dt_bias,
            slots: self.state_batch_indices,
        })?;
        check_dt_limit(self.dt_limit)?;
        HeadsDims::from_shapes(&UpdateShapes {
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

/// [`StateUpdateHeadsViews`] on whole tensors (x, z, out (Bt, H, P), dt (Bt, H), B, C
/// (Bt, G, N), each contiguous).
#[derive(Clone, Copy, Debug)]
pub struct StateUpdateHeadsInputs<'a> {
    /// state (Pool, H, P, N) f32, f16 or bf16, updated in place.
    pub state: &'a Tensor,
    /// x (Bt, H, P).
    pub x: &'a Tensor,
    /// dt (Bt, H).
    pub dt: &'a Tensor,
    /// A (H).
    pub a: &'a Tensor,
    /// B (Bt, G, N).
    pub b: &'a Tensor,
    /// C (Bt, G, N).
    pub c: &'a Tensor,
    /// Optional D (H) or (H, P).
    pub d: Option<&'a Tensor>,
    /// Optional z (Bt, H, P).
    pub z: Option<&'a Tensor>,
    /// Optional dt_bias (H).
    pub dt_bias: Option<&'a Tensor>,
    /// Optional state slot per request (Bt) i32.
    pub state_batch_indices: Option<&'a Tensor>,
    /// Apply softplus to dt + dt_bias.
    pub dt_softplus: bool,
    /// Clamp dt to \[lo, hi\] after softplus ((0, +inf): no clamp).
    pub dt_limit: (f32, f32),
}

impl StateUpdateHeadsInputs<'_> {
    /// Validate dtypes and shapes; the sizes on success.
    pub fn dims(&self) -> Result<HeadsDims> {
        self.with_views(|v| v.dims())
    }

    /// Call `f` with these inputs as whole-tensor views.
    fn with_views<T>(&self, f: impl FnOnce(&StateUpdateHeadsViews) -> T) -> T {
        let (x, dt, b, c) = (self.x.view(), self.dt.view(), self.b.view(), self.c.view());
        let z = self.z.map(Tensor::view);
        f(&StateUpdateHeadsViews {
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
            dt_limit: self.dt_limit,
        })
    }
}

/// The tensors whose dtypes both forms check alike.
struct Dtypes<'a> {
    x: &'a View,
    dt: &'a View,
    b: &'a View,
    c: &'a View,
    z: Option<&'a View>,
    state: &'a Tensor,
    a: &'a Tensor,
    d: Option<&'a Tensor>,
    dt_bias: Option<&'a Tensor>,
    slots: Option<&'a Tensor>,
}

/// The activations (x, dt, B, C, z) share x's float dtype, the state is a float, A, D and
/// dt_bias are f32 and the slots i32; an error names the first tensor that is not.
fn check_dtypes(t: &Dtypes) -> Result<()> {
    let act = t.x.dtype();
    if !act.is_float() {
        return Err(Error::DType {
            name: "x".into(),
            expected: "f32, f16 or bf16".into(),
            got: act.to_string(),
        });
    }
    let acts = [
        ("x", Some(t.x)),
        ("dt", Some(t.dt)),
        ("B", Some(t.b)),
        ("C", Some(t.c)),
        ("z", t.z),
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
    t.state.dtype().expect_float("state")?;
    for (name, w) in [("A", Some(t.a)), ("D", t.d), ("dt_bias", t.dt_bias)] {
        if let Some(w) = w {
            w.expect_dtype(name, DType::F32)?;
        }
    }
    if let Some(s) = t.slots {
        if s.dtype() != DType::I32 {
            return Err(Error::DType {
                name: "state_batch_indices".into(),
                expected: "i32".into(),
                got: s.dtype().to_string(),
            });
        }
    }
    Ok(())
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
    head_dim: u32,
    x_hs: u32,
    z_hs: u32,
    o_hs: u32,
    dt_off: u32,
    dt_rs: u32,
    d_hs: u32,
    d_ps: u32,
    dt_lo: f32,
    dt_hi: f32,
    _pad0: u32,
    _pad1: u32,
}

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

/// The kernel with a half state pool (the second stored role), with each activation dtype a
/// device pairs it with ([`crate::ops::half_b_variants`]).
pub const HALF_STATE: [Variant; 10] = crate::ops::half_b_variants(KERNEL);

const HAS_D: u32 = 1;
const HAS_Z: u32 = 2;
const HAS_BIAS: u32 = 4;
const SOFTPLUS: u32 = 8;
const HAS_SLOTS: u32 = 16;
const HEADS: u32 = 32;
const LIMIT: u32 = 64;

/// Where the form-specific inputs go: the Mamba-1 form copies dt into the scratch and binds A
/// (D, N); the heads form copies A (H) into the scratch and binds dt's buffer, read in place.
#[derive(Clone, Copy)]
enum Form<'a> {
    Channels {
        dt: &'a View,
        dt_off: u32,
        a: &'a Tensor,
    },
    Heads {
        dt: &'a View,
        dt_off: u32,
        dt_rs: u32,
        a: &'a Tensor,
    },
}

/// One validated step of either form, in the kernel's terms: H heads of P channels (the
/// Mamba-1 form: H = D, P = 1); layouts are (offset, row stride, head stride) in elements.
struct Step<'a> {
    state: &'a Tensor,
    x: &'a View,
    x_layout: (u32, u32, u32),
    b: &'a View,
    c: &'a View,
    z: Option<(&'a View, (u32, u32, u32))>,
    out: &'a View,
    out_layout: (u32, u32, u32),
    d: Option<&'a Tensor>,
    /// D's element of (h, p) is at h·d_hs + p·d_ps.
    d_strides: (u32, u32),
    dt_bias: Option<&'a Tensor>,
    slots: Option<&'a Tensor>,
    dt_softplus: bool,
    limit: Option<(f32, f32)>,
    form: Form<'a>,
    batch: usize,
    heads: usize,
    head_dim: usize,
    n: usize,
    pool: usize,
    b_groups: usize,
    c_groups: usize,
}

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

    /// The shared tail of both forms: the storage variant, the scratch copies, the uniforms
    /// and the dispatch (everything shape-related is validated by the callers).
    fn dispatch(&self, batch: &mut Batch, s: &Step) -> Result<()> {
        let act = s.x.dtype();
        let (bt, n) = (s.batch, s.n);
        let dim = s.heads * s.head_dim;
        let (b_off, b_rs, b_gs) = row_layout(s.b, "B")?;
        let (c_off, c_rs, c_gs) = row_layout(s.c, "C")?;
        let ((z_off, z_rs, z_hs), z_view) = match s.z {
            Some((v, l)) => (l, v),
            None => ((0, 0, 0), s.x),
        };
        let heads_form = matches!(s.form, Form::Heads { .. });
        // Binding 3: A (D, N) in the Mamba-1 form, dt's buffer in the heads form.
        let adt = match s.form {
            Form::Channels { a, .. } => a,
            Form::Heads { dt, .. } => dt.tensor(),
        };
        // wgpu refuses a buffer bound writable and read in one dispatch.
        let reads = [
            ("x", Some(s.x.tensor())),
            (if heads_form { "dt" } else { "A" }, Some(adt)),
            ("B", Some(s.b.tensor())),
            ("C", Some(s.c.tensor())),
            ("z", s.z.map(|(v, _)| v.tensor())),
        ];
        for (written, t) in [("out", s.out.tensor()), ("state", s.state)] {
            for (name, r) in reads {
                if r.is_some_and(|r| r.buffer() == t.buffer()) {
                    return Err(Error::invalid(format!(
                        "view `{written}` shares a buffer with `{name}`: state_update writes \
                         `{written}` while it reads `{name}`"
                    )));
                }
            }
        }
        if s.out.tensor().buffer() == s.state.buffer() {
            return Err(Error::invalid(
                "view `out` shares a buffer with `state`: both are written",
            ));
        }
        if let Some(limit) = s.limit {
            check_dt_limit(limit)?;
        }
        let gpu = batch.gpu();
        let storage = crate::ops::storage_flags(gpu, "x", act)?.union(crate::ops::storage_flags_b(
            gpu,
            "state",
            s.state.dtype(),
        )?);
        let kernel = if storage == Flags::NONE {
            self.kernel.clone()
        } else {
            gpu.kernel(&SHADER.variant(storage, INTERFACE), &[])?
        };
        let rows = bt * dim;
        if s.pool * dim * n >= u32::MAX as usize {
            return Err(Error::Limit {
                what: format!("state of {} elements", s.pool * dim * n),
                detail: "the kernel indexes with 32-bit integers".into(),
            });
        }
        let max_bind = gpu.max_binding_bytes();
        if s.state.size_bytes() > max_bind {
            return Err(Error::Limit {
                what: format!("state of shape {:?}", s.state.shape()),
                detail: format!("max_storage_buffer_binding_size = {max_bind}"),
            });
        }
        // One invocation per row (it loops over the N states): measured on lavapipe (Bt=1 D=2048
        // N=16) 0.3-0.9 ms against 4-5 ms with 16 per row and 1.4 ms with 4, the split rows
        // costing a barrier and a shared-memory sum per workgroup. The shader supports any
        // power of two ≤ 32 (more invocations per row suit a GPU when Bt·D is small).
        let tpr = 1;
        let per_wg = WG / tpr;
        // The scratch: D (D, H or H·P) | dt_bias (D or H) | slots (Bt) | dt (Bt·D) or A (H).
        let d_len = s.d.map_or(0, Tensor::len);
        let p_d = 0;
        let p_bias = dim; // D has at most D = H·P elements
        let p_slot = p_bias + s.heads;
        let p_dt = p_slot + bt;
        let pk_len = p_dt + if heads_form { s.heads } else { rows };
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
        if let Some(d) = s.d {
            batch.copy(d, 0, &scratch, (p_d * 4) as u64, (d_len * 4) as u64)?;
        }
        if let Some(bias) = s.dt_bias {
            batch.copy(bias, 0, &scratch, (p_bias * 4) as u64, (s.heads * 4) as u64)?;
        }
        if let Some(slots) = s.slots {
            batch.copy(slots, 0, &scratch, (p_slot * 4) as u64, (bt * 4) as u64)?;
        }
        let (dt_off, dt_rs) = match s.form {
            Form::Channels { dt, dt_off, .. } => {
                // dt's raw bytes (halves two to a word), rounded up to whole words: tensors are
                // padded.
                let dt_bytes = (rows * act.size()).next_multiple_of(4) as u64;
                let start = dt_off as u64 * act.size() as u64;
                batch.copy(dt.tensor(), start, &scratch, (p_dt * 4) as u64, dt_bytes)?;
                (0, 0)
            }
            Form::Heads {
                dt_off, dt_rs, a, ..
            } => {
                batch.copy(a, 0, &scratch, (p_dt * 4) as u64, (s.heads * 4) as u64)?;
                (dt_off, dt_rs)
            }
        };
        let mut flags = 0;
        for (on, bit) in [
            (s.d.is_some(), HAS_D),
            (s.z.is_some(), HAS_Z),
            (s.dt_bias.is_some(), HAS_BIAS),
            (s.dt_softplus, SOFTPLUS),
            (s.slots.is_some(), HAS_SLOTS),
            (heads_form, HEADS),
            (s.limit.is_some(), LIMIT),
        ] {
            if on {
                flags |= bit;
            }
        }
        let (dt_lo, dt_hi) = s.limit.unwrap_or((0.0, f32::INFINITY));
        let (x_off, x_rs, x_hs) = s.x_layout;
        let (o_off, o_rs, o_hs) = s.out_layout;
        let uniforms = Uniforms {
            rows: rows as u32,
            dim: dim as u32,
            n: n as u32,
            tpr: tpr as u32,
            b_groups: s.b_groups as u32,
            c_groups: s.c_groups as u32,
            pool: s.pool as u32,
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
            head_dim: s.head_dim as u32,
            x_hs,
            z_hs,
            o_hs,
            dt_off,
            dt_rs,
            d_hs: s.d_strides.0,
            d_ps: s.d_strides.1,
            dt_lo,
            dt_hi,
            _pad0: 0,
            _pad1: 0,
        };
        batch.dispatch(
            &kernel,
            &uniforms,
            &[
                s.state.into(),
                s.x.tensor().into(),
                adt.into(),
                (&scratch).into(),
                s.b.tensor().into(),
                s.c.tensor().into(),
                z_view.tensor().into(),
                s.out.tensor().into(),
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
