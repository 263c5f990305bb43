// rmsnorm: y[r, i] = x[r, i] · w[i] / sqrt(mean_i(x[r, i]²) + eps),  r < rows, i < d;
// grouped and gated (Mamba-2's MambaRMSNormGated), each row split into d / group groups of
// `group` consecutive elements, normalised separately (k the group of i, mean over the group):
//   gate = 0 (plain):                  y = x · w / sqrt(mean_k(x²) + eps)
//   gate = 1 (gate, then norm; the default norm_before_gate = false):
//                                      h = x · silu(z);  y = h · w / sqrt(mean_k(h²) + eps)
//   gate = 2 (norm, then gate):        y = x · w / sqrt(mean_k(x²) + eps) · silu(z)
// with silu(z) = z / (1 + exp(-z)). The plain norm is one group of d.
//
// Layouts (element offsets): row r of x starts at x_off + r·x_stride, row r of y at
// y_off + r·y_stride, row r of z at z_off + r·z_stride (z is read only when gated; the host
// binds x there otherwise); w has d elements. Strided rows let the MLA layer normalise the c
// part of kv_a_proj_with_mqa's output (row stride d_c + d_R) straight into the latent rows, and
// Mamba-2 read z as a column window of in_proj's output.
//
// Work split: the unit of work is one group of one row ("unit" u = r · (d / group) + k: x from
// x_off + r·x_stride + k·group, w from k·group, `group` elements); units = rows · d / group.
//
// Flag VEC4, the fast path for vec4-aligned rows (group, x_off, x_stride, y_off, y_stride and,
// when gated, z_off, z_stride ≡ 0 mod 4; the host checks): x, w, y, z bound as vec4s. TPR
// invocations per unit, WG / TPR units per workgroup. Invocation t of a unit handles vec4s t, t + TPR, …: it loads them once, keeping the
// first HOLD of them in registers, and accumulates its squares; the TPR partial sums of a row
// meet in workgroup memory behind a single barrier, and every invocation of the row adds them in
// the same order (so they agree on the scale), then scales and stores its vec4s (re-reading x
// only past HOLD·TPR vec4s, i.e. a unit wider than 4·HOLD·TPR = 512).
// What bounds it: memory. On lavapipe each storage or workgroup load/store instruction is a loop
// over the 8 SIMD lanes, so the cost is in load and store *instructions*: vec4 access and holding
// x in registers leave one x load, one w load and one y store per 4 elements (a copy does one
// load and one store), and one barrier per workgroup instead of a log2(WG)-step tree (each
// barrier a coroutine switch per 8 lanes). The w loads (w is re-read per row) are the remaining
// overhead over a copy; holding x was worth ~3× at d = 512.
//
// Gate 1 applies silu(z) as x is loaded (held values are already gated); gate 2 applies it at the
// store. Either adds one z load per element.
//
// Without VEC4, the fallback for unaligned rows: one workgroup per unit. Its WG invocations sum
// squares over i = lid, lid + WG, …, reduce the partial sums with a tree in workgroup memory (WG
// a power of two), then scale and store the same elements. Rows are at most a few thousand wide,
// so the reduction is a handful of barriers.
//
// Both: linear workgroup index wg.x + wg.y·num_workgroups.x (2-D grids past 65535 workgroups).
//
// Storage dtypes (common/storage.wgsl): x, z and y share the first role's dtype (f32, or with F16 /
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
    units: u32,    // rows · (d / group)
    d: u32,        // row width
    x_off: u32,
    x_stride: u32,
    y_off: u32,
    y_stride: u32,
    eps: f32,
    group: u32,    // elements per group (d when ungrouped)
    _pad1: u32,
    z_off: u32,
    z_stride: u32,
    _pad: u32,
}

const GATE_FIRST: u32 = 1u;
const GATE_LAST: u32 = 2u;
// 0 none, GATE_FIRST or GATE_LAST: a pipeline constant, so the plain norm carries no z loads
// (llvmpipe runs a branch no lane takes under an empty lane mask, loads included).
override GATE: u32 = 0u;

