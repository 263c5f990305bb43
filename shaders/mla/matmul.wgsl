// matmul: y[g, m, n] = Σ_k x[g, m, k] · w(g, n, k) (+ bias[n]),  g < G, m < M, n < N, k < K.
// The general fallback: layouts that are not vec4-aligned (see matmul_vec4.wgsl, which runs all
// aligned ones and is 10–70× faster on lavapipe, where workgroup-memory staging and barriers
// cost more than they save).
//
// Strided layouts (element offsets into each buffer):
//   x[g, m, k] = x[x_off + g·x_gs + m·x_rs + k]
//   w(g, n, k) = w[w_off + g·w_gs + n·w_rs + k]   when w_trans = 1 (PyTorch Linear: W is [N, K])
//              = w[w_off + g·w_gs + k·w_rs + n]   when w_trans = 0 (W is [K, N])
//   y[g, m, n] = y[y_off + g·y_gs + m·y_rs + n]
// so one kernel does the projections (G = 1, y = x·Wᵀ + b) and the per-head absorb products of
// MLA (G = H, strided head slices of q, kv_b_proj and o_lat).
//
// Work split: each workgroup owns one (g, BM×BN output tile), BM = BM_T·RM rows and BN = BN_T·RN
// columns; its BM_T × BN_T invocations each accumulate RM × RN outputs in registers, reading
// rows ty + r·BM_T and columns tx + c·BN_T of the tile (strided, so neighbours hit neighbouring
// workgroup-memory words). K is walked in steps of BK: the workgroup stages the x tile (BM×BK)
// and the w tile (BN×BK) in workgroup memory, loading along the contiguous index so adjacent
// invocations read adjacent addresses, then every invocation does BK rank-1 updates.
// Out-of-range elements are staged as 0 and never stored. The linear workgroup index
// wg.x + wg.y·num_workgroups.x enumerates (g, tile_m, tile_n) with tile_n fastest.
// Limits: BM·BK ≤ 1024, BN·BK ≤ 2048 (12 KiB of workgroup memory), RM·RN ≤ 16,
// WG = BM_T·BN_T ≤ 256.

override WG: u32 = 256u;
override BM_T: u32 = 16u;
override BN_T: u32 = 16u;
override RM: u32 = 4u;
override RN: u32 = 4u;
override BK: u32 = 16u;

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
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> x_tile: array<f32, 1024>;
var<workgroup> w_tile: array<f32, 2048>;

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
    let bm = BM_T * RM;
    let bn = BN_T * RN;
    let tiles = params.tiles_m * params.tiles_n;
    let g = linear / tiles;
    let rem = linear % tiles;
    let m0 = (rem / params.tiles_n) * bm;
    let n0 = (rem % params.tiles_n) * bn;
    let tx = lid % BN_T;
    let ty = lid / BN_T;
    let x_base = params.x_off + g * params.x_gs;
    let w_base = params.w_off + g * params.w_gs;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    var a: array<f32, 4>;
    var b: array<f32, 4>;

    for (var k0 = 0u; k0 < params.k; k0 += BK) {
        // Stage x: element i of the tile is (row i / BK, k i % BK), stored k-major.
        for (var i = lid; i < bm * BK; i += WG) {
            let mm = i / BK;
            let kk = i % BK;
            var v = 0.0;
            if (m0 + mm < params.m && k0 + kk < params.k) {
                v = x[x_base + (m0 + mm) * params.x_rs + k0 + kk];
            }
            x_tile[kk * bm + mm] = v;
        }
        // Stage w along its contiguous index.
        for (var i = lid; i < bn * BK; i += WG) {
            var nn: u32;
            var kk: u32;
            var src: u32;
            if (params.w_trans == 1u) {
                nn = i / BK;
                kk = i % BK;
                src = w_base + (n0 + nn) * params.w_rs + k0 + kk;
            } else {
                nn = i % bn;
                kk = i / bn;
                src = w_base + (k0 + kk) * params.w_rs + n0 + nn;
            }
            var v = 0.0;
            if (n0 + nn < params.n && k0 + kk < params.k) {
                v = w[src];
            }
            w_tile[kk * bn + nn] = v;
        }
        workgroupBarrier();
        let kmax = min(BK, params.k - k0);
        for (var kk = 0u; kk < kmax; kk++) {
            for (var r = 0u; r < RM; r++) {
                a[r] = x_tile[kk * bm + ty + r * BM_T];
            }
            for (var c = 0u; c < RN; c++) {
                b[c] = w_tile[kk * bn + tx + c * BN_T];
            }
            for (var r = 0u; r < RM; r++) {
                for (var c = 0u; c < RN; c++) {
                    acc[r * RN + c] = fma(a[r], b[c], acc[r * RN + c]);
                }
            }
        }
        workgroupBarrier();
    }

    let y_base = params.y_off + g * params.y_gs;
    for (var r = 0u; r < RM; r++) {
        let m = m0 + ty + r * BM_T;
        if (m >= params.m) {
            continue;
        }
        for (var c = 0u; c < RN; c++) {
            let n = n0 + tx + c * BN_T;
            if (n < params.n) {
                var v = acc[r * RN + c];
                if (params.has_bias == 1u) {
                    v += bias[n];
                }
                y[y_base + m * params.y_rs + n] = v;
            }
        }
    }
}
