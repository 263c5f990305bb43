// absorbed_attention: MLA attention on the paged latent cache (DeepSeek-V2/V3, absorbed form).
//
// Query tokens are packed: sequence b owns the n_b = q1 - q0 query tokens q0 .. q1, with
// (q0, q1) = (query_starts[b], query_starts[b + 1]) when params.packed is set (ragged calls) and
// (b * S_q, (b + 1) * S_q) otherwise (every sequence brings S_q tokens; query_starts is then not
// read). For query token i < n_b of sequence b and head h ("row" r = i * H + h of the sequence,
// packed row q0 * H + r):
//   s_j  = scale * (q_lat[q0+i,h,:] . c_j + q_rope[q0+i,h,:] . k_rope_j)
//   o_lat[q0+i,h,:] = sum_j softmax_j(s) * c_j      over keys j < lim(i) = seq_len - n_b + i + 1
// (bottom-right causal per sequence; lim is clamped to [0, max_blocks * block_size]; a row with
// no key gets 0). q0 and q1 are clamped to [0, T], so bad starts cannot address past the rows.
// Cache row j of sequence b lives at slot block_table[b, j / bs] * bs + j % bs, W = d_c + d_R
// floats [c | k_rope]. Only keys j < k1 (the group's last causal limit) of slots the block table
// names are read; a key row is used only where its block id is < num_blocks (else it is a masked
// key and never read), so NaN in other pages or slots cannot reach the result.
//
// Layouts (f32 unless noted, row-major), T = params.tokens query tokens in all (Bt * S_q when
// not packed): q_lat (T, H, d_c); q_rope (T, H, d_R); cache (num_blocks, bs, W); block_table
// (Bt, MB) u32; seq_lens (Bt) u32; query_starts (Bt + 1) u32; o_lat like q_lat; scratch: partial
// accumulators (n_split, T * H, d_c), (m, l) pairs (n_split, T * H, 2) (only with n_split > 1),
// then from params.work_base a work area per working workgroup: slot
// ((q0 * H) / G + b + grp) * n_split + s for sequence b's row group grp, q0 its first packed
// token. Sequence b's groups never reach the next sequence's first slot (its ⌈n_b·H/G⌉ groups
// end at most one slot past (q0 + n_b)·H / G), so (T·H / G + Bt) · n_split slots cover a call
// however its tokens are spread: a ragged call with one long prompt beside many one-token
// decodes does not pay a work area for every (sequence, longest-prompt group) workgroup.
//
// Work split: workgroup = (sequence b, group of G consecutive rows, KV split s), linear index
// ((b * groups + g) * n_split + s) (the grid position's work item: interleaved over a CPU
// device's threads by common/grid, identity on GPUs), with groups = ceil(S_q * H / G) sized for the longest
// sequence (S_q = the host's max_query_len when packed). A workgroup whose group starts past its
// sequence's n_b * H rows returns at once; the test reads only the workgroup id and read-only
// bindings, so it is uniform and comes before any barrier. Rows of a sequence past S_q * H
// (a max_query_len that is too small) are not computed. The cache is one "KV head" shared by
// every row, so each key
// row a workgroup loads is used for all G rows (heads x query tokens). Per tile of keys the
// workgroup runs three phases, each with the mapping that keeps its inner loop in registers:
// S (scores), M (online softmax, invocation = row: running max m and sum l in f32, rescale
// alpha = exp(m_old - m_new), p = exp(s - m_new)) and P (acc = acc * alpha + sum_t p_t c_t).
// Cache reads: each key row of a split is read twice per workgroup (S: all of it; P: the c part).
// For H = 16 one workgroup serves all heads (2 passes over the cache per step); for H = 128, 8
// workgroups (G = 16) read it, 16 passes in all, mostly cache hits when they run together.
//
// Flag VEC4, register blocked, for aligned widths (d_c and d_R multiples of 4, DeepSeek's
// included): q_lat, q_rope, cache, o_lat and scratch bound as vec4<f32>. 64 invocations, tiles of
// TK = 64 * JB keys:
//   S. invocation = JB consecutive keys x all G rows: for each vec4 d4 of the row it loads JB
//      cache vec4s and G query vec4s and does G * JB vec4 dots (register accumulators); writes
//      scale * s (or -3e38 where masked) to the work area, [row][key];
//   M. p written transposed, [key][16 rows];
//   P. invocation cb < npl = ceil(d_c / 4 / DB) owns vec4 columns cb + k * npl (k < DB) for all
//      G rows: per key it loads DB cache vec4s and the 4 vec4s of p for the key, and does
//      G * DB vec4 FMAs.
// Work area per workgroup (vec4s, from params.work_base / 4): scores [16][TK] floats, p [TK][16]
// floats, alpha [16], l [16].
// What bounds it and why. Decode at H = 16 has ~15 FLOP/byte (2 * 576 + 2 * 512 FLOPs per row and
// key against a 2304-byte key row), compute-bound on lavapipe and memory-bound on big GPUs. On
// lavapipe every storage or workgroup-memory load, uniform address or not, is a loop over the 8
// SIMD lanes with a bounds check per component, ~200 instructions per vec4, while a register FMA
// is one vector instruction, and a private array indexed in a loop that is not unrolled becomes
// gathers: the kernel is bound by loads, so it is register blocked like a CPU GEMM micro-kernel
// with only small constant-bound loops over the register arrays. Phase S does G * JB * 4 FMAs per
// G + JB vec4 loads (512 / 24 at G = 16, JB = 8), phase P G * DB * 4 per DB + 4 + 1 loads (256 / 9
// at DB = 4). Phase P costs ~2x what its load count predicts, most likely because its 64-vec4
// accumulator array spills or is not fully promoted to registers (next thing to try: split P
// into passes over halves of the columns, or fewer rows per invocation).
//
// Storage dtype (common/storage.wgsl): the cache may be f16 or bf16 (flags F16, BF16,
// NATIVE_F16), widened to f32 on load (VEC4: 4 elements per load, 8 bytes); everything else,
// the softmax and the accumulation are f32.
//
// Without VEC4, for d_c or d_R not multiples of 4: 256 invocations, tiles of TK = 256 keys:
//   S. invocation = key: lane t walks its key row c_t once and accumulates the G dot products
//      q_r . c_t in G registers (q_r[d] has the same address in every lane: a uniform load);
//   M. p written over the scores;
//   P. invocation = output columns lid + k * 256 (k < NPC) for all G rows (p uniform across
//      lanes, c_t[col] consecutive across lanes).
// Work area: WORK floats per workgroup, scores / probabilities [G][TK], alpha [16], l [16].
// What bounds it: loads, as above, but here each inner step does 1 cache load + G query loads
// for G FMAs (~7x slower than VEC4 at DeepSeek sizes). It could be register blocked the same way.
//
// Flag SUBGROUP (with VEC4; the host picks it on CPU devices whose subgroups are all 8 lanes,
// for caches of any storage dtype with d_c <= 512 and d_R <= 64): a workgroup is one subgroup
// of SG = 8 lanes, no workgroup memory, no barriers, no work area. Lane t owns vec4 columns
// t + 8 k of every row: k < 16 of the latent part, k < 2 of the rope part (columns past d_c /
// d_R read as zero and are never written). Each of the G rows keeps, in private variables
// indexed only by constants (one named RowState per row, loops of constant trip count), its 18
// query vec4s, its 16 accumulator vec4s and its running (m, l). Per pair of keys (j, j + 1) of
// the split, one iteration:
//   cv, cw = the lane's 18 vec4s of cache rows j and j + 1 (loaded once for all G rows);
//   per row: both scores s = (the 8 lanes' sum of sum_k q_k . c_k) * scale (one vec2
//   butterfly of subgroupShuffleXor over lane distances 1, 2, 4), masked to -3e38 past the
//   row's causal limit, past the split or for a bad block id; m' = max(m, sa, sb),
//   alpha = exp(m - m'), p = exp(s - m'); l = l alpha + pa + pb; acc_k = acc_k alpha + pa cv_k
//   + pb cw_k (one rescale of the accumulators per pair instead of one per key).
// Outputs as in the tiled kernels (o_lat with one split, else the partial and (m, l)).
// What bounds it. On lavapipe a load whose address differs between lanes is a loop over the 8
// lanes per component, so the cost floor is the cache row's 144 vec4 lane-loads per key, shared
// here by all G rows (each element of the row is loaded exactly once per workgroup, against
// twice per row group in the tiled kernels); the rest is each row's multiply-adds on operands
// that live on the stack (G rows of state are far more than the registers), the lane sum and
// 1.5 exps per row and key. The lane sum is a butterfly, not subgroupAdd: llvmpipe runs
// subgroupAdd as a scalar loop over the lanes, per component, with an exec-mask test per lane,
// and three shuffles and adds cost a fraction of that. Every lane ends with the same bits (each
// step adds the same two values, in either order), so all lanes agree on m and l. G stays 16:
// more rows per group would share each key load further, but llvmpipe's build time of the
// unrolled kernel grows faster than G. A private array indexed by a value the compiler cannot
// fold is a loop over lanes too, hence one variable per row and constant-bound inner loops.
// llvmpipe stops a loop after 65535 iterations, so the host bounds the keys of a split (one
// iteration per pair). On a GPU this mapping would waste the machine (8-lane workgroups, all 16
// rows' state in registers), so GPUs keep the tiled kernels.

