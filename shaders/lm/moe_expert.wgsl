// moe_expert: the expert products of the mixture of experts, over only the rows routed to each
// expert (a gather-matmul), with each tile's weights chosen by its expert.
//
//   mode 0, SwiGLU, gathered: h[r, i] = silu(Σ_c x[tok(r), c]·wa[e, i, c]) · Σ_c x[tok(r), c]·wb[e, i, c]
//   mode 1, down:             o[r, j] = Σ_i h[r, i]·wa[e, j, i]
//   mode 2, SwiGLU, dense:    h[t, i] as mode 0 for every token t with one expert (the shared one)
// silu(g) = g / (1 + exp(−g)). Routed row r belongs to expert e when
// row_off[e] ≤ r < row_off[e + 1]; tok(r) = rows[r] / k (the plan of moe_plan.wgsl).
//
// Bindings: plan u32 (moe_plan's layout; unused in mode 2); x (rows, K) f32 row-major: the
// hidden states (T, hidden) in modes 0 and 2, h (T·k, I) in mode 1; wa and wb (e1 − e0, N, K)
// row-major PyTorch `Linear` weights of experts e0 .. e1 (gate_proj and up_proj stacked; down_proj
// as wa in mode 1, where wb is bound to the same tensor and unused), stored f32, f16 or bf16
// (common/storage.wgsl's first role; widened, f32 math); out (rows, N) f32.
// Experts are split into ranges [e0, e1) whose stacked weights fit one storage binding: one
// dispatch per range, each sized for its worst case; the workgroups past the range's tiles exit.
//
// Work split: a tile is RM consecutive rows of one expert (moe_plan's tile_off numbers them) ×
// 4·WG columns; linear workgroup index = row tile · tiles_n + column tile. Each invocation owns
// RM rows × 4 columns (one vec4 of outputs per row and product), walking K in vec4 steps: per
// step RM vec4 loads of x (the same rows for the whole workgroup: cache hits), 4 (mode 1) or 8
// vec4 loads of weights (4 rows of each product, transposed in registers) and 16·RM FMAs per
// product, no workgroup memory and no barrier (the shape that suits llvmpipe, as matmul's vec4
// path). Rows past the expert's end are clamped for loading and never stored. K and N are
// multiples of 4 (checked on the host). Bound: the expert weights, read once per row tile;
// with RM = 4 a weight vec4 serves 4 rows.
//
// Flag SUBGROUP (the host composes it on CPU adapters whose subgroups hold at least 8
// invocations, with RM = 8, or 1 where the experts average under 2 rows): lane l < RM of each
// subgroup loads the x vec4 of row l of the tile and every lane takes the RM rows' vec4s by
// subgroupBroadcast, so a K step costs one x load per lane instead of RM (RM = 8), or one lane's
// instead of every lane's (RM = 1: llvmpipe's lane loop skips the masked lanes). Every lane stays active to the end (columns past N are clamped for
// loading, never stored), as the broadcasts need. Why only on CPUs: on llvmpipe each storage
// load instruction is a loop over the SIMD lanes, so load instructions, not bytes, set the time,
// and a tile of 8 rows costs the loads of a 1-row tile (1 + 8 vec4 per K step) while a GPU
// serves the same x vec4 to the whole workgroup from its cache already.

override WG: u32 = 64u;
override RM: u32 = 4u; // 1 or 4; 1 or 8 with SUBGROUP
// 0 SwiGLU gathered, 1 down, 2 SwiGLU dense: a pipeline constant, so the down product carries
// no loads of the second weight (llvmpipe runs a branch no lane takes under an empty lane mask,
// loads included: as a uniform it doubled the down product's weight loads there).
override MODE: u32 = 0u;

#include "common/storage"
#include "common/grid"

