// state_update: one-token Mamba-1 decode step (mamba_ssm's selective_state_update), one kernel
// for every device (no subgroup operations; the reduction over TPR invocations uses shared memory).
//
// Math, per request b (state row s = slot[b], or b without slots), channel d, state n:
//   dt = dt[b,d] + dt_bias[d];  if softplus: dt = softplus(dt)   (= dt for dt > 20)
//   state[s,d,n] = exp(dt·A[d,n])·state[s,d,n] + dt·B[b,g,n]·x[b,d]      (g = d / (D/G))
//   out[b,d] = (Σ_n state[s,d,n]·C[b,g,n] + D[d]·x[b,d]) · silu(z[b,d])
// A slot < 0 or ≥ Pool skips request b: its state is untouched and out[b, :] = 0.
//
// Layouts: state (Pool, D, N) row-major, updated in place; A (D, N) row-major; x, z, out
// (Bt, D) and B, C (Bt, G, N) (G = 1 for (Bt, N)) are strided views of their buffers: element
// (b, d) of x at x_off + b·x_rs + d (z, out likewise), element (b, g, n) of B at
// b_off + b·b_rs + g·b_gs + n (C likewise); rows are unit-stride so a row's states stay
// consecutive. `pk` packs D (D) at p_d, dt_bias (D) at p_bias, the slots (Bt, i32 bits) at p_slot
// and dt (Bt, D, row-major) at p_dt (the host copies them there, keeping the kernel within 8
// storage bindings).
//
// Storage dtype (common/storage.wgsl): the activations x, dt, B, C, z and out share one dtype,
// f32 or (flag F16 or BF16) 16-bit halves, two per u32 word (element i in word i / 2, the low
// half for even i); A, D and dt_bias are always f32. Loads widen, math is f32, out
// is rounded on store (half_bits). dt sits in `pk` as its raw words (the host copies its bytes),
// so `pk` is bound as u32 words and decoded with sget_bits. Stores of half out: rows of a word
// belong to two invocations (one per row), so each invocation writes its own half with two
// atomics on the word (atomicAnd clears it, atomicOr sets it; disjoint bits commute), as
// latent_cache does: no word ownership needed, any Bt·D (odd included) works.
// The state pool is the second stored role (flags F16_B, BF16_B; independent of the
// activations' dtype): f32, or halves two per u32 word, read widened, updated in f32 and stored
// rounded (half_bits_b). A state row of N halves shares its first or last word with the
// neighbouring row when N is odd, and that row belongs to another invocation, so the half state
// is bound as atomic words: each element is read by atomicLoad and written by atomicAnd/atomicOr
// on its own 16 bits (disjoint bits commute), which works for any N. With TPR = 1 (what the
// host runs) an invocation owns its row's inner words and reads and writes each once
// (update_row_pairs); only the boundary words of odd-N rows take the per-half atomics.
// (NATIVE_F16_B changes nothing here: the state is never bound as f16.)
//
// Work split: TPR (a power of two ≤ 32, ≥ N where possible) invocations per (b, d) row, WG/TPR
// rows per workgroup, linear workgroup index (2-D grid past 65535). Invocation r of a row owns
// states n = r, r + TPR, ...: it updates them (coalesced along n) and sums its C·state terms; the
// row's TPR partial sums are written to shared memory and added by the row's first invocation,
// which writes out.
// The host uses TPR = 1 (one invocation per row, looping over N, rows independent): on lavapipe
// that is 5-15x faster than TPR = 16, whose cost was the barrier and shared-memory sum per
// workgroup (llvmpipe switches between its SIMD fibers at every barrier). Bound: memory (state
// read and written, A read: ~12 bytes per state update); on lavapipe measured at 15-85% of the
// copy ceiling, the spread being the noise of a shared machine.

const WG: u32 = 256u;

const HAS_D: u32 = 1u;
const HAS_Z: u32 = 2u;
const HAS_BIAS: u32 = 4u;
const SOFTPLUS: u32 = 8u;
const HAS_SLOTS: u32 = 16u;

struct Params {
    rows: u32,     // Bt · D
    dim: u32,      // D
    n: u32,        // N
    tpr: u32,      // invocations per row
    b_groups: u32,
    c_groups: u32,
    pool: u32,     // rows of the state pool
    flags: u32,
    p_d: u32,
    p_bias: u32,
    p_slot: u32,
    p_dt: u32,
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
}

@group(0) @binding(0) var<uniform> params: Params;
#if F16_B || BF16_B
@group(0) @binding(1) var<storage, read_write> state: array<atomic<u32>>; // (Pool, D, N) halves in pairs
#else
@group(0) @binding(1) var<storage, read_write> state: array<f32>; // (Pool, D, N)
#endif
@group(0) @binding(2) var<storage, read> x: array<sword>;         // (Bt, D)
@group(0) @binding(3) var<storage, read> amat: array<f32>;        // (D, N)
@group(0) @binding(4) var<storage, read> pk: array<u32>;          // D | dt_bias | slots | dt
@group(0) @binding(5) var<storage, read> bmat: array<sword>;      // (Bt, G, N)
@group(0) @binding(6) var<storage, read> cmat: array<sword>;      // (Bt, G, N)
@group(0) @binding(7) var<storage, read> zgate: array<sword>;     // (Bt, D)
#if F16 || BF16
@group(0) @binding(8) var<storage, read_write> out: array<atomic<u32>>; // (Bt, D) halves, in pairs
#else
@group(0) @binding(8) var<storage, read_write> out: array<f32>;   // (Bt, D)
#endif

