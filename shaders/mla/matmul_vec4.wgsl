// matmul_vec4: y[g, m, n] = Σ_k x[g, m, k] · w(g, n, k) (+ bias[n]), the fast path of `matmul`
// for layouts whose operands are vec4-aligned (see src/ops/matmul.rs for when it is chosen; the
// tiled kernel in matmul.wgsl handles every other layout). Same strided layouts as matmul.wgsl
// (element offsets; the host guarantees the alignment below):
//   x[g, m, k] = x[x_off + g·x_gs + m·x_rs + k]                 x_off, x_gs, x_rs, K ≡ 0 mod 4
//   w(g, n, k) = w[w_off + g·w_gs + n·w_rs + k]   W_TRANS = 1   w_off, w_gs, w_rs     ≡ 0 mod 4
//              = w[w_off + g·w_gs + k·w_rs + n]   W_TRANS = 0   w_off, w_gs, w_rs, N  ≡ 0 mod 4
//   y[g, m, n] = y[y_off + g·y_gs + m·y_rs + n]                 (any alignment, scalar stores)
//
// Work split: one invocation per (g, block of RM rows, block of 4·NV columns). A workgroup of WG
// invocations owns a tile of WG/cb row blocks × cb column blocks (invocation lid: row block
// lid / cb, column block lid % cb; cb = WG when there is one row block, else 8), tiles
// enumerated over (g, tile row, tile column) with the column fastest from the linear workgroup
// index wg.x + wg.y·num_workgroups.x. With cb = 8 (llvmpipe's SIMD width) consecutive SIMD
// groups of a workgroup reuse the same columns of w from cache for the next rows. Each invocation walks K in vec4 steps with no workgroup memory
// and no barrier: per step it loads RM vec4 of x (one per row, along k) and 4·NV vec4 of w
// (W_TRANS: one per column along k, transposed in registers; else one per k along n) and does
// 16·RM·NV FMAs into RM·NV vec4 accumulators held in named variables (no dynamically indexed
// private arrays). Rows or columns past the end are clamped for loading and never stored.
//
// Performance (release, Mesa 22.3 lavapipe on 2 CPU cores shared with other jobs): llvmpipe
// turns every non-uniform storage or workgroup-memory load into a loop over the 8 SIMD lanes
// with a bounds check per component, so a load *instruction* costs tens of FMAs (a vec4 load
// amortises the lane loop over 4 components, hence vec4 everywhere), staging in workgroup memory
// saves nothing, and every barrier is a coroutine switch per 8 lanes. So: no workgroup memory,
// no barriers, and as many FMAs per load instruction as registers allow.
// - decode (M ≤ 8): memory bound; each vec4 of W is loaded once, x adds RM loads per 8 columns.
// - prefill (large M): compute bound; each step issues RM + 4·NV = 16 vec4 load instructions per
//   256 FMAs (per lane), and the lane-loop loads, not the FMAs, are the remaining gap to the FMA
//   ceiling. Fixes: more outputs per invocation (spills on AVX2 already at 64 accumulators) or a
//   driver that emits real vector loads for contiguous lanes (newer llvmpipe).
// Measured time (fraction of the roofline bound, ceilings from the same run; they swing 2× from
// run to run under contention, so a range over 2–4 runs), tiled matmul.wgsl → this kernel:
//   M=4   N=576  K=2048   125.6 ms (2%) → 1.8–5.0 ms (60–124%)
//   M=4   N=2048 K=2048   499 ms   (2%) → 3.2–9.8 ms (82–195%)
//   M=256 N=576  K=2048   2.04 s   (4%) → 157–295 ms (33–68%)
//   M=64  N=576  K=512    41.3 ms  (8%) → 4.8–8.9 ms (33–97%)

override WG: u32 = 64u;
override RM: u32 = 4u; // 1, 2, 4 or 8
override NV: u32 = 2u; // 1 or 2
override W_TRANS: u32 = 1u;

