// The SSD scan's 32 × 32 output tile (a fragment for ssd_chunk_cb, ssd_chunk_state and
// ssd_chunk_scan): a workgroup of 8 × 8 invocations, each accumulating a 4 × 4 block (rows
// 4·ty .. 4·ty + 3, columns 4·tx .. 4·tx + 3) in four vec4 registers, over a reduction walked
// in steps of BK (override, ≤ 32). The body stages ta (32 rows × BK) and tb (BK × 32 columns)
// between barriers through put_a4 / put_b4; both are stored k-major as vec4 of 4 rows (ta) or
// 4 columns (tb), so one step of the reduction is two vec4 loads and 16 FMAs, and staging
// writes whole vec4s (64 invocations × 4 writes per factor and step of 32). Masked elements are
// staged as 0 with `select`, so scratch or padding never reaches a sum. 8 KiB of workgroup
// memory.
// Why 4 × 4 with vec4 reads: llvmpipe turns every workgroup-memory load into a loop over its
// SIMD lanes, and every barrier into a switch per 8-lane fiber; 2 × 2 blocks of scalar loads on
// 16 × 16 invocations ran this scan's matmuls at ~0.3 GFLOP/s there.

const TILE: u32 = 32u;
override BK: u32 = 32u;

var<workgroup> ta: array<vec4<f32>, 256>;
var<workgroup> tb: array<vec4<f32>, 256>;

struct Acc {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

// Stage rows 4·rb .. 4·rb + 3 of step k of the left factor.
fn put_a4(k: u32, rb: u32, v: vec4<f32>) {
    ta[k * 8u + rb] = v;
}

// Stage columns 4·cb .. 4·cb + 3 of step k of the right factor.
fn put_b4(k: u32, cb: u32, v: vec4<f32>) {
    tb[k * 8u + cb] = v;
}

// Which of 4 consecutive indices from `i` are below `end`.
fn below4(i: u32, end: u32) -> vec4<bool> {
    return vec4<bool>(i < end, i + 1u < end, i + 2u < end, i + 3u < end);
}

// acc += ta[rows, 0..BK] · tb[0..BK, cols] for this invocation's 4 × 4 block.
fn tile_fma(ty: u32, tx: u32, acc: ptr<function, Acc>) {
    var s = *acc;
    for (var k = 0u; k < BK; k++) {
        let a = ta[k * 8u + ty];
        let b = tb[k * 8u + tx];
        s.r0 = fma(vec4<f32>(a.x), b, s.r0);
        s.r1 = fma(vec4<f32>(a.y), b, s.r1);
        s.r2 = fma(vec4<f32>(a.z), b, s.r2);
        s.r3 = fma(vec4<f32>(a.w), b, s.r3);
    }
    *acc = s;
}

// Row i (0..4) of a block.
fn acc_row(s: Acc, i: u32) -> vec4<f32> {
    return select(select(select(s.r0, s.r1, i == 1u), s.r2, i == 2u), s.r3, i == 3u);
}
