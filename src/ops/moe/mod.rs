//! `moe`: DeepSeek-V2/V3's mixture of experts on the GPU, y (T, hidden) =
//! Σ_j w_j · expert_{e_j}(x) + shared(x) over T packed tokens, with no host round trip: a fixed
//! number of dispatches in one [`Batch`] whatever the routing.
//!
//! 1. router: logits (T, E) = x · gateᵀ ([`Matmul`]), then `shaders/lm/moe_route.wgsl` (one
//!    invocation per token: softmax or sigmoid, group selection, top-k, weights) writes (T, k)
//!    expert ids and weights;
//! 2. grouping: `moe_plan.wgsl` (one workgroup) counts the rows of each expert, scans them into
//!    offsets and lists each expert's (token, slot) assignments in token order, so the products
//!    below are bit-reproducible;
//! 3. experts: `moe_expert.wgsl` reads x rows through each expert's list and computes
//!    h = silu(gate·x) ⊙ up·x in one pass, then the down projection of h; a tile of rows belongs
//!    to one expert, whose weight slice the workgroup picks. One dispatch of each per expert
//!    range ([`ExpertGroup`]): all experts' stacked weights exceed a storage binding at real
//!    sizes (V2-Lite: 64 × 1408 × 2048 bf16 = 369 MB per projection, over a 128 MiB binding), so
//!    [`MoeWeights::upload`] stacks them in ranges that fit and each dispatch is sized for its
//!    range's worst case (workgroups past its routed rows exit at once; on a CPU device the grid
//!    is interleaved over its threads, `common/grid`, so that idle tail and the real tiles are
//!    spread over every thread instead of the tail landing on one);
//! 4. combine: `moe_combine.wgsl` writes y\[t\] = Σ_j w_j · o\[row of (t, j)\], then the shared
//!    expert (a dense SwiGLU over every token: the expert kernel's dense mode and an
//!    accumulating matmul) is added into y.
//!
//! x and y are f32 (the residual stream); expert weights f32, f16 or bf16 (one dtype for all,
//! the kernels' `storage` role); math f32. hidden and moe_intermediate_size must be multiples
//! of 4 (vec4 loads; true of every DeepSeek model). Routing ties: largest first, then the
//! lowest expert index, as the CPU reference ([`crate::reference::moe`]).

mod weights;

pub use crate::spec::moe::{MoeConfig, MoeHostWeights, Scoring, SwigluWeights, TopkMethod};
pub use weights::{experts_per_binding, ExpertGroup, MoeWeights, SwigluMlp};

/// Whether an op overwrites its output or adds into it (a residual stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// y = f(x).
    Write,
    /// y += f(x).
    Accumulate,
}

use crate::error::{Error, Result};
use crate::ops::matmul::{Matmul, MatmulDims};
use crate::ops::{storage_flags, Cost};
use crate::runtime::{Batch, DType, Gpu, Kernel, Shader, Tensor};
use crate::shader::{wgsl, Access, Flag, Flags, KernelInterface, Variant};
use std::sync::Arc;

