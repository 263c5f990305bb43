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
// Flag VEC4 (composed on CPU devices for f32 rows of L % 4 = 0; discretise.wgsl binds u and y
// as vec4s): each iteration runs 4 steps from one 16-byte read of u and one write of y.
//
// What bounds it: on a CPU device (lavapipe) the complex multiply-adds, ~12 FLOPs per (step,
// mode) of scalar f32 across 8-lane SIMD (one row per lane), and the accesses of u and y: each
// is a loop over the SIMD lanes (stride L across lanes), as is one in a branch no lane takes,
// since llvmpipe runs both sides of a branch under a lane mask. Hence the first pass (D·u) and
// the later ones (y read back) are separate inlined copies (scan_pass's constant `first`), and
// VEC4 takes 4 steps per access. On a GPU the stride-L pattern is
// served from cache (each line reused over the next 15 steps), and occupancy needs Bt·H ≳ 10⁴
// rows; with few rows and long L the chunked parallel-in-time kernel is used instead. Latency:
// L dependent steps.

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

// One step of four modes: x ← Λ̄·x + B̄·u.
fn advanced(q: ModeQuad, uu: f32) -> ModeQuad {
    var n = q;
    n.xr = fma(q.ar, q.xr, fma(-q.ai, q.xi, q.br * uu));
    n.xi = fma(q.ar, q.xi, fma(q.ai, q.xr, q.bi * uu));
    return n;
}

// Σ 2·Re(C̃·x) over four modes.
fn quad_out(q: ModeQuad) -> f32 {
    return dot(q.cr, q.xr) - dot(q.ci, q.xi);
}

#include "ssm/discretise"

// The NB modes of one pass, as four quads.
struct ModeBlock {
    q0: ModeQuad,
    q1: ModeQuad,
    q2: ModeQuad,
    q3: ModeQuad,
}

// One step of the block's modes: Σ 2·Re(C̃·x) after the update.
fn block_step(m: ptr<function, ModeBlock>, uu: f32) -> f32 {
    (*m).q0 = advanced((*m).q0, uu);
    (*m).q1 = advanced((*m).q1, uu);
    (*m).q2 = advanced((*m).q2, uu);
    (*m).q3 = advanced((*m).q3, uu);
    return (quad_out((*m).q0) + quad_out((*m).q1)) + (quad_out((*m).q2) + quad_out((*m).q3));
}

// One pass over a row's L steps for modes n0 .. n0 + NB. `first` is a constant at each call
// site, so each inlined copy keeps only its own start of y_t: D·u (the first pass) or y read
// back (later passes). On a CPU device (llvmpipe) both sides of a branch run under a lane mask,
// accesses included, so a runtime test would read y back in every step of the first pass too.
fn scan_pass(h: u32, base: u32, n0: u32, skip: f32, first: bool) {
    let len = params.len;
    var m = ModeBlock(quad(h, n0), quad(h, n0 + 4u), quad(h, n0 + 8u), quad(h, n0 + 12u));
#if VEC4
    // Four steps per iteration, u read and y written 16 bytes at a time; the steps in order,
    // each with a constant component index.
    for (var t = 0u; t < len; t += 4u) {
        let u4 = load_u4(base + t);
        var acc = skip * u4;
        if (!first) {
            acc = load_y4(base + t);
        }
        acc.x += block_step(&m, u4.x);
        acc.y += block_step(&m, u4.y);
        acc.z += block_step(&m, u4.z);
        acc.w += block_step(&m, u4.w);
        store_y4(base + t, acc);
    }
#else
    var pending = 0.0; // half y: the even element of a word, stored with the odd one
    for (var t = 0u; t < len; t++) {
        let uu = load_u(base + t);
        var acc = skip * uu;
        if (!first) {
            acc = load_y(base + t);
        }
        acc += block_step(&m, uu);
        store_y_step(base + t, t, len, acc, &pending);
    }
#endif
}

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
    let h = row % params.channels;
    let base = row * params.len;
    let skip = d_skip[h];
    scan_pass(h, base, 0u, skip, true);
    for (var n0 = NB; n0 < params.modes; n0 += NB) {
        scan_pass(h, base, n0, skip, false);
    }
}
