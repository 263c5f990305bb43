// state_update: the one-token decode step of mamba_ssm's selective_state_update, in its Mamba-1
// form (per channel) and its multi-head Mamba-2 form, one body for every device (subgroup
// broadcasts only under flag SUBGROUP).
//
// Channels d = h·P + p: H heads of P channels each. The Mamba-1 form is H = D, P = 1 (a "head"
// is a channel); the heads form (pipeline constant HEADS_FORM) has P ≥ 1 channels sharing one
// dt, one A and one B/C group per head. Math, per request b (state row s = slot[b], or b without slots), head
// h, channel p of the head, state n:
//   dt = dt[b,h] + dt_bias[h];  if softplus: dt = softplus(dt)   (= dt for dt > 20)
//   if LIMIT: dt = clamp(dt, lo, hi)                              (heads form only)
//   state[s,h,p,n] = exp(dt·A)·state[s,h,p,n] + dt·B[b,g,n]·x[b,h,p]   (g = h / (H/G))
//   out[b,h,p] = (Σ_n state[s,h,p,n]·C[b,g,n] + D·x[b,h,p]) · silu(z[b,h,p])
// with A = A[h,n] (Mamba-1: A (D, N)) or A[h] for every n (heads: A (H), so exp(dt·A) is one
// exp per row), D = D[h·d_hs + p·d_ps] (D (D), (H) or (H, P)).
// A slot < 0 or ≥ Pool skips request b: its state is untouched and out[b, :] = 0.
//
// Layouts: state (Pool, H, P, N) = (Pool, D, N) row-major, updated in place. x, z, out
// (Bt, H, P) and B, C (Bt, G, N) (G = 1 for (Bt, N)) are strided views of their buffers:
// element (b, h, p) of x at x_off + b·x_rs + h·x_hs + p (z, out likewise; Mamba-1 views are
// (Bt, D) with x_hs = 1), element (b, g, n) of B at b_off + b·b_rs + g·b_gs + n (C likewise);
// the innermost dimension is unit-stride so a row's states stay consecutive. `pk` packs D at
// p_d, dt_bias at p_bias, the slots (Bt, i32 bits) at p_slot, and either dt (Mamba-1: (Bt, D)
// row-major, at word p_dt) or A (heads: (H) f32, at p_dt); the host copies them there, keeping
// the kernel within 8 storage bindings. Binding 3 (`adt`, raw u32 words) is A (D, N) f32 in the
// Mamba-1 form and dt's own buffer in the heads form: dt (Bt, H) is read in place at
// dt_off + b·dt_rs + h, so a column window of a packed projection (any row stride, any offset,
// halves included) needs no copy. (A (H) is small enough to copy; A (D, N) is not.)
//
// Storage dtype (common/storage.wgsl): the activations x, dt, B, C, z and out share one dtype,
// f32 or (flag F16 or BF16) 16-bit halves, two per u32 word (element i in word i / 2, the low
// half for even i); A, D and dt_bias are always f32. Loads widen, math is f32, out
// is rounded on store (half_bits). dt is read from u32 words (in `pk` or `adt`) and decoded with
// sget_bits. Stores of half out: rows of a word
// belong to two invocations (one per row), so each invocation writes its own half with two
// atomics on the word (atomicAnd clears it, atomicOr sets it; disjoint bits commute), as
// latent_cache does: no word ownership needed, any Bt·D (odd included) works.
// The state pool is the second stored role (flags F16_B, BF16_B; independent of the
// activations' dtype): f32, or halves two per u32 word, read widened, updated in f32 and stored
// rounded (half_bits_b). A state row of N halves shares its first or last word with the
// neighbouring row when N is odd, and that row belongs to another invocation, so the half state
// is bound as atomic words: each element is read by atomicLoad and written by atomicAnd/atomicOr
// on its own 16 bits (disjoint bits commute), which works for any N. An invocation owns
// its row's inner words and reads and writes each once
// (update_row_pairs); only the boundary words of odd-N rows take the per-half atomics.
// (NATIVE_F16_B changes nothing here: the state is never bound as f16.)
//
// Flag VEC4 (f32 state, N % 4 = 0): the state pool and `adt` are bound as vec4 arrays, and a row
// is updated 4 states per step (one vec4 load and store of state, one vec4 of A).
// Flag SUBGROUP (with VEC4, composed by the host on CPU adapters whose subgroups hold at least
// 8 invocations): where a subgroup's rows all read the same B and C (one request, one group),
// lane l loads states n + l % 8 of B and C and the subgroup shares them by broadcast, so 8
// states cost 2 load instructions of B and C instead of 16.
//
// Work split: one invocation per (b, d) row (rows = Bt·H·P), looping over its N states; WG rows
// of one request per workgroup: the grid is (⌈D/WG⌉, Bt), so the request index is the
// workgroup's y and everything addressed by it alone (B, C, the slot, dt of a head) is the same
// across the workgroup. Under SUBGROUP (CPU adapters) an invocation walks REQS requests of its
// channel one after another (grid (⌈D/WG⌉, ⌈Bt/REQS⌉)): what the channel reads whatever the
// request (dt_bias, D, and in the Mamba-1 form A's row, in registers for N ≤ 16) loads once
// for them all. GPUs keep REQS = 1: at decode sizes their grid is small already, and fewer
// invocations would idle more of the device than A's loads cost. Rows are independent: no shared memory, no barrier (an earlier split of
// a row over 16 invocations, summed in shared memory, was 5-15x slower on lavapipe, which
// switches between its SIMD fibers at every barrier). Index arithmetic divides by run-time
// values through f32 (common/divide): llvmpipe turns an integer division into one scalar
// divide per lane.
// Bound: memory (state read and written: 8 bytes per state update for f32, plus A's 4 in the
// Mamba-1 form). On a GPU neighbouring invocations' rows are N states apart, so each state load
// is a strided access served from the cache lines the neighbours share; VEC4 makes them
// 16-byte loads. On lavapipe every storage access is a loop over the SIMD lanes whatever the
// addresses, and so is one in a branch no lane takes (both sides of a branch run under a lane
// mask), so the cost is accesses, each component a few instructions per lane: VEC4 makes the
// state and A accesses four times fewer, SUBGROUP shares B and C, and the subgroups that share
// them keep the fallback with the fewest accesses beside them; REQS > 1 takes A's accesses
// from a third of the vec4 accesses per state to a REQS-th of that.