#include "common/storage"

fn store_out(i: u32, v: f32) {
#if F16 || BF16
    let shift = (i & 1u) * 16u;
    atomicAnd(&out[i / 2u], ~(0xffffu << shift));
    atomicOr(&out[i / 2u], half_bits(v) << shift);
#else
    out[i] = v;
#endif
}

fn load_state(i: u32) -> f32 {
#if F16_B || BF16_B
    return sget_bits_b(atomicLoad(&state[i / 2u]), i & 1u);
#else
    return state[i];
#endif
}

fn store_state(i: u32, v: f32) {
#if F16_B || BF16_B
    let shift = (i & 1u) * 16u;
    atomicAnd(&state[i / 2u], ~(0xffffu << shift));
    atomicOr(&state[i / 2u], half_bits_b(v) << shift);
#else
    state[i] = v;
#endif
}

var<workgroup> s_part: array<f32, WG>;

#include "ssm/softplus"

struct Row {
    valid: bool, // a real row whose request is not skipped
    real: bool,  // a real row (out is written)
    bi: u32,
    d: u32,
    slot: u32,
    xv: f32,
    dt: f32,
}

fn row_info(row: u32) -> Row {
    var r: Row;
    r.real = row < params.rows;
    r.valid = r.real;
    r.bi = 0u;
    r.d = 0u;
    r.slot = 0u;
    r.xv = 0.0;
    r.dt = 0.0;
    if (!r.real) {
        return r;
    }
    r.bi = row / params.dim;
    r.d = row % params.dim;
    r.slot = r.bi;
    if ((params.flags & HAS_SLOTS) != 0u) {
        let s = bitcast<i32>(pk[params.p_slot + r.bi]);
        if (s < 0 || u32(s) >= params.pool) {
            r.valid = false;
            return r;
        }
        r.slot = u32(s);
    }
    let xi = params.x_off + r.bi * params.x_rs + r.d;
    r.xv = sget(x[xi / SPW], xi % SPW);
    var dt = sget_bits(pk[params.p_dt + row / SPW], row % SPW);
    if ((params.flags & HAS_BIAS) != 0u) {
        dt += bitcast<f32>(pk[params.p_bias + r.d]);
    }
    if ((params.flags & SOFTPLUS) != 0u) {
        dt = softplus(dt);
    }
    r.dt = dt;
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
    let gb = r.d / (params.dim / params.b_groups);
    let gc = r.d / (params.dim / params.c_groups);
    return Bases(
        params.b_off + r.bi * params.b_rs + gb * params.b_gs,
        params.c_off + r.bi * params.c_rs + gc * params.c_gs,
        (r.slot * params.dim + r.d) * nn,
    );
}

// The new state n of row r from its old value.
fn step(r: Row, o: Bases, n: u32, old: f32) -> f32 {
    let bn = sget(bmat[(o.b + n) / SPW], (o.b + n) % SPW);
    return exp(r.dt * amat[r.d * params.n + n]) * old + r.dt * bn * r.xv;
}

fn c_at(o: Bases, n: u32) -> f32 {
    return sget(cmat[(o.c + n) / SPW], (o.c + n) % SPW);
}

// This invocation's share of Σ_n C·state, after updating its states.
fn update(r: Row, lane_r: u32) -> f32 {
    var part = 0.0;
    if (!r.valid) {
        return part;
    }
    let o = bases(r);
#if F16_B || BF16_B
    if (params.tpr == 1u) {
        return update_row_pairs(r, o);
    }
#endif
    for (var n = lane_r; n < params.n; n += params.tpr) {
        let h = step(r, o, n, load_state(o.s + n));
        store_state(o.s + n, h);
        part += h * c_at(o, n);
    }
    return part;
}

#if F16_B || BF16_B
// A whole half state row owned by this invocation (TPR = 1): the words wholly inside the row
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

fn finish(r: Row, sum: f32) {
    if (!r.real) {
        return;
    }
    // r.bi and r.d are set for every real row, skipped ones included.
    let oi = params.o_off + r.bi * params.o_rs + r.d;
    if (!r.valid) {
        store_out(oi, 0.0);
        return;
    }
    var o = sum;
    if ((params.flags & HAS_D) != 0u) {
        o += bitcast<f32>(pk[params.p_d + r.d]) * r.xv;
    }
    if ((params.flags & HAS_Z) != 0u) {
        let zi = params.z_off + r.bi * params.z_rs + r.d;
        let zz = sget(zgate[zi / SPW], zi % SPW);
        o = o * (zz / (1.0 + exp(-zz)));
    }
    store_out(oi, o);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tpr = params.tpr;
    let per_wg = WG / tpr;
    let block = wg.x + wg.y * groups.x;
    if (block * per_wg >= params.rows) {
        return;
    }
    let v = lid;
    let row = block * per_wg + v / tpr;
    let lane_r = v % tpr;
    let r = row_info(row);
    s_part[v] = update(r, lane_r);
    workgroupBarrier();
    if (lane_r == 0u) {
        var sum = 0.0;
        for (var i = 0u; i < tpr; i++) {
            sum += s_part[v + i];
        }
        finish(r, sum);
    }
}
