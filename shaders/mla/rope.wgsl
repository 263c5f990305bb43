// rope: rotary position embedding of tokens × heads vectors of width d = d_R at each token's
// position, with YaRN-corrected inverse frequencies (computed on the host in f64) and YaRN's
// cos/sin scale `attn_factor`:
//   pair i < d/2: (a, b) = (x[2i], x[2i+1]) if interleave else (x[i], x[i + d/2])
//   angle = pos[t] · inv_freq[i];  c = cos(angle)·attn_factor;  s = sin(angle)·attn_factor
//   (y_a, y_b) = (a·c − b·s, b·c + a·s)
//
// Exact angles: angle mod 2π is all that matters, and pos·inv_freq reaches 10⁴–10⁵ rad in long
// contexts, where an f32 product would lose ~1e-3 rad. The host therefore passes each frequency
// in turns per position, inv_freq[i] / 2π, as a 64-bit binary fraction (two u32: bits 2^-1..2^-32
// and 2^-33..2^-64). The fractional turns of pos·freq are then (pos·hi mod 2^32) + high word of
// pos·lo, in wrapping u32 arithmetic — exact to ~2^-32 turns — read as a signed fraction in
// [-½, ½) and turned into an angle in [-π, π) where f32 cos and sin are accurate.
//
// Layouts (element offsets): vector (t, h) of x starts at x_off + t·x_ts + h·x_hs, of y at
// y_off + t·y_ts + h·y_hs; positions (T) u32; turns (d/2, 2) u32 [hi, lo] per frequency. x and y
// are separate buffers, so q_rope can be gathered out of q and k_rope written straight into the
// latent rows.
//
// Flag VEC4, the fast path for vec4-aligned layouts (x_off, x_ts, x_hs, y_off, y_ts, y_hs ≡ 0
// mod 4, and d ≡ 0 mod 4 interleaved or mod 8 halves; the host checks): x, y bound as vec4<f32>,
// turns as vec4<u32> (two frequencies). One invocation per (token t, chunk of HB heads, vec4 q),
// q fastest; `params.pairs` holds the number of items T·ceil(H/HB)·(d/4 or d/8). The angles
// depend on (t, q) only, so each invocation computes its cos/sin once and rotates the same vec4
// of its HB heads:
//   interleave: q < d/4: x vec4 q = pairs 2q, 2q+1 as (a0, b0, a1, b1);
//   halves:     q < d/8: a = x vec4 q, b = x vec4 q + d/8, pairs 4q..4q+3.
// What bounds it: memory. On lavapipe each storage load/store instruction is a loop over the 8
// SIMD lanes, so vec4 access (one instruction per 4 elements instead of 4) and computing cos/sin
// (polynomials in llvmpipe) once per HB heads are what the fast path gains.
//
// Without VEC4: one invocation per (t, h, i) pair.
// Both: WG invocations per workgroup, linear workgroup index wg.x + wg.y·num_workgroups.x.
//
// Storage dtype (common/storage.wgsl): x and y are f32 or (flag F16 or BF16) halves, two per u32
// word (NATIVE_F16: native f16); positions and turns are u32. Loads widen, the angles, cos/sin
// and the rotation are f32, y is rounded on store. The vec4 path loads and stores squads (4
// halves = 2 whole words of one invocation). The scalar path's two elements of a pair may share
// a word with another invocation's element (halves layout, odd offsets or strides), so each
// half store is two atomics on its word (atomicAnd clears the half, atomicOr sets it; disjoint
// bits commute), as latent_cache does.

#if VEC4
override WG: u32 = 64u;
override HB: u32 = 8u;
alias turn = vec4<u32>; // [hi, lo] of two frequencies
alias word = vec2<u32>; // the 32-bit words mul_hi works on: one per frequency
#else
override WG: u32 = 256u;
alias turn = vec2<u32>;
alias word = u32;
#endif

// Interleaved pairs (DeepSeek's rope_interleave) or halves: a pipeline constant, so a pipeline
// carries one pairing's loads and stores, not both under llvmpipe's lane masks.
override INTERLEAVE: bool = false;