#if VEC4
override G: u32 = 16u;   // rows per workgroup, power of two <= 16, G * JB <= 128, G * DB <= 64
override JB: u32 = 4u;   // keys per invocation in phase S (TK = 64 * JB <= 512)
override DB: u32 = 2u;   // vec4 output column blocks per invocation in phase P
const WG: u32 = 64u;
const SG: u32 = 8u;      // SUBGROUP: lanes per workgroup, one subgroup of 8 (its fixed size)
alias elem = vec4<f32>; // of q_lat, q_rope, o_lat and scratch
alias celem = squad;    // of the cache: 4 elements of its storage dtype
#else
override G: u32 = 16u;    // rows (heads x query tokens) per workgroup, power of two, <= 16
override NPC: u32 = 2u;   // output columns per invocation (lid + k * WG), G * NPC <= 32
const WG: u32 = 256u;
const TK: u32 = 256u;     // keys per tile (one per invocation in phase S)
const WORK: u32 = 4128u;  // 16 * TK + 32 floats of scratch per workgroup
alias elem = f32;
alias celem = sword;
#endif
#include "common/storage"
#include "common/grid"
const NEG_BIG: f32 = -3.0e38;

struct Params {
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
    packed: u32,   // 1: sequence b's query tokens are query_starts[b] .. query_starts[b + 1]
    tokens: u32,   // T, query tokens in all
    interleave: u32, // K: the device's threads take the grid in K contiguous chunks
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q_lat: array<elem>;        // (T, H, d_c)
@group(0) @binding(2) var<storage, read> q_rope: array<elem>;       // (T, H, d_R)
@group(0) @binding(3) var<storage, read> cache: array<celem>;       // (num_blocks, bs, d_c + d_R)
@group(0) @binding(4) var<storage, read> block_table: array<u32>;   // (Bt, MB)
@group(0) @binding(5) var<storage, read> seq_lens: array<u32>;      // (Bt)
@group(0) @binding(6) var<storage, read_write> o_lat: array<elem>;  // (T, H, d_c)
@group(0) @binding(7) var<storage, read_write> scratch: array<elem>; // partials | (m, l) | work
@group(0) @binding(8) var<storage, read> query_starts: array<u32>;  // (Bt + 1), when packed

var<workgroup> range_s: vec2<u32>;

#if !VEC4
// Cache element i (scalar addressing) as f32.
fn cache_at(i: u32) -> f32 {
    return sget(cache[i / SPW], i % SPW);
}
#endif

// The packed query tokens (first, count) of sequence b.
fn query_range(b: u32) -> vec2<u32> {
    if (params.packed == 0u) {
        return vec2<u32>(b * params.s_q, params.s_q);
    }
    let q0 = min(query_starts[b], params.tokens);
    let q1 = clamp(query_starts[b + 1u], q0, params.tokens);
    return vec2<u32>(q0, q1 - q0);
}

// What workgroup wid works on, from the linear index ((b * groups + grp) * n_split + s) the
// host's plan enumerates: sequence b, its row group grp (rows row0 .. row0 + G of the
// sequence's rows = n_q * H), key split s, and the sequence's packed query range qr. A
// workgroup past the grid gets row0 >= rows, like one whose group starts past its sequence's
// rows: both return at once.
struct Work {
    s: u32,
    grp: u32,
    b: u32,
    qr: vec2<u32>,
    rows: u32,
    row0: u32,
}

fn work_of(wid: u32) -> Work {
    var w: Work;
    if (wid >= params.bt * params.groups * params.n_split) {
        w.rows = 0u;
        w.row0 = 0u;
        return w;
    }
    w.s = wid % params.n_split;
    let rest = wid / params.n_split;
    w.grp = rest % params.groups;
    w.b = rest / params.groups;
    w.qr = query_range(w.b);
    w.rows = w.qr.y * params.h;
    w.row0 = w.grp * G;
    return w;
}

// The work-area slot of sequence b's row group grp and split s (q0: its first packed token).
fn work_slot(q0: u32, b: u32, grp: u32, s: u32) -> u32 {
    return ((q0 * params.h) / G + b + grp) * params.n_split + s;
}

// Number of keys row r (of a sequence of n_q query tokens) may see, clamped to [0, cap].
fn row_limit(r: u32, n_q: u32, seq_len: u32, cap: u32) -> u32 {
    let i = r / params.h;
    let lim = i32(seq_len) - i32(n_q) + i32(i) + 1;
    return u32(clamp(lim, 0, i32(cap)));
}

#if SUBGROUP
// The state of one query row in the SUBGROUP kernel: its query and accumulator columns owned by
// this lane (vec4 column lane + 8 k: k < 16 of the latent part, k = 16, 17 of the rope part),
// its running max and sum, and its causal limit.
struct RowState {
    q: array<vec4<f32>, 18>,
    acc: array<vec4<f32>, 16>,
    m: f32,
    l: f32,
    lim: u32,
}

// A key row's columns owned by this lane, and whether the key may be used at all.
struct KeyRow {
    c: array<vec4<f32>, 18>,
    valid: bool,
}

// Vec4 column col of a query row at vec4 index base (a part of n vec4s); zero past the part.
fn qlat_col(base: u32, col: u32, n: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), q_lat[base + min(col, max(n, 1u) - 1u)], col < n);
}

