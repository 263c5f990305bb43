// diagonal_scan_rows: the diagonal complex LTI scan of S4D / S5 (DESIGN §3.5), row-sequential
// strategy: no subgroup operations, no shared memory, no barriers. Same bindings, uniforms, inputs
// and outputs as the chunked kernels (diagonal_scan.wgsl, diagonal_scan_subgroup.wgsl); the op
// picks the pipeline (`ScanStrategy::RowSequential`, and `Auto` on CPU devices or when rows fill a
// GPU).
//
// Math, per batch b, channel h, mode n (complex), step t = 0..L-1, x_{-1} = 0:
//   z = Δ_h·λ_{h,n};  (Λ̄, g) = ZOH: (exp z, Δ·(exp z − 1)/z) | bilinear: ((1+z/2)/(1−z/2), Δ/(1−z/2))
//                             | forward Euler: (1+z, Δ) | backward Euler: (1/(1−z), Δ/(1−z))
//   B̄ = g·B̃_{h,n};   x_t = Λ̄ ⊙ x_{t−1} + B̄·u_t;   y_t = 2·Re(Σ_n C̃_{h,n}·x_{t,n}) + D_h·u_t
// The discretisation functions are the chunked kernel's, copied textually (keep them in sync).
//
// Layouts (row-major f32): u, y (Bt, H, L); lambda, b, c (H, N, 2) with [re, im] interleaved;
// dt (H) raw positive step Δ (not its log); d (H).
//
// Work split: one invocation per row (b, h), WG rows per workgroup (override; the host picks 64,
// or 16 when that leaves fewer than 16 workgroups), linear workgroup index wg.x + wg.y·groups.x.
// The invocation discretises NB = 16 modes at a time into registers (Λ̄, B̄, 2·C̃ and the state x
// as constant-indexed, unrolled arrays), then walks t = 0..L−1: read u_t, update the NB states,
// sum 2·Re(C̃·x), write y_t. N > NB: passes over blocks of NB modes; later passes read y back and
// add to it, the first one adds D·u. Modes past N in the last block get Λ̄ = B̄ = C̃ = 0 (their
// state stays 0 and adds nothing).
//
// What bounds it: on a CPU device (lavapipe) compute, ~12 FLOPs per (step, mode) of scalar f32
// across 8-lane SIMD (one row per lane) with no barrier or shared-memory traffic; the u/y accesses
// are per-lane gathers (stride L across lanes). On a GPU the same stride-L pattern is served from
// cache (each line reused over the next 15 steps), and occupancy needs Bt·H ≳ 10⁴ rows; with few
// rows and long L the chunked parallel-in-time kernel is used instead. Latency: L dependent steps.

override WG: u32 = 64u;  // rows (invocations) per workgroup
const NB: u32 = 16u;     // complex modes per pass held in registers

struct Params {
    rows: u32,      // Bt·H
    channels: u32,  // H
    len: u32,       // L
    modes: u32,     // N
    method: u32,    // 0 ZOH, 1 bilinear, 2 forward Euler, 3 backward Euler
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> lambda: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> b_tilde: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> c_tilde: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read> dt: array<f32>;
@group(0) @binding(6) var<storage, read> d_skip: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

fn cmul(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(x.x * y.x - x.y * y.y, x.x * y.y + x.y * y.x);
}

fn cdiv(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(x.x * y.x + x.y * y.y, x.y * y.x - x.x * y.y) / dot(y, y);
}

fn expm1_real(x: f32) -> f32 {
    if (abs(x) < 0.1) {
        return x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0 + x / 720.0)))));
    }
    return exp(x) - 1.0;
}

// (exp(z) − 1)/z without cancellation for small |z|.
fn expm1_over_z(z: vec2<f32>) -> vec2<f32> {
    if (dot(z, z) < 1e-4) {
        let z2 = cmul(z, z);
        return vec2<f32>(1.0, 0.0) + 0.5 * z + z2 / 6.0 + cmul(z2, z) / 24.0 + cmul(z2, z2) / 120.0;
    }
    let half_sin = sin(0.5 * z.y);
    let num = vec2<f32>(expm1_real(z.x) * cos(z.y) - 2.0 * half_sin * half_sin, exp(z.x) * sin(z.y));
    return cdiv(num, z);
}

// (Λ̄, B̄) of mode m of channel h (the chunked kernel's discretise_mode, returned in registers).
fn discretise_mode(h: u32, m: u32) -> vec4<f32> {
    let i = h * params.modes + m;
    let step = dt[h];
    let z = step * lambda[i];
    let one = vec2<f32>(1.0, 0.0);
    var abar: vec2<f32>;
    var g: vec2<f32>;
    switch params.method {
        case 1u: {
            let inv = cdiv(one, one - 0.5 * z);
            abar = cmul(one + 0.5 * z, inv);
            g = step * inv;
        }
        case 2u: {
            abar = one + z;
            g = vec2<f32>(step, 0.0);
        }
        case 3u: {
            abar = cdiv(one, one - z);
            g = step * abar;
        }
        default: {
            abar = exp(z.x) * vec2<f32>(cos(z.y), sin(z.y));
            g = step * expm1_over_z(z);
        }
    }
    return vec4<f32>(abar, cmul(g, b_tilde[i]));
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
    let nn = params.modes;
    let len = params.len;
    let h = row % params.channels;
    let base = row * len;
    let skip = d_skip[h];
    for (var n0 = 0u; n0 < nn; n0 += NB) {
        var ar: array<f32, NB>;  // Λ̄
        var ai: array<f32, NB>;
        var br: array<f32, NB>;  // B̄
        var bi: array<f32, NB>;
        var cr: array<f32, NB>;  // 2·C̃
        var ci: array<f32, NB>;
        var xr: array<f32, NB>;  // state
        var xi: array<f32, NB>;
        for (var j = 0u; j < NB; j++) {
            var ab = vec4<f32>(0.0);
            var c = vec2<f32>(0.0);
            if (n0 + j < nn) {
                ab = discretise_mode(h, n0 + j);
                c = 2.0 * c_tilde[h * nn + n0 + j];
            }
            ar[j] = ab.x;
            ai[j] = ab.y;
            br[j] = ab.z;
            bi[j] = ab.w;
            cr[j] = c.x;
            ci[j] = c.y;
            xr[j] = 0.0;
            xi[j] = 0.0;
        }
        for (var t = 0u; t < len; t++) {
            let uu = u[base + t];
            var acc: f32;
            if (n0 == 0u) {
                acc = skip * uu;
            } else {
                acc = y[base + t];
            }
            for (var j = 0u; j < NB; j++) {
                let r = ar[j] * xr[j] - ai[j] * xi[j] + br[j] * uu;
                let i = ar[j] * xi[j] + ai[j] * xr[j] + bi[j] * uu;
                xr[j] = r;
                xi[j] = i;
                acc += cr[j] * r - ci[j] * i;
            }
            y[base + t] = acc;
        }
    }
}
