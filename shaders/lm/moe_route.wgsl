// moe_route: DeepSeek-V2/V3 routing of one token per invocation, from router logits (T, E).
//
//   V2 (scoring 0): s = softmax(logits); V3 (scoring 1): s = sigmoid(logits), c = s + bias.
//   V2 choice c = s. With groups (grouped = 1; E = n_group · gs): group score = max c of the
//   group (method 1, V2 group_limited_greedy) or the sum of its two largest c (method 2, V3
//   noaux_tc); the topk_group best groups are kept; the other experts' c become 0 (V2) or −∞
//   (V3). The top k of c are chosen; w = s of the chosen (uncorrected), divided by Σw + 1e-20
//   when norm = 1, times scale.
// Every top-k takes the largest value first and, among equal values, the lowest index (a strict
// `>` over ascending indices), as the CPU reference does.
//
// Bindings: logits (T, E) f32 row-major; bias (E) f32 (a 1-element dummy for V2); ids (T, k) u32
// and weights (T, k) f32, written in choice order.
// Work split: one invocation per token, WG per workgroup (linear workgroup index over x and y).
// The scores are recomputed from the logits on every pass instead of kept in registers, so E is
// not bounded by private memory: per token 2 passes (softmax max and sum), one pass of group
// scores and k selection passes over E, each O(E) reads; chosen ids (k ≤ 16) and group scores
// (n_group ≤ 32) are private. Bound: tiny next to the expert products (T·E·(k + 3) reads).

const WG: u32 = 64u;
const MAX_K: u32 = 16u;
const MAX_GROUPS: u32 = 32u;

struct Params {
    t: u32,       // tokens
    e: u32,       // experts E
    k: u32,       // experts per token
    scoring: u32, // 0 softmax (V2), 1 sigmoid (V3)
    method: u32,  // 0 greedy, 1 group max (V2), 2 group top-2 sum (V3)
    n_group: u32,
    topk_group: u32,
    norm: u32,    // norm_topk_prob
    scale: f32,   // routed_scaling_factor
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;        // (T, E)
@group(0) @binding(2) var<storage, read> bias: array<f32>;          // (E)
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;     // (T, k)
@group(0) @binding(4) var<storage, read_write> weights: array<f32>; // (T, k)

// The score s of expert e of the token whose logits start at `row` (softmax: max m, sum z).
fn score(row: u32, e: u32, m: f32, z: f32) -> f32 {
    let l = logits[row + e];
    if (params.scoring == 0u) {
        return exp(l - m) / z;
    }
    return 1.0 / (1.0 + exp(-l));
}

// The choice value of expert e before group masking.
fn choice(row: u32, e: u32, m: f32, z: f32) -> f32 {
    var c = score(row, e, m, z);
    if (params.has_bias == 1u) {
        c += bias[e];
    }
    return c;
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = (wg.x + wg.y * nwg.x) * WG + lid;
    if (t >= params.t) {
        return;
    }
    let n_e = params.e;
    let row = t * n_e;
    var m = 0.0;
    var z = 1.0;
    if (params.scoring == 0u) {
        m = logits[row];
        for (var e = 1u; e < n_e; e++) {
            m = max(m, logits[row + e]);
        }
        z = 0.0;
        for (var e = 0u; e < n_e; e++) {
            z += exp(logits[row + e] - m);
        }
    }

    // Kept groups as a bit mask (all experts when ungrouped).
    var kept = 0xffffffffu;
    let gs = n_e / max(params.n_group, 1u);
    if (params.method != 0u) {
        var gscore: array<f32, MAX_GROUPS>;
        for (var g = 0u; g < params.n_group; g++) {
            var a = choice(row, g * gs, m, z); // largest
            var b = -3.0e38;                   // second largest (V3 groups have ≥ 2 experts)
            for (var i = 1u; i < gs; i++) {
                let c = choice(row, g * gs + i, m, z);
                if (c > a) {
                    b = a;
                    a = c;
                } else if (c > b) {
                    b = c;
                }
            }
            if (params.method == 2u) {
                gscore[g] = a + b;
            } else {
                gscore[g] = a;
            }
        }
        kept = 0u;
        for (var j = 0u; j < params.topk_group; j++) {
            var best = 0u;
            var found = false;
            for (var g = 0u; g < params.n_group; g++) {
                if ((kept & (1u << g)) == 0u && (!found || gscore[g] > gscore[best])) {
                    best = g;
                    found = true;
                }
            }
            kept |= 1u << best;
        }
    }

    var chosen: array<u32, MAX_K>;
    var sum = 0.0;
    for (var j = 0u; j < params.k; j++) {
        var best = 0u;
        var best_c = 0.0;
        var found = false;
        for (var e = 0u; e < n_e; e++) {
            var taken = false;
            for (var i = 0u; i < j; i++) {
                taken = taken || chosen[i] == e;
            }
            if (taken) {
                continue;
            }
            var c: f32;
            if ((kept & (1u << (e / gs))) != 0u) {
                c = choice(row, e, m, z);
            } else if (params.method == 2u) {
                c = -3.0e38; // −∞ (never chosen: k ≤ the kept experts, checked on the host)
            } else {
                c = 0.0;
            }
            if (!found || c > best_c) {
                best = e;
                best_c = c;
                found = true;
            }
        }
        chosen[j] = best;
        sum += score(row, best, m, z);
    }
    var denom = 1.0;
    if (params.norm == 1u) {
        denom = sum + 1e-20;
    }
    for (var j = 0u; j < params.k; j++) {
        ids[t * params.k + j] = chosen[j];
        weights[t * params.k + j] = score(row, chosen[j], m, z) / denom * params.scale;
    }
}
