//! `absorbed_attention`: DeepSeek-V2/V3 Multi-head Latent Attention in the absorbed form, on the
//! paged latent cache of [`crate::ops::latent_cache`].
//!
//! For sequence b, new query token i < S_q and head h:
//! `s_j = scale·(q_lat·c_j + q_rope·k_rope_j)`, `o_lat = Σ_j softmax_j(s) c_j` over the keys
//! `j < seq_len_b − S_q + i + 1` (bottom-right causal). Layouts (f32, row-major): q_lat and o_lat
//! (Bt, S_q, H, d_c), q_rope (Bt, S_q, H, d_R), block_table (Bt, max_blocks) u32, seq_lens (Bt)
//! u32; the cache is (num_blocks, block_size, d_c + d_R).
//!
//! # Packed (ragged) queries
//! With [`AbsorbedAttentionInputs::query_starts`] ((Bt + 1) u32 cumulative offsets) sequences
//! bring different numbers of query tokens q_len_b = query_starts\[b + 1\] − query_starts\[b\],
//! packed in order: q_lat and o_lat are (T, H, d_c), q_rope (T, H, d_R), T = Σ_b q_len_b, and
//! query i of sequence b sees keys `j < seq_len_b − q_len_b + i + 1`. Chunked prefill (a chunk
//! of a prompt over what earlier chunks cached), decode (q_len 1) and a mix of both are the same
//! call. The uniform form is the case query_starts\[b\] = b·S_q; one kernel body runs both, told
//! apart by a bit of its uniform block. The grid is sized by the host's bound `max_query_len`:
//! workgroups whose row group lies past a shorter sequence's rows return at once.
//!
//! # Tiling
//! The cache is a single "KV head" shared by all heads, so the kernel treats the S_q·H query
//! rows of a sequence alike ("rows", r = i·H + h) and gives each workgroup a group of G of them
//! (G = 16, or the next power of two ≥ S_q·H when that is smaller). Per tile of keys a workgroup
//! runs three phases, each with its own invocation mapping (scratch holds the tile's scores and
//! probabilities between them): S, scores, invocation = a block of keys × all G rows (register
//! blocked: per vec4 of the latent row it loads JB key vec4s and G query vec4s and does G·JB
//! dots); M, online softmax in f32, invocation = row; P, PV, invocation = a block of output
//! columns × all G rows (per key it loads its column vec4s of c and the key's 16 probabilities
//! and does G·DB vec4 FMAs). Aligned widths (d_c, d_R multiples of 4, DeepSeek's case) use
//! `absorbed_attention.wgsl` with `VEC4` (64 invocations, JB = 8 keys, tiles of 512 keys); other
//! widths use it without (256 invocations, one key per invocation, tiles of 256 keys).
//!
//! How often each cache row is read from global memory: twice per row group (phase S reads the
//! row, phase P its c part), ⌈H·S_q / 16⌉ row groups per sequence. Decode with H = 16: one
//! workgroup serves all heads; H = 128: 8 workgroups that run concurrently on the same keys, so
//! on a GPU with a shared L2 most of those reads hit in L2.
//!
//! # The SUBGROUP kernel (CPU devices)
//! On a CPU device (llvmpipe) whose subgroups are all 8 lanes, caches of aligned widths up
//! to d_c = 512, d_R = 64 run `absorbed_attention.wgsl` with `VEC4` and `SUBGROUP` ([`plan_subgroup`]): a
//! workgroup is one subgroup; lane t owns vec4 columns t + 8k of every cache row, so a key row
//! is loaded once, one vec4 per lane per column block, for all G = 16 rows of the group; each
//! row's query and accumulator columns stay in private variables indexed only by literals, its
//! score is the lane partials summed by a butterfly of `subgroupShuffleXor`, and the online
//! softmax runs per pair of keys.
//! No workgroup memory, barriers or work areas. Keys are split only until every CPU thread has a
//! workgroup (and at most 4096 keys per workgroup, under llvmpipe's per-loop iteration limit):
//! on a CPU device each extra split costs a workgroup start and combine work for nothing. The
//! device's threads each take one contiguous share of the grid, so grid positions are
//! interleaved over them ([`Plan::interleave`]): a causal prefill's short and long rows, and a
//! ragged call's small and large sequences, are spread over every thread. GPUs
//! keep the tiled kernels (8-lane workgroups holding 16 rows' state would starve a GPU).
//! Half caches (f16, bf16) run the same kernel, widening each vec4 of the row on load.
//!
//! # Split-KV
//! With few sequences and heads there are too few workgroups to fill a GPU, so the keys of each
//! sequence are split into `n_split` ranges processed by separate workgroups
//! ([`plan`]: about 256 workgroups in total, at least 256 keys per split, at most 64 splits).
//! Each split writes its unnormalised accumulator and (max, sum) to a scratch buffer kept by the
//! op; a second kernel (`absorbed_attention_combine.wgsl`) merges them with log-sum-exp weights.
//! With one split the attention kernel writes o_lat itself and no combine runs.
//!
//! Keys past a query's causal limit, and pages that are not in a sequence's block-table row,
//! are never read: NaN in unused pages or slots cannot reach the result.
//!
//! # Roofline
//! Per cache row (W = d_c + d_R = 576 floats, 2304 bytes) and query row the kernel does
//! 2·576 (scores) + 2·512 (PV) + 3 ≈ 2179 FLOPs. Decode (S_q = 1) needs each row once, so its
//! arithmetic intensity is ≈ H·2179 / 2304 ≈ 0.95·H FLOP/byte: 15 at H = 16, 121 at H = 128:
//! memory-bound at H ≤ 16 on a datacenter GPU (ridge ~10–20 FLOP/byte), compute-bound at
//! H = 128 and on lavapipe (ridge ≈ 8 FLOP/byte). On lavapipe (Mesa 22.3) the kernel is bound
//! by neither: every storage or workgroup-memory load, uniform address or not, is a loop over
//! the SIMD lanes with a bounds check per component (~200 instructions per vec4), and a private
//! array indexed in a loop the compiler does not unroll becomes gathers. Hence the register
//! blocking (many FMAs per loaded vec4) and the small, constant-bound inner loops. Measured
//! (decode, Bt = 1, 1K context, lavapipe on a shared 2-core machine): H = 16 went from
//! ~150 ms (3% of roofline) to ~40–50 ms (8–9%); phase S alone takes ~13 ms, phase P the rest.
//! The SUBGROUP kernel, which replaced them on CPU devices, takes ~3.8 ms there (39 ms for the
//! tiled kernels in the same session), ~11.5 GFLOP/s at every decode size.

