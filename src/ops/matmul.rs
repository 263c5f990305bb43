//! `matmul`: y[g, m, n] = Σ_k x[g, m, k] · w(g, n, k) (+ bias\[n\]), a register-blocked matrix
//! product with vec4 loads (`shaders/mla/matmul.wgsl` with `VEC4`) when the layout is
//! vec4-aligned, and a tiled product with workgroup-memory tiles (the same body without) otherwise.
//!
//! The layout is strided ([`MatmulDims`]): w(g, n, k) = W[n, k] for a PyTorch `Linear` weight
//! (row-major [out, in], `w_trans`), or W[k, n]; every operand has an element offset, a stride
//! between batch entries g and between rows. G = 1 gives the projections y = x·Wᵀ + b; G = H with
//! head strides gives MLA's absorb products q_lat\[h\] = W_UK\[h\]ᵀ q_nope\[h\] and
//! o\[h\] = W_UV\[h\] o_lat\[h\] straight out of `kv_b_proj` without copies.
//!
//! Vec4 path (K, every x and w offset and stride, and N when W is [K, N], multiples of 4 — every
//! MLA projection and absorb product): each invocation computes RM rows × 8 columns (RM = 1, 2
//! or 4 for M ≤ 4, else 8) in named vec4 accumulators, walking K in vec4 steps with no
//! workgroup memory and no barrier; in decode every vec4 of W is loaded exactly once. This is
//! the shape that suits Mesa's lavapipe, where each storage/workgroup load instruction is a loop
//! over the 8 SIMD lanes (so load instructions, not bytes or FMAs, set the time) and each
//! barrier a coroutine switch per 8 lanes; measured there (release, same-run ceilings) it moved
//! decode projections from ~2% to 60–100% of the memory roofline and M = 64…256 from 4–8% to
//! ~35–65% of the FMA ceiling (the remaining gap: 16 vec4 load instructions per 256 FMAs).
//!
//! Subgroup tile for CPU devices ([`VEC4_SUBGROUP`]): on a device of type CPU whose subgroups
//! are exactly 8 lanes (Mesa's lavapipe), `Linear`-layout products (W [N, K]) with
//! M ≥ [`SUBGROUP_MIN_M`] run a tile of 32 or 64 rows ([`prefill_rows`]) × 8 columns per
//! invocation, and those with M ≤ [`SUBGROUP_MAX_DECODE_M`] one of M rows (1, 2 or 4: M rounded
//! up to a power of two, so M = 1 does no FMAs on clamped copies of its row) × 4 columns, in a
//! workgroup of one subgroup: each lane loads one of every 8 rows of x and the other lanes take
//! it by `subgroupBroadcast`, so x costs one load instruction per lane and 8 rows instead of one
//! per row, and with 32 or 64 rows the lane loop of each w load serves 32 or 64 rows instead of
//! 8. These bodies are several times the plain tile's and slower to build on lavapipe, so M
//! between the two bounds keeps the plain tile (and so does every device without subgroups, and
//! every GPU, where x loads shared by a subgroup are already one transaction).
//!
//! Weights may be stored as f32, f16 or bf16 (`w`'s dtype picks the storage flags, see
//! [`crate::ops::storage_flags`]); the activations x, and y with x's dtype, may independently be
//! f32, f16 or bf16 (the kernel's second stored role, [`crate::ops::storage_flags_b`]); bias is
//! f32; the products accumulate in f32 and y is rounded to nearest even on store. In decode the
//! weights are the bytes that move, so half weights halve the traffic; half activations halve
//! them in prefill. A y of another dtype than x is an [`Error::DType`] naming y.
//!
//! Fallback tiles are picked from M: 4×64 tiles for M ≤ 4 (decode), 16×64 for M ≤ 16, 64×64 with
//! 4×4 outputs per invocation otherwise, so the weight is read once per column tile in decode.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::Gpu;
use crate::runtime::{Batch, Binding};
use crate::runtime::{DType, Tensor};
use crate::runtime::{Kernel, Shader};
use crate::shader::{wgsl, Access, Flag, Flags, KernelInterface, Variant};
use std::sync::Arc;

