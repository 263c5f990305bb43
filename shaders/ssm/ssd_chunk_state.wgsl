// ssd_chunk_state, stage 3 of the SSD scan: per (chunk, head) the chunk's own final state,
// as if it had started from zero:
//   S[p, n] = Σ_{s < len} exp(cum_last − cum_s)·dt_s·x[t0 + s, h, p]·B[t0 + s, g, n],
// a (P × len)·(len × N) matmul whose left side is x scaled by the decay to the chunk's end
// (≤ dt_s, so nothing overflows).
//
// Bindings (ssd_io.wgsl has params, table and the scratch layout): x (T, H, P) and B (T, G, N)
// f32 views; dtcum (K, H, 2, Q); states (K, H, P, N) f32, written.
//
// VEC4 (register tiles, ssd_tile.wgsl; x, B, dtcum and states bound as vec4): one invocation
// per (window chunk, head, 8 rows of P, 8 columns of N: two blocks), WG per workgroup, the
// column block fastest, so the 8 SIMD lanes of llvmpipe share their x loads' addresses and
// differ in B's. Each step of 4 tokens loads the weights exp(cum_last − cum_s)·dt_s of 4 tokens
// at once (one vec4 of cum, one of dt, one vec4 exp), then per token two vec4 of x (scaled by
// its weight) and two of B for 64 FMAs. Past the chunk's length dt is 0 (ssd_chunk_cumsum pads it), so the
// last partial step needs no mask: its tokens are clamped into the chunk and weigh 0.
// Bounds on lavapipe: the 4 vec4 loads per token (each a loop over the SIMD lanes) next to
// 64 FMAs.
// Flag SUBGROUP (with VEC4; CPU devices with subgroups of at least 8, N a multiple of 64, WG =
// 8, ROWS = 16): a workgroup is one subgroup whose 8 lanes hold the 8 column blocks of one row
// block of P, so a step's x quads (4 tokens × the block's rows) and its cum and dt quads are
// the same for every lane: lane l loads x quads l and 8 + l (and lanes 0 and 1 cum's and dt's)
// and the others take them by subgroupBroadcast with a constant lane. With 16 rows of P (four
// blocks) per invocation a step of 4 tokens does 512 FMAs for 11 vec4 loads, against 256 for
// 18 without. GPUs never get it (a subgroup's loads of one address are one transaction there).
//
// Otherwise (staged tiles): one workgroup per (window chunk, head, 32-row tile of P, 32-column
// tile of N) (ssd_tile.wgsl), linear workgroup index over a 2-D grid; the chunk's steps walked
// in steps of BK with the scaled x and B staged in workgroup memory.
// Bounds on a GPU: H·P·N·Q FMAs per chunk against (H·P + G·N)·Q reads: compute, each staged
// element reused 32 times from workgroup memory.

#include "ssm/ssd_io"
#include "ssm/ssd_tile"

#if VEC4
override WG: u32 = 64u;
// Rows of P per invocation: 8 (two 4 × 8 blocks), or 16 (four) under SUBGROUP, where the rows'
// x loads are shared by the subgroup and more rows spread each lane's B loads over more FMAs.
override ROWS: u32 = 8u;

@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;            // (T, H, P) view
@group(0) @binding(3) var<storage, read> bmat: array<vec4<f32>>;         // (T, G, N) view
@group(0) @binding(4) var<storage, read> dtcum: array<vec4<f32>>;        // (K, H, 2, Q)
@group(0) @binding(5) var<storage, read_write> states: array<vec4<f32>>; // (K, H, P, N)

// One token's rank-1 updates: x[tok, h, p .. p + 8] scaled by w (p1: the second vec4's row,
// clamped into P) times B[tok, g, n .. n + 8] (n1 likewise into N).
fn token(acc0: ptr<function, Blk>, acc1: ptr<function, Blk>, tok: u32, h: u32, p: u32, p1: u32,
         g: u32, n: u32, n1: u32, w: f32) {
    let b0 = bmat[b_index(tok, g, n) / 4u];
    let b1 = bmat[b_index(tok, g, n1) / 4u];
    rank1(acc0, x[x_index(tok, h, p) / 4u] * w, b0, b1);
    rank1(acc1, x[x_index(tok, h, p1) / 4u] * w, b0, b1);
}

#if SUBGROUP
// token() with the x rows given, scaled: xa rows p .. p + 3, xb rows p1 .., and with ROWS = 16
// xc rows p2 .., xd rows p3 .. (blocks acc2, acc3).
fn token_of(acc0: ptr<function, Blk>, acc1: ptr<function, Blk>, acc2: ptr<function, Blk>,
            acc3: ptr<function, Blk>, tok: u32, g: u32, n: u32, n1: u32, xa: vec4<f32>,
            xb: vec4<f32>, xc: vec4<f32>, xd: vec4<f32>) {
    let b0 = bmat[b_index(tok, g, n) / 4u];
    let b1 = bmat[b_index(tok, g, n1) / 4u];
    rank1(acc0, xa, b0, b1);
    rank1(acc1, xb, b0, b1);
    if (ROWS == 16u) {
        rank1(acc2, xc, b0, b1);
        rank1(acc3, xd, b0, b1);
    }
}
#endif

