// ssd_chunk_cumsum, stage 1 of the SSD scan (Mamba-2's mamba_chunk_scan_combined): per
// (chunk, head) the processed step sizes and the inclusive cumsum of dt·A over the chunk.
//
// Math: dt_i = dt[t0 + i, h] + dt_bias[h]; if SOFTPLUS: softplus(dt_i) (= dt_i past 20); if
// CLAMP (dt_limit other than (0, ∞), as mamba_ssm): clamp(dt_i, lo, hi);
// cum_i = Σ_{j≤i} dt_j·A[h]. Positions past the chunk's length get dt = 0 and cum = cum_last,
// so a later stage reading cum at Q − 1 finds the chunk's last value.
//
// Bindings (ssd_io.wgsl has params, table and the scratch layout): dt (T, H) f32 view;
// dtcum (K, H, 2, Q) f32, written.
//
// Work split: one invocation per (window chunk, head), WG per workgroup, linear workgroup index
// over a 2-D grid; each walks its ≤ 256 steps sequentially (a scan of one chunk is short next
// to the matmul stages, and sequential sums need no barrier).
// Bounds: reads T·H values of dt and writes 2·K·H·Q floats once: memory on a GPU, the softplus
// (exp, log) per step on lavapipe; it is a few percent of the whole scan either way.

override WG: u32 = 64u;

#include "ssm/ssd_io"
#include "ssm/softplus"

@group(0) @binding(2) var<storage, read> dt: array<f32>;        // (T, H) view
@group(0) @binding(3) var<storage, read_write> dtcum: array<f32>; // (K, H, 2, Q)

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = (wg.x + wg.y * groups.x) * WG + lid;
    if (e >= params.nk * params.heads) {
        return;
    }
    let c = e / params.heads;
    let h = e % params.heads;
    let t0 = chunk_t0(c);
    let len = chunk_len(c);
    let a = tab_f32(params.p_a + h);
    var bias = 0.0;
    if ((params.flags & HAS_BIAS) != 0u) {
        bias = tab_f32(params.p_bias + h);
    }
    let q = params.q;
    let base = dtcum_base(c, h);
    var cum = 0.0;
    for (var i = 0u; i < q; i++) {
        var d = 0.0;
        if (i < len) {
            d = dt[dt_index(t0 + i, h)] + bias;
            if ((params.flags & SOFTPLUS) != 0u) {
                d = softplus(d);
            }
            if ((params.flags & CLAMP) != 0u) {
                d = clamp(d, params.lo, params.hi);
            }
            cum += d * a;
        }
        dtcum[base + i] = d;
        dtcum[base + q + i] = cum;
    }
}
