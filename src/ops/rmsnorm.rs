//! `rmsnorm`: y[r, i] = x[r, i] · w\[i\] / sqrt(mean_i(x[r, i]²) + eps) over `rows` rows of width
//! d = len(w) (see `shaders/mla/rmsnorm.wgsl`). Rows are strided ([`Rows`]: element offset and
//! stride) in both x and y, so a column block of a wider matrix (MLA's c = kv[:, :d_c]) can be
//! normalised into a column block of another (the latent rows) without copies.
//!
//! When d and every row offset and stride are multiples of 4 (all MLA uses) the vec4 kernel
//! (`shaders/mla/rmsnorm.wgsl` with `VEC4`) runs: 8 invocations per row, x held in registers
//! between the sum of squares and the scaling, one barrier per workgroup. Otherwise the scalar
//! one (one workgroup per row, tree reduction).
//!
//! [`RmsNorm::record_gated`] is Mamba-2's gated, grouped norm (transformers'
//! `MambaRMSNormGated`): with a gate z ([`Gate`]) each row is split into d / group_size groups,
//! each normalised on its own, and either gated before the norm (`norm_before_gate = false`, the
//! default there: h = x·silu(z), y = rmsnorm_group(h)·w) or after it (y = rmsnorm_group(x)·w·
//! silu(z)). The same kernels run it (the unit of work is one group of one row); the plain norm
//! is one group of d, ungated.
//!
//! Dtypes: x is f32, f16 or bf16 and y (and z) has x's dtype; w is f32 or x's dtype (checkpoints store
//! norm weights in bf16). Halves are widened on load, the sum of squares and the scaling are
//! f32, y is rounded to nearest even on store. Any other combination is an [`Error::DType`]
//! naming the tensor.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::Batch;
use crate::runtime::Gpu;
use crate::runtime::{DType, Tensor, View};
use crate::runtime::{Kernel, Shader};
use crate::shader::{wgsl, Access, Flag, Flags, KernelInterface, Variant};
use std::sync::Arc;

/// The WGSL body.
pub const SHADER: Shader = wgsl!("mla/rmsnorm");

/// Invocations per row and per workgroup of the vec4 path.
const VEC4_TPR: u32 = 8;
const VEC4_WG: u32 = 64;

/// Where rows live in a tensor: row r starts at element `offset + r·stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rows {
    /// Element offset of row 0.
    pub offset: usize,
    /// Elements between consecutive rows.
    pub stride: usize,
}

impl Rows {
    /// Contiguous rows of width d.
    pub fn contiguous(d: usize) -> Self {
        Self {
            offset: 0,
            stride: d,
        }
    }
}

/// The gate of [`RmsNorm::record_gated`] (Mamba-2's `MambaRMSNormGated`).
#[derive(Clone, Copy, Debug)]
pub struct Gate<'a> {
    /// z (rows, d) of x's dtype: any offset and row stride, unit inner stride (Mamba-2: a column
    /// window of in_proj's output). It must not share y's buffer.
    pub z: &'a View,
    /// false (transformers' default): y = rmsnorm(x·silu(z))·w per group; true: y =
    /// rmsnorm(x)·w·silu(z).
    pub norm_before_gate: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    units: u32,
    d: u32,
    x_off: u32,
    x_stride: u32,
    y_off: u32,
    y_stride: u32,
    eps: f32,
    group: u32,
    _pad1: u32,
    z_off: u32,
    z_stride: u32,
    _pad: u32,
}

const GATE_FIRST: u32 = 1;
const GATE_LAST: u32 = 2;

/// What both kernels are passed: their `Uniforms`, then x, w, y and z (the gate; x again when
/// ungated).
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[
        ("x", Access::Read),
        ("w", Access::Read),
        ("y", Access::ReadWrite),
        ("z", Access::Read),
    ],
};

/// The scalar kernel (one workgroup per row).
pub const SCALAR: Variant = SHADER.variant(Flags::NONE, INTERFACE);

/// The vec4 fast path, used when d and every row offset and stride are multiples of 4.
pub const VEC4: Variant = SHADER.variant(Flags::of(&[Flag::Vec4]), INTERFACE);

/// The scalar kernel with half rows (x, y) and an f32 weight, in
/// [`crate::ops::HALF_STORAGE`] order: f16 in u32 words, native f16, bf16.
pub const SCALAR_HALF: [Variant; 3] = crate::ops::half_variants(SCALAR);

/// The scalar kernel with half rows and a weight of the rows' dtype (same order).
pub const SCALAR_HALF_W: [Variant; 3] = crate::ops::half_variants_both(SCALAR);

/// The vec4 kernel with half rows and an f32 weight (same order).
pub const VEC4_HALF: [Variant; 3] = crate::ops::half_variants(VEC4);

/// The vec4 kernel with half rows and a weight of the rows' dtype (same order).
pub const VEC4_HALF_W: [Variant; 3] = crate::ops::half_variants_both(VEC4);