struct Params {
    tokens: u32,
    heads: u32,
    d: u32,
    _pad0: u32,
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
#if VEC4
@group(0) @binding(1) var<storage, read> x: array<squad>;       // (T, H, d) strided
#else
@group(0) @binding(1) var<storage, read> x: array<sword>;       // (T, H, d) strided
#endif
@group(0) @binding(2) var<storage, read> positions: array<u32>; // (T)
@group(0) @binding(3) var<storage, read> turns: array<turn>;    // (d/2, 2): [hi, lo]
#if VEC4
@group(0) @binding(4) var<storage, read_write> y: array<squad>;  // (T, H, d) strided
#else
#if F16 || BF16
@group(0) @binding(4) var<storage, read_write> y: array<atomic<u32>>; // (T, H, d), halves in pairs
#else
@group(0) @binding(4) var<storage, read_write> y: array<f32>;   // (T, H, d) strided
#endif
#endif

#include "common/storage"
#include "common/trig"

// High 32 bits of the 64-bit product a·b (per component).
fn mul_hi(a: u32, b: word) -> word {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & word(0xffffu);
    let b1 = b >> word(16u);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> word(16u)) + (p01 & word(0xffffu)) + (p10 & word(0xffffu));
    return p11 + (p01 >> word(16u)) + (p10 >> word(16u)) + (mid >> word(16u));
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
    rotate(idx);
}

#if VEC4
// Angles in [-π, π) of the two frequencies in f = [hi0, lo0, hi1, lo1] at position pos.
fn angles(pos: u32, f: vec4<u32>) -> vec2<f32> {
    let hi = vec2<u32>(f.x, f.z);
    let lo = vec2<u32>(f.y, f.w);
    let frac = pos * hi + mul_hi(pos, lo);
    return vec2<f32>(bitcast<vec2<i32>>(frac)) * (6.283185307179586 / 4294967296.0);
}

// Item idx: one vec4 of HB heads of one token.
fn rotate(idx: u32) {
    var per = params.d / 8u;
    if (INTERLEAVE) {
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
    if (INTERLEAVE) {
        let ang = angles(pos, turns[q]);
        let cs0 = cos_sin(ang.x);
        let cs1 = cos_sin(ang.y);
        let c = vec2<f32>(cs0.x, cs1.x) * af;
        let s = vec2<f32>(cs0.y, cs1.y) * af;
        for (var h = h0; h < h1; h++) {
            let xb = (xt + h * params.x_hs) / 4u;
            let yb = (yt + h * params.y_hs) / 4u;
            let v = sget4(x[xb + q]);
            y[yb + q] = spack4(vec4<f32>(
                v.x * c.x - v.y * s.x,
                v.y * c.x + v.x * s.x,
                v.z * c.y - v.w * s.y,
                v.w * c.y + v.z * s.y,
            ));
        }
    } else {
        let ang01 = angles(pos, turns[2u * q]);
        let ang23 = angles(pos, turns[2u * q + 1u]);
        let cs0 = cos_sin(ang01.x);
        let cs1 = cos_sin(ang01.y);
        let cs2 = cos_sin(ang23.x);
        let cs3 = cos_sin(ang23.y);
        let c = vec4<f32>(cs0.x, cs1.x, cs2.x, cs3.x) * af;
        let s = vec4<f32>(cs0.y, cs1.y, cs2.y, cs3.y) * af;
        for (var h = h0; h < h1; h++) {
            let xb = (xt + h * params.x_hs) / 4u;
            let yb = (yt + h * params.y_hs) / 4u;
            let a = sget4(x[xb + q]);
            let b = sget4(x[xb + q + per]);
            y[yb + q] = spack4(a * c - b * s);
            y[yb + q + per] = spack4(b * c + a * s);
        }
    }
}
#else
fn load_x(j: u32) -> f32 {
    return sget(x[j / SPW], j % SPW);
}

fn store_y(j: u32, v: f32) {
#if F16 || BF16
    let shift = (j & 1u) * 16u;
    atomicAnd(&y[j / 2u], ~(0xffffu << shift));
    atomicOr(&y[j / 2u], half_bits(v) << shift);
#else
    y[j] = v;
#endif
}

// Item idx: pair i of head h of token t.
fn rotate(idx: u32) {
    let half = params.d / 2u;
    let i = idx % half;
    let th = idx / half;
    let h = th % params.heads;
    let t = th / params.heads;
    var ia = i;
    var ib = i + half;
    if (INTERLEAVE) {
        ia = 2u * i;
        ib = 2u * i + 1u;
    }
    let pos = positions[t];
    let f = turns[i];
    let frac = pos * f.x + mul_hi(pos, f.y);
    let angle = f32(bitcast<i32>(frac)) * (6.283185307179586 / 4294967296.0);
    let cs = cos_sin(angle);
    let c = cs.x * params.attn_factor;
    let s = cs.y * params.attn_factor;
    let xb = params.x_off + t * params.x_ts + h * params.x_hs;
    let yb = params.y_off + t * params.y_ts + h * params.y_hs;
    let a = load_x(xb + ia);
    let b = load_x(xb + ib);
    store_y(yb + ia, a * c - b * s);
    store_y(yb + ib, b * c + a * s);
}
#endif
