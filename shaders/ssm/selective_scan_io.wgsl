// The inputs, outputs and parameter block of the selective scan, shared by its two strategies
// (selective_scan.wgsl, selective_scan_chunked.wgsl) so that the op binds either the same way.
//
// Layouts (f32, row-major). Large tensors may be bound as windows: off_* is the element index
// where a binding starts. `chan` packs the per-channel parameters so the kernels stay within
// 8 storage bindings.
//
// PACKED (a flag bit; row-sequential kernel only): the token-major form a model uses. The
// sequences of a ragged batch are concatenated along time (T tokens; sequence s is tokens
// cu[s] .. cu[s+1], cu at p_cu in `chan` as u32 bits); every tensor is a strided view: element
// (t, d) of u at u_off + t·u_st + d·u_sd (likewise delta, z, out), element (t, g, n) of B at
// b_off + t·b_st + g·b_sg + n·b_sn (C alike). So a packed projection's columns are read where
// they are, without copies. The state is a pool (Pool, D, N): sequence s continues from row
// slots[s] (p_slot in `chan`) and leaves its last state there; a slot ≥ pool skips the sequence.

#include "ssm/softplus"

const B_VARIABLE: u32 = 1u;
const C_VARIABLE: u32 = 2u;
const HAS_D: u32 = 4u;
const HAS_Z: u32 = 8u;
const HAS_BIAS: u32 = 16u;
const SOFTPLUS: u32 = 32u;
const HAS_INIT: u32 = 64u;
const PACKED: u32 = 128u;

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
@group(0) @binding(1) var<storage, read> u: array<f32>;             // (Bt, D, L)
@group(0) @binding(2) var<storage, read> delta: array<f32>;         // (Bt, D, L)
// chan: A (D, N) at 0, D (D) at p_d, delta_bias (D) at p_bias.
@group(0) @binding(3) var<storage, read> chan: array<f32>;
// B, C: (D, N) constant, or (Bt, G, N, L) variable/grouped (channel d reads group d / (D/G)).
@group(0) @binding(4) var<storage, read> bmat: array<f32>;
@group(0) @binding(5) var<storage, read> cmat: array<f32>;
@group(0) @binding(6) var<storage, read> zgate: array<f32>;         // (Bt, D, L)
@group(0) @binding(7) var<storage, read_write> out: array<f32>;     // (Bt, D, L)
// state (Bt, D, N): initial_state on entry (with HAS_INIT; the host copies it there), last_state
// on exit.
@group(0) @binding(8) var<storage, read_write> state: array<f32>;

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

// Where one row's elements are: element t of u is u[u0 + t·ut] (delta, z, out alike), element
// (n, t) of a variable B is bmat[b0 + n·bn + t·bt] (C alike), state n is state[s0 + n]; `len`
// steps. Both layouts reduce to these, so the kernels walk one code path.
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
    let b = row / dim;
    let d = row % dim;
    var p: RowPlan;
    if ((params.flags & PACKED) == 0u) {
        // (Bt, D, L) row-major; B/C (Bt, G, N, L); windows start at off_*.
        let len = params.len;
        let x0 = row * len - params.off_x;
        p.len = len;
        p.live = true;
        p.u0 = x0; p.ut = 1u;
        p.d0 = x0; p.dt = 1u;
        p.z0 = x0; p.zt = 1u;
        p.o0 = x0; p.ot = 1u;
        p.b0 = (b * params.b_groups + d / (dim / params.b_groups)) * nn * len - params.off_b;
        p.bn = len; p.bt = 1u;
        p.c0 = (b * params.c_groups + d / (dim / params.c_groups)) * nn * len - params.off_c;
        p.cn = len; p.ct = 1u;
        p.s0 = row * nn - params.off_s;
        return p;
    }
    let t0 = chan_u32(params.p_cu + b);
    let slot = chan_u32(params.p_slot + b);
    p.len = chan_u32(params.p_cu + b + 1u) - t0;
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
