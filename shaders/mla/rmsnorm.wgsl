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
//
// Storage dtypes (common/storage.wgsl): x and y share the first role's dtype (f32, or with F16 /
// BF16 halves two per u32 word; NATIVE_F16 binds native f16); w is the second role (f32, or with
// F16_B / BF16_B the rows' half dtype: checkpoints store norm weights in bf16). Loads widen, the
// sum of squares and the scaling are f32, y is rounded on store. The vec4 path stores a squad
// (4 halves = 2 whole words) per vec4, so no two invocations share a word. The scalar path's
// neighbouring elements belong to different invocations and a word may straddle two rows (odd
// offsets or strides), so each half store is two atomics on its word (atomicAnd clears the
// half, atomicOr sets it; disjoint bits commute), as latent_cache does.

#if VEC4
override WG: u32 = 64u;
override TPR: u32 = 8u;
override HOLD: u32 = 16u; // ≤ 16 (the size of `held`)
#else
override WG: u32 = 256u;
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
#if VEC4
@group(0) @binding(1) var<storage, read> x: array<squad>;       // rows of d, strided
@group(0) @binding(2) var<storage, read> w: array<squad_b>;     // (d)
@group(0) @binding(3) var<storage, read_write> y: array<squad>; // rows of d, strided
#else
@group(0) @binding(1) var<storage, read> x: array<sword>;       // rows of d, strided
@group(0) @binding(2) var<storage, read> w: array<sword_b>;     // (d)
#if F16 || BF16
@group(0) @binding(3) var<storage, read_write> y: array<atomic<u32>>; // rows of d, halves in pairs
#else
@group(0) @binding(3) var<storage, read_write> y: array<f32>;   // rows of d, strided
#endif
#endif

#include "common/storage"

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
                let v = sget4(x[xb + i]);
                held[j] = v;
                sq = fma(v, v, sq);
            }
        }
        for (var i = t + HOLD * TPR; i < d4; i += TPR) {
            let v = sget4(x[xb + i]);
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
            y[yb + i] = spack4(held[j] * inv * sget4_b(w[i]));
        }
    }
    for (var i = t + HOLD * TPR; i < d4; i += TPR) {
        y[yb + i] = spack4(sget4(x[xb + i]) * inv * sget4_b(w[i]));
    }
}
#else
fn load_x(j: u32) -> f32 {
    return sget(x[j / SPW], j % SPW);
}

fn load_w(i: u32) -> f32 {
    return sget_b(w[i / SPW_B], i % SPW_B);
}

fn store_y(j: u32, v: f32) {
#if F16 || BF16
    let shift = (j & 1u) * 16u;
    atomicAnd(&y[j / 2u], ~(0xffffu << shift));
    atomicOr(&y[j / 2u], half_bits(v) << shift);
#else
    y[j] = v;
#endif
}

// Row `block`, one workgroup.
fn rows(block: u32, lid: u32) {
    let row = block;
    if (row >= params.rows) {
        return;
    }
    let xb = params.x_off + row * params.x_stride;
    var sum = 0.0;
    for (var i = lid; i < params.d; i += WG) {
        let v = load_x(xb + i);
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
        store_y(yb + i, load_x(xb + i) * inv * load_w(i));
    }
}
#endif
