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
// y_off + t·y_ts + h·y_hs; positions (T) u32; turns (d/2, 2) u32 [hi, lo] per frequency. x and y are separate buffers,
// so q_rope can be gathered out of q and k_rope written straight into the latent rows.
//
// Work split: one invocation per (t, h, i) pair, WG per workgroup, linear workgroup index
// wg.x + wg.y·num_workgroups.x.

override WG: u32 = 256u;

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
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> turns: array<vec2<u32>>;

// High 32 bits of the 64-bit product a·b.
fn mul_hi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

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
    let half = params.d / 2u;
    let i = idx % half;
    let th = idx / half;
    let h = th % params.heads;
    let t = th / params.heads;
    var ia = i;
    var ib = i + half;
    if (params.interleave == 1u) {
        ia = 2u * i;
        ib = 2u * i + 1u;
    }
    let pos = positions[t];
    let f = turns[i];
    let frac = pos * f.x + mul_hi(pos, f.y);
    let angle = f32(bitcast<i32>(frac)) * (6.283185307179586 / 4294967296.0);
    let c = cos(angle) * params.attn_factor;
    let s = sin(angle) * params.attn_factor;
    let xb = params.x_off + t * params.x_ts + h * params.x_hs;
    let yb = params.y_off + t * params.y_ts + h * params.y_hs;
    let a = x[xb + ia];
    let b = x[xb + ib];
    y[yb + ia] = a * c - b * s;
    y[yb + ib] = b * c + a * s;
}