/// A built RMSNorm op.
#[derive(Clone, Debug)]
pub struct RmsNorm {
    kernel: Arc<Kernel>,
    vec4: Arc<Kernel>,
    wg: u32,
}

fn check_rows(name: &str, t: &Tensor, layout: Rows, rows: usize, d: usize) -> Result<()> {
    if rows > 0 && d > 0 {
        let last = layout.offset + (rows - 1) * layout.stride + d - 1;
        if last >= t.len() {
            return Err(Error::shape(
                name,
                format!(
                    "at least {} elements for {rows} rows of {d} at offset {} stride {}",
                    last + 1,
                    layout.offset,
                    layout.stride
                ),
                t.shape(),
            ));
        }
        if u32::try_from(last).is_err() {
            return Err(Error::Limit {
                what: format!("rmsnorm over tensor `{name}` of {} elements", t.len()),
                detail: "indices are 32-bit".into(),
            });
        }
    }
    Ok(())
}

/// The gate's (offset, row stride) after checking its dtype (x's), shape (rows, d), unit inner
/// stride and that it does not share y's buffer; errors name `z`.
fn z_layout(z: &View, act: DType, rows: usize, d: usize, y: &Tensor) -> Result<(u32, u32)> {
    z.expect("z", "(rows, d)", &[rows, d], act)?;
    let (off, st) = z.index_u32("z")?;
    if d > 1 && st[1] != 1 {
        return Err(Error::invalid(format!(
            "view `z` of shape {:?} has strides {:?}: rmsnorm needs a row's elements \
             consecutive (last stride 1)",
            z.shape(),
            z.strides()
        )));
    }
    if z.tensor().buffer() == y.buffer() {
        return Err(Error::invalid(
            "view `z` shares a buffer with `y`: rmsnorm writes y while it reads z",
        ));
    }
    let stride = if rows > 1 { st[0] } else { 0 };
    Ok((off, stride))
}

