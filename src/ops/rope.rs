//! `rope`: rotary position embedding (see `shaders/mla/rope.wgsl`). For tokens × heads vectors
//! of width d_R, pair i — (x\[2i\], x[2i+1]) when interleaved (DeepSeek's `rope_interleave`), else
//! (x\[i\], x[i + d_R/2]) — rotates by pos\[t\]·inv_freq\[i\], with cos and sin scaled by
//! `attn_factor`: (a, b) ← (a·cos − b·sin, b·cos + a·sin).
//!
//! The inverse frequencies (YaRN-corrected, as `MlaConfig::inv_freq` gives them) are computed
//! once on the host in f64 and uploaded as 64-bit fixed-point turns per position
//! ([`RopeTables`]); the shader reduces pos·freq modulo one turn in exact integer arithmetic, so
//! angles stay accurate (~1e-6 rad) at any position, unlike an f32 product (~1e-3 rad at 10⁴).
//! Positions come from a u32 tensor, one per token. Vectors are addressed by [`RopeLayout`] (offset, token stride, head
//! stride) in x and y.
//!
//! Vec4-aligned layouts (offsets and strides multiples of 4, d of 4 interleaved or 8 halves; all
//! MLA uses) run `shaders/mla/rope.wgsl` with `VEC4`: vec4 loads and stores, and one cos/sin per
//! (token, frequency) shared by 8 heads. Others run it without, one pair per invocation.
//!
//! Dtypes: x is f32, f16 or bf16 and y has x's dtype (an [`Error::DType`] naming y otherwise);
//! halves are widened on load, the angles, cos/sin and the rotation are f32, and y is rounded
//! to nearest even on store.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::Batch;
use crate::runtime::Gpu;
use crate::runtime::{DType, Tensor};
use crate::runtime::{Kernel, Shader};
use crate::shader::{wgsl, Access, Flag, Flags, KernelInterface, Variant};
use std::sync::Arc;

/// The WGSL body.
pub const SHADER: Shader = wgsl!("mla/rope");

const WG: u32 = 256;
const VEC4_WG: u32 = 64;
/// Heads per invocation of the vec4 kernel (they share one cos/sin evaluation).
const VEC4_HB: usize = 8;

/// Vector (t, h) starts at element `offset + t·token_stride + h·head_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RopeLayout {
    /// Element offset of vector (0, 0).
    pub offset: usize,
    /// Elements between tokens.
    pub token_stride: usize,
    /// Elements between heads.
    pub head_stride: usize,
}

impl RopeLayout {
    /// Contiguous (T, heads, d).
    pub fn contiguous(heads: usize, d: usize) -> Self {
        Self {
            offset: 0,
            token_stride: heads * d,
            head_stride: d,
        }
    }
}

/// Frequencies and flags of one rotary embedding, on the GPU.
#[derive(Clone, Debug)]
pub struct RopeTables {
    /// (d_R/2, 2) u32: inv_freq\[i\] / 2π as a binary fraction, bits 2^-1..2^-32 then 2^-33..2^-64.
    pub turns: Tensor,
    /// Rotary width d_R.
    pub d: usize,
    /// Rotate adjacent pairs (true) or halves (false).
    pub interleave: bool,
    /// Scale of cos and sin (YaRN mscale ratio; 1 without YaRN).
    pub attn_factor: f32,
}

impl RopeTables {
    /// Upload `inv_freq` (d_R/2 values).
    pub fn new(gpu: &Gpu, inv_freq: &[f64], interleave: bool, attn_factor: f64) -> Result<Self> {
        if inv_freq.is_empty() {
            return Err(Error::invalid("rope: need at least one frequency"));
        }
        let mut words = Vec::with_capacity(2 * inv_freq.len());
        for &f in inv_freq {
            if !(f.is_finite() && f >= 0.0) {
                return Err(Error::invalid(format!(
                    "rope: inverse frequencies must be finite and ≥ 0, got {f}"
                )));
            }
            words.extend(turns_fixed_point(f));
        }
        Ok(Self {
            turns: gpu.upload_u32(&[inv_freq.len(), 2], &words)?,
            d: 2 * inv_freq.len(),
            interleave,
            attn_factor: attn_factor as f32,
        })
    }
}

