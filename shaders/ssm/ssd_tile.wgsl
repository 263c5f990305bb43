// The SSD scan's output tiles (a fragment for ssd_chunk_cb, ssd_chunk_state and ssd_chunk_scan),
// in two forms chosen by the variant.
//
// With VEC4 (CPU devices, every view and size a multiple of 4): register tiles. Each invocation
// owns one or two 4 × 8 blocks of outputs (4 rows, two vec4 of 4 columns, in eight named vec4
// registers: `Blk`) and walks its reduction in steps of 4, reading storage directly with vec4 loads: no
// workgroup memory and no barrier. One step is either 4 rank-1 updates (`rank1`: a column of 4
// row values times 8 column values, the reduction axis strided in memory) or the transposed form
// (`rank4t`: 4 row vec4 and 8 column vec4 that are all contiguous along the reduction axis,
// transposed in registers), 128 FMAs per block either way; a second block sharing the column
// loads halves the loads per FMA.
// Why: llvmpipe runs a workgroup on one CPU thread, 8 invocations per SIMD register, and turns
// every storage or workgroup-memory load into a loop over those 8 lanes, so what sets the pace
// is load *instructions*, not bytes: a vec4 load amortises the loop over 4 values, staging
// through workgroup memory only adds a second loop per value, and every barrier is a switch
// between the lanes' fibers. 32 or 64 accumulators overflow AVX2's 16 registers; the spills are
// plain stack accesses, far cheaper than the lane loops, so two blocks per invocation (16 FMAs
// per vec4 load instead of ~10) is where ssd_chunk_state and ssd_chunk_scan stop.
//
// Without VEC4 (GPUs, and any layout that is not a multiple of 4): staged 32 × 32 tiles, the
// classic GPU form: a workgroup of 8 × 8 invocations, each accumulating a 4 × 4 block (rows
// 4·ty .. 4·ty + 3, columns 4·tx .. 4·tx + 3) in four vec4 registers, over a reduction walked
// in steps of BK (override, ≤ 32). The body stages ta (32 rows × BK) and tb (BK × 32 columns)
// between barriers through put_a4 / put_b4; both are stored k-major as vec4 of 4 rows (ta) or
// 4 columns (tb), so one step of the reduction is two vec4 loads and 16 FMAs, and staging
// writes whole vec4s (64 invocations × 4 writes per factor and step of 32). Masked elements are
// staged as 0 with `select`, so scratch or padding never reaches a sum. 8 KiB of workgroup
// memory; each staged element is reused 32 times from it.

#if VEC4
struct Blk {
    r0a: vec4<f32>,
    r0b: vec4<f32>,
    r1a: vec4<f32>,
    r1b: vec4<f32>,
    r2a: vec4<f32>,
    r2b: vec4<f32>,
    r3a: vec4<f32>,
    r3b: vec4<f32>,
}

fn blk_zero() -> Blk {
    let z = vec4<f32>(0.0);
    return Blk(z, z, z, z, z, z, z, z);
}

// acc[i, 0..8] += a[i]·(b0, b1): one rank-1 update of the block.
fn rank1(acc: ptr<function, Blk>, a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) {
    (*acc).r0a = fma(vec4<f32>(a.x), b0, (*acc).r0a);
    (*acc).r0b = fma(vec4<f32>(a.x), b1, (*acc).r0b);
    (*acc).r1a = fma(vec4<f32>(a.y), b0, (*acc).r1a);
    (*acc).r1b = fma(vec4<f32>(a.y), b1, (*acc).r1b);
    (*acc).r2a = fma(vec4<f32>(a.z), b0, (*acc).r2a);
    (*acc).r2b = fma(vec4<f32>(a.z), b1, (*acc).r2b);
    (*acc).r3a = fma(vec4<f32>(a.w), b0, (*acc).r3a);
    (*acc).r3b = fma(vec4<f32>(a.w), b1, (*acc).r3b);
}

// acc[i, j] += dot(a_i, b_j) for 4 rows a0..a3 and 8 columns b0..b7, each a vec4 along the
// reduction: four rank-1 updates after a transposition that costs nothing in registers.
fn rank4t(acc: ptr<function, Blk>, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
          b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>,
          b4: vec4<f32>, b5: vec4<f32>, b6: vec4<f32>, b7: vec4<f32>) {
    rank1(acc, vec4<f32>(a0.x, a1.x, a2.x, a3.x), vec4<f32>(b0.x, b1.x, b2.x, b3.x),
          vec4<f32>(b4.x, b5.x, b6.x, b7.x));
    rank1(acc, vec4<f32>(a0.y, a1.y, a2.y, a3.y), vec4<f32>(b0.y, b1.y, b2.y, b3.y),
          vec4<f32>(b4.y, b5.y, b6.y, b7.y));
    rank1(acc, vec4<f32>(a0.z, a1.z, a2.z, a3.z), vec4<f32>(b0.z, b1.z, b2.z, b3.z),
          vec4<f32>(b4.z, b5.z, b6.z, b7.z));
    rank1(acc, vec4<f32>(a0.w, a1.w, a2.w, a3.w), vec4<f32>(b0.w, b1.w, b2.w, b3.w),
          vec4<f32>(b4.w, b5.w, b6.w, b7.w));
}

// Row i (0..4) of a block, first or second vec4 of columns.
fn blk_row(s: Blk, i: u32, second: bool) -> vec4<f32> {
    let a = select(select(select(s.r0a, s.r1a, i == 1u), s.r2a, i == 2u), s.r3a, i == 3u);
    let b = select(select(select(s.r0b, s.r1b, i == 1u), s.r2b, i == 2u), s.r3b, i == 3u);
    return select(a, b, second);
}

// Every row i of the block scaled by f[i].
fn blk_scale(s: Blk, f: vec4<f32>) -> Blk {
    return Blk(s.r0a * f.x, s.r0b * f.x, s.r1a * f.y, s.r1b * f.y,
               s.r2a * f.z, s.r2b * f.z, s.r3a * f.w, s.r3b * f.w);
}
#else
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
#endif