@compute @workgroup_size(WG)
fn main(
#if SUBGROUP
    @builtin(subgroup_invocation_id) lane: u32,
#endif
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let pd = params.head_dim;
    let nn = params.n;
    let pb_count = (pd + ROWS - 1u) / ROWS;
    let nb_count = (nn + 7u) / 8u;
    let e = (wg.x + wg.y * groups.x) * WG + lid;
    if (e >= params.nk * params.heads * pb_count * nb_count) {
        return;
    }
    let nb = e % nb_count;
    let pb = (e / nb_count) % pb_count;
    let h = (e / (nb_count * pb_count)) % params.heads;
    let c = e / (nb_count * pb_count * params.heads);
    let len = chunk_len(c);
    let t0 = chunk_t0(c);
    let g = h / params.hpg;
    let q4 = params.q / 4u;
    let dt4 = dtcum_base(c, h) / 4u;
    let cum4 = dt4 + q4;
    let cum_last = dtcum[cum4 + q4 - 1u].w;
    let p = ROWS * pb;
    let p1 = min(p + 4u, pd - 4u);
    let p2 = min(p + 8u, pd - 4u);
    let p3 = min(p + 12u, pd - 4u);
    let n = 8u * nb;
    let n1 = min(n + 4u, nn - 4u);
    var acc0 = blk_zero();
    var acc1 = blk_zero();
    var acc2 = blk_zero();
    var acc3 = blk_zero();
    let last = t0 + len - 1u;
#if SUBGROUP
    // Lane 1 loads dt's quad, every other lane cum's; lane l loads x of token s0 + l / 2 at
    // rows p (even l) or p1 (odd l), and with ROWS = 16 at rows p2 or p3: the step's x quads,
    // one or two per lane.
    let dq4 = select(cum4, dt4, lane == 1u);
    let odd = (lane & 1u) == 1u;
    let x_row = select(p, p1, odd);
    let x_row2 = select(p2, p3, odd);
    for (var s0 = 0u; s0 < len; s0 += 4u) {
        let dq = dtcum[dq4 + s0 / 4u];
        let w = exp(vec4<f32>(cum_last) - subgroupBroadcast(dq, 0u)) * subgroupBroadcast(dq, 1u);
        let tok = t0 + s0;
        let tl = min(tok + lane / 2u, last);
        let xl = x[x_index(tl, h, x_row) / 4u];
        var xm = vec4<f32>(0.0);
        if (ROWS == 16u) {
            xm = x[x_index(tl, h, x_row2) / 4u];
        }
        token_of(&acc0, &acc1, &acc2, &acc3, tok, g, n, n1,
                 subgroupBroadcast(xl, 0u) * w.x, subgroupBroadcast(xl, 1u) * w.x,
                 subgroupBroadcast(xm, 0u) * w.x, subgroupBroadcast(xm, 1u) * w.x);
        token_of(&acc0, &acc1, &acc2, &acc3, min(tok + 1u, last), g, n, n1,
                 subgroupBroadcast(xl, 2u) * w.y, subgroupBroadcast(xl, 3u) * w.y,
                 subgroupBroadcast(xm, 2u) * w.y, subgroupBroadcast(xm, 3u) * w.y);
        token_of(&acc0, &acc1, &acc2, &acc3, min(tok + 2u, last), g, n, n1,
                 subgroupBroadcast(xl, 4u) * w.z, subgroupBroadcast(xl, 5u) * w.z,
                 subgroupBroadcast(xm, 4u) * w.z, subgroupBroadcast(xm, 5u) * w.z);
        token_of(&acc0, &acc1, &acc2, &acc3, min(tok + 3u, last), g, n, n1,
                 subgroupBroadcast(xl, 6u) * w.w, subgroupBroadcast(xl, 7u) * w.w,
                 subgroupBroadcast(xm, 6u) * w.w, subgroupBroadcast(xm, 7u) * w.w);
    }
#else
    for (var s0 = 0u; s0 < len; s0 += 4u) {
        let w = exp(vec4<f32>(cum_last) - dtcum[cum4 + s0 / 4u]) * dtcum[dt4 + s0 / 4u];
        let tok = t0 + s0;
        token(&acc0, &acc1, tok, h, p, p1, g, n, n1, w.x);
        token(&acc0, &acc1, min(tok + 1u, last), h, p, p1, g, n, n1, w.y);
        token(&acc0, &acc1, min(tok + 2u, last), h, p, p1, g, n, n1, w.z);
        token(&acc0, &acc1, min(tok + 3u, last), h, p, p1, g, n, n1, w.w);
    }
#endif
    let nq = nn / 4u;
    let row = (c * params.heads + h) * pd;
    // Block w holds rows p + 4w .. (pd is a multiple of 4, so a block starting inside P lies
    // wholly inside it and was loaded unclamped).
    for (var i = 0u; i < 4u; i++) {
        store_row(row + p + i, n, blk_row(acc0, i, false), blk_row(acc0, i, true));
        if (p + 4u < pd) {
            store_row(row + p + 4u + i, n, blk_row(acc1, i, false), blk_row(acc1, i, true));
        }
        if (ROWS == 16u && p + 8u < pd) {
            store_row(row + p + 8u + i, n, blk_row(acc2, i, false), blk_row(acc2, i, true));
        }
        if (ROWS == 16u && p + 12u < pd) {
            store_row(row + p + 12u + i, n, blk_row(acc3, i, false), blk_row(acc3, i, true));
        }
    }
}

