// The SSD scan's shared parameter block, its table binding and index helpers (a fragment for
// the five ssd_* bodies; every stage gets the same uniforms, so the host fills one struct).
//
// table (binding 1, u32 words): A (H) and dt_bias (H) and D ((H) or (H, P)) as f32 bits at
// p_a, p_bias, p_d; the chunk table at p_chunks, two words per chunk (first token, length),
// chunks numbered over the whole call, this dispatch's window starting at chunk k0; the segment
// table at p_segs, four words per segment (pool row, first window-local chunk, chunk count,
// fresh = start from zero), this window's segments starting at seg0.
//
// Activations are strided views (element offsets and strides, the offsets already rebased to
// the bound window and to its first token tok0): element (t, h, p) of x at
// x_view.x + (t − tok0)·x_view.y + h·x_view.z + p·x_view.w; dt (t, h) likewise with two strides;
// B and C (t, g, n) with three.
//
// Scratch layouts (f32, window-local chunk c):
//   dtcum  ((c·H + h)·2Q + i): dt_i after bias/softplus/clamp, then at + Q the inclusive
//          cumsum of dt·A, padded past the chunk's length with its last value
//   cb     (((c·G + g)·Q + t)·Q + s): Σ_n C_t[n]·B_s[n]
//   states (((c·H + h)·P + p)·N + n): the chunk's own state, then the state entering it

struct Params {
    heads: u32,
    head_dim: u32,
    n: u32,
    groups: u32,
    q: u32,        // chunk size Q
    nk: u32,       // chunks in this window
    k0: u32,       // the window's first chunk in the chunk table
    nseg: u32,     // segments in this window
    seg0: u32,     // the window's first segment in the segment table
    flags: u32,
    p_a: u32,
    p_bias: u32,
    p_d: u32,
    p_chunks: u32,
    p_segs: u32,
    tok0: u32,     // first token of the window (view offsets are rebased to it)
    lo: f32,       // dt_limit
    hi: f32,
    pool: u32,     // rows of the state pool
    hpg: u32,      // heads per group, H / G
    x_view: vec4<u32>,
    dt_view: vec4<u32>,
    b_view: vec4<u32>,
    c_view: vec4<u32>,
    z_view: vec4<u32>,
    o_view: vec4<u32>,
}

const HAS_D: u32 = 1u;
const D_PER_P: u32 = 2u;
const HAS_Z: u32 = 4u;
const HAS_BIAS: u32 = 8u;
const SOFTPLUS: u32 = 16u;
const CLAMP: u32 = 32u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> table: array<u32>;

fn tab_f32(i: u32) -> f32 {
    return bitcast<f32>(table[i]);
}

// First token (over the whole call) of window-local chunk c.
fn chunk_t0(c: u32) -> u32 {
    return table[params.p_chunks + 2u * (params.k0 + c)];
}

fn chunk_len(c: u32) -> u32 {
    return table[params.p_chunks + 2u * (params.k0 + c) + 1u];
}

fn x_index(t: u32, h: u32, p: u32) -> u32 {
    let v = params.x_view;
    return v.x + (t - params.tok0) * v.y + h * v.z + p * v.w;
}

fn z_index(t: u32, h: u32, p: u32) -> u32 {
    let v = params.z_view;
    return v.x + (t - params.tok0) * v.y + h * v.z + p * v.w;
}

fn o_index(t: u32, h: u32, p: u32) -> u32 {
    let v = params.o_view;
    return v.x + (t - params.tok0) * v.y + h * v.z + p * v.w;
}

fn dt_index(t: u32, h: u32) -> u32 {
    let v = params.dt_view;
    return v.x + (t - params.tok0) * v.y + h * v.z;
}

fn b_index(t: u32, g: u32, n: u32) -> u32 {
    let v = params.b_view;
    return v.x + (t - params.tok0) * v.y + g * v.z + n * v.w;
}

fn c_index(t: u32, g: u32, n: u32) -> u32 {
    let v = params.c_view;
    return v.x + (t - params.tok0) * v.y + g * v.z + n * v.w;
}

// Start of (chunk c, head h) in dtcum.
fn dtcum_base(c: u32, h: u32) -> u32 {
    return (c * params.heads + h) * 2u * params.q;
}