/// The routing body.
pub const ROUTE_SHADER: Shader = wgsl!("lm/moe_route");
/// The grouping body.
pub const PLAN_SHADER: Shader = wgsl!("lm/moe_plan");
/// The expert-product body.
pub const EXPERT_SHADER: Shader = wgsl!("lm/moe_expert");
/// The combine body.
pub const COMBINE_SHADER: Shader = wgsl!("lm/moe_combine");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RouteUniforms {
    t: u32,
    e: u32,
    k: u32,
    scoring: u32,
    method: u32,
    n_group: u32,
    topk_group: u32,
    norm: u32,
    scale: f32,
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PlanUniforms {
    assignments: u32,
    e: u32,
    rm: u32,
    _pad0: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ExpertUniforms {
    _pad0: u32,
    n: u32,
    k: u32,
    rows: u32,
    topk: u32,
    n_e: u32,
    e0: u32,
    e1: u32,
    tiles_n: u32,
    groups: u32,
    interleave: u32,
    _pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CombineUniforms {
    n: u32,
    hidden: u32,
    topk: u32,
    row_of: u32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

/// The routing kernel's interface: logits, bias, ids, weights.
pub const ROUTE_INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<RouteUniforms>(),
    bindings: &[
        ("logits", Access::Read),
        ("bias", Access::Read),
        ("ids", Access::ReadWrite),
        ("weights", Access::ReadWrite),
    ],
};

/// The grouping kernel's interface: ids, plan.
pub const PLAN_INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<PlanUniforms>(),
    bindings: &[("ids", Access::Read), ("plan", Access::ReadWrite)],
};

/// The expert kernel's interface: plan, x, wa, wb, out.
pub const EXPERT_INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<ExpertUniforms>(),
    bindings: &[
        ("plan", Access::Read),
        ("x", Access::Read),
        ("wa", Access::Read),
        ("wb", Access::Read),
        ("out", Access::ReadWrite),
    ],
};

/// The combine kernel's interface: plan, weights, o, y.
pub const COMBINE_INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<CombineUniforms>(),
    bindings: &[
        ("plan", Access::Read),
        ("weights", Access::Read),
        ("o", Access::Read),
        ("y", Access::ReadWrite),
    ],
};

/// The routing kernel.
pub const ROUTE: Variant = ROUTE_SHADER.variant(Flags::NONE, ROUTE_INTERFACE);
/// The grouping kernel.
pub const PLAN: Variant = PLAN_SHADER.variant(Flags::NONE, PLAN_INTERFACE);
/// The expert kernel with f32 weights.
pub const EXPERT: Variant = EXPERT_SHADER.variant(Flags::NONE, EXPERT_INTERFACE);
/// The expert kernel with half weights, in [`crate::ops::HALF_STORAGE`] order.
pub const EXPERT_HALF: [Variant; 3] = crate::ops::half_variants(EXPERT);
/// The expert kernel's 8-row tiles sharing x by subgroup broadcast (CPU adapters), f32 weights.
pub const EXPERT_BROADCAST: Variant =
    EXPERT_SHADER.variant(Flags::of(&[Flag::Subgroup]), EXPERT_INTERFACE);
/// [`EXPERT_BROADCAST`] with half weights, in [`crate::ops::HALF_STORAGE`] order.
pub const EXPERT_BROADCAST_HALF: [Variant; 3] = crate::ops::half_variants(EXPERT_BROADCAST);
/// The combine kernel.
pub const COMBINE: Variant = COMBINE_SHADER.variant(Flags::NONE, COMBINE_INTERFACE);

const ROUTE_WG: usize = 64;
const EXPERT_WG: usize = 64;
const COMBINE_WG: usize = 256;

/// Scratch of one call, kept for inspection by [`Moe::record_with_scratch`].
#[derive(Clone, Debug)]
pub struct MoeScratch {
    /// Router logits (T, E) f32.
    pub logits: Tensor,
    /// Chosen experts (T, k) u32, in choice order.
    pub ids: Tensor,
    /// Their weights (T, k) f32.
    pub weights: Tensor,
    /// The grouping plan (u32; layout in `shaders/lm/moe_plan.wgsl`).
    pub plan: Tensor,
}

/// The MoE op (stateless beyond its matmul; pipelines come from the device's cache).
#[derive(Clone, Debug)]
pub struct Moe {
    matmul: Matmul,
    no_bias: Tensor,
    no_plan: Tensor,
}