// Columns n .. n + 8 of state row `row` (the second vec4 only where it lies inside N).
fn store_row(row: u32, n: u32, a: vec4<f32>, b: vec4<f32>) {
    let at = row * (params.n / 4u) + n / 4u;
    states[at] = a;
    if (n + 4u < params.n) {
        states[at + 1u] = b;
    }
}
#else
@group(0) @binding(2) var<storage, read> x: array<f32>;            // (T, H, P) view
@group(0) @binding(3) var<storage, read> bmat: array<f32>;         // (T, G, N) view
@group(0) @binding(4) var<storage, read> dtcum: array<f32>;        // (K, H, 2, Q)
@group(0) @binding(5) var<storage, read_write> states: array<f32>; // (K, H, P, N)

var<workgroup> wg_len: u32;

// x and B at token tok with the channel clamped below its size (the caller masks).
fn x_at(tok: u32, h: u32, p: u32, pd: u32) -> f32 {
    return x[x_index(tok, h, min(p, pd - 1u))];
}

fn b_at(tok: u32, g: u32, n: u32, nn: u32) -> f32 {
    return bmat[b_index(tok, g, min(n, nn - 1u))];
}

@compute @workgroup_size(8, 8)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) li: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let pd = params.head_dim;
    let nn = params.n;
    let pt_count = (pd + TILE - 1u) / TILE;
    let nt_count = (nn + TILE - 1u) / TILE;
    let w = wg.x + wg.y * groups.x;
    if (w >= params.nk * params.heads * pt_count * nt_count) {
        return;
    }
    let nt = w % nt_count;
    let pt = (w / nt_count) % pt_count;
    let h = (w / (nt_count * pt_count)) % params.heads;
    let c = w / (nt_count * pt_count * params.heads);
    if (lid == 0u) {
        wg_len = chunk_len(c);
    }
    let len = workgroupUniformLoad(&wg_len);
    let t0 = chunk_t0(c);
    let g = h / params.hpg;
    let base = dtcum_base(c, h);
    let q = params.q;
    let cum_last = dtcum[base + q + q - 1u];
    var acc = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var s0 = 0u; s0 < len; s0 += BK) {
        for (var i = lid; i < 8u * BK; i += 64u) {
            let k = i / 8u;
            let rb = i % 8u;
            let s = s0 + k;
            let sc = min(s, len - 1u);
            let live = vec4<bool>(s < len);
            let wgt = exp(cum_last - dtcum[base + q + sc]) * dtcum[base + sc];
            let p = pt * TILE + 4u * rb;
            let n = nt * TILE + 4u * rb;
            let tok = t0 + sc;
            let xv = vec4<f32>(x_at(tok, h, p, pd), x_at(tok, h, p + 1u, pd),
                               x_at(tok, h, p + 2u, pd), x_at(tok, h, p + 3u, pd));
            let bv = vec4<f32>(b_at(tok, g, n, nn), b_at(tok, g, n + 1u, nn),
                               b_at(tok, g, n + 2u, nn), b_at(tok, g, n + 3u, nn));
            put_a4(k, rb, select(vec4<f32>(0.0), wgt * xv, live & below4(p, pd)));
            put_b4(k, rb, select(vec4<f32>(0.0), bv, live & below4(n, nn)));
        }
        workgroupBarrier();
        tile_fma(li.y, li.x, &acc);
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = acc_row(acc, i);
        let p = pt * TILE + 4u * li.y + i;
        for (var j = 0u; j < 4u; j++) {
            let n = nt * TILE + 4u * li.x + j;
            if (p < pd && n < nn) {
                states[((c * params.heads + h) * pd + p) * nn + n] = row[j];
            }
        }
    }
}
#endif
