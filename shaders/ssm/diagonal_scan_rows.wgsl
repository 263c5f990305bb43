// diagonal_scan_rows: the diagonal complex LTI scan of S4D / S5, row-sequential strategy: no
// subgroup operations, no shared memory, no barriers. Same bindings, uniforms, inputs and outputs
// as the chunked kernel (diagonal_scan.wgsl; both include discretise.wgsl); the op picks the
// pipeline (`ScanStrategy::RowSequential`, and `Auto` on CPU devices or when rows fill a GPU).
//
// Math, per batch b, channel h, mode n (complex), step t = 0..L-1, x_{-1} = 0:
//   z = Δ_h·λ_{h,n};  (Λ̄, g) = ZOH: (exp z, Δ·(exp z − 1)/z) | bilinear: ((1+z/2)/(1−z/2), Δ/(1−z/2))
//                             | forward Euler: (1+z, Δ) | backward Euler: (1/(1−z), Δ/(1−z))
//   B̄ = g·B̃_{h,n};   x_t = Λ̄ ⊙ x_{t−1} + B̄·u_t;   y_t = 2·Re(Σ_n C̃_{h,n}·x_{t,n}) + D_h·u_t
//
// Layouts (row-major, per binding in discretise.wgsl): u, y (Bt, H, L) f32 or (flag F16/BF16)
// halves, y rounded on store; lambda, b, c (H, N, 2) f32 with [re, im] interleaved; dt (H) raw
// positive step Δ (not its log); d (H).
//
// Work split: one invocation per row (b, h), WG rows per workgroup (override; the host picks 64,
// or 16 when that leaves fewer than 16 workgroups), linear workgroup index wg.x + wg.y·groups.x.
// The invocation discretises NB = 16 modes at a time into registers (Λ̄, B̄, 2·C̃ and the state x
// as four vec4 quads of modes in named struct fields), then walks t = 0..L−1: read u_t, update the NB states,
// sum 2·Re(C̃·x), write y_t. N > NB: passes over blocks of NB modes; later passes read y back and
// add to it, the first one adds D·u (f32 y only: with half y the host runs N > NB on the chunked
// kernel, so that y is rounded once). Modes past N in the last block get Λ̄ = B̄ = C̃ = 0 (their
// state stays 0 and adds nothing).
//
// What bounds it: on a CPU device (lavapipe) compute, ~12 FLOPs per (step, mode) of scalar f32
// across 8-lane SIMD (one row per lane) with no barrier or shared-memory traffic; the u/y accesses
// are per-lane gathers (stride L across lanes). On a GPU the same stride-L pattern is served from
// cache (each line reused over the next 15 steps), and occupancy needs Bt·H ≳ 10⁴ rows; with few
// rows and long L the chunked parallel-in-time kernel is used instead. Latency: L dependent steps.

override WG: u32 = 64u;  // rows (invocations) per workgroup
const NB: u32 = 16u;     // complex modes per pass held in registers (four ModeQuads)

// Four modes in registers, one per vec4 component: named fields, never an indexed array, so no
// index clamps or scratch memory come between them and the SIMD registers.
struct ModeQuad {
    ar: vec4<f32>,  // Λ̄
    ai: vec4<f32>,
    br: vec4<f32>,  // B̄
    bi: vec4<f32>,
    cr: vec4<f32>,  // 2·C̃
    ci: vec4<f32>,
    xr: vec4<f32>,  // state
    xi: vec4<f32>,
}

// Modes first .. first + 3 of channel h, discretised; modes past N get Λ̄ = B̄ = C̃ = 0.
fn quad(h: u32, first: u32) -> ModeQuad {
    var q: ModeQuad;
    for (var j = 0u; j < 4u; j++) {
        var ab = vec4<f32>(0.0);
        var c = vec2<f32>(0.0);
        if (first + j < params.modes) {
            ab = discretise_mode(h, first + j);
            c = 2.0 * c_tilde[h * params.modes + first + j];
        }
        q.ar[j] = ab.x;
        q.ai[j] = ab.y;
        q.br[j] = ab.z;
        q.bi[j] = ab.w;
        q.cr[j] = c.x;
        q.ci[j] = c.y;
    }
    q.xr = vec4<f32>(0.0);
    q.xi = vec4<f32>(0.0);
    return q;
}

// One step of four modes: x ← Λ̄·x + B̄·u; returns Σ 2·Re(C̃·x).
fn advance(q: ptr<function, ModeQuad>, uu: f32) -> f32 {
    let xr = (*q).xr;
    let xi = (*q).xi;
    let r = fma((*q).ar, xr, fma(-(*q).ai, xi, (*q).br * uu));
    let i = fma((*q).ar, xi, fma((*q).ai, xr, (*q).bi * uu));
    (*q).xr = r;
    (*q).xi = i;
    return dot((*q).cr, r) - dot((*q).ci, i);
}

#include "ssm/discretise"

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = (wg.x + wg.y * groups.x) * WG + lid;
    if (row >= params.rows) {
        return;
    }
    let nn = params.modes;
    let len = params.len;
    let h = row % params.channels;
    let base = row * len;
    let skip = d_skip[h];
    for (var n0 = 0u; n0 < nn; n0 += NB) {
        var q0 = quad(h, n0);
        var q1 = quad(h, n0 + 4u);
        var q2 = quad(h, n0 + 8u);
        var q3 = quad(h, n0 + 12u);
        var pending = 0.0; // half y: the even element of a word, stored with the odd one
        for (var t = 0u; t < len; t++) {
            let uu = load_u(base + t);
            var acc: f32;
            if (n0 == 0u) {
                acc = skip * uu;
            } else {
                acc = load_y(base + t);
            }
            acc += (advance(&q0, uu) + advance(&q1, uu)) + (advance(&q2, uu) + advance(&q3, uu));
            store_y_step(base + t, t, len, acc, &pending);
        }
    }
}
