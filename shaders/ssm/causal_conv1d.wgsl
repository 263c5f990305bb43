// causal_conv1d: Mamba's depthwise causal convolution (causal_conv1d_fn, and causal_conv1d_update
// as its one-token case), one kernel run in two modes.
//
// Math, per sequence row r, channel d, time t (0-based within the sequence), width W in 2..=4:
//   y[r,d,t] = act(bias[d] + Σ_{k<W} w[d,k] · in(t − W + 1 + k))       act = SiLU or identity
//   in(j) = x[r,d,j] for j ≥ 0; for j < 0 the initial state's element j + W − 1 (the state holds
//   the last W − 1 inputs before t = 0, oldest first), or 0 without one.
//   final state[j] = in(len − (W − 1) + j), j < W − 1: the last W − 1 inputs, the initial state
//   in front when len < W − 1.
//
// Layouts: x and y are strided views (offset + strides, in elements) of (Bt, D, L), any
// strides: channel-first (Bt, D, L), channel-last (Bt, L, D) permuted, or a column window of a
// packed projection. weight (D, W), bias (D), states (rows, D, W − 1) row-major f32.
// Three ways sequences are laid out (flags):
//   batched   rows = Bt, each (b, :, 0..L) one sequence; initial states from `init` (Bt, D, W−1)
//             or in place from `states`; final states to `states` (Bt, D, W−1).
//   RAGGED    Bt = 1 and the L = T tokens are packed sequences: sequence s is tokens
//             cu_seqlens[s] .. cu_seqlens[s+1]; with HAS_SLOTS its state row is slots[s] of the
//             pool `states` (Pool, D, W−1) (a slot < 0 or ≥ Pool skips it: y = 0 on its tokens,
//             the pool untouched). Tokens outside every sequence get y = 0.
//   UNIT_SEQS the decode step: like RAGGED with sequence s = token s alone (no cu_seqlens).
//
// Storage dtype (common/storage.wgsl): x and y share one dtype, f32 or (flag F16 or BF16)
// 16-bit halves, two per u32 word (element i in word i / 2, the low half for even i); weight,
// bias and the states are f32. Loads widen, math is f32, y is rounded on store with an
// atomicAnd/atomicOr pair on its word (the other half may be another invocation's, or outside
// y's view, and is left alone). A final state copies inputs, so half inputs are exact in it.
//
// Work split: mode 0 (outputs) runs one invocation per (b, d, chunk of CHUNK times); with
// D_FAST consecutive invocations take consecutive channels (coalesced for channel-last views),
// else consecutive chunks (channel-first). It slides a window of the last W − 1 inputs along
// its chunk, filled where the chunk starts and, for packed sequences, refilled where a sequence
// starts, so x is read about once; it never writes a state. Flag VEC4 (batched f32 rows whose
// views are channel-contiguous and 16-byte aligned): an invocation takes 4 consecutive channels,
// reading x and writing y 16 bytes per time, four times per trip. Mode 1 (states) runs one
// invocation per (sequence, channel): it reads the W − 1 values of the final state (x, or the
// old state row) into registers, then writes the row, so a state updated in place is read and
// written by one invocation only. The host records mode 1 after mode 0 in the same batch (wgpu
// orders the two), so mode 0 always sees the old states. Linear workgroup index (2-D grid past
// 65535 workgroups).
// Bound: memory. Each output reads one input and writes one value: ~8 bytes per output at f32
// against 2·W FLOPs (+4 for SiLU). On a GPU consecutive invocations read consecutive channels
// (D_FAST) or times, so each load is coalesced; CHUNK = 8 keeps many invocations in flight. On
// lavapipe every access is a loop over the 8 SIMD lanes and both sides of a branch run, so the
// passes and the packed/batched split are pipeline constants (no dead code runs), chunks are 64
// times (the per-invocation setup spread thin) and VEC4 quarters the accesses; a channel-last
// row's next time is 8 KB on, which the CPU's prefetchers do not follow, so four times' loads
// are issued together to overlap their misses.

