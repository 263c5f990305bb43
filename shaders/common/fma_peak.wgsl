// fma_peak: out[i] = sum over 8 chains and 4 lanes of the chain after `iters` steps of
// x <- fma(x, m, c), each chain starting from seed[i] + chain/64.
//
// The arithmetic ceiling of DESIGN §7: 8 independent vec4 FMA chains per invocation hide FMA
// latency, the loop body is branch-free and unrolled 8 steps per trip (on lavapipe the loop's
// per-lane bookkeeping otherwise halves the rate: 28 GFLOP/s with 1 step per trip, 52 with 4,
// 70-77 with 8, worse again with 16), and m, c come from the uniform block so nothing can be
// constant-folded. FLOPs = invocations * iters * 8 chains * 4 lanes * 2. With |m| < 1 every chain
// converges to c / (1 - m), so the result stays finite and checkable against the CPU. One
// invocation per element; linear workgroup index as in stream_copy.

override WG: u32 = 256u;

struct Params {
    n: u32,
    iters: u32,
    m: f32,
    c: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> seed: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wg.x + wg.y * groups.x) * WG + lid;
    if (i >= params.n) {
        return;
    }
    let s = seed[i];
    let lanes = vec4<f32>(0.0, 1.0, 2.0, 3.0) / 256.0;
    var x0 = vec4<f32>(s + 0.0 / 64.0) + lanes;
    var x1 = vec4<f32>(s + 1.0 / 64.0) + lanes;
    var x2 = vec4<f32>(s + 2.0 / 64.0) + lanes;
    var x3 = vec4<f32>(s + 3.0 / 64.0) + lanes;
    var x4 = vec4<f32>(s + 4.0 / 64.0) + lanes;
    var x5 = vec4<f32>(s + 5.0 / 64.0) + lanes;
    var x6 = vec4<f32>(s + 6.0 / 64.0) + lanes;
    var x7 = vec4<f32>(s + 7.0 / 64.0) + lanes;
    let m = vec4<f32>(params.m);
    let c = vec4<f32>(params.c);
    // Eight steps per trip: the loop's own bookkeeping (counter, exec mask) is amortised over
    // 256 FMAs. `iters` is a multiple of 8 (the host checks).
    for (var t = 0u; t < params.iters; t += 8u) {
        x0 = fma(x0, m, c); x1 = fma(x1, m, c); x2 = fma(x2, m, c); x3 = fma(x3, m, c);
        x4 = fma(x4, m, c); x5 = fma(x5, m, c); x6 = fma(x6, m, c); x7 = fma(x7, m, c);
        x0 = fma(x0, m, c); x1 = fma(x1, m, c); x2 = fma(x2, m, c); x3 = fma(x3, m, c);
        x4 = fma(x4, m, c); x5 = fma(x5, m, c); x6 = fma(x6, m, c); x7 = fma(x7, m, c);
        x0 = fma(x0, m, c); x1 = fma(x1, m, c); x2 = fma(x2, m, c); x3 = fma(x3, m, c);
        x4 = fma(x4, m, c); x5 = fma(x5, m, c); x6 = fma(x6, m, c); x7 = fma(x7, m, c);
        x0 = fma(x0, m, c); x1 = fma(x1, m, c); x2 = fma(x2, m, c); x3 = fma(x3, m, c);
        x4 = fma(x4, m, c); x5 = fma(x5, m, c); x6 = fma(x6, m, c); x7 = fma(x7, m, c);
        x0 = fma(x0, m, c); x1 = fma(x1, m, c); x2 = fma(x2, m, c); x3 = fma(x3, m, c);
        x4 = fma(x4, m, c); x5 = fma(x5, m, c); x6 = fma(x6, m, c); x7 = fma(x7, m, c);
        x0 = fma(x0, m, c); x1 = fma(x1, m, c); x2 = fma(x2, m, c); x3 = fma(x3, m, c);
        x4 = fma(x4, m, c); x5 = fma(x5, m, c); x6 = fma(x6, m, c); x7 = fma(x7, m, c);
        x0 = fma(x0, m, c); x1 = fma(x1, m, c); x2 = fma(x2, m, c); x3 = fma(x3, m, c);
        x4 = fma(x4, m, c); x5 = fma(x5, m, c); x6 = fma(x6, m, c); x7 = fma(x7, m, c);
        x0 = fma(x0, m, c); x1 = fma(x1, m, c); x2 = fma(x2, m, c); x3 = fma(x3, m, c);
        x4 = fma(x4, m, c); x5 = fma(x5, m, c); x6 = fma(x6, m, c); x7 = fma(x7, m, c);
    }
    let total = (x0 + x1) + (x2 + x3) + (x4 + x5) + (x6 + x7);
    out[i] = total.x + total.y + total.z + total.w;
}
