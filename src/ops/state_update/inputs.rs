//! The decode step's inputs: whole tensors ([`StateUpdateInputs`], [`StateUpdateHeadsInputs`])
//! or strided views ([`StateUpdateViews`], [`StateUpdateHeadsViews`]) of the Mamba-1 and the
//! multi-head form, with their shape and dtype validation (layouts in the parent module's docs).

use super::UpdateOptions;
use crate::error::{Error, Result};
use crate::runtime::{DType, Tensor, View};
use crate::spec::state_update::check_dt_limit;
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
    pub(super) fn with_views<T>(&self, f: impl FnOnce(&StateUpdateViews) -> T) -> T {
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
    pub(super) fn with_views<T>(&self, f: impl FnOnce(&StateUpdateHeadsViews) -> T) -> T {
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
pub(super) fn row_layout(v: &View, name: &str) -> Result<(u32, u32, u32)> {
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
