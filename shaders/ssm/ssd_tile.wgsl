// The SSD scan's 32 × 32 output tile (a fragment for ssd_chunk_cb, ssd_chunk_state and
// ssd_chunk_scan): a workgroup of 16 × 16 invocations, each accumulating 2 × 2 outputs (rows
// ty and ty + 16, columns tx and tx + 16, so neighbouring invocations read neighbouring
// workgroup-memory words), over a reduction walked in steps of BK (override, ≤ 32). The body
// stages ta (32 rows × BK, row-major) and tb (BK × 32 columns) between barriers; masked
// elements are staged as 0 with `select`, so scratch or padding never reaches a sum.
// 8 KiB of workgroup memory.

const TILE: u32 = 32u;
override BK: u32 = 32u;

var<workgroup> ta: array<f32, 1024>;
var<workgroup> tb: array<f32, 1024>;

// acc += ta[rows, 0..BK] · tb[0..BK, cols] for this invocation's 2 × 2 outputs
// (acc.x: (ty, tx), acc.y: (ty, tx + 16), acc.z: (ty + 16, tx), acc.w: (ty + 16, tx + 16)).
fn tile_fma(ty: u32, tx: u32, acc: ptr<function, vec4<f32>>) {
    var a = *acc;
    for (var k = 0u; k < BK; k++) {
        let a0 = ta[ty * BK + k];
        let a1 = ta[(ty + 16u) * BK + k];
        let b0 = tb[k * TILE + tx];
        let b1 = tb[k * TILE + tx + 16u];
        a = fma(vec4<f32>(a0, a0, a1, a1), vec4<f32>(b0, b1, b0, b1), a);
    }
    *acc = a;
}
