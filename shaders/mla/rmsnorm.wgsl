// rmsnorm: y[r, i] = x[r, i] · w[i] / sqrt(mean_i(x[r, i]²) + eps),  r < rows, i < d.
//
// Layouts (element offsets): row r of x starts at x_off + r·x_stride, row r of y at
// y_off + r·y_stride; w has d elements. Strided rows let the MLA layer normalise the c part of
// kv_a_proj_with_mqa's output (row stride d_c + d_R) straight into the latent rows.
//
// Work split: one workgroup per row (linear index wg.x + wg.y·num_workgroups.x). Its WG
// invocations sum squares over i = lid, lid + WG, …, reduce the partial sums with a tree in
// workgroup memory (WG a power of two), then scale and store the same elements. Rows are at
// most a few thousand wide, so the reduction is a handful of barriers; no subgroup variant.

override WG: u32 = 256u;

struct Params {
    rows: u32,
    d: u32,
    x_off: u32,
    x_stride: u32,
    y_off: u32,
    y_stride: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wg.x + wg.y * nwg.x;
    if (row >= params.rows) {
        return;
    }
    let xb = params.x_off + row * params.x_stride;
    var sum = 0.0;
    for (var i = lid; i < params.d; i += WG) {
        let v = x[xb + i];
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
    let inv = inverseSqrt(partial[0] / f32(params.d) + params.eps);
    let yb = params.y_off + row * params.y_stride;
    for (var i = lid; i < params.d; i += WG) {
        y[yb + i] = x[xb + i] * inv * w[i];
    }
}
