// diagonal_scan: the diagonal complex LTI scan of S4D / S5, chunked parallel-in-time strategy.
// Flag SUBGROUP: the workgroup scan by subgroup shuffles (composed when the device has SUBGROUP
// and WG is a multiple of its largest subgroup size); without it, a shared-memory scan. Only
// `scan_exclusive` and the entry point's prologue differ.
//
// Math, per batch b, channel h, mode n (complex), step t = 0..L-1, x_{-1} = 0:
//   z = Δ_h·λ_{h,n};  (Λ̄, g) = ZOH: (exp z, Δ·(exp z − 1)/z) | bilinear: ((1+z/2)/(1−z/2), Δ/(1−z/2))
//                             | forward Euler: (1+z, Δ) | backward Euler: (1/(1−z), Δ/(1−z))
//   B̄ = g·B̃_{h,n};   x_t = Λ̄ ⊙ x_{t−1} + B̄·u_t;   y_t = 2·Re(Σ_n C̃_{h,n}·x_{t,n}) + D_h·u_t
// Discretisation (discretise.wgsl) happens here, once per (workgroup, mode), into workgroup
// memory: no prep kernel.
//
// Layouts (row-major, per binding in discretise.wgsl): u, y (Bt, H, L) f32 or (flag F16/BF16)
// halves, y rounded on store (atomics on its word: two invocations' runs may share one); lambda,
// b, c (H, N, 2) f32 with [re, im] interleaved; dt (H) raw positive step Δ (not its log); d (H).
//
// Work split: one workgroup per row (b, h), linear index wg.x + wg.y·num_workgroups.x. It walks
// the sequence in chunks of WG·T steps; invocation at scan position p owns steps p·T .. p·T+T−1 of
// the chunk. For each mode: every invocation folds its T steps into the pair (Λ̄^T, s) of the
// recurrence x ↦ a·x + s; an exclusive workgroup scan of these pairs under
// (a1, s1) ∘ (a2, s2) = (a2·a1, a2·s1 + s2) gives each invocation the map from the chunk's
// incoming state (the carry) to its own incoming state; it then replays its T steps, adding
// 2·Re(C̃·x) into its T outputs. The last position stores the mode's outgoing state as the next
// chunk's carry (double-buffered by chunk parity, so no extra barrier). One dispatch covers any
// L; workgroups never wait on each other. Steps past L are identities.
// The workgroup scan: shared memory, Kogge–Stone over ping-pong buffers (log2(WG) barriers).
// SUBGROUP: an inclusive scan inside each subgroup by shuffles, the subgroup totals through
// workgroup memory (one barrier), each invocation folding the totals of the subgroups before its
// own. Scan positions are sg_index·subgroup_size + lane, with sg_index handed out by a workgroup
// atomic, so nothing assumes how invocations map onto subgroups; it does assume full subgroups.
// What bounds it: the workgroup scan per mode and chunk (N·L/(WG·T) scans per row), on a CPU
// device (lavapipe) its barriers, each a switch between SIMD fibers, which is why `Auto` walks
// rows there. Workgroup memory holds the discretised modes (N ≤ MAX_N) and the scan buffers.

override WG: u32 = 64u;   // invocations per workgroup, a power of two ≤ 256
override T: u32 = 8u;     // steps per invocation per chunk, ≤ MAX_T
const MAX_T: u32 = 16u;
const MAX_N: u32 = 128u;  // modes per channel (the op refuses more)

#include "ssm/discretise"

var<workgroup> mode_ab: array<vec4<f32>, MAX_N>;    // (Λ̄, B̄)
var<workgroup> mode_cp: array<vec4<f32>, MAX_N>;    // (C̃, Λ̄^T)
var<workgroup> carry: array<vec2<f32>, 256>;        // 2·MAX_N: [parity][mode]
#if SUBGROUP
var<workgroup> totals: array<vec4<f32>, 128>;       // [parity][subgroup] (≤ 64 subgroups)
var<workgroup> next_subgroup: atomic<u32>;
#else
var<workgroup> scratch: array<vec4<f32>, 512>;      // 2·WG (WG ≤ 256): ping-pong scan buffers
#endif

const IDENTITY = vec4<f32>(1.0, 0.0, 0.0, 0.0);

// (a, s) of the earlier segment p followed by the later q.
fn combine(p: vec4<f32>, q: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(cmul(q.xy, p.xy), cmul(q.xy, p.zw) + q.zw);
}

// Λ̄, B̄, C̃ and Λ̄^T of mode m of channel h, into workgroup memory; carry[0][m] = 0.
fn stage_mode(h: u32, m: u32) {
    let ab = discretise_mode(h, m);
    var power = vec2<f32>(1.0, 0.0);
    for (var k = 0u; k < T; k++) {
        power = cmul(power, ab.xy);
    }
    mode_ab[m] = ab;
    mode_cp[m] = vec4<f32>(c_tilde[h * params.modes + m], power);
    carry[m] = vec2<f32>(0.0);
}