const WG: u32 = 256u;
// SUBGROUP, Mamba-1 form: N / 4 when a state row has at most 16 states (N % 4 = 0), so that A's
// row sits in four vec4 registers for every request of the invocation; 0 (any N): A is loaded
// per 4 states and request.
override NQ: u32 = 0u;
// SUBGROUP: requests per invocation (workgroup y covers requests y·REQS ..). A constant, so
// that the walk over them unrolls: a loop around the row costs llvmpipe its masked-loop
// bookkeeping on every access (the README has the measurement).
override REQS: u32 = 1u;
// The multi-head form (a pipeline constant, not a flag bit: each form's reads stay out of the
// other's code, which llvmpipe would run under an empty lane mask).
override HEADS_FORM: bool = false;

const HAS_D: u32 = 1u;
const HAS_Z: u32 = 2u;
const HAS_BIAS: u32 = 4u;
const SOFTPLUS: u32 = 8u;
const HAS_SLOTS: u32 = 16u;
const LIMIT: u32 = 64u;

struct Params {
    rows: u32,     // Bt · H · P
    dim: u32,      // D = H · P
    n: u32,        // N
    batch: u32,    // Bt
    b_groups: u32,
    c_groups: u32,
    pool: u32,     // rows of the state pool
    flags: u32,
    p_d: u32,
    p_bias: u32,
    p_slot: u32,
    p_dt: u32,    // Mamba-1: dt's first word in pk; heads: A's first word in pk
    x_off: u32,   // x: offset and row stride, in elements
    x_rs: u32,
    z_off: u32,
    z_rs: u32,
    o_off: u32,   // out
    o_rs: u32,
    b_off: u32,   // B: offset, row and group strides
    b_rs: u32,
    b_gs: u32,
    c_off: u32,
    c_rs: u32,
    c_gs: u32,
    head_dim: u32, // P (1 in the Mamba-1 form)
    x_hs: u32,     // head strides of x, z and out (1 in the Mamba-1 form)
    z_hs: u32,
    o_hs: u32,
    dt_off: u32,   // heads: dt (Bt, H) in `adt`: offset and row stride, in elements
    dt_rs: u32,
    d_hs: u32,     // D at h·d_hs + p·d_ps
    d_ps: u32,
    dt_lo: f32,    // LIMIT: dt clamped to [dt_lo, dt_hi]
    dt_hi: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
@group(0) @binding(1) var<storage, read_write> state: array<vec4<f32>>; // (Pool, H, P, N), N % 4 = 0
#else
#if F16_B || BF16_B
@group(0) @binding(1) var<storage, read_write> state: array<atomic<u32>>; // (Pool, H, P, N) halves in pairs
#else
@group(0) @binding(1) var<storage, read_write> state: array<f32>; // (Pool, H, P, N)
#endif
#endif
@group(0) @binding(2) var<storage, read> x: array<sword>;         // (Bt, H, P)
#if VEC4
@group(0) @binding(3) var<storage, read> adt: array<vec4<u32>>;   // A (D, N) f32 | dt (Bt, H) words
#else
@group(0) @binding(3) var<storage, read> adt: array<u32>;         // A (D, N) f32 | dt (Bt, H) words
#endif
@group(0) @binding(4) var<storage, read> pk: array<u32>;          // D | dt_bias | slots | dt or A
@group(0) @binding(5) var<storage, read> bmat: array<sword>;      // (Bt, G, N)
@group(0) @binding(6) var<storage, read> cmat: array<sword>;      // (Bt, G, N)
@group(0) @binding(7) var<storage, read> zgate: array<sword>;     // (Bt, H, P)
#if F16 || BF16
@group(0) @binding(8) var<storage, read_write> out: array<atomic<u32>>; // (Bt, H, P) halves, in pairs
#else
@group(0) @binding(8) var<storage, read_write> out: array<f32>;   // (Bt, H, P)
#endif

#include "common/storage"
#include "common/divide"

fn store_out(i: u32, v: f32) {
#if F16 || BF16
    let shift = (i & 1u) * 16u;
    atomicAnd(&out[i / 2u], ~(0xffffu << shift));
    atomicOr(&out[i / 2u], half_bits(v) << shift);
#else
    out[i] = v;
#endif
}

// Word i of `adt` (A's f32 bits, or dt's raw words).
fn adt_word(i: u32) -> u32 {
#if VEC4
    return adt[i / 4u][i % 4u];
#else
    return adt[i];
#endif
}

fn load_state(i: u32) -> f32 {
#if VEC4
    return state[i / 4u][i % 4u];
#else
#if F16_B || BF16_B
    return sget_bits_b(atomicLoad(&state[i / 2u]), i & 1u);
#else
    return state[i];
#endif
#endif
}

fn store_state(i: u32, v: f32) {
#if VEC4
    state[i / 4u][i % 4u] = v;
#else
#if F16_B || BF16_B
    let shift = (i & 1u) * 16u;
    atomicAnd(&state[i / 2u], ~(0xffffu << shift));
    atomicOr(&state[i / 2u], half_bits_b(v) << shift);
#else
    state[i] = v;
#endif
#endif
}

#include "ssm/softplus"

// What a channel d = h·P + p reads that no request changes: loaded once for all the requests
// of an invocation.
struct Channel {
    real: bool,  // d < D
    h: u32,      // head (the channel in the Mamba-1 form)
    p: u32,      // channel within the head (0 in the Mamba-1 form)
    bias: f32,   // dt_bias[h] (0 without)
    dcoef: f32,  // D's coefficient of the channel (0 without)
    a_head: f32, // heads: A[h]
}

fn channel(d: u32) -> Channel {
    var c = Channel(d < params.dim, 0u, 0u, 0.0, 0.0, 0.0);
    if (!c.real) {
        return c;
    }
    c.h = quotient(d, params.head_dim);
    c.p = d - c.h * params.head_dim;
    if ((params.flags & HAS_BIAS) != 0u) {
        c.bias = bitcast<f32>(pk[params.p_bias + c.h]);
    }
    if ((params.flags & HAS_D) != 0u) {
        c.dcoef = bitcast<f32>(pk[params.p_d + c.h * params.d_hs + c.p * params.d_ps]);
    }
    if (HEADS_FORM) {
        c.a_head = bitcast<f32>(pk[params.p_dt + c.h]);
    }
    return c;
}

struct Row {
    valid: bool, // a real row whose request is not skipped
    real: bool,  // a real row (out is written)
    bi: u32,
    h: u32,      // head (the channel in the Mamba-1 form)
    p: u32,      // channel within the head (0 in the Mamba-1 form)
    slot: u32,
    xv: f32,
    dt: f32,
    da: f32,     // heads: exp(dt·A[h]), the same for every n
}

// Channel c's row of request bi (row = bi·D + d); real iff d < D.
fn row_info(bi: u32, c: Channel) -> Row {
    var r = Row(c.real, c.real, 0u, 0u, 0u, 0u, 0.0, 0.0, 0.0);
    if (!r.real) {
        return r;
    }
    r.bi = bi;
    r.h = c.h;
    r.p = c.p;
    let row = bi * params.dim + c.h * params.head_dim + c.p;
    r.slot = r.bi;
    if ((params.flags & HAS_SLOTS) != 0u) {
        let s = bitcast<i32>(pk[params.p_slot + r.bi]);
        if (s < 0 || u32(s) >= params.pool) {
            r.valid = false;
            return r;
        }
        r.slot = u32(s);
    }
    let xi = params.x_off + r.bi * params.x_rs + r.h * params.x_hs + r.p;
    r.xv = sget(x[xi / SPW], xi % SPW);
    var dt: f32;
    if (HEADS_FORM) {
        let ti = params.dt_off + r.bi * params.dt_rs + r.h;
        dt = sget_bits(adt_word(ti / SPW), ti % SPW);
    } else {
        dt = sget_bits(pk[params.p_dt + row / SPW], row % SPW);
    }
    dt += c.bias;
    if ((params.flags & SOFTPLUS) != 0u) {
        dt = softplus(dt);
    }
    if ((params.flags & LIMIT) != 0u) {
        dt = clamp(dt, params.dt_lo, params.dt_hi);
    }
    r.dt = dt;
    if (HEADS_FORM) {
        r.da = exp(dt * c.a_head);
    }
    return r;
}

// Where a row's inputs start: B, C and the state row.
struct Bases {
    b: u32,
    c: u32,
    s: u32,
}

fn bases(r: Row) -> Bases {
    let nn = params.n;
    let heads = quotient(params.dim, params.head_dim);
    let gb = quotient(r.h, quotient(heads, params.b_groups));
    let gc = quotient(r.h, quotient(heads, params.c_groups));
    return Bases(
        params.b_off + r.bi * params.b_rs + gb * params.b_gs,
        params.c_off + r.bi * params.c_rs + gc * params.c_gs,
        (r.slot * params.dim + r.h * params.head_dim + r.p) * nn,
    );
}

// The decay exp(dt·A) of state n of row r.
fn decay(r: Row, n: u32) -> f32 {
    if (HEADS_FORM) {
        return r.da;
    }
    return exp(r.dt * bitcast<f32>(adt_word(r.h * params.n + n)));
}

// The new state n of row r from its old value.
fn step(r: Row, o: Bases, n: u32, old: f32) -> f32 {
    return decay(r, n) * old + r.dt * b_at(o, n) * r.xv;
}

fn b_at(o: Bases, n: u32) -> f32 {
    return sget(bmat[(o.b + n) / SPW], (o.b + n) % SPW);
}

fn c_at(o: Bases, n: u32) -> f32 {
    return sget(cmat[(o.c + n) / SPW], (o.c + n) % SPW);
}

// Σ_n C·state over row r, after updating its states (0 for a row that is not valid).
fn update(r: Row) -> f32 {
    if (!r.valid) {
        return 0.0;
    }
    let o = bases(r);
#if VEC4
    return update_row_vec4(r, o);
#else
#if F16_B || BF16_B
    return update_row_pairs(r, o);
#else
    return update_row_scalar(r, o);
#endif
#endif
}

// One state at a time (any dtype and N). A valid row's states are stored; invalid rows compute
// and store nothing.
fn update_row_scalar(r: Row, o: Bases) -> f32 {
    var part = 0.0;
    for (var n = 0u; n < params.n; n++) {
        let h = step(r, o, n, load_state(o.s + n));
        if (r.valid) {
            store_state(o.s + n, h);
        }
        part += h * c_at(o, n);
    }
    return part;
}

#if F16_B || BF16_B
// A whole half state row owned by this invocation: the words wholly inside the row
// belong to it alone, so each is read once and written once (atomicStore of both halves); only
// a first element at an odd index and a last one at an even index share their word with the
// neighbouring row (odd N) and go through the per-half atomics. Same order of the C sum.
fn update_row_pairs(r: Row, o: Bases) -> f32 {
    let nn = params.n;
    var part = 0.0;
    var n = 0u;
    if ((o.s & 1u) == 1u) {
        let h = step(r, o, 0u, load_state(o.s));
        store_state(o.s, h);
        part += h * c_at(o, 0u);
        n = 1u;
    }
    for (; n + 1u < nn; n += 2u) {
        let wi = (o.s + n) / 2u;
        let w = atomicLoad(&state[wi]);
        let h0 = step(r, o, n, sget_bits_b(w, 0u));
        let h1 = step(r, o, n + 1u, sget_bits_b(w, 1u));
        atomicStore(&state[wi], half_bits_b(h0) | (half_bits_b(h1) << 16u));
        part += h0 * c_at(o, n);
        part += h1 * c_at(o, n + 1u);
    }
    if (n < nn) {
        let h = step(r, o, n, load_state(o.s + n));
        store_state(o.s + n, h);
        part += h * c_at(o, n);
    }
    return part;
}
#endif

#if VEC4
// A (D, N) at states n .. n + 3 of row r's channel (Mamba-1 form; unused in the heads form).
fn a_quad(r: Row, n: u32) -> vec4<f32> {
    if (HEADS_FORM) {
        return vec4<f32>(0.0);
    }
    return bitcast<vec4<f32>>(adt[(r.h * params.n + n) / 4u]);
}

// States n .. n + 3 of row r (n % 4 = 0) from A, B and C at those states: updated (stored only
// for a valid row) and their C·state terms summed.
fn step4(r: Row, o: Bases, n: u32, av: vec4<f32>, bv: vec4<f32>, cv: vec4<f32>) -> f32 {
    var da = vec4<f32>(r.da);
    if (!HEADS_FORM) {
        da = exp(r.dt * av);
    }
    let si = (o.s + n) / 4u;
    let h = da * state[si] + (r.dt * r.xv) * bv;
    if (r.valid) {
        state[si] = h;
    }
    return dot(h, cv);
}

// A whole f32 state row owned by this invocation (N % 4 = 0, so the row and, in the
// Mamba-1 form, its row of A start on a vec4): one vec4 load and store of state and one of A
// per 4 states. The C sum is taken 4 states at a time (dot), then across the row.
fn update_row_vec4(r: Row, o: Bases) -> f32 {
    var part = 0.0;
    for (var n = 0u; n < params.n; n += 4u) {
        let bv = vec4<f32>(b_at(o, n), b_at(o, n + 1u), b_at(o, n + 2u), b_at(o, n + 3u));
        let cv = vec4<f32>(c_at(o, n), c_at(o, n + 1u), c_at(o, n + 2u), c_at(o, n + 3u));
        part += step4(r, o, n, a_quad(r, n), bv, cv);
    }
    return part;
}
#endif

#if SUBGROUP
// A's row of channel c in registers (NQ > 0: the Mamba-1 form, N ≤ 16), the quads past N zero.
struct ARow {
    q0: vec4<f32>,
    q1: vec4<f32>,
    q2: vec4<f32>,
    q3: vec4<f32>,
}

fn a_row(c: Channel) -> ARow {
    var a = ARow(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    if (NQ == 0u) {
        return a;
    }
    let base = c.h * NQ;
    a.q0 = bitcast<vec4<f32>>(adt[base]);
    if (NQ > 1u) {
        a.q1 = bitcast<vec4<f32>>(adt[base + 1u]);
    }
    if (NQ > 2u) {
        a.q2 = bitcast<vec4<f32>>(adt[base + 2u]);
    }
    if (NQ > 3u) {
        a.q3 = bitcast<vec4<f32>>(adt[base + 3u]);
    }
    return a;
}

// States n .. n + 7 of row r (or n .. n + 3 without `second`) for a subgroup whose rows all read
// the same B and C: lane l loads state n + l % 8 of B and of C and the subgroup shares them by
// broadcast. Every lane of the subgroup runs it (invalid rows compute, store nothing).
fn shared_eight(r: Row, o: Bases, lane: u32, n: u32, a0: vec4<f32>, a1: vec4<f32>,
    second: bool) -> f32 {
    let nl = min(n + lane % 8u, params.n - 1u);
    let bl = b_at(o, nl);
    let cl = c_at(o, nl);
    let b0 = vec4<f32>(subgroupBroadcast(bl, 0u), subgroupBroadcast(bl, 1u),
        subgroupBroadcast(bl, 2u), subgroupBroadcast(bl, 3u));
    let c0 = vec4<f32>(subgroupBroadcast(cl, 0u), subgroupBroadcast(cl, 1u),
        subgroupBroadcast(cl, 2u), subgroupBroadcast(cl, 3u));
    var part = step4(r, o, n, a0, b0, c0);
    if (second) {
        let b1 = vec4<f32>(subgroupBroadcast(bl, 4u), subgroupBroadcast(bl, 5u),
            subgroupBroadcast(bl, 6u), subgroupBroadcast(bl, 7u));
        let c1 = vec4<f32>(subgroupBroadcast(cl, 4u), subgroupBroadcast(cl, 5u),
            subgroupBroadcast(cl, 6u), subgroupBroadcast(cl, 7u));
        part += step4(r, o, n + 4u, a1, b1, c1);
    }
    return part;
}

// update_row_vec4 for a subgroup whose rows all read the same B and C, 8 states per B/C load.
// With NQ > 0 the row is at most 16 states and A's row comes from registers (a, loaded once
// for all the invocation's requests); the constant NQ unrolls it.
fn update_row_shared(r: Row, o: Bases, lane: u32, a: ARow) -> f32 {
    if (NQ > 0u) {
        var part = shared_eight(r, o, lane, 0u, a.q0, a.q1, NQ > 1u);
        if (NQ > 2u) {
            part += shared_eight(r, o, lane, 8u, a.q2, a.q3, NQ > 3u);
        }
        return part;
    }
    var part = 0.0;
    for (var n = 0u; n < params.n; n += 8u) {
        // N % 4 = 0: when n + 4 is past the row, so is the second half (not run).
        let n1 = min(n + 4u, params.n - 4u);
        part += shared_eight(r, o, lane, n, a_quad(r, n), a_quad(r, n1), n + 4u < params.n);
    }
    return part;
}
#endif

fn finish(r: Row, c: Channel, sum: f32) {
    if (!r.real) {
        return;
    }
    // r.bi, r.h and r.p are set for every real row, skipped ones included. A skipped row's out
    // is 0, written by the same store (one store in the body, not one per case).
    let oi = params.o_off + r.bi * params.o_rs + r.h * params.o_hs + r.p;
    var o = sum;
    o += c.dcoef * r.xv;
    if ((params.flags & HAS_Z) != 0u) {
        let zi = params.z_off + r.bi * params.z_rs + r.h * params.z_hs + r.p;
        let zz = sget(zgate[zi / SPW], zi % SPW);
        o = o * (zz / (1.0 + exp(-zz)));
    }
    store_out(oi, select(0.0, o, r.valid));
}

@compute @workgroup_size(WG)
fn main(
#if SUBGROUP
    @builtin(subgroup_invocation_id) lane: u32,
#endif
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    if (wg.x * WG >= params.dim) {
        return;
    }
    let c = channel(wg.x * WG + lid);
#if SUBGROUP
    let a = a_row(c);
    // Requests wg.y·REQS .. of channel c, one after another (the bound is the same across the
    // workgroup). Rows of one request and one B/C group share B and C (checked over the
    // subgroup: rows past D or of a skipped request have other bases and send their subgroup
    // the plain way, the one-state-at-a-time loop: llvmpipe runs a branch no lane takes once
    // under an empty lane mask, its loads included, and that loop has the fewest).
    for (var j = 0u; j < REQS; j++) {
        let bi = wg.y * REQS + j;
        if (bi >= params.batch) {
            break;
        }
        let r = row_info(bi, c);
        let o = bases(r);
        let same_bc = subgroupAll(o.b == subgroupBroadcastFirst(o.b)
            && o.c == subgroupBroadcastFirst(o.c));
        var sum = 0.0;
        if (same_bc) {
            sum = update_row_shared(r, o, lane, a);
        } else {
            sum = update_row_scalar(r, o);
        }
        finish(r, c, sum);
    }
#else
    let r = row_info(wg.y, c);
    finish(r, c, update(r));
#endif
}