use crate::error::{Error, Result};
use crate::ops::latent_cache::LatentCache;
use crate::ops::Cost;
use crate::runtime::Gpu;
use crate::runtime::{Batch, Binding};
use crate::runtime::{DType, Tensor};
use crate::runtime::{Kernel, Shader};
use crate::shader::{wgsl, Access, Flag, Flags, KernelInterface, Variant};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The attention body.
pub const SHADER: Shader = wgsl!("mla/absorbed_attention");

/// The split-KV combine body.
pub const COMBINE_SHADER: Shader = wgsl!("mla/absorbed_attention_combine");

const WG: usize = 256;
/// Keys per tile (the shader's TK): one per invocation in the score phase.
const TK: usize = 256;
/// Scratch floats per workgroup for scores/probabilities, alpha and l (the shader's WORK).
const WORK: usize = 16 * TK + 32;
/// Invocations of the aligned kernel, keys per invocation in its score phase, its work area.
const WG4: usize = 64;
const JB: usize = 8;
const WORK4: usize = 32 * WG4 * JB + 32;
/// Most rows × vec4 column blocks (the aligned kernel's acc array).
const MAX_ACC4: usize = 64;
const MAX_ROWS_PER_GROUP: usize = 16;
/// Accumulator registers per invocation: G rows × NPC columns (the shader's acc array).
const MAX_ACC: usize = 32;
/// Most output columns per invocation (the shader's cv array), so d_c ≤ 8·256.
const MAX_COLS: usize = 8;
/// Workgroups the split planner aims for (enough to fill a large GPU several times over).
const TARGET_WORKGROUPS: usize = 256;
/// Fewest keys per split, so each split amortises its partial write and combine.
const MIN_KEYS_PER_SPLIT: usize = 256;
const MAX_SPLITS: usize = 64;
/// Lanes of the SUBGROUP kernel's workgroup: one subgroup of this fixed size.
const SG_LANES: u32 = 8;
/// Widest latent and rope parts the SUBGROUP kernel holds (16 and 2 vec4 columns per lane).
const SG_MAX_D_C: usize = 512;
const SG_MAX_D_R: usize = 64;
/// Most keys one SUBGROUP workgroup walks (one loop iteration each): far below llvmpipe's limit
/// of 65535 iterations of a loop per invocation.
const SG_MAX_KEYS_PER_SPLIT: usize = 4096;
/// Fewest keys per split of the SUBGROUP kernel.
const SG_MIN_KEYS_PER_SPLIT: usize = 64;

