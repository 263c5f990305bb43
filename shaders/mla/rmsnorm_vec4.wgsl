// rmsnorm_vec4: y[r, i] = x[r, i] · w[i] / sqrt(mean_i(x[r, i]²) + eps),  r < rows, i < d; the
// fast path of `rmsnorm` for vec4-aligned rows (d, x_off, x_stride, y_off, y_stride all ≡ 0 mod 4;
// rmsnorm.wgsl handles the rest). Layouts (element offsets): row r of x starts at
// x_off + r·x_stride, row r of y at y_off + r·y_stride; w has d elements; x, w, y are read and
// written as vec4.
//
// Work split: TPR invocations per row, WG / TPR rows per workgroup (linear workgroup index
// wg.x + wg.y·num_workgroups.x). Invocation t of a row handles vec4s t, t + TPR, …: it loads
// them once, keeping the first HOLD of them in registers, and accumulates its squares; the
// TPR partial sums of a row meet in workgroup memory behind a single barrier, and every
// invocation of the row adds them in the same order (so they agree on the scale), then scales
// and stores its vec4s (re-reading x only past HOLD·TPR vec4s, i.e. d > 4·HOLD·TPR = 512).
//
// Performance (release, Mesa 22.3 lavapipe): memory bound. llvmpipe executes each storage or
// workgroup load/store instruction as a loop over its 8 SIMD lanes, so the cost is in load and
// store *instructions*: vec4 access and holding x in registers leave one x load, one w load and
// one y store per 4 elements (the copy ceiling does one load and one store), and one barrier
// per workgroup instead of a log2(WG)-step tree (each barrier is a coroutine switch per 8
// lanes). The w loads are the remaining overhead over a copy (w is re-read per row); holding x
// (HOLD = 16 rather than 0) was worth ~3× at d = 512.
// Measured time (fraction of the roofline bound, same-run ceilings, range over 2–4 runs under
// contention), rmsnorm.wgsl (256 invocations per row, 9-barrier tree) → this kernel:
//   rows=64   d=512    3.76 ms (2%) → 0.20 ms (52%)
//   rows=8    d=512    194 µs (11%) → 38–68 µs (37–65%)
//   rows=1024 d=512    60.8 ms (4%) → 2.1–10.2 ms (30–104%)
//   rows=1024 d=1536   95.3 ms (8%) → 6.3–18.9 ms (48–102%)

override WG: u32 = 64u;
override TPR: u32 = 8u;
override HOLD: u32 = 16u; // ≤ 16 (the size of `held`)

struct Params {
    rows: u32,
    d: u32,
    x_off: u32,
    x_stride: u32,
    y_off: u32,
    y_stride: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = (wg.x + wg.y * nwg.x) * (WG / TPR) + lid / TPR;
    let t = lid % TPR;
    let live = row < params.rows;
    let d4 = params.d / 4u;
    let xb = (params.x_off + row * params.x_stride) / 4u;
    var held: array<vec4<f32>, 16>; // HOLD ≤ 16
    var sq = vec4<f32>(0.0);
    if (live) {
        for (var j = 0u; j < HOLD; j++) {
            let i = t + j * TPR;
            if (i < d4) {
                let v = x[xb + i];
                held[j] = v;
                sq = fma(v, v, sq);
            }
        }
        for (var i = t + HOLD * TPR; i < d4; i += TPR) {
            let v = x[xb + i];
            sq = fma(v, v, sq);
        }
    }
    partial[lid] = (sq.x + sq.y) + (sq.z + sq.w);
    workgroupBarrier();
    if (!live) {
        return;
    }
    let first = lid - t;
    var sum = 0.0;
    for (var j = 0u; j < TPR; j++) {
        sum += partial[first + j];
    }
    let inv = inverseSqrt(sum / f32(params.d) + params.eps);
    let yb = (params.y_off + row * params.y_stride) / 4u;
    for (var j = 0u; j < HOLD; j++) {
        let i = t + j * TPR;
        if (i < d4) {
            y[yb + i] = held[j] * inv * w[i];
        }
    }
    for (var i = t + HOLD * TPR; i < d4; i += TPR) {
        y[yb + i] = x[xb + i] * inv * w[i];
    }
}