fn qrope_col(base: u32, col: u32, n: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), q_rope[base + min(col, max(n, 1u) - 1u)], col < n);
}

// Load row r's query columns of this lane (zero past d_c and d_R) and reset its softmax state.
// Every index into the row's arrays is a literal (here and below): one index the compiler cannot
// fold would keep the whole array in memory, and each access would become a loop over lanes.
fn row_init(st: ptr<function, RowState>, q_row: u32, lane: u32, lim: u32) {
    let dc4 = params.d_c / 4u;
    let dr4 = params.d_r / 4u;
    let qc = q_row * dc4;
    let qr = q_row * dr4;
    (*st).q[0] = qlat_col(qc, lane + 0u, dc4);
    (*st).q[1] = qlat_col(qc, lane + 8u, dc4);
    (*st).q[2] = qlat_col(qc, lane + 16u, dc4);
    (*st).q[3] = qlat_col(qc, lane + 24u, dc4);
    (*st).q[4] = qlat_col(qc, lane + 32u, dc4);
    (*st).q[5] = qlat_col(qc, lane + 40u, dc4);
    (*st).q[6] = qlat_col(qc, lane + 48u, dc4);
    (*st).q[7] = qlat_col(qc, lane + 56u, dc4);
    (*st).q[8] = qlat_col(qc, lane + 64u, dc4);
    (*st).q[9] = qlat_col(qc, lane + 72u, dc4);
    (*st).q[10] = qlat_col(qc, lane + 80u, dc4);
    (*st).q[11] = qlat_col(qc, lane + 88u, dc4);
    (*st).q[12] = qlat_col(qc, lane + 96u, dc4);
    (*st).q[13] = qlat_col(qc, lane + 104u, dc4);
    (*st).q[14] = qlat_col(qc, lane + 112u, dc4);
    (*st).q[15] = qlat_col(qc, lane + 120u, dc4);
    (*st).q[16] = qrope_col(qr, lane + 0u, dr4);
    (*st).q[17] = qrope_col(qr, lane + 8u, dr4);
    (*st).acc[0] = vec4<f32>(0.0);
    (*st).acc[1] = vec4<f32>(0.0);
    (*st).acc[2] = vec4<f32>(0.0);
    (*st).acc[3] = vec4<f32>(0.0);
    (*st).acc[4] = vec4<f32>(0.0);
    (*st).acc[5] = vec4<f32>(0.0);
    (*st).acc[6] = vec4<f32>(0.0);
    (*st).acc[7] = vec4<f32>(0.0);
    (*st).acc[8] = vec4<f32>(0.0);
    (*st).acc[9] = vec4<f32>(0.0);
    (*st).acc[10] = vec4<f32>(0.0);
    (*st).acc[11] = vec4<f32>(0.0);
    (*st).acc[12] = vec4<f32>(0.0);
    (*st).acc[13] = vec4<f32>(0.0);
    (*st).acc[14] = vec4<f32>(0.0);
    (*st).acc[15] = vec4<f32>(0.0);
    (*st).m = NEG_BIG;
    (*st).l = 0.0;
    (*st).lim = lim;
}

