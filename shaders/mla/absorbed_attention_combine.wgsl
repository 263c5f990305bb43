// absorbed_attention_combine: merge the split-KV partial results of absorbed_attention.wgsl.
//
// Split s of query row r (packed: token t, head h, r = t * H + h) left an unnormalised
// accumulator acc_s = sum_{j in split} e^(s_j - m_s) c_j and its running max m_s and sum
// l_s = sum_{j in split} e^(s_j - m_s). With M = max over splits with l_s > 0 of m_s and
// w_s = e^(m_s - M) (log-sum-exp weights):
//   o_lat[r, :] = sum_s w_s acc_s / sum_s w_s l_s        (0 when no split saw a key)
// Empty splits (l_s = 0) contribute nothing and are skipped, so their m_s never matters.
//
// Layouts: scratch = partial accumulators (n_split, R, d_c) f32 followed by (m, l) pairs
// (n_split, R, 2); o_lat (R, d_c) with R = T * H query rows of all sequences (ragged or not:
// rows are indexed by packed token, so sequences of different lengths need no padding).
// Work split: one workgroup per row r; every invocation computes M
// and the weights itself (n_split is small) and then owns columns lid, lid + WG, ... What bounds
// it: memory, n_split partial rows read per output row.
//
// Flag VEC4 (d_c a multiple of 4; scratch and o_lat bound as vec4, the scratch's length a
// multiple of 4 floats): invocation lid owns column quads lid, lid + WG, ... and merges the
// splits in one pass, online (the running max and the sums rescaled as a larger m arrives), so
// each split costs it one vec4 load of the partial and two scalar loads of (m, l) per quad. On
// lavapipe, where every load is a loop over the SIMD lanes, that is 3 loads per split and 4
// columns against 5 per split and column in the three passes of the scalar form.

override WG: u32 = 256u;

struct Params {
    n_rows: u32,   // R = T * H
    d_c: u32,
    n_split: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
@group(0) @binding(1) var<storage, read> scratch: array<vec4<f32>>;     // partials | (m, l) pairs
@group(0) @binding(2) var<storage, read_write> o_lat: array<vec4<f32>>; // (R, d_c)

// Column quads lid, lid + WG, ... of row `row`, the splits merged online.
fn merge(row: u32, ml_base: u32, lid: u32) {
    let q4 = params.d_c / 4u;
    for (var c4 = lid; c4 < q4; c4 += WG) {
        var big_m = -3.0e38;
        var den = 0.0;
        var num = vec4<f32>(0.0);
        for (var s = 0u; s < params.n_split; s++) {
            let ml = ml_base + 2u * (s * params.n_rows + row);
            let m = scratch[ml / 4u][ml % 4u];
            let l = scratch[(ml + 1u) / 4u][(ml + 1u) % 4u];
            // An empty split (l = 0) weighs nothing: its m is left out of the max and its
            // partial (which it may not have written) out of the sum.
            let live = l > 0.0;
            let m_new = select(big_m, max(big_m, m), live);
            let keep = exp(big_m - m_new);
            let w = exp(m - m_new);
            let part = scratch[(s * params.n_rows + row) * q4 + c4];
            num = num * keep + select(vec4<f32>(0.0), w * part, live);
            den = den * keep + select(0.0, w * l, live);
            big_m = m_new;
        }
        o_lat[row * q4 + c4] = select(vec4<f32>(0.0), num / den, den > 0.0);
    }
}
#else
@group(0) @binding(1) var<storage, read> scratch: array<f32>;     // partials | (m, l) pairs
@group(0) @binding(2) var<storage, read_write> o_lat: array<f32>; // (R, d_c)

// Columns lid, lid + WG, ... of row `row`: the max over the splits, the denominator, then each
// column's weighted sum.
fn merge(row: u32, ml_base: u32, lid: u32) {
    var big_m = -3.0e38;
    for (var s = 0u; s < params.n_split; s++) {
        let ml = ml_base + 2u * (s * params.n_rows + row);
        if (scratch[ml + 1u] > 0.0) {
            big_m = max(big_m, scratch[ml]);
        }
    }
    var den = 0.0;
    for (var s = 0u; s < params.n_split; s++) {
        let ml = ml_base + 2u * (s * params.n_rows + row);
        let l = scratch[ml + 1u];
        if (l > 0.0) {
            den += exp(scratch[ml] - big_m) * l;
        }
    }
    let inv = select(0.0, 1.0 / den, den > 0.0);
    for (var c = lid; c < params.d_c; c += WG) {
        var num = 0.0;
        for (var s = 0u; s < params.n_split; s++) {
            let ml = ml_base + 2u * (s * params.n_rows + row);
            if (scratch[ml + 1u] > 0.0) {
                let wgt = exp(scratch[ml] - big_m);
                num = fma(wgt, scratch[(s * params.n_rows + row) * params.d_c + c], num);
            }
        }
        o_lat[row * params.d_c + c] = num * inv;
    }
}
#endif

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wg.x + wg.y * groups.x;
    if (row >= params.n_rows) {
        return;
    }
    merge(row, params.n_split * params.n_rows * params.d_c, lid);
}
