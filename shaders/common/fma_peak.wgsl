// fma_peak: out[i] = sum over 8 chains and 4 lanes of the chain after `iters` steps of
// x <- fma(x, m, c), each chain starting from seed[i] + chain/64. seed, out: (n) f32.
//
// The arithmetic ceiling of the benchmarks: 8 independent vec4 FMA chains per invocation hide FMA
// latency, the loop body is branch-free and runs 8 steps per trip (on lavapipe the loop's
// per-lane bookkeeping otherwise costs up to half the rate), and m, c come from the uniform block
// so nothing can be constant-folded. FLOPs = invocations * iters * 8 chains * 4 lanes * 2. With
// |m| < 1 every chain converges to c / (1 - m), so the result stays finite and checkable against
// the CPU. One invocation per element (common/elementwise.wgsl); what bounds it is the FMA rate,
// by construction.

override WG: u32 = 256u;

struct Params {
    n: u32,
    iters: u32,
    m: f32,
    c: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> seed: array<f32>;       // (n)
@group(0) @binding(2) var<storage, read_write> out: array<f32>;  // (n)

// The eight chains, one vec4 each.
struct Chains {
    x0: vec4<f32>,
    x1: vec4<f32>,
    x2: vec4<f32>,
    x3: vec4<f32>,
    x4: vec4<f32>,
    x5: vec4<f32>,
    x6: vec4<f32>,
    x7: vec4<f32>,
}

// One step of every chain: eight independent FMAs.
fn step(x: Chains, m: vec4<f32>, c: vec4<f32>) -> Chains {
    return Chains(
        fma(x.x0, m, c), fma(x.x1, m, c), fma(x.x2, m, c), fma(x.x3, m, c),
        fma(x.x4, m, c), fma(x.x5, m, c), fma(x.x6, m, c), fma(x.x7, m, c),
    );
}

fn element(i: u32) {
    let s = seed[i];
    let lanes = vec4<f32>(0.0, 1.0, 2.0, 3.0) / 256.0;
    var x = Chains(
        vec4<f32>(s + 0.0 / 64.0) + lanes,
        vec4<f32>(s + 1.0 / 64.0) + lanes,
        vec4<f32>(s + 2.0 / 64.0) + lanes,
        vec4<f32>(s + 3.0 / 64.0) + lanes,
        vec4<f32>(s + 4.0 / 64.0) + lanes,
        vec4<f32>(s + 5.0 / 64.0) + lanes,
        vec4<f32>(s + 6.0 / 64.0) + lanes,
        vec4<f32>(s + 7.0 / 64.0) + lanes,
    );
    let m = vec4<f32>(params.m);
    let c = vec4<f32>(params.c);
    // Eight steps per trip: the loop's own bookkeeping (counter, exec mask) is amortised over
    // 256 FMAs. `iters` is a multiple of 8 (the host checks).
    for (var t = 0u; t < params.iters; t += 8u) {
        let x1 = step(x, m, c);
        let x2 = step(x1, m, c);
        let x3 = step(x2, m, c);
        let x4 = step(x3, m, c);
        let x5 = step(x4, m, c);
        let x6 = step(x5, m, c);
        let x7 = step(x6, m, c);
        x = step(x7, m, c);
    }
    let total = (x.x0 + x.x1) + (x.x2 + x.x3) + (x.x4 + x.x5) + (x.x6 + x.x7);
    out[i] = total.x + total.y + total.z + total.w;
}

#include "common/elementwise"
