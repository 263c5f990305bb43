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
// apart at run time by the B_HALF / C_HALF bits (they are bound as raw u32 words and decoded by
// sget_bits or bitcast); A, D, delta_bias and the state are always f32. Loads widen, the math
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
const B_HALF: u32 = 128u; // B stored as u's half dtype (else f32)
const C_HALF: u32 = 256u; // C stored as u's half dtype (else f32)

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
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> u: array<sword>;           // (Bt, D, L)
@group(0) @binding(2) var<storage, read> delta: array<sword>;       // (Bt, D, L)
// chan: A (D, N) at 0, D (D) at p_d, delta_bias (D) at p_bias.
@group(0) @binding(3) var<storage, read> chan: array<f32>;
// B, C: (D, N) constant, or (Bt, G, N, L) variable/grouped (channel d reads group d / (D/G));
// raw words: f32 bits, or two halves per word (B_HALF / C_HALF).
@group(0) @binding(4) var<storage, read> bmat: array<u32>;
@group(0) @binding(5) var<storage, read> cmat: array<u32>;
@group(0) @binding(6) var<storage, read> zgate: array<sword>;       // (Bt, D, L)
#if F16 || BF16
@group(0) @binding(7) var<storage, read_write> out: array<atomic<u32>>; // (Bt, D, L) halves, in pairs
#else
@group(0) @binding(7) var<storage, read_write> out: array<f32>;     // (Bt, D, L)
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

// Loads of u's dtype (widened to f32).
fn load_u(i: u32) -> f32 {
    return sget(u[i / SPW], i % SPW);
}
fn load_delta(i: u32) -> f32 {
    return sget(delta[i / SPW], i % SPW);
}
fn load_z(i: u32) -> f32 {
    return sget(zgate[i / SPW], i % SPW);
}

// Element i of B or C: a half of u's dtype with B_HALF / C_HALF, else f32 bits.
fn load_b(i: u32) -> f32 {
    if (SPW == 2u && (params.flags & B_HALF) != 0u) {
        return sget_bits(bmat[i / 2u], i % 2u);
    }
    return bitcast<f32>(bmat[i]);
}
fn load_c(i: u32) -> f32 {
    if (SPW == 2u && (params.flags & C_HALF) != 0u) {
        return sget_bits(cmat[i / 2u], i % 2u);
    }
    return bitcast<f32>(cmat[i]);
}

// out[i] = v, rounded to u's dtype.
fn store_out(i: u32, v: f32) {
#if F16 || BF16
    let shift = (i & 1u) * 16u;
    atomicAnd(&out[i / 2u], ~(0xffffu << shift));
    atomicOr(&out[i / 2u], half_bits(v) << shift);
#else
    out[i] = v;
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
    return out[i];
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