// Vec4 column col of the key row at vec4 index base (a part of n vec4s) as f32; zero past the
// part or for a bad block id (then base is 0 and the row read is discarded).
fn cache_col(base: u32, col: u32, n: u32, valid: bool) -> vec4<f32> {
    let c = sget4(cache[base + min(col, max(n, 1u) - 1u)]);
    return select(vec4<f32>(0.0), c, valid && col < n);
}

// This lane's partial of the score of key row cv for row st: Σ_k q_k · cv_k over its columns.
fn lane_dot(st: ptr<function, RowState>, cv: ptr<function, array<vec4<f32>, 18>>) -> f32 {
    // Written out, not looped: an index the compiler does not fold costs a loop over lanes.
    var part = (*st).q[0] * (*cv)[0];
    part = fma((*st).q[1], (*cv)[1], part);
    part = fma((*st).q[2], (*cv)[2], part);
    part = fma((*st).q[3], (*cv)[3], part);
    part = fma((*st).q[4], (*cv)[4], part);
    part = fma((*st).q[5], (*cv)[5], part);
    part = fma((*st).q[6], (*cv)[6], part);
    part = fma((*st).q[7], (*cv)[7], part);
    part = fma((*st).q[8], (*cv)[8], part);
    part = fma((*st).q[9], (*cv)[9], part);
    part = fma((*st).q[10], (*cv)[10], part);
    part = fma((*st).q[11], (*cv)[11], part);
    part = fma((*st).q[12], (*cv)[12], part);
    part = fma((*st).q[13], (*cv)[13], part);
    part = fma((*st).q[14], (*cv)[14], part);
    part = fma((*st).q[15], (*cv)[15], part);
    part = fma((*st).q[16], (*cv)[16], part);
    part = fma((*st).q[17], (*cv)[17], part);
    return part.x + part.y + part.z + part.w;
}

// Keys j (row cv) and j + 1 (row cw) for one row: both scores (lane partials summed over the
// subgroup), one online-softmax update for the pair and acc = acc * alpha + pa * c + pb * cw on
// this lane's columns. A pair shares one rescale of the 16 accumulators and one exp for alpha.
fn row_keys(
    st: ptr<function, RowState>,
    cv: ptr<function, array<vec4<f32>, 18>>,
    cw: ptr<function, array<vec4<f32>, 18>>,
    j: u32,
    valid_a: bool,
    valid_b: bool,
) {
    // The lanes' partials summed by a butterfly (see the header: not subgroupAdd).
    var part = vec2<f32>(lane_dot(st, cv), lane_dot(st, cw));
    part += subgroupShuffleXor(part, 1u);
    part += subgroupShuffleXor(part, 2u);
    part += subgroupShuffleXor(part, 4u);
    let sums = part * params.scale;
    let ok_a = valid_a && j < (*st).lim;
    let ok_b = valid_b && j + 1u < (*st).lim;
    let sa = select(NEG_BIG, sums.x, ok_a);
    let sb = select(NEG_BIG, sums.y, ok_b);
    let m_new = max((*st).m, max(sa, sb));
    let alpha = exp((*st).m - m_new);
    let pa = select(0.0, exp(sa - m_new), ok_a);
    let pb = select(0.0, exp(sb - m_new), ok_b);
    (*st).l = (*st).l * alpha + pa + pb;
    (*st).m = m_new;
    let va = vec4<f32>(pa);
    let vb = vec4<f32>(pb);
    (*st).acc[0] = fma(vb, (*cw)[0], fma(va, (*cv)[0], (*st).acc[0] * alpha));
    (*st).acc[1] = fma(vb, (*cw)[1], fma(va, (*cv)[1], (*st).acc[1] * alpha));
    (*st).acc[2] = fma(vb, (*cw)[2], fma(va, (*cv)[2], (*st).acc[2] * alpha));
    (*st).acc[3] = fma(vb, (*cw)[3], fma(va, (*cv)[3], (*st).acc[3] * alpha));
    (*st).acc[4] = fma(vb, (*cw)[4], fma(va, (*cv)[4], (*st).acc[4] * alpha));
    (*st).acc[5] = fma(vb, (*cw)[5], fma(va, (*cv)[5], (*st).acc[5] * alpha));
    (*st).acc[6] = fma(vb, (*cw)[6], fma(va, (*cv)[6], (*st).acc[6] * alpha));
    (*st).acc[7] = fma(vb, (*cw)[7], fma(va, (*cv)[7], (*st).acc[7] * alpha));
    (*st).acc[8] = fma(vb, (*cw)[8], fma(va, (*cv)[8], (*st).acc[8] * alpha));
    (*st).acc[9] = fma(vb, (*cw)[9], fma(va, (*cv)[9], (*st).acc[9] * alpha));
    (*st).acc[10] = fma(vb, (*cw)[10], fma(va, (*cv)[10], (*st).acc[10] * alpha));
    (*st).acc[11] = fma(vb, (*cw)[11], fma(va, (*cv)[11], (*st).acc[11] * alpha));
    (*st).acc[12] = fma(vb, (*cw)[12], fma(va, (*cv)[12], (*st).acc[12] * alpha));
    (*st).acc[13] = fma(vb, (*cw)[13], fma(va, (*cv)[13], (*st).acc[13] * alpha));
    (*st).acc[14] = fma(vb, (*cw)[14], fma(va, (*cv)[14], (*st).acc[14] * alpha));
    (*st).acc[15] = fma(vb, (*cw)[15], fma(va, (*cv)[15], (*st).acc[15] * alpha));
}