struct Params {
    _pad0: u32,
    n: u32,       // output columns N
    k: u32,       // reduction length K
    rows: u32,    // mode 2: tokens T
    topk: u32,    // experts per token
    n_e: u32,     // experts E (plan layout)
    e0: u32,      // first expert of this dispatch's weights
    e1: u32,      // one past the last
    tiles_n: u32, // column tiles
    groups: u32,  // workgroups of this dispatch (the grid may be padded past it)
    interleave: u32, // K: the device's threads take the grid in K contiguous chunks (common/grid)
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> plan: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;  // (rows, K)
@group(0) @binding(3) var<storage, read> wa: array<squad>;      // (e1 − e0, N, K)
@group(0) @binding(4) var<storage, read> wb: array<squad>;      // (e1 − e0, N, K)
@group(0) @binding(5) var<storage, read_write> out: array<f32>; // (rows, N)

fn mac(acc: vec4<f32>, wt: mat4x4<f32>, xv: vec4<f32>) -> vec4<f32> {
    var a = fma(wt[0], vec4<f32>(xv.x), acc);
    a = fma(wt[1], vec4<f32>(xv.y), a);
    a = fma(wt[2], vec4<f32>(xv.z), a);
    return fma(wt[3], vec4<f32>(xv.w), a);
}

// vec4 index of the x row read for output row `r`.
fn x_row(r: u32) -> u32 {
    var src = r;
    if (MODE == 0u) {
        src = plan[2u * params.n_e + 2u + r] / params.topk;
    }
    return src * (params.k / 4u);
}

fn silu_mul(g: vec4<f32>, u: vec4<f32>) -> vec4<f32> {
    return g / (vec4<f32>(1.0) + exp(-g)) * u;
}

fn store(r: u32, end: u32, col: u32, v: vec4<f32>) {
    if (r < end) {
        let o = r * params.n + col;
        out[o] = v.x;
        out[o + 1u] = v.y;
        out[o + 2u] = v.z;
        out[o + 3u] = v.w;
    }
}

// The 4 output columns col .. col + 3 of rows row0 .. row0 + RM − 1 (< end) of expert e.
struct Tile {
    e: u32,
    row0: u32,
    end: u32,
    col: u32,
}

@compute @workgroup_size(WG)
fn main(
#if SUBGROUP
    @builtin(subgroup_invocation_id) lane: u32,
#endif
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Tiles past the routed rows (the grid is sized for the worst case) exit at once: spread
    // them, and the real ones, over a CPU device's threads.
    let lin = interleaved_item(wg.x + wg.y * nwg.x, nwg.x * nwg.y, params.interleave);
    if (lin >= params.groups) {
        return;
    }
    let rt = lin / params.tiles_n;
    let col = ((lin % params.tiles_n) * WG + lid) * 4u;
#if !SUBGROUP
    if (col >= params.n) {
        return;
    }
#endif
    var e = params.e0;
    var row0: u32;
    var end: u32;
    if (MODE == 2u) {
        row0 = rt * RM;
        end = params.rows;
    } else {
        let toff = params.n_e + 1u;
        let tile = plan[toff + params.e0] + rt;
        if (tile >= plan[toff + params.e1]) {
            return;
        }
        // The expert whose tiles hold `tile`: tile_off[lo] ≤ tile < tile_off[hi].
        var lo = params.e0;
        var hi = params.e1;
        // A for loop with a count, not a while: any u32 range halves to one within 32 steps.
        for (var halving = 0u; halving < 32u && hi - lo > 1u; halving++) {
            let mid = (lo + hi) / 2u;
            if (plan[toff + mid] <= tile) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        e = lo;
        row0 = plan[e] + (tile - plan[toff + e]) * RM;
        end = plan[e + 1u];
    }
    if (row0 >= end) {
        return;
    }
#if SUBGROUP
    products_broadcast(Tile(e, row0, end, col), lane);
#else
    products(Tile(e, row0, end, col));
#endif
}

// vec4 index of row 0 of output column t.col's weights (clamped to the last column quad).
fn w_base(t: Tile) -> u32 {
    let col = min(t.col, params.n - 4u);
    return ((t.e - params.e0) * params.n + col) * (params.k / 4u);
}

#if !SUBGROUP
// RM = 1 or 4 rows, each x vec4 loaded by every invocation.
fn products(t: Tile) {
    let k4s = params.k / 4u;
    let x0 = x_row(t.row0);
    let x1 = x_row(min(t.row0 + 1u, t.end - 1u));
    let x2 = x_row(min(t.row0 + 2u, t.end - 1u));
    let x3 = x_row(min(t.row0 + 3u, t.end - 1u));
    let w0 = w_base(t);
    let w1 = w0 + k4s;
    let w2 = w1 + k4s;
    let w3 = w2 + k4s;
    let two = MODE != 1u;

    var g0 = vec4<f32>(0.0);
    var g1 = vec4<f32>(0.0);
    var g2 = vec4<f32>(0.0);
    var g3 = vec4<f32>(0.0);
    var u0 = vec4<f32>(0.0);
    var u1 = vec4<f32>(0.0);
    var u2 = vec4<f32>(0.0);
    var u3 = vec4<f32>(0.0);
    for (var q = 0u; q < k4s; q++) {
        let ga = transpose(mat4x4<f32>(
            sget4(wa[w0 + q]), sget4(wa[w1 + q]), sget4(wa[w2 + q]), sget4(wa[w3 + q])));
        var ub: mat4x4<f32>;
        if (two) {
            ub = transpose(mat4x4<f32>(
                sget4(wb[w0 + q]), sget4(wb[w1 + q]), sget4(wb[w2 + q]), sget4(wb[w3 + q])));
        }
        let v0 = x[x0 + q];
        g0 = mac(g0, ga, v0);
        if (two) { u0 = mac(u0, ub, v0); }
        if (RM > 1u) {
            let v1 = x[x1 + q];
            let v2 = x[x2 + q];
            let v3 = x[x3 + q];
            g1 = mac(g1, ga, v1);
            g2 = mac(g2, ga, v2);
            g3 = mac(g3, ga, v3);
            if (two) {
                u1 = mac(u1, ub, v1);
                u2 = mac(u2, ub, v2);
                u3 = mac(u3, ub, v3);
            }
        }
    }
    if (two) {
        g0 = silu_mul(g0, u0);
        g1 = silu_mul(g1, u1);
        g2 = silu_mul(g2, u2);
        g3 = silu_mul(g3, u3);
    }
    store(t.row0, t.end, t.col, g0);
    if (RM > 1u) {
        store(t.row0 + 1u, t.end, t.col, g1);
        store(t.row0 + 2u, t.end, t.col, g2);
        store(t.row0 + 3u, t.end, t.col, g3);
    }
}
#else
// RM = 1 or 8 rows: lane l < RM loads row l's x vec4 (the other lanes load nothing: llvmpipe's
// lane loop skips them), the subgroup shares the RM rows by broadcast.
fn products_broadcast(t: Tile, lane: u32) {
    let k4s = params.k / 4u;
    let xl = x_row(min(t.row0 + lane % 8u, t.end - 1u));
    let w0 = w_base(t);
    let w1 = w0 + k4s;
    let w2 = w1 + k4s;
    let w3 = w2 + k4s;
    let two = MODE != 1u;
    let eight = RM > 1u;

    var g0 = vec4<f32>(0.0);
    var g1 = vec4<f32>(0.0);
    var g2 = vec4<f32>(0.0);
    var g3 = vec4<f32>(0.0);
    var g4 = vec4<f32>(0.0);
    var g5 = vec4<f32>(0.0);
    var g6 = vec4<f32>(0.0);
    var g7 = vec4<f32>(0.0);
    var u0 = vec4<f32>(0.0);
    var u1 = vec4<f32>(0.0);
    var u2 = vec4<f32>(0.0);
    var u3 = vec4<f32>(0.0);
    var u4 = vec4<f32>(0.0);
    var u5 = vec4<f32>(0.0);
    var u6 = vec4<f32>(0.0);
    var u7 = vec4<f32>(0.0);
    for (var q = 0u; q < k4s; q++) {
        let ga = transpose(mat4x4<f32>(
            sget4(wa[w0 + q]), sget4(wa[w1 + q]), sget4(wa[w2 + q]), sget4(wa[w3 + q])));
        var ub: mat4x4<f32>;
        if (two) {
            ub = transpose(mat4x4<f32>(
                sget4(wb[w0 + q]), sget4(wb[w1 + q]), sget4(wb[w2 + q]), sget4(wb[w3 + q])));
        }
        var mine = vec4<f32>(0.0);
        if (eight || lane == 0u) {
            mine = x[xl + q];
        }
        let v0 = subgroupBroadcast(mine, 0u);
        g0 = mac(g0, ga, v0);
        if (two) { u0 = mac(u0, ub, v0); }
        if (eight) {
            let v1 = subgroupBroadcast(mine, 1u);
            let v2 = subgroupBroadcast(mine, 2u);
            let v3 = subgroupBroadcast(mine, 3u);
            let v4 = subgroupBroadcast(mine, 4u);
            let v5 = subgroupBroadcast(mine, 5u);
            let v6 = subgroupBroadcast(mine, 6u);
            let v7 = subgroupBroadcast(mine, 7u);
            g1 = mac(g1, ga, v1);
            g2 = mac(g2, ga, v2);
            g3 = mac(g3, ga, v3);
            g4 = mac(g4, ga, v4);
            g5 = mac(g5, ga, v5);
            g6 = mac(g6, ga, v6);
            g7 = mac(g7, ga, v7);
            if (two) {
                u1 = mac(u1, ub, v1);
                u2 = mac(u2, ub, v2);
                u3 = mac(u3, ub, v3);
                u4 = mac(u4, ub, v4);
                u5 = mac(u5, ub, v5);
                u6 = mac(u6, ub, v6);
                u7 = mac(u7, ub, v7);
            }
        }
    }
    if (two) {
        g0 = silu_mul(g0, u0);
        g1 = silu_mul(g1, u1);
        g2 = silu_mul(g2, u2);
        g3 = silu_mul(g3, u3);
        g4 = silu_mul(g4, u4);
        g5 = silu_mul(g5, u5);
        g6 = silu_mul(g6, u6);
        g7 = silu_mul(g7, u7);
    }
    if (t.col < params.n) {
        store(t.row0, t.end, t.col, g0);
        if (eight) {
            store(t.row0 + 1u, t.end, t.col, g1);
            store(t.row0 + 2u, t.end, t.col, g2);
            store(t.row0 + 3u, t.end, t.col, g3);
            store(t.row0 + 4u, t.end, t.col, g4);
            store(t.row0 + 5u, t.end, t.col, g5);
            store(t.row0 + 6u, t.end, t.col, g6);
            store(t.row0 + 7u, t.end, t.col, g7);
        }
    }
}
#endif