/// inv_freq / 2π modulo 1 as a 64-bit binary fraction [bits 2^-1..2^-32, bits 2^-33..2^-64]
/// (whole turns per position do not change the angle).
pub fn turns_fixed_point(inv_freq: f64) -> [u32; 2] {
    let turns = inv_freq / (2.0 * std::f64::consts::PI);
    let frac = turns - turns.floor();
    let hi = (frac * 4294967296.0).floor();
    let lo = ((frac * 4294967296.0 - hi) * 4294967296.0).floor();
    [hi as u32, lo.min(4294967295.0) as u32]
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    tokens: u32,
    heads: u32,
    d: u32,
    _pad0: u32,
    x_off: u32,
    x_ts: u32,
    x_hs: u32,
    y_off: u32,
    y_ts: u32,
    y_hs: u32,
    attn_factor: f32,
    pairs: u32,
}

/// What both kernels are passed: their `Uniforms`, then x, positions, the frequency turns and y.
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[
        ("x", Access::Read),
        ("positions", Access::Read),
        ("turns", Access::Read),
        ("y", Access::ReadWrite),
    ],
};

/// The scalar kernel (one pair per invocation).
pub const SCALAR: Variant = SHADER.variant(Flags::NONE, INTERFACE);

/// The vec4 fast path, used when every offset and stride is a multiple of 4 and d of 4
/// (interleaved) or 8 (halves).
pub const VEC4: Variant = SHADER.variant(Flags::of(&[Flag::Vec4]), INTERFACE);

/// The scalar kernel with half x and y, in [`crate::ops::HALF_STORAGE`] order: f16 in u32
/// words, native f16, bf16.
pub const SCALAR_HALF: [Variant; 3] = crate::ops::half_variants(SCALAR);

/// The vec4 kernel with half x and y (same order).
pub const VEC4_HALF: [Variant; 3] = crate::ops::half_variants(VEC4);

/// A built rope op.
#[derive(Clone, Debug)]
pub struct Rope {
    kernel: Arc<Kernel>,
    vec4: Arc<Kernel>,
}

fn check_layout(
    name: &str,
    t: &Tensor,
    l: RopeLayout,
    tokens: usize,
    heads: usize,
    d: usize,
) -> Result<()> {
    if tokens > 0 && heads > 0 {
        let last = l.offset + (tokens - 1) * l.token_stride + (heads - 1) * l.head_stride + d - 1;
        if last >= t.len() {
            return Err(Error::shape(
                name,
                format!(
                    "at least {} elements for {tokens} tokens × {heads} heads × {d} (offset {}, strides {}, {})",
                    last + 1,
                    l.offset,
                    l.token_stride,
                    l.head_stride
                ),
                t.shape(),
            ));
        }
        if u32::try_from(last).is_err() {
            return Err(Error::Limit {
                what: format!("rope over tensor `{name}`"),
                detail: "indices are 32-bit".into(),
            });
        }
    }
    Ok(())
}