// The lane's 18 vec4 columns of key j's row of sequence b (zeros where `valid` is false: a bad
// block id or a key past the split, whose row is then never read).
fn key_row(b: u32, j: u32, in_split: bool, lane: u32) -> KeyRow {
    let dc4 = params.d_c / 4u;
    let dr4 = params.d_r / 4u;
    let bs = params.block_size;
    let blk = block_table[b * params.max_blocks + j / bs];
    var k: KeyRow;
    k.valid = in_split && blk < params.num_blocks;
    let valid = k.valid;
    let base = select(0u, (blk * bs + j % bs) * (dc4 + dr4), valid);
    k.c[0] = cache_col(base, lane + 0u, dc4, valid);
    k.c[1] = cache_col(base, lane + 8u, dc4, valid);
    k.c[2] = cache_col(base, lane + 16u, dc4, valid);
    k.c[3] = cache_col(base, lane + 24u, dc4, valid);
    k.c[4] = cache_col(base, lane + 32u, dc4, valid);
    k.c[5] = cache_col(base, lane + 40u, dc4, valid);
    k.c[6] = cache_col(base, lane + 48u, dc4, valid);
    k.c[7] = cache_col(base, lane + 56u, dc4, valid);
    k.c[8] = cache_col(base, lane + 64u, dc4, valid);
    k.c[9] = cache_col(base, lane + 72u, dc4, valid);
    k.c[10] = cache_col(base, lane + 80u, dc4, valid);
    k.c[11] = cache_col(base, lane + 88u, dc4, valid);
    k.c[12] = cache_col(base, lane + 96u, dc4, valid);
    k.c[13] = cache_col(base, lane + 104u, dc4, valid);
    k.c[14] = cache_col(base, lane + 112u, dc4, valid);
    k.c[15] = cache_col(base, lane + 120u, dc4, valid);
    k.c[16] = cache_col(base + dc4, lane + 0u, dr4, valid);
    k.c[17] = cache_col(base + dc4, lane + 8u, dr4, valid);
    return k;
}

// Store vec4 column col (< n) of a row at vec4 index at: o_lat, normalised, with one split;
// else the unnormalised partial in scratch.
fn out_col(at: u32, col: u32, n: u32, one: bool, acc: vec4<f32>, inv: f32) {
    if (col < n) {
        if (one) {
            o_lat[at + col] = acc * inv;
        } else {
            scratch[at + col] = acc;
        }
    }
}

// Write row r's result: o_lat normalised (one split) or the unnormalised partial and (m, l).
fn row_out(st: ptr<function, RowState>, r: u32, rows: u32, lane: u32, qbase: u32, part_base: u32) {
    if (r >= rows) {
        return;
    }
    let dc4 = params.d_c / 4u;
    let l = (*st).l;
    let inv = select(0.0, 1.0 / l, l > 0.0);
    let one = params.n_split == 1u;
    let at = select((part_base + r) * dc4, (qbase + r) * dc4, one);
    out_col(at, lane + 0u, dc4, one, (*st).acc[0], inv);
    out_col(at, lane + 8u, dc4, one, (*st).acc[1], inv);
    out_col(at, lane + 16u, dc4, one, (*st).acc[2], inv);
    out_col(at, lane + 24u, dc4, one, (*st).acc[3], inv);
    out_col(at, lane + 32u, dc4, one, (*st).acc[4], inv);
    out_col(at, lane + 40u, dc4, one, (*st).acc[5], inv);
    out_col(at, lane + 48u, dc4, one, (*st).acc[6], inv);
    out_col(at, lane + 56u, dc4, one, (*st).acc[7], inv);
    out_col(at, lane + 64u, dc4, one, (*st).acc[8], inv);
    out_col(at, lane + 72u, dc4, one, (*st).acc[9], inv);
    out_col(at, lane + 80u, dc4, one, (*st).acc[10], inv);
    out_col(at, lane + 88u, dc4, one, (*st).acc[11], inv);
    out_col(at, lane + 96u, dc4, one, (*st).acc[12], inv);
    out_col(at, lane + 104u, dc4, one, (*st).acc[13], inv);
    out_col(at, lane + 112u, dc4, one, (*st).acc[14], inv);
    out_col(at, lane + 120u, dc4, one, (*st).acc[15], inv);
    if (params.n_split > 1u && lane == 0u) {
        let all_rows = params.tokens * params.h;
        let ml = params.n_split * all_rows * params.d_c + 2u * (part_base + r);
        scratch[ml / 4u][ml % 4u] = (*st).m;
        scratch[ml / 4u][ml % 4u + 1u] = l;
    }
}