/// Rows per tile of the expert kernel for `rows` routed rows over `experts` experts (a tile
/// never spans two experts), and whether its tiles share x by subgroup broadcast.
///
/// On a CPU adapter with subgroups of at least 8 (llvmpipe), an 8-row broadcast tile costs the
/// load instructions of a 1-row tile, so it pays once experts average 2 rows; below that the
/// 1-row tiles broadcast too, so that one lane loads x instead of every lane (1.05–1.08× at
/// V2-Lite's T = 1 there). Elsewhere a 4-row tile once they average 4 rows (each weight vec4
/// then serves 4 rows), else 1 row, so decode reads each weight once per routed row with no
/// padded rows.
fn expert_tile(gpu: &Gpu, rows: usize, experts: usize) -> (usize, bool) {
    if crate::ops::shares_loads_by_subgroup(gpu) {
        (if rows >= 2 * experts { 8 } else { 1 }, true)
    } else if rows >= 4 * experts {
        (4, false)
    } else {
        (1, false)
    }
}

/// The expert kernel for `storage` flags, tiles of `rm` rows, in `mode` (0 SwiGLU gathered,
/// 1 down, 2 SwiGLU dense: the shader's MODE).
fn expert_kernel(
    gpu: &Gpu,
    storage: Flags,
    (rm, broadcast): (usize, bool),
    mode: u32,
) -> Result<Arc<Kernel>> {
    let flags = if broadcast {
        storage.with(Flag::Subgroup)
    } else {
        storage
    };
    gpu.kernel(
        &EXPERT_SHADER.variant(flags, EXPERT_INTERFACE),
        &[
            ("WG", EXPERT_WG as f64),
            ("RM", rm as f64),
            ("MODE", mode as f64),
        ],
    )
}

fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit {
        what: format!("moe {what} = {v}"),
        detail: "indices are 32-bit".into(),
    })
}