impl Rope {
    /// Build (or fetch from the cache) the pipeline.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(Self {
            kernel: gpu.kernel(&SCALAR, &[("WG", WG as f64)])?,
            vec4: gpu.kernel(&VEC4, &[("WG", VEC4_WG as f64), ("HB", VEC4_HB as f64)])?,
        })
    }

    /// Record y = rope(x) for `tokens` × `heads` vectors of width `tables.d`, token t at
    /// `positions[t]` (a (T) u32 tensor). y must not share x's buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        batch: &mut Batch,
        x: &Tensor,
        x_layout: RopeLayout,
        y: &Tensor,
        y_layout: RopeLayout,
        positions: &Tensor,
        tables: &RopeTables,
        tokens: usize,
        heads: usize,
    ) -> Result<()> {
        let d = tables.d;
        positions.expect("positions", "(T)", &[tokens], DType::U32)?;
        tables
            .turns
            .expect("turns", "(d_R/2, 2)", &[d / 2, 2], DType::U32)?;
        x.dtype().expect_float("x")?;
        y.expect_dtype("y", x.dtype())?;
        check_layout("x", x, x_layout, tokens, heads, d)?;
        check_layout("y", y, y_layout, tokens, heads, d)?;
        if x.buffer() == y.buffer() {
            return Err(Error::invalid("rope: y must not share a buffer with x"));
        }
        let pairs = tokens * heads * (d / 2);
        if pairs == 0 {
            return Ok(());
        }
        let pairs = u32::try_from(pairs).map_err(|_| Error::Limit {
            what: format!("rope over {pairs} pairs"),
            detail: "more than 2^32 invocations".into(),
        })?;
        let per_item = if tables.interleave { 4 } else { 8 };
        let aligned = d % per_item == 0
            && [
                x_layout.offset,
                x_layout.token_stride,
                x_layout.head_stride,
                y_layout.offset,
                y_layout.token_stride,
                y_layout.head_stride,
            ]
            .iter()
            .all(|v| v % 4 == 0);
        // The vec4 kernel has one invocation per token, chunk of VEC4_HB heads and 4 (interleaved)
        // or 8 (halves) elements of the vector.
        let gpu = batch.gpu();
        let storage = crate::ops::storage_flags(gpu, "x", x.dtype())?;
        // The pairing is a pipeline constant (the op's own pipelines are the halves').
        let interleave = ("INTERLEAVE", tables.interleave as u32 as f64);
        let plain = storage == Flags::NONE && !tables.interleave;
        let (kernel, items, wg) = if aligned {
            let items = tokens * heads.div_ceil(VEC4_HB) * (d / per_item);
            let kernel = if plain {
                self.vec4.clone()
            } else {
                gpu.kernel(
                    &SHADER.variant(storage.with(Flag::Vec4), INTERFACE),
                    &[("WG", VEC4_WG as f64), ("HB", VEC4_HB as f64), interleave],
                )?
            };
            (kernel, items as u32, VEC4_WG)
        } else {
            let kernel = if plain {
                self.kernel.clone()
            } else {
                gpu.kernel(
                    &SHADER.variant(storage, INTERFACE),
                    &[("WG", WG as f64), interleave],
                )?
            };
            (kernel, pairs, WG)
        };
        let u = Uniforms {
            tokens: tokens as u32,
            heads: heads as u32,
            d: d as u32,
            _pad0: 0,
            x_off: x_layout.offset as u32,
            x_ts: x_layout.token_stride as u32,
            x_hs: x_layout.head_stride as u32,
            y_off: y_layout.offset as u32,
            y_ts: y_layout.token_stride as u32,
            y_hs: y_layout.head_stride as u32,
            attn_factor: tables.attn_factor,
            pairs: items,
        };
        batch.dispatch(
            &kernel,
            &u,
            &[x.into(), positions.into(), (&tables.turns).into(), y.into()],
            items.div_ceil(wg),
        )
    }

    /// Bytes (x read, y written, one position per token, the frequency table) and FLOPs (per
    /// pair: angle, cos, sin, two scale multiplies, four multiplies and two adds; the integer
    /// angle reduction is not counted).
    pub fn cost(tokens: usize, heads: usize, d: usize) -> Cost {
        Self::cost_as(tokens, heads, d, DType::F32)
    }

    /// [`Rope::cost`] with x and y stored as `dtype` (bytes at its real width; the positions and
    /// the 8-byte turns per frequency stay u32).
    pub fn cost_as(tokens: usize, heads: usize, d: usize, dtype: DType) -> Cost {
        let (t, h, d) = (tokens as u64, heads as u64, d as u64);
        Cost {
            bytes: dtype.size() as u64 * 2 * t * h * d + 4 * (t + d),
            flops: t * h * (d / 2) * 11,
        }
    }
}