/// The WGSL body.
pub const SHADER: Shader = wgsl!("mla/matmul");

pub use crate::spec::matmul::MatmulDims;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    g: u32,
    m: u32,
    n: u32,
    k: u32,
    x_off: u32,
    x_gs: u32,
    x_rs: u32,
    w_off: u32,
    w_gs: u32,
    w_rs: u32,
    w_trans: u32,
    y_off: u32,
    y_gs: u32,
    y_rs: u32,
    flags: u32,
    tiles_m: u32,
    tiles_n: u32,
    groups: u32,
    cb: u32,
    _pad1: u32,
}

/// What both kernels are passed: their `Uniforms`, then x, w, bias (a 1-element dummy without
/// one) and y.
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[
        ("x", Access::Read),
        ("w", Access::Read),
        ("bias", Access::Read),
        ("y", Access::ReadWrite),
    ],
};

/// The tiled fallback for layouts that are not vec4-aligned.
pub const TILED: Variant = SHADER.variant(Flags::NONE, INTERFACE);

/// The vec4 fast path, used when every operand is vec4-aligned.
pub const VEC4: Variant = SHADER.variant(Flags::of(&[Flag::Vec4]), INTERFACE);

/// The vec4 path's tile for a CPU device with 8-wide subgroups (lavapipe): each invocation of a
/// one-subgroup workgroup computes 32 or 64 rows × 8 columns (prefill) or 1, 2 or 4 rows × 4
/// columns (decode, [`SUBGROUP_DECODE_COLUMNS`]), every x row loaded by one lane and broadcast to
/// the others.
pub const VEC4_SUBGROUP: Variant =
    SHADER.variant(Flags::of(&[Flag::Vec4, Flag::Subgroup]), INTERFACE);

/// [`TILED`] with half weights: f16 in u32 words, native f16, bf16 ([`crate::ops::HALF_STORAGE`]).
pub const TILED_HALF: [Variant; 3] = crate::ops::half_variants(TILED);

/// [`VEC4`] with half weights, as [`TILED_HALF`].
pub const VEC4_HALF: [Variant; 3] = crate::ops::half_variants(VEC4);

/// [`TILED`] with half activations (x, y): for each activation dtype (f16 in u32 words, native
/// f16, bf16) every weight dtype a device pairs it with (f32, f16 stored as the activations'
/// f16 is, bf16).
pub const TILED_ACT: [Variant; 10] = crate::ops::half_b_variants(TILED);

/// [`VEC4`] with half activations, as [`TILED_ACT`].
pub const VEC4_ACT: [Variant; 10] = crate::ops::half_b_variants(VEC4);

/// [`VEC4_SUBGROUP`] with half weights, as [`TILED_HALF`].
pub const VEC4_SUBGROUP_HALF: [Variant; 3] = crate::ops::half_variants(VEC4_SUBGROUP);

/// [`VEC4_SUBGROUP`] with half activations, as [`TILED_ACT`].
pub const VEC4_SUBGROUP_ACT: [Variant; 10] = crate::ops::half_b_variants(VEC4_SUBGROUP);

/// The smallest M that takes the 32-row [`VEC4_SUBGROUP`] tile where the device allows it (one
/// row tile; below it most of the tile's rows would be clamped copies); smaller M above the
/// decode bound runs the plain tile.
pub const SUBGROUP_MIN_M: usize = 32;

/// Rows per invocation of the [`VEC4_SUBGROUP`] prefill tile for M ≥ [`SUBGROUP_MIN_M`]: 64 or
/// 32. The 64-row tile spreads each lane's w loads over twice the rows, about a tenth less time
/// per row on lavapipe, so it runs wherever it computes at most a tenth more rows (its clamped
/// last tile included) than the 32-row one would.
pub fn prefill_rows(m: usize) -> usize {
    if m.next_multiple_of(64) * 10 <= m.next_multiple_of(32) * 11 {
        64
    } else {
        32
    }
}