const WG: u32 = 256u;
// Pipeline constants (the host builds one pipeline per combination it records), so that the
// code a dispatch does not need is compiled out, not run under an empty lane mask (llvmpipe runs
// both sides of a branch whatever the lanes take, loads included):
override MODE: u32 = 0u;       // 0: outputs, 1: final states
override PACKED: bool = false; // RAGGED or UNIT_SEQS: a sequence may start inside a chunk
override CHUNK: u32 = 8u;      // outputs per invocation in mode 0 (the host's chunk)

const HAS_BIAS: u32 = 1u;
const SILU: u32 = 2u;
const RAGGED: u32 = 4u;
const UNIT_SEQS: u32 = 8u;
const HAS_INIT: u32 = 16u;       // initial states are read
const INIT_IN_STATES: u32 = 32u; // ... from `states` (the pool, or in place), not `init`
const HAS_SLOTS: u32 = 64u;
const D_FAST: u32 = 128u;

struct Params {
    flags: u32,
    batch: u32,  // Bt (1 for RAGGED and UNIT_SEQS)
    dim: u32,    // D
    len: u32,    // L (T packed tokens for RAGGED and UNIT_SEQS)
    width: u32,  // W
    seqs: u32,   // state rows written by mode 1: Bt, or S sequences
    pool: u32,   // rows of `states` (slot bound)
    items: u32,  // invocations of this mode
    x_off: u32,
    x_sb: u32,
    x_sd: u32,
    x_st: u32,
    y_off: u32,
    y_sb: u32,
    y_sd: u32,
    y_st: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;       // view of (Bt, D, L)
#else
@group(0) @binding(1) var<storage, read> x: array<sword>;           // view of (Bt, D, L)
#endif
@group(0) @binding(2) var<storage, read> weight: array<f32>;        // (D, W)
@group(0) @binding(3) var<storage, read> bias: array<f32>;          // (D)
@group(0) @binding(4) var<storage, read> init: array<f32>;          // (Bt, D, W − 1)
@group(0) @binding(5) var<storage, read> cu_seqlens: array<i32>;    // (S + 1)
@group(0) @binding(6) var<storage, read> slots: array<i32>;         // (S)
@group(0) @binding(7) var<storage, read_write> states: array<f32>;  // (rows, D, W − 1)
#if F16 || BF16
@group(0) @binding(8) var<storage, read_write> y: array<atomic<u32>>; // view of (Bt, D, L), halves
#else
#if VEC4
@group(0) @binding(8) var<storage, read_write> y: array<vec4<f32>>; // view of (Bt, D, L)
#else
@group(0) @binding(8) var<storage, read_write> y: array<f32>;       // view of (Bt, D, L)
#endif
#endif

#include "common/storage"

fn has(f: u32) -> bool {
    return (params.flags & f) != 0u;
}

// Sequence s: its token range [start, end) on the time axis and its state row (`ok` false when
// a slot skips it).
struct Seq {
    start: u32,
    end: u32,
    row: u32,
    ok: bool,
}

fn sequence(b: u32, s: u32) -> Seq {
    var q: Seq;
    q.ok = true;
    q.row = b;
    q.start = 0u;
    q.end = params.len;
    if (has(UNIT_SEQS)) {
        q.start = s;
        q.end = s + 1u;
        q.row = s;
    } else if (has(RAGGED)) {
        // Clamped so that malformed offsets stay in bounds (they give wrong sequences, never
        // reads outside x).
        q.start = min(u32(max(cu_seqlens[s], 0)), params.len);
        q.end = clamp(u32(max(cu_seqlens[s + 1u], 0)), q.start, params.len);
        q.row = s;
    }
    if (has(HAS_SLOTS)) {
        let slot = slots[s];
        q.ok = slot >= 0 && u32(slot) < params.pool;
        q.row = u32(max(slot, 0));
    }
    return q;
}

// The sequence holding token t: the last s with cu_seqlens[s] ≤ t (binary search), or
// `seqs` when t precedes every sequence or follows the last.
fn sequence_of(t: u32) -> u32 {
    if (has(UNIT_SEQS)) {
        return t;
    }
    var lo = 0u;
    var hi = params.seqs; // invariant: cu[lo] ≤ t < cu[hi] (cu[seqs] taken as +∞)
    if (i32(t) < cu_seqlens[0]) {
        return params.seqs;
    }
    // A for loop with a count, not a while: any u32 range halves to one within 32 steps.
    for (var halving = 0u; halving < 32u && hi - lo > 1u; halving++) {
        let mid = (lo + hi) / 2u;
        if (cu_seqlens[mid] <= i32(t)) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if (i32(t) >= cu_seqlens[params.seqs]) {
        return params.seqs;
    }
    return lo;
}

fn x_at(b: u32, d: u32, t: u32) -> f32 {
    let i = params.x_off + b * params.x_sb + d * params.x_sd + t * params.x_st;
#if VEC4
    return x[i / 4u][i % 4u];
#else
    return sget(x[i / SPW], i % SPW);
#endif
}

// Element j (0 ≤ j < W − 1) of the initial state of row `row`, channel d (0 without one).
fn init_at(row: u32, d: u32, j: u32) -> f32 {
    if (!has(HAS_INIT)) {
        return 0.0;
    }
    let i = (row * params.dim + d) * (params.width - 1u) + j;
    if (has(INIT_IN_STATES)) {
        return states[i];
    }
    return init[i];
}

// The input at time `start + p` of sequence q (p may be negative: the initial state).
fn input(b: u32, d: u32, q: Seq, p: i32) -> f32 {
    if (p >= 0) {
        return x_at(b, d, q.start + u32(p));
    }
    return init_at(q.row, d, u32(p + i32(params.width) - 1)); // p ≥ −(W − 1)
}

fn store_y(b: u32, d: u32, t: u32, v: f32) {
    let i = params.y_off + b * params.y_sb + d * params.y_sd + t * params.y_st;
#if F16 || BF16
    // Two elements share a word and may belong to two invocations (or lie outside the view):
    // clear and set only this element's half; disjoint bits commute.
    let shift = (i & 1u) * 16u;
    atomicAnd(&y[i / 2u], ~(0xffffu << shift));
    atomicOr(&y[i / 2u], half_bits(v) << shift);
#else
#if VEC4
    y[i / 4u][i % 4u] = v;
#else
    y[i] = v;
#endif
#endif
}

// The inputs at t − 3, t − 2, t − 1 of sequence q (0 before the W − 1 its taps reach).
fn window(b: u32, d: u32, q: Seq, t: u32) -> vec3<f32> {
    let rel = i32(t - q.start);
    let oldest = 1 - i32(params.width); // the earliest input a tap reaches
    var h = vec3<f32>(0.0);
    if (rel - 3 >= oldest) {
        h.x = input(b, d, q, rel - 3);
    }
    if (rel - 2 >= oldest) {
        h.y = input(b, d, q, rel - 2);
    }
    h.z = input(b, d, q, rel - 1);
    return h;
}

// The taps of channel d, right-aligned (zeros in front for W < 4).
fn taps_of(d: u32) -> vec4<f32> {
    let w = params.width;
    let base = d * w;
    var taps = vec4<f32>(0.0, 0.0, weight[base + w - 2u], weight[base + w - 1u]);
    if (w >= 3u) {
        taps.y = weight[base + w - 3u];
    }
    if (w >= 4u) {
        taps.x = weight[base];
    }
    return taps;
}

// Outputs t0 .. t0 + CHUNK of (b, d): a sliding window of the previous inputs, filled (from x
// or the initial state) where the chunk starts and, for packed sequences, refilled wherever a
// sequence starts, so each input is read once. A batched row is one sequence, so its window is
// filled once, before the loop, and the loop body is the taps alone. The taps sit right-aligned
// in a vec4 (zeros in front for W < 4), so the window is always the three previous inputs and
// nothing is indexed at run time (run-time indexed private arrays spill to memory on CPU
// compilers such as llvmpipe's).
fn outputs(i: u32) {
    let dim = params.dim;
    let len = params.len;
    let chunks = (len + CHUNK - 1u) / CHUNK;
    var d: u32;
    var c: u32;
    if (has(D_FAST)) {
        d = i % dim;
        c = (i / dim) % chunks;
    } else {
        c = i % chunks;
        d = (i / chunks) % dim;
    }
    let b = i / (dim * chunks);
    let taps = taps_of(d);
    var b0 = 0.0;
    if (has(HAS_BIAS)) {
        b0 = bias[d];
    }
    let t0 = c * CHUNK;
    let t1 = min(t0 + CHUNK, len);
    if (!PACKED) {
        // Batched: row b is one sequence.
        let q = sequence(b, 0u);
        segment(b, d, q, t0, t1, taps, b0, q.ok);
        return;
    }
    // Packed: the chunk is walked segment by segment, a segment being the part of one sequence
    // in the chunk (or one token outside every sequence). Each segment has at least one token,
    // so at most CHUNK of them.
    var t = t0;
    for (var seg = 0u; seg < CHUNK && t < t1; seg++) {
        let s = sequence_of(t);
        let inside = s < params.seqs;
        let q = sequence(b, min(s, max(params.seqs, 1u) - 1u));
        // A skipped sequence (slot), a token outside every sequence, or malformed cu_seqlens
        // (t before its sequence's start) give zeros.
        let live = inside && q.ok && t >= q.start && t < q.end;
        var end = t + 1u;
        if (inside) {
            end = clamp(q.end, t + 1u, t1);
        }
        segment(b, d, q, t, end, taps, b0, live);
        t = end;
    }
}

// Outputs t0 .. t1 of (b, d) within sequence q (zeros unless `live`): the window of the inputs
// before t0 filled once, then the taps alone per output.
fn segment(b: u32, d: u32, q: Seq, t0: u32, t1: u32, taps: vec4<f32>, b0: f32, live: bool) {
    var h = vec3<f32>(0.0); // the inputs at t − 3, t − 2, t − 1 of sequence q
    if (live) {
        h = window(b, d, q, t0);
    }
    for (var t = t0; t < t1; t++) {
        let xt = x_at(b, d, t);
        var acc = b0 + dot(taps, vec4<f32>(h, xt));
        if (has(SILU)) {
            acc = acc / (1.0 + exp(-acc));
        }
        store_y(b, d, t, select(0.0, acc, live));
        h = vec3<f32>(h.y, h.z, xt);
    }
}

#if VEC4
// The inputs at t = −3, −2, −1 of channel d: its initial state's last elements (0 where the
// state is shorter, or absent).
fn initial_window(q: Seq, d: u32) -> vec3<f32> {
    let w = params.width;
    var h = vec3<f32>(0.0, 0.0, init_at(q.row, d, w - 2u));
    if (w >= 3u) {
        h.y = init_at(q.row, d, w - 3u);
    }
    if (w >= 4u) {
        h.x = init_at(q.row, d, w - 4u);
    }
    return h;
}

// x at time t of channels d .. d + 3 (d % 4 = 0; the view's channel stride is 1 and its
// offset and other strides are multiples of 4).
fn x4(b: u32, d: u32, t: u32) -> vec4<f32> {
    return x[(params.x_off + b * params.x_sb + d + t * params.x_st) / 4u];
}

// outputs() for 4 consecutive channels at once (batched rows, f32, channel-contiguous views
// aligned to 16 bytes): one 16-byte load of x and one store of y per time, the four channels'
// taps as four vec4 (one per tap, across the channels).
fn outputs4(i: u32) {
    let quads = params.dim / 4u;
    let len = params.len;
    let chunks = (len + CHUNK - 1u) / CHUNK;
    let d = (i % quads) * 4u;
    let c = (i / quads) % chunks;
    let b = i / (quads * chunks);
    let ta = taps_of(d);
    let tb = taps_of(d + 1u);
    let tc = taps_of(d + 2u);
    let td = taps_of(d + 3u);
    let w3 = vec4<f32>(ta.x, tb.x, tc.x, td.x); // the tap on t − 3, per channel
    let w2 = vec4<f32>(ta.y, tb.y, tc.y, td.y);
    let w1 = vec4<f32>(ta.z, tb.z, tc.z, td.z);
    let w0 = vec4<f32>(ta.w, tb.w, tc.w, td.w); // the tap on t
    var b0 = vec4<f32>(0.0);
    if (has(HAS_BIAS)) {
        b0 = vec4<f32>(bias[d], bias[d + 1u], bias[d + 2u], bias[d + 3u]);
    }
    let t0 = c * CHUNK;
    let t1 = min(t0 + CHUNK, len);
    let q = sequence(b, 0u);
    // The inputs before t0: x for a later chunk (t0 ≥ CHUNK ≥ 3), the initial states (or 0)
    // for the first; both are computed and one is selected (no branch for llvmpipe to run
    // twice).
    let ha = initial_window(q, d);
    let hb = initial_window(q, d + 1u);
    let hc = initial_window(q, d + 2u);
    let hd = initial_window(q, d + 3u);
    let later = t0 >= 3u;
    let tl = max(t0, 3u);
    var h3 = select(vec4<f32>(ha.x, hb.x, hc.x, hd.x), x4(b, d, tl - 3u), later);
    var h2 = select(vec4<f32>(ha.y, hb.y, hc.y, hd.y), x4(b, d, tl - 2u), later);
    var h1 = select(vec4<f32>(ha.z, hb.z, hc.z, hd.z), x4(b, d, tl - 1u), later);
    // Four times per trip: their loads do not depend on each other, so a CPU overlaps their
    // cache misses (a channel-last row's next time is a row of x further on, which the
    // hardware prefetchers do not follow); past the end of the row they are clamped and not
    // stored.
    let last = len - 1u;
    for (var t = t0; t < t1; t += 4u) {
        let xa = x4(b, d, t);
        let xb = x4(b, d, min(t + 1u, last));
        let xc = x4(b, d, min(t + 2u, last));
        let xd = x4(b, d, min(t + 3u, last));
        store4(b, d, t, activate(b0 + w3 * h3 + w2 * h2 + w1 * h1 + w0 * xa), q.ok);
        if (t + 1u < t1) {
            store4(b, d, t + 1u, activate(b0 + w3 * h2 + w2 * h1 + w1 * xa + w0 * xb), q.ok);
        }
        if (t + 2u < t1) {
            store4(b, d, t + 2u, activate(b0 + w3 * h1 + w2 * xa + w1 * xb + w0 * xc), q.ok);
        }
        if (t + 3u < t1) {
            store4(b, d, t + 3u, activate(b0 + w3 * xa + w2 * xb + w1 * xc + w0 * xd), q.ok);
        }
        h3 = xb;
        h2 = xc;
        h1 = xd;
    }
}

// SiLU where asked for.
fn activate(v: vec4<f32>) -> vec4<f32> {
    if (has(SILU)) {
        return v / (1.0 + exp(-v));
    }
    return v;
}

// y at time t of channels d .. d + 3 (0 for a skipped sequence).
fn store4(b: u32, d: u32, t: u32, v: vec4<f32>, ok: bool) {
    y[(params.y_off + b * params.y_sb + d + t * params.y_st) / 4u] = select(vec4<f32>(0.0), v, ok);
}
#endif

fn final_states(i: u32) {
    let dim = params.dim;
    let d = i % dim;
    let s = i / dim;
    var b = s; // batched: sequence s is batch row s; packed sequences all sit in row 0
    if (has(RAGGED) || has(UNIT_SEQS)) {
        b = 0u;
    }
    let q = sequence(b, s);
    if (!q.ok) {
        return;
    }
    let keep = params.width - 1u;
    let n = i32(q.end - q.start);
    // Read the whole new row before writing it: its older part may come from the same row.
    var row: array<f32, 3>;
    for (var j = 0u; j < keep; j++) {
        row[j] = input(b, d, q, n - i32(keep) + i32(j));
    }
    let base = (q.row * dim + d) * keep;
    for (var j = 0u; j < keep; j++) {
        states[base + j] = row[j];
    }
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wg.x + wg.y * groups.x) * WG + lid;
    if (i >= params.items) {
        return;
    }
    if (MODE == 0u) {
#if VEC4
        outputs4(i);
#else
        outputs(i);
#endif
    } else {
        final_states(i);
    }
}