/// Inputs of one absorbed-attention call.
#[derive(Clone, Copy, Debug)]
pub struct AbsorbedAttentionInputs<'a> {
    /// (Bt, S_q, H, d_c), or (T, H, d_c) packed: W_UKᵀ q_nope per head.
    pub q_lat: &'a Tensor,
    /// (Bt, S_q, H, d_R), or (T, H, d_R) packed: rotated.
    pub q_rope: &'a Tensor,
    /// The paged latent cache (the S_q new tokens already appended).
    pub cache: &'a LatentCache,
    /// (Bt, max_blocks_per_seq) u32: page ids of each sequence.
    pub block_table: &'a Tensor,
    /// (Bt) u32: total tokens in the cache for each sequence, the S_q new ones included.
    pub seq_lens: &'a Tensor,
    /// Softmax scale (YaRN mscale² folded in by the caller).
    pub scale: f32,
    /// Host-side bound on the values in `seq_lens` (their maximum), used only to choose the
    /// split-KV count: results are correct for any value ≥ 1, but one far too small puts the
    /// whole tail of long sequences in the last split. Must be ≤ max_blocks·block_size (the
    /// block table must be able to hold it). On the GPU, lengths beyond max_blocks·block_size
    /// are clamped to it.
    pub max_seq_len: usize,
    /// `None`: every sequence brings S_q query tokens (q_lat (Bt, S_q, H, d_c)). `Some`: (Bt + 1)
    /// u32 cumulative query-token offsets; sequence b's tokens are the packed rows
    /// query_starts\[b\] .. query_starts\[b + 1\] of q_lat (T, H, d_c), q_rope and o_lat. The
    /// offsets must be non-decreasing, start at 0 and end at T (they live on the GPU and are
    /// not checked; on the GPU they are clamped to [0, T]).
    pub query_starts: Option<&'a Tensor>,
    /// With `query_starts`: a host-side bound on every sequence's query tokens (their maximum),
    /// 1 ≤ it ≤ T, used to size the grid like `max_seq_len`; rows of a sequence past it are not
    /// computed. Ignored without `query_starts`.
    pub max_query_len: usize,
}

pub use crate::spec::absorbed_attention::{AttentionShapes, Dims};

/// How a call is tiled and split (see the module docs); [`plan`] computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Query rows (heads × query tokens) per workgroup, G.
    pub rows_per_group: usize,
    /// Keys per tile, TK (one per invocation in the score phase); 1 for the SUBGROUP kernel,
    /// which walks keys one at a time.
    pub keys_per_tile: usize,
    /// Whether the register-blocked vec4 kernel runs (d_c and d_R multiples of 4).
    pub vec4: bool,
    /// Output columns per invocation in the PV phase: scalar kernel NPC = ⌈d_c / 256⌉, vec4
    /// kernel DB = ⌈d_c / 256⌉ vec4 blocks; 0 for the SUBGROUP kernel (16 per lane, fixed).
    pub out_cols: usize,
    /// Row groups per sequence, ⌈S_q·H / G⌉ (S_q: the longest sequence's query tokens).
    pub groups: usize,
    /// KV splits per (sequence, row group).
    pub n_split: usize,
    /// Keys per split (a multiple of TK for the tiled kernels; the last split also takes
    /// everything past the end).
    pub split_len: usize,
    /// Whether the SUBGROUP kernel runs ([`plan_subgroup`]): one subgroup per workgroup, no
    /// tiles and no work areas.
    pub subgroup: bool,
    /// Chunks the device's threads take the grid in, K (1: grid order is work order). A CPU
    /// device (llvmpipe) hands each of its K threads one contiguous K-th of the grid, so the
    /// grid is padded to a multiple of K (the padding returns at once) and position p runs
    /// work item (p mod c)·K + p div c, c = padded grid / K (`common/grid`): every thread takes
    /// every K-th item. Without it a
    /// causal prefill gives one thread the early, short rows and another the long ones, and a
    /// ragged call can leave all its prompt work to one thread.
    pub interleave: usize,
}

impl Plan {
    /// Workgroups of the attention kernel (a multiple of [`Plan::interleave`]).
    pub fn workgroups(&self, bt: usize) -> usize {
        (bt * self.groups * self.n_split).next_multiple_of(self.interleave.max(1))
    }