@compute @workgroup_size(SG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let item = work_of(interleaved_item(wg.x + wg.y * groups.x, groups.x * groups.y, params.interleave));
    if (item.row0 >= item.rows) {
        return;
    }
    let s = item.s;
    let grp = item.grp;
    let b = item.b;
    let qr = item.qr;
    let n_q = qr.y;
    let rows = item.rows;
    let row0 = item.row0;
    let qbase = qr.x * params.h;
    let bs = params.block_size;
    let cap = params.max_blocks * bs;
    let seq_len = seq_lens[b];
    let last_row = min(row0 + G, rows) - 1u;
    let kend = row_limit(last_row, n_q, seq_len, cap);
    let k0 = s * params.split_len;
    var k1 = min(k0 + params.split_len, kend);
    if (s == params.n_split - 1u) {
        k1 = kend;
    }

    // Rows row0 + n (n < G; past the sequence's rows: a copy of its last row, never written).
    var st0: RowState;
    var st1: RowState;
    var st2: RowState;
    var st3: RowState;
    var st4: RowState;
    var st5: RowState;
    var st6: RowState;
    var st7: RowState;
    var st8: RowState;
    var st9: RowState;
    var st10: RowState;
    var st11: RowState;
    var st12: RowState;
    var st13: RowState;
    var st14: RowState;
    var st15: RowState;
    // G is an override constant: the rows past it are removed when the pipeline is built.
    let rl = min(row0, rows - 1u);
    row_init(&st0, qbase + rl, lane, row_limit(rl, n_q, seq_len, cap));
    if (G > 1u) {
        let r = min(row0 + 1u, rows - 1u);
        row_init(&st1, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
    }
    if (G > 2u) {
        var r = min(row0 + 2u, rows - 1u);
        row_init(&st2, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
        r = min(row0 + 3u, rows - 1u);
        row_init(&st3, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
    }
    if (G > 4u) {
        var r = min(row0 + 4u, rows - 1u);
        row_init(&st4, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
        r = min(row0 + 5u, rows - 1u);
        row_init(&st5, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
        r = min(row0 + 6u, rows - 1u);
        row_init(&st6, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
        r = min(row0 + 7u, rows - 1u);
        row_init(&st7, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
    }
    if (G > 8u) {
        var r = min(row0 + 8u, rows - 1u);
        row_init(&st8, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
        r = min(row0 + 9u, rows - 1u);
        row_init(&st9, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
        r = min(row0 + 10u, rows - 1u);
        row_init(&st10, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
        r = min(row0 + 11u, rows - 1u);
        row_init(&st11, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
        r = min(row0 + 12u, rows - 1u);
        row_init(&st12, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
        r = min(row0 + 13u, rows - 1u);
        row_init(&st13, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
        r = min(row0 + 14u, rows - 1u);
        row_init(&st14, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
        r = min(row0 + 15u, rows - 1u);
        row_init(&st15, qbase + r, lane, row_limit(r, n_q, seq_len, cap));
    }

    // One iteration per pair of keys (a split has at most split_len keys, which the host keeps
    // far below llvmpipe's loop limit): the lane's 18 vec4 columns of both key rows, loaded once
    // for all G rows. The second key of the last pair may lie past the split: it is masked, and
    // its block-table entry is read at the split's last key instead.
    for (var j = k0; j < k1; j += 2u) {
        let ka = key_row(b, j, true, lane);
        let kb = key_row(b, min(j + 1u, k1 - 1u), j + 1u < k1, lane);
        let va = ka.valid;
        let vb = kb.valid;
        // Whole variables: a function's pointer argument may not point into a struct.
        var ca = ka.c;
        var cb = kb.c;
        row_keys(&st0, &ca, &cb, j, va, vb);
        if (G > 1u) {
            row_keys(&st1, &ca, &cb, j, va, vb);
        }
        if (G > 2u) {
            row_keys(&st2, &ca, &cb, j, va, vb);
            row_keys(&st3, &ca, &cb, j, va, vb);
        }
        if (G > 4u) {
            row_keys(&st4, &ca, &cb, j, va, vb);
            row_keys(&st5, &ca, &cb, j, va, vb);
            row_keys(&st6, &ca, &cb, j, va, vb);
            row_keys(&st7, &ca, &cb, j, va, vb);
        }
        if (G > 8u) {
            row_keys(&st8, &ca, &cb, j, va, vb);
            row_keys(&st9, &ca, &cb, j, va, vb);
            row_keys(&st10, &ca, &cb, j, va, vb);
            row_keys(&st11, &ca, &cb, j, va, vb);
            row_keys(&st12, &ca, &cb, j, va, vb);
            row_keys(&st13, &ca, &cb, j, va, vb);
            row_keys(&st14, &ca, &cb, j, va, vb);
            row_keys(&st15, &ca, &cb, j, va, vb);
        }
    }

    let part_base = s * params.tokens * params.h + qbase;
    row_out(&st0, row0, rows, lane, qbase, part_base);
    if (G > 1u) {
        row_out(&st1, row0 + 1u, rows, lane, qbase, part_base);
    }
    if (G > 2u) {
        row_out(&st2, row0 + 2u, rows, lane, qbase, part_base);
        row_out(&st3, row0 + 3u, rows, lane, qbase, part_base);
    }
    if (G > 4u) {
        row_out(&st4, row0 + 4u, rows, lane, qbase, part_base);
        row_out(&st5, row0 + 5u, rows, lane, qbase, part_base);
        row_out(&st6, row0 + 6u, rows, lane, qbase, part_base);
        row_out(&st7, row0 + 7u, rows, lane, qbase, part_base);
    }
    if (G > 8u) {
        row_out(&st8, row0 + 8u, rows, lane, qbase, part_base);
        row_out(&st9, row0 + 9u, rows, lane, qbase, part_base);
        row_out(&st10, row0 + 10u, rows, lane, qbase, part_base);
        row_out(&st11, row0 + 11u, rows, lane, qbase, part_base);
        row_out(&st12, row0 + 12u, rows, lane, qbase, part_base);
        row_out(&st13, row0 + 13u, rows, lane, qbase, part_base);
        row_out(&st14, row0 + 14u, rows, lane, qbase, part_base);
        row_out(&st15, row0 + 15u, rows, lane, qbase, part_base);
    }
}
#else
@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let item = work_of(interleaved_item(wg.x + wg.y * groups.x, groups.x * groups.y, params.interleave));
    if (item.row0 >= item.rows) {
        return;
    }
    let s = item.s;
    let grp = item.grp;
    let b = item.b;
    let qr = item.qr;
    let n_q = qr.y;
    let rows = item.rows;
    let row0 = item.row0;
    // Packed index of the sequence's row 0, and rows of all sequences.
    let qbase = qr.x * params.h;
    let all_rows = params.tokens * params.h;
    let bs = params.block_size;
    let cap = params.max_blocks * bs;
    let seq_len = seq_lens[b];

    // The key range of this workgroup, computed by one invocation and made uniform.
    if (lid == 0u) {
        let last_row = min(row0 + G, rows) - 1u;
        let kend = row_limit(last_row, n_q, seq_len, cap);
        let k0 = s * params.split_len;
        var k1 = min(k0 + params.split_len, kend);
        if (s == params.n_split - 1u) {
            k1 = kend;
        }
        range_s = vec2<u32>(k0, max(k0, k1));
    }
    let range = workgroupUniformLoad(&range_s);
    let k0 = range.x;
    let k1 = range.y;

    // Softmax role (lid < G): running max and sum of row row0 + lid.
    var m = NEG_BIG;
    var l = 0.0;

#if VEC4
    let tk = WG * JB;
    let dc4 = params.d_c / 4u;
    let dr4 = params.d_r / 4u;
    let w4 = dc4 + dr4;
    // Work area (vec4 indices): scores [16][tk], p [tk][16], alpha [16], l [16] (floats).
    let work = params.work_base / 4u + work_slot(qr.x, b, grp, s) * (8u * tk + 8u);
    let p_at = work + 4u * tk;
    let alpha_at = work + 8u * tk;
    let l_at = alpha_at + 4u;
    // Phase P lanes: lane cb < npl owns vec4 columns cb + k * npl (k < DB); other lanes idle.
    let npl = (dc4 + DB - 1u) / DB;
    var acc: array<vec4<f32>, 64>;
    // Nested small loops everywhere (not one loop over G * DB): a loop the compiler does not
    // unroll indexes the array dynamically, and then every access to it becomes a gather.
    for (var hh = 0u; hh < G; hh++) {
        for (var k = 0u; k < DB; k++) {
            acc[hh * DB + k] = vec4<f32>(0.0);
        }
    }

    for (var j0 = k0; j0 < k1; j0 += tk) {
        let nt = min(tk, k1 - j0);
        // S. Scores of keys j0 + lid * JB + k (k < JB) against the G rows.
        var sc: array<f32, 128>;
        for (var hh = 0u; hh < G; hh++) {
            for (var k = 0u; k < JB; k++) {
                sc[hh * JB + k] = 0.0;
            }
        }
        var base: array<u32, 8>;
        var ok: array<bool, 8>;
        var any_ok = false;
        for (var k = 0u; k < JB; k++) {
            let jj = j0 + lid * JB + k;
            var blk = params.num_blocks;
            if (jj < k1) {
                blk = block_table[b * params.max_blocks + jj / bs];
            }
            ok[k] = blk < params.num_blocks;
            base[k] = select(0u, (blk * bs + jj % bs) * w4, ok[k]);
            any_ok = any_ok || ok[k];
        }
        if (any_ok) {
            for (var d4 = 0u; d4 < dc4; d4++) {
                var cv: array<vec4<f32>, 8>;
                for (var k = 0u; k < JB; k++) {
                    cv[k] = sget4(cache[base[k] + d4]);
                }
                for (var hh = 0u; hh < G; hh++) {
                    let q = q_lat[(qbase + min(row0 + hh, rows - 1u)) * dc4 + d4];
                    for (var k = 0u; k < JB; k++) {
                        sc[hh * JB + k] += dot(q, cv[k]);
                    }
                }
            }
            for (var d4 = 0u; d4 < dr4; d4++) {
                var cv: array<vec4<f32>, 8>;
                for (var k = 0u; k < JB; k++) {
                    cv[k] = sget4(cache[base[k] + dc4 + d4]);
                }
                for (var hh = 0u; hh < G; hh++) {
                    let q = q_rope[(qbase + min(row0 + hh, rows - 1u)) * dr4 + d4];
                    for (var k = 0u; k < JB; k++) {
                        sc[hh * JB + k] += dot(q, cv[k]);
                    }
                }
            }
        }
        for (var hh = 0u; hh < G; hh++) {
            let lim = row_limit(min(row0 + hh, rows - 1u), n_q, seq_len, cap);
            var v: vec4<f32>;
            for (var k = 0u; k < JB; k++) {
                let jj = j0 + lid * JB + k;
                let valid = ok[k] && jj < lim;
                v[k % 4u] = select(NEG_BIG, sc[hh * JB + k] * params.scale, valid);
                if (k % 4u == 3u || k == JB - 1u) {
                    scratch[work + (hh * tk + lid * JB + k) / 4u] = v;
                }
            }
        }
        storageBarrier();
        // M. Online softmax, one invocation per row; p written as [key][16 rows].
        if (lid < G) {
            let sb = work * 4u + lid * tk;
            var tmax = NEG_BIG;
            for (var t = 0u; t < nt; t++) {
                let i = sb + t;
                tmax = max(tmax, scratch[i / 4u][i % 4u]);
            }
            let m_new = max(m, tmax);
            let alpha = exp(m - m_new);
            var psum = 0.0;
            for (var t = 0u; t < nt; t++) {
                let i = sb + t;
                let sv = scratch[i / 4u][i % 4u];
                let p = select(0.0, exp(sv - m_new), sv > NEG_BIG);
                let o = p_at * 4u + t * 16u + lid;
                scratch[o / 4u][o % 4u] = p;
                psum += p;
            }
            l = l * alpha + psum;
            m = m_new;
            let o = alpha_at * 4u + lid;
            scratch[o / 4u][o % 4u] = alpha;
        }
        storageBarrier();
        // P. acc = acc * alpha + sum_t p_t c_t over DB vec4 columns, all G rows.
        for (var cb = lid; cb < npl; cb += WG) {
        for (var h4 = 0u; h4 < (G + 3u) / 4u; h4++) {
            let a4 = scratch[alpha_at + h4];
            for (var e = 0u; e < 4u; e++) {
                let hh = h4 * 4u + e;
                if (hh < G) {
                    for (var k = 0u; k < DB; k++) {
                        acc[hh * DB + k] *= a4[e];
                    }
                }
            }
        }
        // Branch-free (a branch would turn every accumulator update into a masked select on
        // lavapipe): a key with a bad block id reads slot 0 and zeroes it with a select.
        for (var t = 0u; t < nt; t++) {
            let kj = j0 + t;
            let blk = block_table[b * params.max_blocks + kj / bs];
            let valid = blk < params.num_blocks;
            let kb = select(0u, (blk * bs + kj % bs) * w4, valid);
            var cv: array<vec4<f32>, 16>;
            for (var k = 0u; k < DB; k++) {
                let c = sget4(cache[kb + min(cb + k * npl, dc4 - 1u)]);
                cv[k] = select(vec4<f32>(0.0), c, valid);
            }
            var pv: array<vec4<f32>, 4>;
            for (var h4 = 0u; h4 < 4u; h4++) {
                pv[h4] = scratch[p_at + t * 4u + h4];
            }
            for (var hh = 0u; hh < G; hh++) {
                let p = vec4<f32>(pv[hh / 4u][hh % 4u]);
                for (var k = 0u; k < DB; k++) {
                    acc[hh * DB + k] = fma(p, cv[k], acc[hh * DB + k]);
                }
            }
        }
        }
        storageBarrier();
    }

    let part_base = s * all_rows + qbase;
    if (lid < G) {
        let o = l_at * 4u + lid;
        scratch[o / 4u][o % 4u] = l;
        let my_row = row0 + lid;
        if (params.n_split > 1u && my_row < rows) {
            let ml = params.n_split * all_rows * params.d_c + 2u * (part_base + my_row);
            scratch[ml / 4u][ml % 4u] = m;
            scratch[ml / 4u][ml % 4u + 1u] = l;
        }
    }
    storageBarrier();
    for (var cb = lid; cb < npl; cb += WG) {
    for (var hh = 0u; hh < G; hh++) {
        let r = row0 + hh;
        if (r < rows) {
            let o = l_at * 4u + hh;
            let lr = scratch[o / 4u][o % 4u];
            let inv = select(0.0, 1.0 / lr, lr > 0.0);
            for (var k = 0u; k < DB; k++) {
                let col = cb + k * npl;
                if (col < dc4) {
                    if (params.n_split == 1u) {
                        o_lat[(qbase + r) * dc4 + col] = acc[hh * DB + k] * inv;
                    } else {
                        scratch[(part_base + r) * dc4 + col] = acc[hh * DB + k];
                    }
                }
            }
        }
    }
}
#else
    let w = params.d_c + params.d_r;
    let work = params.work_base + work_slot(qr.x, b, grp, s) * WORK;
    var acc: array<f32, 32>;
    for (var a = 0u; a < 32u; a++) {
        acc[a] = 0.0;
    }

    for (var j0 = k0; j0 < k1; j0 += TK) {
        let nt = min(TK, k1 - j0);
        // S. Scores: this invocation's key against all G rows.
        let jj = j0 + lid;
        var sc: array<f32, 16>;
        for (var hh = 0u; hh < 16u; hh++) {
            sc[hh] = 0.0;
        }
        var key_ok = false;
        if (jj < k1) {
            let blk = block_table[b * params.max_blocks + jj / bs];
            if (blk < params.num_blocks) {
                key_ok = true;
                let base = (blk * bs + jj % bs) * w;
                for (var d = 0u; d < params.d_c; d++) {
                    let c = cache_at(base + d);
                    for (var hh = 0u; hh < G; hh++) {
                        let q = qbase + min(row0 + hh, rows - 1u);
                        sc[hh] = fma(q_lat[q * params.d_c + d], c, sc[hh]);
                    }
                }
                for (var d = 0u; d < params.d_r; d++) {
                    let c = cache_at(base + params.d_c + d);
                    for (var hh = 0u; hh < G; hh++) {
                        let q = qbase + min(row0 + hh, rows - 1u);
                        sc[hh] = fma(q_rope[q * params.d_r + d], c, sc[hh]);
                    }
                }
            }
        }
        for (var hh = 0u; hh < G; hh++) {
            let lim = row_limit(min(row0 + hh, rows - 1u), n_q, seq_len, cap);
            let ok = key_ok && jj < lim;
            scratch[work + hh * TK + lid] = select(NEG_BIG, sc[hh] * params.scale, ok);
        }
        storageBarrier();
        // M. Online softmax, one invocation per row.
        if (lid < G) {
            let pb = work + lid * TK;
            var tmax = NEG_BIG;
            for (var t = 0u; t < nt; t++) {
                tmax = max(tmax, scratch[pb + t]);
            }
            let m_new = max(m, tmax);
            let alpha = exp(m - m_new);
            var psum = 0.0;
            for (var t = 0u; t < nt; t++) {
                let sv = scratch[pb + t];
                let p = select(0.0, exp(sv - m_new), sv > NEG_BIG);
                scratch[pb + t] = p;
                psum += p;
            }
            l = l * alpha + psum;
            m = m_new;
            scratch[work + 16u * TK + lid] = alpha;
        }
        storageBarrier();
        // P. acc = acc * alpha + sum_t p_t c_t over this invocation's columns, all G rows.
        for (var hh = 0u; hh < G; hh++) {
            let a = scratch[work + 16u * TK + hh];
            for (var k = 0u; k < NPC; k++) {
                acc[k * G + hh] *= a;
            }
        }
        for (var t = 0u; t < nt; t++) {
            let kj = j0 + t;
            let blk = block_table[b * params.max_blocks + kj / bs];
            if (blk < params.num_blocks) {
                let base = (blk * bs + kj % bs) * w;
                var cv: array<f32, 8>;
                for (var k = 0u; k < NPC; k++) {
                    cv[k] = cache_at(base + min(lid + k * WG, params.d_c - 1u));
                }
                for (var hh = 0u; hh < G; hh++) {
                    let p = scratch[work + hh * TK + t];
                    for (var k = 0u; k < NPC; k++) {
                        acc[k * G + hh] = fma(p, cv[k], acc[k * G + hh]);
                    }
                }
            }
        }
        storageBarrier();
    }

    // Publish each row's sum and write out.
    if (lid < G) {
        scratch[work + 16u * TK + 16u + lid] = l;
        let my_row = row0 + lid;
        if (params.n_split > 1u && my_row < rows) {
            let part_base = s * all_rows + qbase;
            let ml = params.n_split * all_rows * params.d_c + 2u * (part_base + my_row);
            scratch[ml] = m;
            scratch[ml + 1u] = l;
        }
    }
    storageBarrier();
    let part_base = s * all_rows + qbase;
    for (var hh = 0u; hh < G; hh++) {
        let r = row0 + hh;
        if (r < rows) {
            let lr = scratch[work + 16u * TK + 16u + hh];
            let inv = select(0.0, 1.0 / lr, lr > 0.0);
            for (var k = 0u; k < NPC; k++) {
                let col = lid + k * WG;
                if (col < params.d_c) {
                    if (params.n_split == 1u) {
                        o_lat[(qbase + r) * params.d_c + col] = acc[k * G + hh] * inv;
                    } else {
                        scratch[(part_base + r) * params.d_c + col] = acc[k * G + hh];
                    }
                }
            }
        }
    }
#endif
}
#endif