@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
@group(0) @binding(1) var<storage, read> x: array<squad>;       // rows of d, strided
@group(0) @binding(2) var<storage, read> w: array<squad_b>;     // (d)
@group(0) @binding(3) var<storage, read_write> y: array<squad>; // rows of d, strided
@group(0) @binding(4) var<storage, read> z: array<squad>;       // rows of d, strided (gate)
#else
@group(0) @binding(1) var<storage, read> x: array<sword>;       // rows of d, strided
@group(0) @binding(2) var<storage, read> w: array<sword_b>;     // (d)
#if F16 || BF16
@group(0) @binding(3) var<storage, read_write> y: array<atomic<u32>>; // rows of d, halves in pairs
#else
@group(0) @binding(3) var<storage, read_write> y: array<f32>;   // rows of d, strided
#endif
@group(0) @binding(4) var<storage, read> z: array<sword>;       // rows of d, strided (gate)
#endif

#include "common/storage"

var<workgroup> partial: array<f32, 256>;

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

fn silu4(v: vec4<f32>) -> vec4<f32> {
    return v / (vec4<f32>(1.0) + exp(-v));
}

// Where unit u's x, y, z and w start (elements).
struct Unit {
    x: u32,
    y: u32,
    z: u32,
    w: u32,
}

fn unit_of(u: u32) -> Unit {
    let per_row = params.d / params.group;
    let r = u / per_row;
    let k = (u % per_row) * params.group;
    return Unit(
        params.x_off + r * params.x_stride + k,
        params.y_off + r * params.y_stride + k,
        params.z_off + r * params.z_stride + k,
        k,
    );
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    rows(wg.x + wg.y * nwg.x, lid);
}

#if VEC4
// x's vec4 i of a unit, gated when the gate comes first.
fn load4(o: Unit, i: u32) -> vec4<f32> {
    let v = sget4(x[o.x / 4u + i]);
    if (GATE == GATE_FIRST) {
        return v * silu4(sget4(z[o.z / 4u + i]));
    }
    return v;
}

// Store vec4 i of a unit's normalised, weighted values, gated when the gate comes last.
fn store4(o: Unit, i: u32, v: vec4<f32>) {
    var r = v * sget4_b(w[o.w / 4u + i]);
    if (GATE == GATE_LAST) {
        r = r * silu4(sget4(z[o.z / 4u + i]));
    }
    y[o.y / 4u + i] = spack4(r);
}

// The units (WG / TPR of them) of workgroup `block`.
fn rows(block: u32, lid: u32) {
    let unit = block * (WG / TPR) + lid / TPR;
    let t = lid % TPR;
    let live = unit < params.units;
    let d4 = params.group / 4u;
    let o = unit_of(unit);
    var held: array<vec4<f32>, 16>; // HOLD ≤ 16
    var sq = vec4<f32>(0.0);
    if (live) {
        for (var j = 0u; j < HOLD; j++) {
            let i = t + j * TPR;
            if (i < d4) {
                let v = load4(o, i);
                held[j] = v;
                sq = fma(v, v, sq);
            }
        }
        for (var i = t + HOLD * TPR; i < d4; i += TPR) {
            let v = load4(o, i);
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
    let inv = inverseSqrt(sum / f32(params.group) + params.eps);
    for (var j = 0u; j < HOLD; j++) {
        let i = t + j * TPR;
        if (i < d4) {
            store4(o, i, held[j] * inv);
        }
    }
    for (var i = t + HOLD * TPR; i < d4; i += TPR) {
        store4(o, i, load4(o, i) * inv);
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

// Element j of x (index from a unit's start), gated when the gate comes first.
fn load_gated(o: Unit, i: u32) -> f32 {
    let v = load_x(o.x + i);
    if (GATE == GATE_FIRST) {
        let zi = o.z + i;
        return v * silu(sget(z[zi / SPW], zi % SPW));
    }
    return v;
}

// Unit `block`, one workgroup.
fn rows(block: u32, lid: u32) {
    if (block >= params.units) {
        return;
    }
    let o = unit_of(block);
    var sum = 0.0;
    for (var i = lid; i < params.group; i += WG) {
        let v = load_gated(o, i);
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
    let inv = inverseSqrt(partial[0] / f32(params.group) + params.eps);
    for (var i = lid; i < params.group; i += WG) {
        var v = load_gated(o, i) * inv * load_w(o.w + i);
        if (GATE == GATE_LAST) {
            let zi = o.z + i;
            v = v * silu(sget(z[zi / SPW], zi % SPW));
        }
        store_y(o.y + i, v);
    }
}
#endif