/// The largest M that takes the [`VEC4_SUBGROUP`] decode tile (1, 2 or 4 rows).
pub const SUBGROUP_MAX_DECODE_M: usize = 4;

/// Columns per lane of the [`VEC4_SUBGROUP`] decode tile (32 per workgroup of 8 lanes; the
/// prefill tile takes 8). In decode every weight is loaded once whatever the split, so narrower
/// workgroups cost no loads: a lane holds one transposed 4 × 4 block of W per step instead of
/// two and a workgroup reads 32 rows of W at a time instead of 64 (1.07–1.10× on lavapipe at
/// K = 2048, N = 2048, where the workgroups were already many; no change at K = 768), and a short
/// N gives the CPU's threads twice the workgroups to share (N = 576: 18 instead of 9, of which
/// one thread ran 5).
pub const SUBGROUP_DECODE_COLUMNS: usize = 4;

/// Rows per invocation of the [`VEC4_SUBGROUP`] tile for `d` on `gpu`, or None where the plain
/// vec4 tile runs: only a CPU device (its SIMD lanes make every load a loop over the lanes, so
/// sharing x by broadcasts pays) with subgroups of exactly 8 invocations (the tile's workgroup
/// is one subgroup), W as [N, K] (the projections; the shape it was tuned on), and M ≥
/// [`SUBGROUP_MIN_M`] (32 or 64 rows, [`prefill_rows`]) or M ≤ [`SUBGROUP_MAX_DECODE_M`] (M
/// rounded up to a power of two).
fn subgroup_rows(gpu: &Gpu, d: &MatmulDims) -> Option<u32> {
    let info = gpu.adapter_info();
    let device = gpu.has_subgroups()
        && info.device_type == wgpu::DeviceType::Cpu
        && info.subgroup_min_size == 8
        && info.subgroup_max_size == 8;
    if !device || !d.w_trans {
        None
    } else if d.m >= SUBGROUP_MIN_M {
        Some(prefill_rows(d.m) as u32)
    } else if d.m <= SUBGROUP_MAX_DECODE_M {
        Some(d.m.next_power_of_two() as u32)
    } else {
        None
    }
}

#[derive(Clone, Copy, Debug)]
struct Tile {
    bm_t: u32,
    bn_t: u32,
    rm: u32,
    rn: u32,
    bk: u32,
}

impl Tile {
    fn bm(&self) -> u32 {
        self.bm_t * self.rm
    }
    fn bn(&self) -> u32 {
        self.bn_t * self.rn
    }
}

const TILES: [Tile; 3] = [
    Tile {
        bm_t: 4,
        bn_t: 64,
        rm: 1,
        rn: 1,
        bk: 16,
    },
    Tile {
        bm_t: 8,
        bn_t: 32,
        rm: 2,
        rn: 2,
        bk: 16,
    },
    Tile {
        bm_t: 16,
        bn_t: 16,
        rm: 4,
        rn: 4,
        bk: 16,
    },
];

/// Rows per invocation of the vec4 path for `d`, or None when a layout is not vec4-aligned
/// (K, and every x and w offset and stride, and N when W is [K, N], multiples of 4; K > 0).
fn vec4_rows(d: &MatmulDims) -> Option<u32> {
    let aligned = d.k > 0
        && [d.k, d.x_off, d.x_gs, d.x_rs, d.w_off, d.w_gs, d.w_rs]
            .iter()
            .all(|v| v % 4 == 0)
        && (d.w_trans || d.n % 4 == 0);
    aligned.then_some(match d.m {
        1 => 1,
        2 => 2,
        3 | 4 => 4,
        _ => 8,
    })
}