impl Moe {
    /// Build the op (its pipelines are built on first use and cached by the device).
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(Self {
            matmul: Matmul::new(gpu)?,
            no_bias: gpu.upload_f32(&[1], &[0.0])?,
            no_plan: gpu.upload_u32(&[1], &[0])?,
        })
    }

    /// Record y (T, hidden) f32 = the MoE block of `w` on x (T, hidden) f32. Every tensor is
    /// validated before anything is recorded; y must not share x's buffer.
    pub fn record(&self, batch: &mut Batch, x: &Tensor, w: &MoeWeights, y: &Tensor) -> Result<()> {
        self.record_with_scratch(batch, x, w, y, Output::Write)
            .map(|_| ())
    }

    /// Record y (T, hidden) += the MoE block of `w` on x: the residual add of a decoder layer.
    pub fn record_accumulate(
        &self,
        batch: &mut Batch,
        x: &Tensor,
        w: &MoeWeights,
        y: &Tensor,
    ) -> Result<()> {
        self.record_with_scratch(batch, x, w, y, Output::Accumulate)
            .map(|_| ())
    }

    /// [`Self::record`] or [`Self::record_accumulate`] by `output`, returning the scratch
    /// tensors (routing and plan) for inspection.
    pub fn record_with_scratch(
        &self,
        batch: &mut Batch,
        x: &Tensor,
        w: &MoeWeights,
        y: &Tensor,
        output: Output,
    ) -> Result<MoeScratch> {
        let cfg = &w.config;
        cfg.validate()?;
        let t = cfg.tokens_of("x", x.shape())?;
        x.expect_dtype("x", DType::F32)?;
        y.expect("y", "(T, hidden) like x", x.shape(), DType::F32)?;
        if x.buffer() == y.buffer() {
            return Err(Error::invalid("moe: y must not share a buffer with x"));
        }
        let (h, i, e_n, k) = (cfg.hidden, cfg.intermediate, cfg.experts, cfg.top_k);
        w.router
            .expect("gate.weight", "(E, hidden)", &[e_n, h], DType::F32)?;
        match (&w.bias, cfg.scoring) {
            (Some(b), Scoring::Sigmoid) => {
                b.expect("gate.e_score_correction_bias", "(E)", &[e_n], DType::F32)?
            }
            (None, Scoring::Softmax) => {}
            (_, s) => {
                return Err(Error::invalid(format!(
                    "gate.e_score_correction_bias: present exactly with sigmoid scoring, not {s:?}"
                )))
            }
        }
        let mut next = 0;
        for g in &w.groups {
            if g.first != next || g.count == 0 {
                return Err(Error::invalid(
                    "moe: expert groups must cover 0..E in order",
                ));
            }
            g.gate.expect(
                "experts.gate_proj",
                "(n, I, hidden)",
                &[g.count, i, h],
                w.dtype,
            )?;
            g.up.expect(
                "experts.up_proj",
                "(n, I, hidden)",
                &[g.count, i, h],
                w.dtype,
            )?;
            g.down.expect(
                "experts.down_proj",
                "(n, hidden, I)",
                &[g.count, h, i],
                w.dtype,
            )?;
            next += g.count;
        }
        if next != e_n {
            return Err(Error::invalid(format!(
                "moe: expert groups cover {next} experts, the config has {e_n}"
            )));
        }
        let si = cfg.shared_intermediate();
        match &w.shared {
            Some(s) if cfg.n_shared > 0 => {
                s.gate.expect(
                    "shared_experts.gate_proj",
                    "(I·n_shared, hidden)",
                    &[si, h],
                    w.dtype,
                )?;
                s.up.expect(
                    "shared_experts.up_proj",
                    "(I·n_shared, hidden)",
                    &[si, h],
                    w.dtype,
                )?;
                s.down.expect(
                    "shared_experts.down_proj",
                    "(hidden, I·n_shared)",
                    &[h, si],
                    w.dtype,
                )?;
            }
            None if cfg.n_shared == 0 => {}
            _ => {
                return Err(Error::invalid(
                    "moe: shared_experts present exactly when n_shared_experts > 0",
                ))
            }
        }
        let gpu = batch.gpu();
        let storage = storage_flags(gpu, "experts", w.dtype)?;
        let rows = t * k;
        u32_of("T·k·max(I, hidden, E)", rows * i.max(h).max(e_n).max(si))?;
        let plan_len = 2 * e_n + 2 + 2 * rows;
        let s = MoeScratch {
            logits: gpu.empty(&[t, e_n], DType::F32)?,
            ids: gpu.empty(&[t, k], DType::U32)?,
            weights: gpu.empty(&[t, k], DType::F32)?,
            plan: gpu.empty(&[plan_len], DType::U32)?,
        };
        if t == 0 {
            return Ok(s);
        }

        // 1. Router.
        self.matmul
            .record_linear(batch, x, &w.router, None, &s.logits)?;
        let (method, n_group, topk_group) = match cfg.method {
            TopkMethod::Greedy => (0, 1, 1),
            TopkMethod::GroupLimitedGreedy => (1, cfg.n_group, cfg.topk_group),
            TopkMethod::NoauxTc => (2, cfg.n_group, cfg.topk_group),
        };
        let route = gpu.kernel(&ROUTE, &[])?;
        batch.dispatch(
            &route,
            &RouteUniforms {
                t: t as u32,
                e: e_n as u32,
                k: k as u32,
                scoring: (cfg.scoring == Scoring::Sigmoid) as u32,
                method,
                n_group: n_group as u32,
                topk_group: topk_group as u32,
                norm: cfg.norm_topk_prob as u32,
                scale: cfg.routed_scaling_factor as f32,
                has_bias: w.bias.is_some() as u32,
                _pad0: 0,
                _pad1: 0,
            },
            &[
                (&s.logits).into(),
                w.bias.as_ref().unwrap_or(&self.no_bias).into(),
                (&s.ids).into(),
                (&s.weights).into(),
            ],
            t.div_ceil(ROUTE_WG) as u32,
        )?;

        // 2. Grouping into tiles of rm rows.
        let tiling = expert_tile(gpu, rows, e_n);
        let rm = tiling.0;
        let plan = gpu.kernel(&PLAN, &[])?;
        batch.dispatch(
            &plan,
            &PlanUniforms {
                assignments: rows as u32,
                e: e_n as u32,
                rm: rm as u32,
                _pad0: 0,
            },
            &[(&s.ids).into(), (&s.plan).into()],
            1,
        )?;

        // 3. Experts: gate/up then down, one dispatch each per expert range.
        let experts = [
            expert_kernel(gpu, storage, tiling, 0)?,
            expert_kernel(gpu, storage, tiling, 1)?,
        ];
        let hbuf = gpu.empty(&[rows, i], DType::F32)?;
        let obuf = gpu.empty(&[rows, h], DType::F32)?;
        let base = ExpertUniforms {
            _pad0: 0,
            n: 0,
            k: 0,
            rows: t as u32,
            topk: k as u32,
            n_e: e_n as u32,
            e0: 0,
            e1: 0,
            tiles_n: 0,
            groups: 0,
            interleave: 1,
            _pad1: 0,
        };
        // The grid is sized for the worst case, so its tail exits at once: interleaved over a
        // CPU device's threads (common/grid), the tail and the real tiles spread over them all.
        let shares = crate::ops::grid_shares(gpu);
        for (mode, n, kk) in [(0u32, i, h), (1, h, i)] {
            let tiles_n = n.div_ceil(4 * EXPERT_WG);
            for g in &w.groups {
                // Row tiles of this range, at most: each tile has ≥ 1 row, an expert has ≤ T
                // rows, and the ranges' tiles add at most one partial tile per expert.
                let tiles = (rows.div_ceil(rm) + g.count)
                    .min(g.count * t.div_ceil(rm))
                    .min(rows);
                let groups = u32_of("workgroups", tiles * tiles_n)?;
                let padded = u32_of("workgroups", (tiles * tiles_n).next_multiple_of(shares))?;
                let (x_in, out, wa, wb) = if mode == 0 {
                    (x, &hbuf, &g.gate, &g.up)
                } else {
                    (&hbuf, &obuf, &g.down, &g.down)
                };
                batch.dispatch(
                    &experts[mode as usize],
                    &ExpertUniforms {
                        n: n as u32,
                        k: kk as u32,
                        e0: g.first as u32,
                        e1: (g.first + g.count) as u32,
                        tiles_n: tiles_n as u32,
                        groups,
                        interleave: shares as u32,
                        ..base
                    },
                    &[
                        (&s.plan).into(),
                        x_in.into(),
                        wa.into(),
                        wb.into(),
                        out.into(),
                    ],
                    padded,
                )?;
            }
        }

        // 4. Combine, then the shared expert added into y.
        let combine = gpu.kernel(&COMBINE, &[])?;
        batch.dispatch(
            &combine,
            &CombineUniforms {
                n: u32_of("T·hidden", t * h)?,
                hidden: h as u32,
                topk: k as u32,
                row_of: (2 * e_n + 2 + rows) as u32,
                accumulate: (output == Output::Accumulate) as u32,
                _pad0: 0,
                _pad1: 0,
                _pad2: 0,
            },
            &[
                (&s.plan).into(),
                (&s.weights).into(),
                (&obuf).into(),
                y.into(),
            ],
            (t * h).div_ceil(COMBINE_WG) as u32,
        )?;
        if let Some(sh) = &w.shared {
            self.record_swiglu(batch, x, sh, y, &s.plan)?;
        }
        Ok(s)
    }

    /// Record y (T, hidden) += down(silu(gate·x) ⊙ up·x) for the dense SwiGLU `mlp` on x
    /// (T, hidden) f32: DeepSeek's dense layers (the shared experts take the same path inside
    /// [`Self::record`]). hidden and the intermediate width must be multiples of 4.
    pub fn record_dense(
        &self,
        batch: &mut Batch,
        x: &Tensor,
        mlp: &SwigluMlp,
        y: &Tensor,
    ) -> Result<()> {
        let [t, h] = x.shape()[..] else {
            return Err(Error::shape("x", "(T, hidden)", x.shape()));
        };
        x.expect_dtype("x", DType::F32)?;
        y.expect("y", "(T, hidden) like x", x.shape(), DType::F32)?;
        if x.buffer() == y.buffer() {
            return Err(Error::invalid("mlp: y must not share a buffer with x"));
        }
        let i = mlp.intermediate();
        let dtype = mlp.gate.dtype();
        mlp.gate
            .expect("mlp.gate_proj", "(I, hidden)", &[i, h], dtype)?;
        mlp.up
            .expect("mlp.up_proj", "(I, hidden)", &[i, h], dtype)?;
        mlp.down
            .expect("mlp.down_proj", "(hidden, I)", &[h, i], dtype)?;
        if h % 4 != 0 || i % 4 != 0 {
            return Err(Error::invalid(format!(
                "mlp: hidden ({h}) and intermediate ({i}) must be multiples of 4"
            )));
        }
        u32_of("T·max(I, hidden)", t * i.max(h))?;
        if t == 0 {
            return Ok(());
        }
        self.record_swiglu(batch, x, mlp, y, &self.no_plan)
    }

    /// The dense SwiGLU (the expert kernel's dense mode, then an accumulating matmul) of
    /// checked tensors; `plan` is bound but unread in the dense mode.
    fn record_swiglu(
        &self,
        batch: &mut Batch,
        x: &Tensor,
        mlp: &SwigluMlp,
        y: &Tensor,
        plan: &Tensor,
    ) -> Result<()> {
        let gpu = batch.gpu();
        let (t, h, si) = (x.shape()[0], x.shape()[1], mlp.intermediate());
        let storage = storage_flags(gpu, "mlp", mlp.gate.dtype())?;
        let tiling = expert_tile(gpu, t, 1);
        let rm = tiling.0;
        let expert = expert_kernel(gpu, storage, tiling, 2)?;
        let hs = gpu.empty(&[t, si], DType::F32)?;
        let tiles_n = si.div_ceil(4 * EXPERT_WG);
        let groups = u32_of("workgroups", t.div_ceil(rm) * tiles_n)?;
        batch.dispatch(
            &expert,
            &ExpertUniforms {
                _pad0: 0,
                n: si as u32,
                k: h as u32,
                rows: t as u32,
                topk: 1,
                n_e: 1,
                e0: 0,
                e1: 1,
                tiles_n: tiles_n as u32,
                groups,
                interleave: 1,
                _pad1: 0,
            },
            &[
                plan.into(),
                x.into(),
                (&mlp.gate).into(),
                (&mlp.up).into(),
                (&hs).into(),
            ],
            groups,
        )?;
        self.matmul.record_accumulate(
            batch,
            &MatmulDims::linear(t, h, si),
            &hs,
            &mlp.down,
            None,
            y,
        )
    }

    /// Bytes (x read, y written, the router and bias, the weights of the `experts_hit` distinct
    /// routed experts and of the shared expert at `w_dtype`'s width) and FLOPs (the router
    /// product; per routed row and for the shared expert 6·I·hidden for the three products plus
    /// 4·I for silu and the gating product; 2·hidden per slot to combine) of `tokens` tokens.
    pub fn cost(cfg: &MoeConfig, tokens: usize, experts_hit: usize, w_dtype: DType) -> Cost {
        let (t, h, i, e) = (
            tokens as u64,
            cfg.hidden as u64,
            cfg.intermediate as u64,
            cfg.experts as u64,
        );
        let (k, si) = (cfg.top_k as u64, cfg.shared_intermediate() as u64);
        let wb = w_dtype.size() as u64;
        let bias = if cfg.scoring == Scoring::Sigmoid {
            e
        } else {
            0
        };
        Cost {
            bytes: 4 * (2 * t * h + e * h + bias) + wb * 3 * h * (experts_hit as u64 * i + si),
            flops: 2 * t * e * h + t * k * (6 * i * h + 4 * i + 2 * h) + t * (6 * si * h + 4 * si),
        }
    }
}
