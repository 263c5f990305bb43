// rope_vec4: the rotary embedding of rope.wgsl (same math, same exact 64-bit angle reduction;
// read that file's comment) for vec4-aligned layouts: x_off, x_ts, x_hs, y_off, y_ts, y_hs ≡ 0
// mod 4, and d ≡ 0 mod 4 (interleaved pairs) or mod 8 (halves). Vector (t, h) of x starts at
// x_off + t·x_ts + h·x_hs, of y at y_off + t·y_ts + h·y_hs; positions (T) u32; turns (d/2, 2)
// u32 [hi, lo] per frequency, read as vec4 (two frequencies).
//
// Work split: one invocation per (token t, chunk of HB heads, vec4 q), q fastest, WG per
// workgroup, linear workgroup index wg.x + wg.y·num_workgroups.x; `params.pairs` holds the
// number of items T·ceil(H/HB)·(d/4 or d/8). The angles depend on (t, q) only, so each
// invocation computes its cos/sin once and rotates the same vec4 of its HB heads:
//   interleave: q < d/4: x vec4 q = pairs 2q, 2q+1 as (a0, b0, a1, b1);
//   halves:     q < d/8: a = x vec4 q, b = x vec4 q + d/8, pairs 4q..4q+3.
//
// Performance (release, Mesa 22.3 lavapipe): memory bound by the roofline. llvmpipe runs each
// storage load/store instruction as a loop over the 8 SIMD lanes, so vec4 access (one
// instruction per 4 elements instead of 4) and computing cos/sin (polynomials in llvmpipe) once
// per HB heads are the gains over rope.wgsl.
// Measured time (fraction of the roofline bound, same-run ceilings, range over 2–3 runs under
// contention), rope.wgsl → this kernel:
//   T=8    H=128 d=64   3.66 ms (10%) → 0.25–0.45 ms (69–125%)
//   T=1024 H=16  d=64   43.5 ms (13%) → 3.6–11.0 ms (48–149%)
//   T=1024 H=128 d=64   248 ms  (19%) → 65–125 ms (33–55%)

override WG: u32 = 64u;
override HB: u32 = 8u;

struct Params {
    tokens: u32,
    heads: u32,
    d: u32,
    interleave: u32,
    x_off: u32,
    x_ts: u32,
    x_hs: u32,
    y_off: u32,
    y_ts: u32,
    y_hs: u32,
    attn_factor: f32,
    pairs: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> turns: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;

// High 32 bits of the 64-bit products a·b, per component.
fn mul_hi2(a: u32, b: vec2<u32>) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & vec2<u32>(0xffffu);
    let b1 = b >> vec2<u32>(16u);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> vec2<u32>(16u)) + (p01 & vec2<u32>(0xffffu)) + (p10 & vec2<u32>(0xffffu));
    return p11 + (p01 >> vec2<u32>(16u)) + (p10 >> vec2<u32>(16u)) + (mid >> vec2<u32>(16u));
}

// Angles in [-π, π) of the two frequencies in f = [hi0, lo0, hi1, lo1] at position pos.
fn angles(pos: u32, f: vec4<u32>) -> vec2<f32> {
    let hi = vec2<u32>(f.x, f.z);
    let lo = vec2<u32>(f.y, f.w);
    let frac = pos * hi + mul_hi2(pos, lo);
    return vec2<f32>(bitcast<vec2<i32>>(frac)) * (6.283185307179586 / 4294967296.0);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wg.x + wg.y * nwg.x) * WG + lid;
    if (idx >= params.pairs) {
        return;
    }
    var per = params.d / 8u;
    if (params.interleave == 1u) {
        per = params.d / 4u;
    }
    let chunks = (params.heads + HB - 1u) / HB;
    let q = idx % per;
    let tc = idx / per;
    let h0 = (tc % chunks) * HB;
    let t = tc / chunks;
    let h1 = min(h0 + HB, params.heads);
    let pos = positions[t];
    let xt = params.x_off + t * params.x_ts;
    let yt = params.y_off + t * params.y_ts;
    let af = params.attn_factor;
    if (params.interleave == 1u) {
        let ang = angles(pos, turns[q]);
        let c = cos(ang) * af;
        let s = sin(ang) * af;
        for (var h = h0; h < h1; h++) {
            let xb = (xt + h * params.x_hs) / 4u;
            let yb = (yt + h * params.y_hs) / 4u;
            let v = x[xb + q];
            y[yb + q] = vec4<f32>(
                v.x * c.x - v.y * s.x,
                v.y * c.x + v.x * s.x,
                v.z * c.y - v.w * s.y,
                v.w * c.y + v.z * s.y,
            );
        }
    } else {
        let ang01 = angles(pos, turns[2u * q]);
        let ang23 = angles(pos, turns[2u * q + 1u]);
        let ang = vec4<f32>(ang01, ang23);
        let c = cos(ang) * af;
        let s = sin(ang) * af;
        for (var h = h0; h < h1; h++) {
            let xb = (xt + h * params.x_hs) / 4u;
            let yb = (yt + h * params.y_hs) / 4u;
            let a = x[xb + q];
            let b = x[xb + q + per];
            y[yb + q] = a * c - b * s;
            y[yb + q + per] = b * c + a * s;
        }
    }
}