struct Params {
    g: u32,
    m: u32,
    n: u32,
    k: u32,
    x_off: u32,
    x_gs: u32,
    x_rs: u32,
    w_off: u32,
    w_gs: u32,
    w_rs: u32,
    w_trans: u32,
    y_off: u32,
    y_gs: u32,
    y_rs: u32,
    has_bias: u32,
    tiles_m: u32,
    tiles_n: u32,
    groups: u32,
    cb: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// acc + wt · xv with explicit FMAs: wt's columns are indexed by k, its rows by output column.
fn mac(acc: vec4<f32>, wt: mat4x4<f32>, xv: vec4<f32>) -> vec4<f32> {
    var a = fma(wt[0], vec4<f32>(xv.x), acc);
    a = fma(wt[1], vec4<f32>(xv.y), a);
    a = fma(wt[2], vec4<f32>(xv.z), a);
    return fma(wt[3], vec4<f32>(xv.w), a);
}

// vec4 index of the start of x row m0 + r (clamped to the last row) for batch entry g.
fn x_row(g: u32, m0: u32, r: u32) -> u32 {
    let m = min(m0 + r, params.m - 1u);
    return (params.x_off + g * params.x_gs + m * params.x_rs) / 4u;
}

// W_TRANS: vec4 index of the start of w row n0 + j (clamped to the last column).
fn w_row(g: u32, n0: u32, j: u32) -> u32 {
    let n = min(n0 + j, params.n - 1u);
    return (params.w_off + g * params.w_gs + n * params.w_rs) / 4u;
}

// Four weights of row k4·4 + j (W_TRANS = 0) for columns n0 .. n0 + 3 (n0 clamped in range).
fn w_quad(base: u32, k4: u32, j: u32) -> vec4<f32> {
    return w[base + ((k4 * 4u + j) * params.w_rs) / 4u];
}

// Store the (up to) four outputs of row m0 + r, columns n0 .. n0 + 3.
fn store(g: u32, m0: u32, r: u32, n0: u32, v: vec4<f32>) {
    let m = m0 + r;
    if (m >= params.m) {
        return;
    }
    let base = params.y_off + g * params.y_gs + m * params.y_rs;
    store1(base, n0, v.x);
    store1(base, n0 + 1u, v.y);
    store1(base, n0 + 2u, v.z);
    store1(base, n0 + 3u, v.w);
}

fn store1(base: u32, n: u32, v: f32) {
    if (n < params.n) {
        var o = v;
        if (params.has_bias == 1u) {
            o += bias[n];
        }
        y[base + n] = o;
    }
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let linear = wg.x + wg.y * nwg.x;
    if (linear >= params.groups) {
        return;
    }
    // This workgroup's tile: rb × cb blocks (row blocks × column blocks).
    let cb = params.cb;
    let rb = WG / cb;
    let wtm = (params.tiles_m + rb - 1u) / rb;
    let wtn = (params.tiles_n + cb - 1u) / cb;
    let g = linear / (wtm * wtn);
    let rem = linear % (wtm * wtn);
    let tm = (rem / wtn) * rb + lid / cb;
    let tn = (rem % wtn) * cb + lid % cb;
    if (tm >= params.tiles_m || tn >= params.tiles_n) {
        return;
    }
    let m0 = tm * RM;
    let n0 = tn * (4u * NV);
    let n1 = n0 + 4u;
    let k4s = params.k / 4u;

    let x0 = x_row(g, m0, 0u);
    let x1 = x_row(g, m0, 1u);
    let x2 = x_row(g, m0, 2u);
    let x3 = x_row(g, m0, 3u);
    let x4 = x_row(g, m0, 4u);
    let x5 = x_row(g, m0, 5u);
    let x6 = x_row(g, m0, 6u);
    let x7 = x_row(g, m0, 7u);
    // W_TRANS: the rows of the 4·NV columns; else the vec4 index of w(g, n0.., k = 0) per quad.
    let wr0 = w_row(g, n0, 0u);
    let wr1 = w_row(g, n0, 1u);
    let wr2 = w_row(g, n0, 2u);
    let wr3 = w_row(g, n0, 3u);
    let wr4 = w_row(g, n0, 4u);
    let wr5 = w_row(g, n0, 5u);
    let wr6 = w_row(g, n0, 6u);
    let wr7 = w_row(g, n0, 7u);
    let q0 = (params.w_off + g * params.w_gs + min(n0, params.n - 4u)) / 4u;
    let q1 = (params.w_off + g * params.w_gs + min(n1, params.n - 4u)) / 4u;

    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    var b3 = vec4<f32>(0.0);
    var b4 = vec4<f32>(0.0);
    var b5 = vec4<f32>(0.0);
    var b6 = vec4<f32>(0.0);
    var b7 = vec4<f32>(0.0);

    for (var k4 = 0u; k4 < k4s; k4++) {
        var wa: mat4x4<f32>;
        var wb: mat4x4<f32>;
        if (W_TRANS == 1u) {
            wa = transpose(mat4x4<f32>(w[wr0 + k4], w[wr1 + k4], w[wr2 + k4], w[wr3 + k4]));
            if (NV > 1u) {
                wb = transpose(mat4x4<f32>(w[wr4 + k4], w[wr5 + k4], w[wr6 + k4], w[wr7 + k4]));
            }
        } else {
            wa = mat4x4<f32>(w_quad(q0, k4, 0u), w_quad(q0, k4, 1u), w_quad(q0, k4, 2u), w_quad(q0, k4, 3u));
            if (NV > 1u) {
                wb = mat4x4<f32>(w_quad(q1, k4, 0u), w_quad(q1, k4, 1u), w_quad(q1, k4, 2u), w_quad(q1, k4, 3u));
            }
        }
        let v0 = x[x0 + k4];
        a0 = mac(a0, wa, v0);
        if (NV > 1u) { b0 = mac(b0, wb, v0); }
        if (RM > 1u) {
            let v1 = x[x1 + k4];
            a1 = mac(a1, wa, v1);
            if (NV > 1u) { b1 = mac(b1, wb, v1); }
        }
        if (RM > 2u) {
            let v2 = x[x2 + k4];
            a2 = mac(a2, wa, v2);
            if (NV > 1u) { b2 = mac(b2, wb, v2); }
            let v3 = x[x3 + k4];
            a3 = mac(a3, wa, v3);
            if (NV > 1u) { b3 = mac(b3, wb, v3); }
        }
        if (RM > 4u) {
            let v4 = x[x4 + k4];
            a4 = mac(a4, wa, v4);
            if (NV > 1u) { b4 = mac(b4, wb, v4); }
            let v5 = x[x5 + k4];
            a5 = mac(a5, wa, v5);
            if (NV > 1u) { b5 = mac(b5, wb, v5); }
            let v6 = x[x6 + k4];
            a6 = mac(a6, wa, v6);
            if (NV > 1u) { b6 = mac(b6, wb, v6); }
            let v7 = x[x7 + k4];
            a7 = mac(a7, wa, v7);
            if (NV > 1u) { b7 = mac(b7, wb, v7); }
        }
    }

    store(g, m0, 0u, n0, a0);
    if (NV > 1u) { store(g, m0, 0u, n1, b0); }
    if (RM > 1u) {
        store(g, m0, 1u, n0, a1);
        if (NV > 1u) { store(g, m0, 1u, n1, b1); }
    }
    if (RM > 2u) {
        store(g, m0, 2u, n0, a2);
        store(g, m0, 3u, n0, a3);
        if (NV > 1u) {
            store(g, m0, 2u, n1, b2);
            store(g, m0, 3u, n1, b3);
        }
    }
    if (RM > 4u) {
        store(g, m0, 4u, n0, a4);
        store(g, m0, 5u, n0, a5);
        store(g, m0, 6u, n0, a6);
        store(g, m0, 7u, n0, a7);
        if (NV > 1u) {
            store(g, m0, 4u, n1, b4);
            store(g, m0, 5u, n1, b5);
            store(g, m0, 6u, n1, b6);
            store(g, m0, 7u, n1, b7);
        }
    }
}