impl RmsNorm {
    /// Build (or fetch from the cache) the pipeline.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let wg = 256u32.min(gpu.limits().max_compute_invocations_per_workgroup.max(1));
        let wg: u32 = 1 << (31 - wg.leading_zeros()); // a power of two for the tree reduction
        Ok(Self {
            kernel: gpu.kernel(&SCALAR, &[("WG", wg as f64)])?,
            vec4: gpu.kernel(&VEC4, &[("WG", VEC4_WG as f64), ("TPR", VEC4_TPR as f64)])?,
            wg,
        })
    }

    /// Record y = rmsnorm(x)·w over `rows` rows of width len(w). y must not share x's buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        batch: &mut Batch,
        x: &Tensor,
        x_rows: Rows,
        w: &Tensor,
        y: &Tensor,
        y_rows: Rows,
        rows: usize,
        eps: f32,
    ) -> Result<()> {
        self.record_inner(batch, x, x_rows, None, w, w.len(), y, y_rows, rows, eps)
    }

    /// Record Mamba-2's gated, grouped norm (transformers' `MambaRMSNormGated` with
    /// n_groups = len(w) / `group_size`) over `rows` rows of width d = len(w): each row's
    /// `group_size` consecutive elements form a group normalised on its own, gated by
    /// `gate.z` (rows, d) before the norm (`norm_before_gate = false`: y = rmsnorm(x·silu(z))·w)
    /// or after it (y = rmsnorm(x)·w·silu(z)). x and y are rows as in [`RmsNorm::record`]; z has
    /// x's dtype and must not share y's buffer. `group_size` must divide d.
    /// Everything is validated first; on error nothing is recorded.
    #[allow(clippy::too_many_arguments)]
    pub fn record_gated(
        &self,
        batch: &mut Batch,
        x: &Tensor,
        x_rows: Rows,
        gate: &Gate,
        w: &Tensor,
        group_size: usize,
        y: &Tensor,
        y_rows: Rows,
        rows: usize,
        eps: f32,
    ) -> Result<()> {
        self.record_inner(
            batch,
            x,
            x_rows,
            Some(gate),
            w,
            group_size,
            y,
            y_rows,
            rows,
            eps,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn record_inner(
        &self,
        batch: &mut Batch,
        x: &Tensor,
        x_rows: Rows,
        gate: Option<&Gate>,
        w: &Tensor,
        group: usize,
        y: &Tensor,
        y_rows: Rows,
        rows: usize,
        eps: f32,
    ) -> Result<()> {
        let d = w.len();
        let act = x.dtype();
        act.expect_float("x")?;
        y.expect_dtype("y", act)?;
        if w.dtype() != DType::F32 && w.dtype() != act {
            return Err(Error::DType {
                name: "w".into(),
                expected: format!("f32 or {act} (x's dtype)"),
                got: w.dtype().to_string(),
            });
        }
        w.expect("w", "(d)", &[d], w.dtype())?;
        if d == 0 {
            return Err(Error::shape("w", "(d) with d > 0", w.shape()));
        }
        if group == 0 || d % group != 0 {
            return Err(Error::invalid(format!(
                "rmsnorm: group_size {group} must be > 0 and divide the row width d = {d} \
                 (len of `w`)"
            )));
        }
        if rows > 1 && (x_rows.stride < d || y_rows.stride < d) {
            return Err(Error::invalid(format!(
                "rmsnorm: row strides ({}, {}) smaller than the row width {d}",
                x_rows.stride, y_rows.stride
            )));
        }
        check_rows("x", x, x_rows, rows, d)?;
        check_rows("y", y, y_rows, rows, d)?;
        let (z_off, z_stride) = match gate {
            Some(g) => z_layout(g.z, act, rows, d, y)?,
            None => (0, 0),
        };
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(Error::invalid(format!(
                "rmsnorm: eps must be ≥ 0, got {eps}"
            )));
        }
        if x.buffer() == y.buffer() {
            return Err(Error::invalid("rmsnorm: y must not share a buffer with x"));
        }
        if rows == 0 {
            return Ok(());
        }
        let units = rows * (d / group);
        let units = u32::try_from(units).map_err(|_| Error::Limit {
            what: format!("rmsnorm over {units} groups"),
            detail: "more than 2^32 workgroups".into(),
        })?;
        let u = Uniforms {
            units,
            d: d as u32,
            x_off: x_rows.offset as u32,
            x_stride: x_rows.stride as u32,
            y_off: y_rows.offset as u32,
            y_stride: y_rows.stride as u32,
            eps,
            group: group as u32,
            _pad1: 0,
            z_off,
            z_stride,
            _pad: 0,
        };
        let aligned = [
            group,
            x_rows.offset,
            x_rows.stride,
            y_rows.offset,
            y_rows.stride,
            z_off as usize,
            z_stride as usize,
        ]
        .iter()
        .all(|v| v % 4 == 0);
        let gpu = batch.gpu();
        let storage = crate::ops::storage_flags(gpu, "x", act)?.union(crate::ops::storage_flags_b(
            gpu,
            "w",
            w.dtype(),
        )?);
        let gate_mode = match gate {
            None => 0,
            Some(g) if g.norm_before_gate => GATE_LAST,
            Some(_) => GATE_FIRST,
        } as f64;
        let plain = storage == Flags::NONE && gate_mode == 0.0;
        let (kernel, groups) = match (aligned, plain) {
            (true, true) => (self.vec4.clone(), units.div_ceil(VEC4_WG / VEC4_TPR)),
            (false, true) => (self.kernel.clone(), units),
            (true, false) => (
                gpu.kernel(
                    &SHADER.variant(storage.with(Flag::Vec4), INTERFACE),
                    &[
                        ("WG", VEC4_WG as f64),
                        ("TPR", VEC4_TPR as f64),
                        ("GATE", gate_mode),
                    ],
                )?,
                units.div_ceil(VEC4_WG / VEC4_TPR),
            ),
            (false, false) => (
                gpu.kernel(
                    &SHADER.variant(storage, INTERFACE),
                    &[("WG", self.wg as f64), ("GATE", gate_mode)],
                )?,
                units,
            ),
        };
        let z = gate.map_or(x, |g| g.z.tensor());
        batch.dispatch(
            &kernel,
            &u,
            &[x.into(), w.into(), y.into(), z.into()],
            groups,
        )
    }

    /// Bytes (x and w read, y written) and FLOPs (square-sum FMA, scale and weight multiply per
    /// element, a divide and a square root per row), all in f32.
    pub fn cost(rows: usize, d: usize) -> Cost {
        Self::cost_as(rows, d, DType::F32, DType::F32)
    }

    /// Bytes and FLOPs of [`RmsNorm::record_gated`]: [`RmsNorm::cost_as`] plus z read (at
    /// `act`'s width) and the silu gate (negate, exp, add, divide, multiply: 5 FLOPs) per
    /// element; a divide and a square root per group instead of per row.
    pub fn cost_gated(rows: usize, d: usize, group_size: usize, act: DType, w: DType) -> Cost {
        let base = Self::cost_as(rows, d, act, w);
        let (r, d64) = (rows as u64, d as u64);
        let groups = r * (d / group_size.max(1)) as u64;
        Cost {
            bytes: base.bytes + act.size() as u64 * r * d64,
            flops: base.flops + 5 * r * d64 + 3 * (groups - r),
        }
    }

    /// [`RmsNorm::cost`] with the rows (x and y) stored as `act` and the weight as `w`: bytes at
    /// their real width.
    pub fn cost_as(rows: usize, d: usize, act: DType, w: DType) -> Cost {
        let (r, d) = (rows as u64, d as u64);
        Cost {
            bytes: act.size() as u64 * 2 * r * d + w.size() as u64 * d,
            flops: 4 * r * d + 3 * r,
        }
    }
}
