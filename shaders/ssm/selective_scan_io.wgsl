// The inputs, outputs and parameter block of the selective scan, shared by its two strategies
// (selective_scan.wgsl, selective_scan_chunked.wgsl) so that the op binds either the same way,
// and the one place where their element indices are computed and their tensors loaded/stored.
//
// Layouts (row-major). Large tensors may be bound as windows: off_* is the element index where a
// binding starts (even for halves: windows start on whole u32 words). `chan` packs the
// per-channel parameters so the kernels stay within 8 storage bindings.
//
// Dtypes (mamba_ssm's convention; common/storage.wgsl): u, delta, z and out share u's dtype,
// f32 or (flag F16 or BF16) halves, two per u32 word (element i in word i / 2, the low half for
// even i; NATIVE_F16 binds u, delta, z as vec2<f16>); B and C are each f32 or u's dtype, told
// apart by the pipeline constants B_HALVES / C_HALVES (they are bound as raw u32 words and
// decoded by sget_bits or bitcast; constants, not flag bits, so that a pipeline carries one of
// the two loads, not both under llvmpipe's lane masks); A, D, delta_bias and the state are always f32. Loads widen, the math
// is f32, out is rounded on store (half_bits). Stores of half out: a word may hold elements of
// two invocations (two rows of odd L in the row kernel, two runs of steps in the chunked one),
// so each element is written with atomicAnd (clear its half) then atomicOr (set it) on its word,
// as state_update does: disjoint bits commute, so no word ownership is needed. The row kernel
// writes the words wholly inside its row with one atomicStore instead (store_out_step).

#include "ssm/softplus"

const B_VARIABLE: u32 = 1u;
const C_VARIABLE: u32 = 2u;
const HAS_D: u32 = 4u;
const HAS_Z: u32 = 8u;
const HAS_BIAS: u32 = 16u;
const SOFTPLUS: u32 = 32u;
const HAS_INIT: u32 = 64u;
override B_HALVES: bool = false; // B stored as u's half dtype (else f32)
override C_HALVES: bool = false; // C stored as u's half dtype (else f32)
const PACKED: u32 = 512u;

