// The inputs, outputs and parameter block of the selective scan, shared by its two strategies
// (selective_scan.wgsl, selective_scan_chunked.wgsl) so that the op binds either the same way.
//
// Layouts (f32, row-major). Large tensors may be bound as windows: off_* is the element index
// where a binding starts. `chan` packs the per-channel parameters so the kernels stay within
// 8 storage bindings.

#include "ssm/softplus"

const B_VARIABLE: u32 = 1u;
const C_VARIABLE: u32 = 2u;
const HAS_D: u32 = 4u;
const HAS_Z: u32 = 8u;
const HAS_BIAS: u32 = 16u;
const SOFTPLUS: u32 = 32u;
const HAS_INIT: u32 = 64u;

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
