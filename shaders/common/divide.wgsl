// divide: n / d for index arithmetic where d is known only at run time.
//
// An integer division by a run-time value is no SIMD instruction: a CPU device (llvmpipe)
// splits it into one scalar divide per lane (tens of cycles each), and GPUs run a sequence of
// ~20 instructions. Through f32 it is one vector division and a correction, on both. Exact for
// n < 2^21 and d ≥ 1: f32(n), f32(d) are exact and WGSL's division is within 2.5 ulp of n / d,
// so the truncated quotient is off by at most one, which the remainder's sign and size fix.
fn quotient(n: u32, d: u32) -> u32 {
    var q = u32(f32(n) / f32(d));
    let r = i32(n) - i32(q * d);
    q = select(q, q - 1u, r < 0);
    q = select(q, q + 1u, r >= i32(d));
    return q;
}