struct Params {
    rows: u32,     // rows b·D + d in this dispatch
    row0: u32,     // first row of this dispatch
    dim: u32,      // D
    len: u32,      // L
    n: u32,        // N
    b_groups: u32, // G of B (variable)
    c_groups: u32, // G of C (variable)
    flags: u32,
    off_x: u32,    // element offset of the u/delta/z/out windows
    off_b: u32,    // element offset of the B window
    off_c: u32,    // element offset of the C window
    off_s: u32,    // element offset of the state window
    p_d: u32,      // index of D in chan
    p_bias: u32,   // index of delta_bias in chan
    pad0: u32,
    pad1: u32,
    // PACKED only (see above): view offsets and strides, the cu/slot tables and the pool size.
    u_off: u32, u_st: u32, u_sd: u32,
    dl_off: u32, dl_st: u32, dl_sd: u32,
    z_off: u32, z_st: u32, z_sd: u32,
    o_off: u32, o_st: u32, o_sd: u32,
    b_off: u32, b_st: u32, b_sg: u32, b_sn: u32,
    c_off: u32, c_st: u32, c_sg: u32, c_sn: u32,
    p_cu: u32,
    p_slot: u32,
    pool: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
// Flag VEC4 (row kernel, f32, rows of L % 4 = 0 steps, windows on whole vec4s): the activations,
// B and C are bound as 16-byte elements, so that 4 consecutive steps of a row cost one access.
@group(0) @binding(1) var<storage, read> u: array<vec4<f32>>;      // (Bt, D, L)
@group(0) @binding(2) var<storage, read> delta: array<vec4<f32>>;  // (Bt, D, L)
@group(0) @binding(3) var<storage, read> chan: array<f32>;
@group(0) @binding(4) var<storage, read> bmat: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> cmat: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> zgate: array<vec4<f32>>;  // (Bt, D, L)
@group(0) @binding(7) var<storage, read_write> out: array<vec4<f32>>; // (Bt, D, L)
#else
@group(0) @binding(1) var<storage, read> u: array<sword>;           // (Bt, D, L)
@group(0) @binding(2) var<storage, read> delta: array<sword>;       // (Bt, D, L)
// chan: A (D, N) at 0, D (D) at p_d, delta_bias (D) at p_bias.
@group(0) @binding(3) var<storage, read> chan: array<f32>;
// B, C: (D, N) constant, or (Bt, G, N, L) variable/grouped (channel d reads group d / (D/G));
// raw words: f32 bits, or two halves per word (B_HALVES / C_HALVES).
@group(0) @binding(4) var<storage, read> bmat: array<u32>;
@group(0) @binding(5) var<storage, read> cmat: array<u32>;
@group(0) @binding(6) var<storage, read> zgate: array<sword>;       // (Bt, D, L)
#if F16 || BF16
@group(0) @binding(7) var<storage, read_write> out: array<atomic<u32>>; // (Bt, D, L) halves, in pairs
#else
@group(0) @binding(7) var<storage, read_write> out: array<f32>;     // (Bt, D, L)
#endif
#endif
// state (Bt, D, N): initial_state on entry (with HAS_INIT; the host copies it there), last_state
// on exit.
@group(0) @binding(8) var<storage, read_write> state: array<f32>;

#include "common/storage"

// Index arithmetic, in one place: element indices relative to each binding's window.

// Element (row, t) of u, delta, z and out; row = b·D + d.
fn x_index(row: u32, t: u32) -> u32 {
    return row * params.len + t - params.off_x;
}

// Element (row's group, n, t = 0) of a variable B or C of `groups` groups windowed at `off`;
// step t of state n is at + n·L + t.
fn bc_index(row: u32, n: u32, groups: u32, off: u32) -> u32 {
    let dim = params.dim;
    let bi = row / dim;
    let d = row % dim;
    return ((bi * groups + d / (dim / groups)) * params.n + n) * params.len - off;
}

// Element (row, n) of the state.
fn state_index(row: u32, n: u32) -> u32 {
    return row * params.n + n - params.off_s;
}

// Where one row's elements are: element t of u is u0 + t·ut (delta, z, out alike), element
// (n, t) of a variable B is b0 + n·bn + t·bt (C alike), state n is s0 + n; `len` steps. Both
// layouts reduce to these, so the row kernel walks one code path.
struct RowPlan {
    len: u32,
    live: bool,
    u0: u32, ut: u32,
    d0: u32, dt: u32,
    z0: u32, zt: u32,
    o0: u32, ot: u32,
    b0: u32, bn: u32, bt: u32,
    c0: u32, cn: u32, ct: u32,
    s0: u32,
}

fn chan_u32(i: u32) -> u32 {
    return bitcast<u32>(chan[i]);
}

fn row_plan(row: u32) -> RowPlan {
    let dim = params.dim;
    let nn = params.n;
    var p: RowPlan;
    if ((params.flags & PACKED) == 0u) {
        let x0 = x_index(row, 0u);
        let len = params.len;
        p.len = len;
        p.live = true;
        p.u0 = x0; p.ut = 1u;
        p.d0 = x0; p.dt = 1u;
        p.z0 = x0; p.zt = 1u;
        p.o0 = x0; p.ot = 1u;
        p.b0 = bc_index(row, 0u, params.b_groups, params.off_b); p.bn = len; p.bt = 1u;
        p.c0 = bc_index(row, 0u, params.c_groups, params.off_c); p.cn = len; p.ct = 1u;
        p.s0 = state_index(row, 0u);
        return p;
    }
    let s = row / dim;
    let d = row % dim;
    let t0 = chan_u32(params.p_cu + s);
    let slot = chan_u32(params.p_slot + s);
    p.len = chan_u32(params.p_cu + s + 1u) - t0;
    p.live = slot < params.pool;
    p.u0 = params.u_off + t0 * params.u_st + d * params.u_sd; p.ut = params.u_st;
    p.d0 = params.dl_off + t0 * params.dl_st + d * params.dl_sd; p.dt = params.dl_st;
    p.z0 = params.z_off + t0 * params.z_st + d * params.z_sd; p.zt = params.z_st;
    p.o0 = params.o_off + t0 * params.o_st + d * params.o_sd; p.ot = params.o_st;
    p.b0 = params.b_off + t0 * params.b_st + (d / (dim / params.b_groups)) * params.b_sg;
    p.bn = params.b_sn; p.bt = params.b_st;
    p.c0 = params.c_off + t0 * params.c_st + (d / (dim / params.c_groups)) * params.c_sg;
    p.cn = params.c_sn; p.ct = params.c_st;
    p.s0 = (select(0u, slot, p.live) * dim + d) * nn;
    return p;
}

// Loads of u's dtype (widened to f32).
#if VEC4
fn load_u(i: u32) -> f32 {
    return u[i / 4u][i % 4u];
}
fn load_delta(i: u32) -> f32 {
    return delta[i / 4u][i % 4u];
}
fn load_z(i: u32) -> f32 {
    return zgate[i / 4u][i % 4u];
}

// VEC4: elements i .. i + 3 (i % 4 = 0) in one access.
fn load_u4(i: u32) -> vec4<f32> {
    return u[i / 4u];
}
fn load_delta4(i: u32) -> vec4<f32> {
    return delta[i / 4u];
}
fn load_z4(i: u32) -> vec4<f32> {
    return zgate[i / 4u];
}
fn load_b4(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(bmat[i / 4u]);
}
fn load_c4(i: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(cmat[i / 4u]);
}
fn load_out4(i: u32) -> vec4<f32> {
    return out[i / 4u];
}
fn store_out4(i: u32, v: vec4<f32>) {
    out[i / 4u] = v;
}
#else
fn load_u(i: u32) -> f32 {
    return sget(u[i / SPW], i % SPW);
}
fn load_delta(i: u32) -> f32 {
    return sget(delta[i / SPW], i % SPW);
}
fn load_z(i: u32) -> f32 {
    return sget(zgate[i / SPW], i % SPW);
}
#endif

// Element i of B or C: a half of u's dtype with B_HALVES / C_HALVES, else f32 bits.
fn load_b(i: u32) -> f32 {
#if VEC4
    return bitcast<f32>(bmat[i / 4u][i % 4u]);
#else
    if (SPW == 2u && B_HALVES) {
        return sget_bits(bmat[i / 2u], i % 2u);
    }
    return bitcast<f32>(bmat[i]);
#endif
}
fn load_c(i: u32) -> f32 {
#if VEC4
    return bitcast<f32>(cmat[i / 4u][i % 4u]);
#else
    if (SPW == 2u && C_HALVES) {
        return sget_bits(cmat[i / 2u], i % 2u);
    }
    return bitcast<f32>(cmat[i]);
#endif
}

// out[i] = v, rounded to u's dtype.
fn store_out(i: u32, v: f32) {
#if F16 || BF16
    let shift = (i & 1u) * 16u;
    atomicAnd(&out[i / 2u], ~(0xffffu << shift));
    atomicOr(&out[i / 2u], half_bits(v) << shift);
#else
#if VEC4
    out[i / 4u][i % 4u] = v;
#else
    out[i] = v;
#endif
#endif
}

// The row kernel's store of out[i] = v at step t of a row of `len` steps, walked in time order
// (one pass of states, which the host guarantees for half out). f32: a plain store. Halves: a
// word both of whose elements are this row's is written whole by atomicStore when its odd
// element comes (the even one waits in `pending`): the word is this invocation's alone, so one
// store replaces two read-modify-writes. Only a row's end elements, in words a neighbouring row
// shares (odd L), go through store_out's atomics.
fn store_out_step(i: u32, t: u32, len: u32, v: f32, pending: ptr<function, f32>) {
#if F16 || BF16
    let odd = (i & 1u) == 1u;
    if (!odd && t + 1u < len) {
        *pending = v;
    } else if (odd && t > 0u) {
        atomicStore(&out[i / 2u], half_bits(*pending) | (half_bits(v) << 16u));
    } else {
        store_out(i, v);
    }
#else
    store_out(i, v);
#endif
}

// out[i] as stored (the row kernel's partial sums over earlier passes of states; the host never
// runs that kernel with more than one pass on half out, which would round each partial).
fn load_out(i: u32) -> f32 {
#if F16 || BF16
    return sget_bits(atomicLoad(&out[i / 2u]), i % 2u);
#else
#if VEC4
    return out[i / 4u][i % 4u];
#else
    return out[i];
#endif
#endif
}

// D[d] of channel d (0 without HAS_D).
fn skip_of(d: u32) -> f32 {
    if ((params.flags & HAS_D) != 0u) {
        return chan[params.p_d + d];
    }
    return 0.0;
}

// delta_bias[d] of channel d (0 without HAS_BIAS).
fn bias_of(d: u32) -> f32 {
    if ((params.flags & HAS_BIAS) != 0u) {
        return chan[params.p_bias + d];
    }
    return 0.0;
}