    /// Floats of the split-KV partials (before the work areas) for `tokens` query tokens of
    /// H = `h` heads and latent width `d_c`: none without a split.
    /// Counted in u64: a caller sizing its calls asks about sizes a 32-bit usize (wasm32)
    /// cannot hold.
    pub fn partial_floats(&self, tokens: usize, h: usize, d_c: usize) -> u64 {
        if self.n_split > 1 {
            (self.n_split as u64 * tokens as u64 * h as u64 * (d_c as u64 + 2)).next_multiple_of(4)
        } else {
            0
        }
    }

    /// Floats of the whole scratch buffer of a call of Bt sequences and `tokens` query tokens:
    /// the partials, then one work area per slot, (T·H / G + Bt) · n_split slots (see the
    /// shader: workgroups past a sequence's rows take none).
    pub fn scratch_floats(&self, bt: usize, tokens: usize, h: usize, d_c: usize) -> u64 {
        if self.subgroup {
            return self.partial_floats(tokens, h, d_c);
        }
        let work = if self.vec4 { WORK4 } else { WORK } as u64;
        let groups = tokens as u64 * h as u64 / self.rows_per_group as u64;
        let slots = (groups + bt as u64) * self.n_split as u64;
        self.partial_floats(tokens, h, d_c) + slots * work
    }
}

/// Bytes of the scratch buffer one call needs (Bt sequences, `tokens` query tokens in all, the
/// longest bringing `max_query_len`, contexts up to `max_seq_len`): what must fit one storage
/// binding, so a caller can size its calls before recording them.
pub fn scratch_bytes(
    bt: usize,
    tokens: usize,
    max_query_len: usize,
    h: usize,
    d_c: usize,
    d_r: usize,
    max_seq_len: usize,
) -> Result<u64> {
    let p = plan(bt, max_query_len, h, d_c, d_r, max_seq_len)?;
    Ok(4 * p.scratch_floats(bt, tokens, h, d_c))
}

/// Choose the tiling and split count for Bt sequences of S_q new tokens, H heads, widths d_c and
/// d_r, and longest context `max_seq_len`. Errors when d_c does not fit the kernel
/// (d_c ≤ 2048: each invocation holds at most 8 output columns).
pub fn plan(
    bt: usize,
    s_q: usize,
    h: usize,
    d_c: usize,
    d_r: usize,
    max_seq_len: usize,
) -> Result<Plan> {
    let rows = (s_q * h).max(1);
    let vec4 = d_c % 4 == 0 && d_r % 4 == 0;
    let out_cols = if vec4 {
        d_c.div_ceil(4 * WG4).clamp(4, 2 * MAX_COLS)
    } else {
        d_c.div_ceil(WG).max(1)
    };
    if out_cols > MAX_COLS {
        return Err(Error::Limit {
            what: format!("absorbed attention with d_c = {d_c}"),
            detail: format!("the kernel supports d_c ≤ {}", MAX_COLS * WG),
        });
    }
    let max_acc = if vec4 { MAX_ACC4 } else { MAX_ACC };
    let rows_per_group = MAX_ROWS_PER_GROUP
        .min(prev_pow2(max_acc / out_cols))
        .min(rows.next_power_of_two());
    let keys_per_tile = if vec4 { WG4 * JB } else { TK };
    let groups = rows.div_ceil(rows_per_group);
    let base = (bt * groups).max(1);
    let ctx = max_seq_len.max(1);
    let by_len = ctx.div_ceil(MIN_KEYS_PER_SPLIT);
    let wanted = TARGET_WORKGROUPS.div_ceil(base);
    let n_split = wanted.min(by_len).clamp(1, MAX_SPLITS);
    let split_len = ctx.div_ceil(n_split).div_ceil(keys_per_tile) * keys_per_tile;
    let n_split = ctx.div_ceil(split_len);
    Ok(Plan {
        rows_per_group,
        keys_per_tile,
        vec4,
        out_cols,
        groups,
        n_split,
        split_len,
        subgroup: false,
        interleave: 1,
    })
}