#if SUBGROUP
// Exclusive scan of `v` over positions 0..WG−1; `parity` alternates between calls so that the
// totals buffer written here is not the one slower invocations may still read from the last
// call. Called by every invocation in uniform control flow.
fn scan_exclusive(v: vec4<f32>, lane: u32, sg_size: u32, sg_index: u32, parity: u32) -> vec4<f32> {
    var inclusive = v;
    for (var off = 1u; off < sg_size; off = off << 1u) {
        let other = subgroupShuffleUp(inclusive, off);
        if (lane >= off) {
            inclusive = combine(other, inclusive);
        }
    }
    var exclusive = subgroupShuffleUp(inclusive, 1u);
    if (lane == 0u) {
        exclusive = IDENTITY;
    }
    if (lane == sg_size - 1u) {
        totals[parity * 64u + sg_index] = inclusive;
    }
    workgroupBarrier();
    var prefix = IDENTITY;
    for (var j = 0u; j < sg_index; j++) {
        prefix = combine(prefix, totals[parity * 64u + j]);
    }
    return combine(prefix, exclusive);
}
#else
// Exclusive scan of `v` over positions 0..WG−1 (Kogge–Stone, ping-pong buffers). Called by every
// invocation in uniform control flow.
fn scan_exclusive(v: vec4<f32>, pos: u32) -> vec4<f32> {
    workgroupBarrier(); // the previous call's readers are done with the buffers
    scratch[pos] = v;
    workgroupBarrier();
    var src = 0u;
    var acc = v;
    for (var off = 1u; off < WG; off = off << 1u) {
        if (pos >= off) {
            acc = combine(scratch[src * WG + pos - off], acc);
        }
        src = 1u - src;
        scratch[src * WG + pos] = acc;
        workgroupBarrier();
    }
    if (pos == 0u) {
        return IDENTITY;
    }
    return scratch[src * WG + pos - 1u];
}
#endif

@compute @workgroup_size(WG)
fn main(
#if SUBGROUP
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg_size: u32,
#endif
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wg.x + wg.y * groups.x;
    if (row >= params.rows) {
        return;
    }
#if SUBGROUP
    if (lid == 0u) {
        atomicStore(&next_subgroup, 0u);
    }
    workgroupBarrier();
    var ticket = 0u;
    if (lane == 0u) {
        ticket = atomicAdd(&next_subgroup, 1u);
    }
    let sg_index = subgroupShuffle(ticket, 0u);
    let pos = sg_index * sg_size + lane;
    var scans = 0u;
#else
    let pos = lid;
#endif
    let h = row % params.channels;
    for (var m = lid; m < params.modes; m += WG) {
        stage_mode(h, m);
    }
    workgroupBarrier();

    let len = params.len;
    let base = row * len;
    let skip = d_skip[h];
    let chunk = WG * T;
    let chunks = (len + chunk - 1u) / chunk;
    var parity = 0u;
    for (var ci = 0u; ci < chunks; ci++) {
        let start = ci * chunk + pos * T;
        var valid = 0u;
        if (start < len) {
            valid = min(T, len - start);
        }
        var uu: array<f32, MAX_T>;
        var yy: array<f32, MAX_T>;
        for (var k = 0u; k < T; k++) {
            if (k < valid) {
                uu[k] = load_u(base + start + k);
            } else {
                uu[k] = 0.0;
            }
            yy[k] = skip * uu[k];
        }
        for (var m = 0u; m < params.modes; m++) {
            let ab = mode_ab[m];
            let cp = mode_cp[m];
            var s = vec2<f32>(0.0);
            var a = cp.zw;
            if (valid < T) {
                a = vec2<f32>(1.0, 0.0);
            }
            for (var k = 0u; k < T; k++) {
                if (k < valid) {
                    s = cmul(ab.xy, s) + ab.zw * uu[k];
                    if (valid < T) {
                        a = cmul(a, ab.xy);
                    }
                }
            }
#if SUBGROUP
            let prefix = scan_exclusive(vec4<f32>(a, s), lane, sg_size, sg_index, scans & 1u);
            scans += 1u;
#else
            let prefix = scan_exclusive(vec4<f32>(a, s), pos);
#endif
            var x = cmul(prefix.xy, carry[parity * MAX_N + m]) + prefix.zw;
            for (var k = 0u; k < T; k++) {
                if (k < valid) {
                    x = cmul(ab.xy, x) + ab.zw * uu[k];
                    yy[k] += 2.0 * (cp.x * x.x - cp.y * x.y);
                }
            }
            if (pos == WG - 1u) {
                carry[(1u - parity) * MAX_N + m] = x;
            }
        }
        for (var k = 0u; k < T; k++) {
            if (k < valid) {
                store_y(base + start + k, yy[k]);
            }
        }
        parity = 1u - parity;
    }
}