/// A built matmul op (three tile shapes).
#[derive(Clone, Debug)]
pub struct Matmul {
    kernels: Vec<(Tile, Arc<Kernel>)>,
    no_bias: Tensor,
}

fn to_u32(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit {
        what: format!("matmul {what} = {v}"),
        detail: "indices are 32-bit".into(),
    })
}

fn check_extent(
    name: &str,
    t: &Tensor,
    last: Option<usize>,
    dims: &MatmulDims,
    float: bool,
) -> Result<()> {
    if float {
        t.dtype().expect_float(name)?;
    } else {
        t.expect_dtype(name, DType::F32)?;
    }
    if let Some(last) = last {
        if last >= t.len() {
            return Err(Error::shape(
                name,
                format!(
                    "at least {} elements for matmul layout G={} M={} N={} K={} (largest index {last})",
                    last + 1,
                    dims.g,
                    dims.m,
                    dims.n,
                    dims.k
                ),
                t.shape(),
            ));
        }
        to_u32(name, last)?;
    }
    Ok(())
}

/// The pipeline constants of the tiled kernel for tile `t`.
fn tile_constants(t: &Tile) -> [(&'static str, f64); 6] {
    [
        ("WG", (t.bm_t * t.bn_t) as f64),
        ("BM_T", t.bm_t as f64),
        ("BN_T", t.bn_t as f64),
        ("RM", t.rm as f64),
        ("RN", t.rn as f64),
        ("BK", t.bk as f64),
    ]
}

impl Matmul {
    /// Build (or fetch from the cache) the pipelines.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let mut kernels = Vec::new();
        for t in TILES {
            let k = gpu.kernel(&TILED, &tile_constants(&t))?;
            kernels.push((t, k));
        }
        Ok(Self {
            kernels,
            no_bias: gpu.upload_f32(&[1], &[0.0])?,
        })
    }

    /// Record y = x·op(w) (+ bias) with the layout `dims`. `bias` has N elements. The y elements
    /// of different (g, m, n) must not overlap (the op does not check) and y must not share a
    /// buffer with x, w or bias.
    pub fn record(
        &self,
        batch: &mut Batch,
        dims: &MatmulDims,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
    ) -> Result<()> {
        self.record_with(batch, dims, x, w, bias, y, false)
    }

    /// Record y += x·op(w) (+ bias): the product is added to what y holds (a model's residual
    /// stream, updated in place without a separate add). Layout rules as [`Self::record`].
    pub fn record_accumulate(
        &self,
        batch: &mut Batch,
        dims: &MatmulDims,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
    ) -> Result<()> {
        self.record_with(batch, dims, x, w, bias, y, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn record_with(
        &self,
        batch: &mut Batch,
        dims: &MatmulDims,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
        accumulate: bool,
    ) -> Result<()> {
        let flags = bias.is_some() as u32 | (accumulate as u32) << 1;
        let d = dims;
        let empty = d.is_empty();
        let last_x = (!empty && d.k > 0).then(|| d.x_index(d.g - 1, d.m - 1, d.k - 1));
        let last_w = (!empty && d.k > 0).then(|| {
            d.w_off
                + (d.g - 1) * d.w_gs
                + if d.w_trans {
                    (d.n - 1) * d.w_rs + d.k - 1
                } else {
                    (d.k - 1) * d.w_rs + d.n - 1
                }
        });
        let last_y = (!empty).then(|| d.y_index(d.g - 1, d.m - 1, d.n - 1));
        check_extent("x", x, last_x, d, true)?;
        check_extent("w", w, last_w, d, true)?;
        y.expect_dtype("y", x.dtype())?;
        check_extent("y", y, last_y, d, true)?;
        let storage = crate::ops::storage_flags(batch.gpu(), "w", w.dtype())?
            .union(crate::ops::storage_flags_b(batch.gpu(), "x", x.dtype())?);
        if let Some(b) = bias {
            b.expect("bias", "(N)", &[d.n], DType::F32)?;
        }
        for (name, t) in [("x", Some(x)), ("w", Some(w)), ("bias", bias)] {
            if let Some(t) = t {
                if t.buffer() == y.buffer() {
                    return Err(Error::invalid(format!(
                        "matmul: y must not share a buffer with {name}"
                    )));
                }
            }
        }
        if empty {
            return Ok(());
        }
        if let Some(rm) = vec4_rows(d) {
            let sub = subgroup_rows(batch.gpu(), d);
            return self.record_vec4(
                batch,
                d,
                sub.unwrap_or(rm),
                sub.is_some(),
                storage,
                x,
                w,
                bias,
                y,
                flags,
            );
        }
        let (tile, kernel) = if d.m <= 4 {
            &self.kernels[0]
        } else if d.m <= 16 {
            &self.kernels[1]
        } else {
            &self.kernels[2]
        };
        let half_kernel;
        let kernel = if storage == Flags::NONE {
            kernel
        } else {
            half_kernel = batch
                .gpu()
                .kernel(&SHADER.variant(storage, INTERFACE), &tile_constants(tile))?;
            &half_kernel
        };
        let tiles_m = (d.m as u32).div_ceil(tile.bm());
        let tiles_n = to_u32("N", d.n)?.div_ceil(tile.bn());
        let groups = (d.g as u64) * tiles_m as u64 * tiles_n as u64;
        let groups = u32::try_from(groups).map_err(|_| Error::Limit {
            what: format!("matmul of {groups} tiles"),
            detail: "more than 2^32 workgroups".into(),
        })?;
        let u = Uniforms {
            g: to_u32("G", d.g)?,
            m: to_u32("M", d.m)?,
            n: to_u32("N", d.n)?,
            k: to_u32("K", d.k)?,
            x_off: to_u32("x_off", d.x_off)?,
            x_gs: to_u32("x_gs", d.x_gs)?,
            x_rs: to_u32("x_rs", d.x_rs)?,
            w_off: to_u32("w_off", d.w_off)?,
            w_gs: to_u32("w_gs", d.w_gs)?,
            w_rs: to_u32("w_rs", d.w_rs)?,
            w_trans: d.w_trans as u32,
            y_off: to_u32("y_off", d.y_off)?,
            y_gs: to_u32("y_gs", d.y_gs)?,
            y_rs: to_u32("y_rs", d.y_rs)?,
            flags,
            tiles_m,
            tiles_n,
            groups,
            cb: 0,
            _pad1: 0,
        };
        let bias = bias.unwrap_or(&self.no_bias);
        batch.dispatch(
            kernel,
            &u,
            &[x.into(), w.into(), Binding::from(bias), y.into()],
            groups,
        )
    }

    /// The vec4 path: one invocation per block of `rm` rows × 4·NV columns, K walked in vec4s
    /// (`subgroup`: the [`VEC4_SUBGROUP`] tile, workgroups of one subgroup).
    #[allow(clippy::too_many_arguments)]
    fn record_vec4(
        &self,
        batch: &mut Batch,
        d: &MatmulDims,
        rm: u32,
        subgroup: bool,
        storage: Flags,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
        flags: u32,
    ) -> Result<()> {
        // The subgroup decode tile takes 4 columns per lane (see `SUBGROUP_DECODE_COLUMNS`).
        let nv: u32 = if subgroup {
            if rm as usize <= SUBGROUP_MAX_DECODE_M {
                SUBGROUP_DECODE_COLUMNS as u32 / 4
            } else {
                2
            }
        } else if d.n > 4 {
            2
        } else {
            1
        };
        let tiles_m = (d.m as u32).div_ceil(rm);
        let tiles_n = to_u32("N", d.n)?.div_ceil(4 * nv);
        let items = (d.g as u64) * tiles_m as u64 * tiles_n as u64;
        // The subgroup tile's workgroup is one subgroup of 8 lanes on the same rows.
        let wg: u32 = if subgroup {
            8
        } else if items >= 1024 {
            64
        } else {
            16
        };
        // Column blocks per workgroup: all of them for a single row block (decode), else 8 so
        // that a workgroup covers wg/8 row blocks of the same columns (w reused from cache).
        let cb: u32 = if tiles_m == 1 { wg } else { 8 };
        let rb = wg / cb;
        let groups = d.g as u64 * tiles_m.div_ceil(rb) as u64 * tiles_n.div_ceil(cb) as u64;
        let groups = u32::try_from(groups).map_err(|_| Error::Limit {
            what: format!("matmul of {items} output blocks"),
            detail: "more than 2^32 workgroups".into(),
        })?;
        let base = if subgroup { VEC4_SUBGROUP } else { VEC4 };
        let kernel = batch.gpu().kernel(
            &SHADER.variant(base.flags.union(storage), INTERFACE),
            &[
                ("WG", wg as f64),
                ("RM", rm as f64),
                ("NV", nv as f64),
                ("W_TRANS", d.w_trans as u32 as f64),
            ],
        )?;
        let u = Uniforms {
            g: to_u32("G", d.g)?,
            m: to_u32("M", d.m)?,
            n: to_u32("N", d.n)?,
            k: to_u32("K", d.k)?,
            x_off: to_u32("x_off", d.x_off)?,
            x_gs: to_u32("x_gs", d.x_gs)?,
            x_rs: to_u32("x_rs", d.x_rs)?,
            w_off: to_u32("w_off", d.w_off)?,
            w_gs: to_u32("w_gs", d.w_gs)?,
            w_rs: to_u32("w_rs", d.w_rs)?,
            w_trans: d.w_trans as u32,
            y_off: to_u32("y_off", d.y_off)?,
            y_gs: to_u32("y_gs", d.y_gs)?,
            y_rs: to_u32("y_rs", d.y_rs)?,
            flags,
            tiles_m,
            tiles_n,
            groups,
            cb,
            _pad1: 0,
        };
        let bias = bias.unwrap_or(&self.no_bias);
        batch.dispatch(
            &kernel,
            &u,
            &[x.into(), w.into(), Binding::from(bias), y.into()],
            groups,
        )
    }

    /// Record a PyTorch `Linear`: y (…, N) = x (…, K) · Wᵀ (+ bias) with `w` of shape [N, K];
    /// x and y have the same leading dimensions and dtype.
    pub fn record_linear(
        &self,
        batch: &mut Batch,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
    ) -> Result<()> {
        let (dims, y_shape) =
            MatmulDims::linear_from_shapes(x.shape(), w.shape(), bias.map(|b| b.shape()))?;
        x.dtype().expect_float("x")?;
        y.expect("y", "(…, N) with x's leading dims", &y_shape, x.dtype())?;
        self.record(batch, &dims, x, w, bias, y)
    }

    /// Bytes (x, w and bias read once, y written once; w at the width of `w_dtype`, the rest
    /// f32) and FLOPs (2·G·M·N·K, plus G·M·N for a bias) of a product.
    pub fn cost(dims: &MatmulDims, bias: bool, w_dtype: DType) -> Cost {
        Self::cost_as(dims, bias, w_dtype, DType::F32)
    }

    /// [`Matmul::cost`] with the activations x and y stored as `act` (bias stays f32).
    pub fn cost_as(dims: &MatmulDims, bias: bool, w_dtype: DType, act: DType) -> Cost {
        let (g, m, n, k) = (dims.g as u64, dims.m as u64, dims.n as u64, dims.k as u64);
        let w_copies = if dims.w_gs == 0 { 1 } else { g };
        let wb = w_dtype.size() as u64;
        let ab = act.size() as u64;
        Cost {
            bytes: ab * (g * m * k + g * m * n)
                + 4 * if bias { n } else { 0 }
                + wb * w_copies * n * k,
            flops: 2 * g * m * n * k + if bias { g * m * n } else { 0 },
        }
    }
}