/// The plan of the SUBGROUP kernel (CPU devices with a fixed subgroup size of 8, see
/// [`AbsorbedAttention`]) for the call [`plan`] is asked about, `tokens` query tokens in all; `None`
/// where it does not apply: widths that are not multiples of 4 or wider than d_c = 512,
/// d_R = 64, or a split scratch larger than the tiled plan's (so [`scratch_bytes`] stays a bound
/// for either kernel). Rows per workgroup G = 16 (fewer when a sequence has fewer rows); keys
/// split only as far as needed to give each of the device's threads (one per CPU) a workgroup,
/// and so that no workgroup walks more than 4096 keys: every split costs a workgroup start (its
/// queries loaded into the lanes) and a share of the combine, which on a CPU device buys nothing
/// once every thread is busy.
pub fn plan_subgroup(
    bt: usize,
    s_q: usize,
    h: usize,
    d_c: usize,
    d_r: usize,
    max_seq_len: usize,
    tokens: usize,
) -> Result<Option<Plan>> {
    let tiled = plan(bt, s_q, h, d_c, d_r, max_seq_len)?;
    if !tiled.vec4 || d_c > SG_MAX_D_C || d_r > SG_MAX_D_R {
        return Ok(None);
    }
    let rows = (s_q * h).max(1);
    let rows_per_group = MAX_ROWS_PER_GROUP.min(rows.next_power_of_two());
    let groups = rows.div_ceil(rows_per_group);
    let ctx = max_seq_len.max(1);
    let wanted = crate::ops::cpu_threads().div_ceil((bt * groups).max(1));
    let n_split = wanted
        .min(ctx.div_ceil(SG_MIN_KEYS_PER_SPLIT))
        .max(ctx.div_ceil(SG_MAX_KEYS_PER_SPLIT))
        .max(1);
    let split_len = ctx.div_ceil(n_split);
    let p = Plan {
        rows_per_group,
        keys_per_tile: 1,
        vec4: true,
        out_cols: 0,
        groups,
        n_split: ctx.div_ceil(split_len),
        split_len,
        subgroup: true,
        interleave: crate::ops::cpu_threads(),
    };
    let fits = p.scratch_floats(bt, tokens, h, d_c) <= tiled.scratch_floats(bt, tokens, h, d_c);
    Ok(fits.then_some(p))
}

fn prev_pow2(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    bt: u32,
    s_q: u32,
    h: u32,
    d_c: u32,
    d_r: u32,
    block_size: u32,
    max_blocks: u32,
    num_blocks: u32,
    n_split: u32,
    split_len: u32,
    groups: u32,
    scale: f32,
    work_base: u32,
    packed: u32,
    tokens: u32,
    interleave: u32,
}

/// What the attention kernels are passed: their `Uniforms`, then the queries, the cache, its
/// block table and sequence lengths, o_lat, the scratch buffer and the packed query offsets
/// (bound to `seq_lens` again, and not read, in the uniform form).
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[
        ("q_lat", Access::Read),
        ("q_rope", Access::Read),
        ("cache", Access::Read),
        ("block_table", Access::Read),
        ("seq_lens", Access::Read),
        ("o_lat", Access::ReadWrite),
        ("scratch", Access::ReadWrite),
        ("query_starts", Access::Read),
    ],
};

/// The attention kernel for widths that are not multiples of 4.
pub const SCALAR: Variant = SHADER.variant(Flags::NONE, INTERFACE);

/// The register-blocked attention kernel for aligned widths (d_c, d_R multiples of 4).
pub const VEC4: Variant = SHADER.variant(Flags::of(&[Flag::Vec4]), INTERFACE);

/// [`SCALAR`] reading a half cache: f16 in u32 words, native f16, bf16
/// ([`crate::ops::HALF_STORAGE`]); the softmax and accumulation stay f32.
pub const SCALAR_HALF: [Variant; 3] = crate::ops::half_variants(SCALAR);

/// [`VEC4`] reading a half cache, as [`SCALAR_HALF`].
pub const VEC4_HALF: [Variant; 3] = crate::ops::half_variants(VEC4);

/// The SUBGROUP kernel for aligned widths up to d_c = 512, d_R = 64 on CPU devices: one
/// subgroup of 8 lanes per workgroup, each lane owning vec4 columns of the cache rows.
pub const VEC4_SUBGROUP: Variant =
    SHADER.variant(Flags::of(&[Flag::Vec4, Flag::Subgroup]), INTERFACE);

/// [`VEC4_SUBGROUP`] reading a half cache, as [`SCALAR_HALF`].
pub const VEC4_SUBGROUP_HALF: [Variant; 3] = crate::ops::half_variants(VEC4_SUBGROUP);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CombineUniforms {
    n_rows: u32,
    d_c: u32,
    n_split: u32,
    _pad: u32,
}

/// What the combine kernel is passed: its `CombineUniforms`, then the scratch buffer and o_lat.
pub const COMBINE_INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<CombineUniforms>(),
    bindings: &[("scratch", Access::Read), ("o_lat", Access::ReadWrite)],
};

/// The split-KV combine kernel.
pub const COMBINE: Variant = COMBINE_SHADER.variant(Flags::NONE, COMBINE_INTERFACE);

/// The split-KV combine kernel on column quads (d_c a multiple of 4), one pass over the splits.
pub const COMBINE_VEC4: Variant =
    COMBINE_SHADER.variant(Flags::of(&[Flag::Vec4]), COMBINE_INTERFACE);

