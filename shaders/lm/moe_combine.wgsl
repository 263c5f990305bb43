// moe_combine: y[t, n] = Σ_j w[t, j] · o[row_of[t·k + j], n], the routed experts' outputs
// weighted back into token order (the shared expert is added afterwards by an accumulating
// matmul). With `accumulate` the sum is added to y instead (a decoder layer's residual add).
//
// Bindings: plan u32 (moe_plan's layout: row_of at 2E + 2 + T·k); weights (T, k) f32 from
// moe_route; o (T·k, hidden) f32 routed rows from moe_expert's down mode; y (T, hidden) f32.
// Slots are summed in order j = 0 .. k − 1, so the result is reproducible.
// Work split: one invocation per element of y (the element-wise entry). Bound: memory
// (k + 1 reads and one write per element).

const WG: u32 = 256u;

struct Params {
    n: u32,      // T · hidden
    hidden: u32,
    topk: u32,
    row_of: u32, // word offset of row_of in plan
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> plan: array<u32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;  // (T, k)
@group(0) @binding(3) var<storage, read> o: array<f32>;        // (T·k, hidden)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // (T, hidden)

fn element(i: u32) {
    let t = i / params.hidden;
    let c = i % params.hidden;
    var acc = 0.0;
    if (params.accumulate != 0u) {
        acc = y[i];
    }
    for (var j = 0u; j < params.topk; j++) {
        let a = t * params.topk + j;
        acc = fma(weights[a], o[plan[params.row_of + a] * params.hidden + c], acc);
    }
    y[i] = acc;
}

#include "common/elementwise"
