// cos_sin(x) = vec2(cos x, sin x) to about one f32 ulp for any |x| < 2^16, on every adapter.
// WGSL bounds the error of the built-in sin and cos only on [-π, π], and only to 2^-11
// absolute; a browser's software adapter is off by 1e-4 inside that range and by far more
// outside it. So the angle is reduced here, x = q·π/2 + r with |r| ≤ π/4 (π/2 split in two
// parts, the first exact in 8 bits, so q·part is exact), and r goes through polynomials that
// are accurate to f32 on [-π/4, π/4]; the quadrant q picks signs and swaps.
fn cos_sin(x: f32) -> vec2<f32> {
    let q = round(x * 0.63661975);
    let r = (x - q * 1.5703125) - q * 4.8382679e-4;
    let r2 = r * r;
    let s = r + r * r2 * (-1.6666654e-1 + r2 * (8.3321609e-3 + r2 * -1.9515296e-4));
    let c = 1.0 - 0.5 * r2 + r2 * r2 * (4.1666646e-2 + r2 * (-1.3887316e-3 + r2 * 2.4433157e-5));
    switch (i32(q) & 3) {
        case 0: { return vec2<f32>(c, s); }
        case 1: { return vec2<f32>(-s, c); }
        case 2: { return vec2<f32>(-c, -s); }
        default: { return vec2<f32>(s, -c); }
    }
}