/// Specialisation of the attention kernel: (vec4 variant, subgroup variant, G, NPC or DB,
/// storage flags).
type KernelKey = (bool, bool, usize, usize, Flags);

/// The absorbed-attention op: attention kernels per tiling (built on first use and kept), the
/// combine kernel, and a scratch buffer for split-KV partials that grows as needed and is reused.
pub struct AbsorbedAttention {
    gpu_kernels: Mutex<HashMap<KernelKey, Arc<Kernel>>>,
    /// Whether the SUBGROUP kernel may run: a CPU device (llvmpipe) with subgroups of one
    /// fixed size, 8. GPUs keep the tiled kernels.
    subgroup: bool,
    combine: Arc<Kernel>,
    scratch: Mutex<Option<Tensor>>,
}

impl std::fmt::Debug for AbsorbedAttention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbsorbedAttention").finish_non_exhaustive()
    }
}

impl AbsorbedAttention {
    /// Build the combine pipeline and the attention pipeline for DeepSeek sizes (d_c = 512);
    /// other tilings are built on first use.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        let info = gpu.adapter_info();
        let subgroup = gpu.has_subgroups()
            && info.device_type == wgpu::DeviceType::Cpu
            && info.subgroup_min_size == SG_LANES
            && info.subgroup_max_size == SG_LANES;
        let op = Self {
            gpu_kernels: Mutex::new(HashMap::new()),
            subgroup,
            combine: gpu.kernel(&COMBINE, &[("WG", WG as f64)])?,
            scratch: Mutex::new(None),
        };
        op.kernel(gpu, &plan(1, 1, 16, 512, 64, 1)?, Flags::NONE)?;
        Ok(op)
    }

    fn kernel(&self, gpu: &Gpu, p: &Plan, storage: Flags) -> Result<Arc<Kernel>> {
        let key = (p.vec4, p.subgroup, p.rows_per_group, p.out_cols, storage);
        let mut kernels = self.gpu_kernels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = kernels.get(&key) {
            return Ok(k.clone());
        }
        let g = p.rows_per_group as f64;
        let k = if p.subgroup {
            gpu.kernel(
                &SHADER.variant(VEC4_SUBGROUP.flags.union(storage), INTERFACE),
                &[("G", g)],
            )?
        } else if p.vec4 {
            gpu.kernel(
                &SHADER.variant(VEC4.flags.union(storage), INTERFACE),
                &[("G", g), ("JB", JB as f64), ("DB", p.out_cols as f64)],
            )?
        } else {
            gpu.kernel(
                &SHADER.variant(storage, INTERFACE),
                &[("G", g), ("NPC", p.out_cols as f64)],
            )?
        };
        kernels.insert(key, k.clone());
        Ok(k)
    }

    fn scratch(&self, gpu: &Gpu, floats: usize) -> Result<Tensor> {
        let mut slot = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = slot.as_ref() {
            if t.len() >= floats {
                return Ok(t.clone());
            }
        }
        let t = gpu.empty(&[floats.max(4)], DType::F32)?;
        *slot = Some(t.clone());
        Ok(t)
    }

    /// Validate the inputs and return their sizes (S_q: `max_query_len` in the packed form).
    fn validate(inputs: &AbsorbedAttentionInputs, o_lat: &Tensor) -> Result<Dims> {
        let c = inputs.cache;
        let (d_c, d_r) = (c.d_c, c.d_r);
        c.data.expect(
            "cache.data",
            "(num_blocks, block_size, d_c + d_R)",
            &[c.num_blocks, c.block_size, d_c + d_r],
            c.data.dtype(),
        )?;
        if c.num_blocks * c.block_size * (d_c + d_r) > u32::MAX as usize {
            return Err(Error::Limit {
                what: "the latent cache".into(),
                detail: "more than 2^32 elements".into(),
            });
        }
        for (name, t, dtype) in [
            ("q_lat", inputs.q_lat, DType::F32),
            ("q_rope", inputs.q_rope, DType::F32),
            ("block_table", inputs.block_table, DType::U32),
            ("seq_lens", inputs.seq_lens, DType::U32),
            ("o_lat", o_lat, DType::F32),
        ] {
            t.expect_dtype(name, dtype)?;
        }
        if let Some(starts) = inputs.query_starts {
            starts.expect_dtype("query_starts", DType::U32)?;
        }
        let dims = Dims::from_shapes(&AttentionShapes {
            q_lat: inputs.q_lat.shape(),
            q_rope: inputs.q_rope.shape(),
            cache: c.data.shape(),
            d_c,
            block_table: inputs.block_table.shape(),
            seq_lens: inputs.seq_lens.shape(),
            o_lat: o_lat.shape(),
            query_starts: inputs.query_starts.map(|t| t.shape()),
            max_query_len: inputs.max_query_len,
        })?;
        let (s_q, max_blocks) = (dims.s_q, dims.max_blocks);
        let bt_shape = inputs.block_table.shape();
        let cap = max_blocks * c.block_size;
        if inputs.max_seq_len > cap {
            return Err(Error::shape(
                "block_table",
                format!(
                    "(Bt, max_blocks) with max_blocks·block_size ≥ max_seq_len = {} \
                     (block_size {})",
                    inputs.max_seq_len, c.block_size
                ),
                bt_shape,
            ));
        }
        if inputs.max_seq_len < s_q {
            let what = if inputs.query_starts.is_some() {
                "max_query_len"
            } else {
                "S_q"
            };
            return Err(Error::invalid(format!(
                "max_seq_len = {} is less than {what} = {s_q}: the new tokens must already be \
                 in the cache",
                inputs.max_seq_len
            )));
        }
        if !inputs.scale.is_finite() {
            return Err(Error::invalid(format!(
                "softmax scale must be finite, got {}",
                inputs.scale
            )));
        }
        Ok(dims)
    }

    /// The tiling and split count this op uses for `inputs` (validated as in [`Self::record`]).
    pub fn plan_for(&self, inputs: &AbsorbedAttentionInputs, o_lat: &Tensor) -> Result<Plan> {
        let d = Self::validate(inputs, o_lat)?;
        self.plan_dims(&d, inputs)
    }

    /// The SUBGROUP plan where this device runs it and it applies, else the tiled [`plan`].
    fn plan_dims(&self, d: &Dims, inputs: &AbsorbedAttentionInputs) -> Result<Plan> {
        let (d_c, d_r) = (inputs.cache.d_c, inputs.cache.d_r);
        let ctx = inputs.max_seq_len;
        if self.subgroup {
            if let Some(p) = plan_subgroup(d.bt, d.s_q, d.h, d_c, d_r, ctx, d.tokens)? {
                return Ok(p);
            }
        }
        plan(d.bt, d.s_q, d.h, d_c, d_r, ctx)
    }

    /// o_lat (Bt, S_q, H, d_c) = Σ_j softmax_j(scale·(q_lat·c_j + q_rope·k_rope_j)) c_j over the
    /// keys j ≤ seq_len − S_q + i for query i (bottom-right causal); split-KV inside as needed.
    /// In the packed form (`query_starts`) o_lat is (T, H, d_c) and S_q is each sequence's own
    /// query count. A query that sees no key (seq_len < S_q on the GPU) gets zeros.
    pub fn record(
        &self,
        batch: &mut Batch,
        inputs: &AbsorbedAttentionInputs,
        o_lat: &Tensor,
    ) -> Result<()> {
        let dims = Self::validate(inputs, o_lat)?;
        let (bt, s_q, h, max_blocks) = (dims.bt, dims.s_q, dims.h, dims.max_blocks);
        let c = inputs.cache;
        let p = self.plan_dims(&dims, inputs)?;
        let gpu = batch.gpu();
        let storage = crate::ops::storage_flags(gpu, "cache.data", c.dtype())?;
        let kernel = self.kernel(gpu, &p, storage)?;
        // Query rows of all sequences (partials and the combine are indexed by packed row).
        let rows = dims.tokens * h;
        let too_big = |what: &str| Error::Limit {
            what: format!("absorbed attention {what}"),
            detail: "more than 2^32 elements".into(),
        };
        if rows as u64 * c.d_c as u64 > u32::MAX as u64 {
            return Err(too_big("queries"));
        }
        let work_base = p.partial_floats(dims.tokens, h, c.d_c);
        let scratch_floats = p.scratch_floats(bt, dims.tokens, h, c.d_c);
        if scratch_floats > u32::MAX as u64 {
            return Err(too_big("split-KV scratch"));
        }
        let scratch_floats = scratch_floats as usize;
        let workgroups = u32::try_from(p.workgroups(bt)).map_err(|_| too_big("workgroups"))?;
        let scratch = self.scratch(gpu, scratch_floats)?;
        let uniforms = Uniforms {
            bt: bt as u32,
            s_q: s_q as u32,
            h: h as u32,
            d_c: c.d_c as u32,
            d_r: c.d_r as u32,
            block_size: c.block_size as u32,
            max_blocks: max_blocks as u32,
            num_blocks: c.num_blocks as u32,
            n_split: p.n_split as u32,
            split_len: p.split_len as u32,
            groups: p.groups as u32,
            scale: inputs.scale,
            work_base: work_base as u32,
            packed: inputs.query_starts.is_some() as u32,
            tokens: dims.tokens as u32,
            interleave: p.interleave.max(1) as u32,
        };
        let scratch_binding = Binding::range(&scratch, 0, 4 * scratch_floats as u64);
        // Check the combine's grid and build its pipeline before recording anything, so nothing
        // is recorded on error. Column quads where the attention runs on vec4s (d_c a multiple
        // of 4, the scratch padded to whole quads): one invocation per quad of a row.
        gpu.grid(rows as u32)?;
        let combine_kernel = if p.vec4 {
            let wg = (c.d_c / 4).next_power_of_two().clamp(8, WG);
            gpu.kernel(&COMBINE_VEC4, &[("WG", wg as f64)])?
        } else {
            self.combine.clone()
        };
        batch.dispatch(
            &kernel,
            &uniforms,
            &[
                inputs.q_lat.into(),
                inputs.q_rope.into(),
                (&c.data).into(),
                inputs.block_table.into(),
                inputs.seq_lens.into(),
                o_lat.into(),
                scratch_binding.clone(),
                inputs.query_starts.unwrap_or(inputs.seq_lens).into(),
            ],
            workgroups,
        )?;
        if p.n_split > 1 {
            let combine = CombineUniforms {
                n_rows: rows as u32,
                d_c: c.d_c as u32,
                n_split: p.n_split as u32,
                _pad: 0,
            };
            batch.dispatch(
                &combine_kernel,
                &combine,
                &[scratch_binding, o_lat.into()],
                rows as u32,
            )?;
        }
        Ok(())
    }
}

