// rmsnorm: y[r, i] = x[r, i] · w[i] / sqrt(mean_i(x[r, i]²) + eps),  r < rows, i < d.
//
// Layouts (element offsets): row r of x starts at x_off + r·x_stride, row r of y at
// y_off + r·y_stride; w has d elements. Strided rows let the MLA layer normalise the c part of
// kv_a_proj_with_mqa's output (row stride d_c + d_R) straight into the latent rows.
//
// Flag VEC4, the fast path for vec4-aligned rows (d, x_off, x_stride, y_off, y_stride ≡ 0 mod 4;
// the host checks): x, w, y bound as vec4<f32>. TPR invocations per row, WG / TPR rows per
// workgroup. Invocation t of a row handles vec4s t, t + TPR, …: it loads them once, keeping the
// first HOLD of them in registers, and accumulates its squares; the TPR partial sums of a row
// meet in workgroup memory behind a single barrier, and every invocation of the row adds them in
// the same order (so they agree on the scale), then scales and stores its vec4s (re-reading x
// only past HOLD·TPR vec4s, i.e. d > 4·HOLD·TPR = 512).
// What bounds it: memory. On lavapipe each storage or workgroup load/store instruction is a loop
// over the 8 SIMD lanes, so the cost is in load and store *instructions*: vec4 access and holding
// x in registers leave one x load, one w load and one y store per 4 elements (a copy does one
// load and one store), and one barrier per workgroup instead of a log2(WG)-step tree (each
// barrier a coroutine switch per 8 lanes). The w loads (w is re-read per row) are the remaining
// overhead over a copy; holding x was worth ~3× at d = 512.
//
// Without VEC4, the fallback for unaligned rows: one workgroup per row. Its WG invocations sum
// squares over i = lid, lid + WG, …, reduce the partial sums with a tree in workgroup memory (WG
// a power of two), then scale and store the same elements. Rows are at most a few thousand wide,
// so the reduction is a handful of barriers.
//
// Both: linear workgroup index wg.x + wg.y·num_workgroups.x (2-D grids past 65535 workgroups).

#if VEC4
override WG: u32 = 64u;
override TPR: u32 = 8u;
override HOLD: u32 = 16u; // ≤ 16 (the size of `held`)
alias elem = vec4<f32>; // of x, w and y
#else
override WG: u32 = 256u;
alias elem = f32;
#endif

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
@group(0) @binding(1) var<storage, read> x: array<elem>;       // rows of d, strided
@group(0) @binding(2) var<storage, read> w: array<elem>;       // (d)
@group(0) @binding(3) var<storage, read_write> y: array<elem>; // rows of d, strided

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    rows(wg.x + wg.y * nwg.x, lid);
}

#if VEC4
// The rows (WG / TPR of them) of workgroup `block`.
fn rows(block: u32, lid: u32) {
    let row = block * (WG / TPR) + lid / TPR;
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
#else
// Row `block`, one workgroup.
fn rows(block: u32, lid: u32) {
    let row = block;
    if (row >= params.rows) {
        return;
    }
    let xb = params.x_off + row * params.x_stride;
    var sum = 0.0;
    for (var i = lid; i < params.d; i += WG) {
        let v = x[xb + i];
        sum = fma(v, v, sum);
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(partial[0] / f32(params.d) + params.eps);
    let yb = params.y_off + row * params.y_stride;
    for (var i = lid; i < params.d; i += WG) {
        y[yb + i] = x[xb + i] * inv * w[i];
    }
}
#endif