/// Bytes and FLOPs of one call where each of Bt sequences holds `ctx` tokens (the S_q new ones
/// included). Bytes: the cache rows read once (Bt·ctx·(d_c + d_R), at the width of
/// `cache_dtype`), q_lat, q_rope and o_lat, and the block table and lengths (4 bytes each). FLOPs: for each visible (query row, key) pair
/// 2·(d_c + d_R) for the score, 1 scale, 1 exp, 1 sum add and 2·d_c for PV, plus d_c (the final
/// normalisation) per query row; P = Bt·H·Σ_{i<S_q} (ctx − S_q + i + 1) pairs.
#[allow(clippy::too_many_arguments)]
pub fn cost(
    bt: usize,
    s_q: usize,
    h: usize,
    ctx: usize,
    d_c: usize,
    d_r: usize,
    block_size: usize,
    cache_dtype: DType,
) -> Cost {
    let seqs = vec![(s_q, ctx); bt];
    cost_of(&seqs, h, d_c, d_r, block_size, cache_dtype, 0)
}

/// [`cost`] of a packed call: sequence b brings `seqs[b].0` query tokens and then holds
/// `seqs[b].1` tokens (the new ones included). Counted as [`cost`] does, per sequence, plus the
/// Bt + 1 query offsets.
pub fn cost_packed(
    seqs: &[(usize, usize)],
    h: usize,
    d_c: usize,
    d_r: usize,
    block_size: usize,
    cache_dtype: DType,
) -> Cost {
    cost_of(seqs, h, d_c, d_r, block_size, cache_dtype, seqs.len() + 1)
}

fn cost_of(
    seqs: &[(usize, usize)],
    h: usize,
    d_c: usize,
    d_r: usize,
    block_size: usize,
    cache_dtype: DType,
    extra_words: usize,
) -> Cost {
    let w = d_c + d_r;
    let tokens: usize = seqs.iter().map(|&(q, _)| q).sum();
    let keys: usize = seqs.iter().map(|&(_, ctx)| ctx).sum();
    let rows = tokens * h;
    let pairs: usize = h * seqs
        .iter()
        .map(|&(q, ctx)| {
            (0..q)
                .map(|i| (ctx + i + 1).saturating_sub(q))
                .sum::<usize>()
        })
        .sum::<usize>();
    let words = rows * (2 * d_c + d_r)
        + seqs
            .iter()
            .map(|&(_, ctx)| ctx.div_ceil(block_size))
            .sum::<usize>()
        + seqs.len()
        + extra_words;
    Cost {
        bytes: (4 * words + cache_dtype.size() * keys * w) as u64,
        flops: (pairs * (2 * w + 2 * d_c + 3) + rows * d_c) as u64,
    }
}
