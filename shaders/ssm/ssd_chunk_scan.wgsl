// ssd_chunk_scan, stage 5 of the SSD scan: the outputs of one chunk from the state entering it
// and the chunk's own inputs:
//   y[t, p] = exp(cum_t)·Σ_n C_t[n]·S_in[p, n]                               (Y_off)
//           + Σ_{s ≤ t} CB[t, s]·exp(cum_t − cum_s)·dt_s·x[t0 + s, h, p]      (Y_diag)
//           + D·x[t0 + t, h, p];   if z: y ← y·silu(z)
// The decay exp(cum_t − cum_s) is never formed as exp(cum_t)·exp(−cum_s), which overflows for
// long chunks; only where s ≤ t: `select` masks the rest, since CB above the diagonal and past
// the chunk's length was never written.
//
// Bindings (ssd_io.wgsl has params, table and the scratch layout): x, z, out (T, H, P) f32
// views; C (T, G, N) f32 view; dtcum (K, H, 2, Q); cb (K, G, Q, Q); states (K, H, P, N)
// holding the entering states; out written for the chunk's tokens.
//
// VEC4 (register tiles, ssd_tile.wgsl; every binding but the table as vec4): one invocation per
// (window chunk, head, 8 rows t from r = 8·rb, 8 columns of P: two blocks), WG per workgroup,
// the column block fastest, so the 8 SIMD lanes of llvmpipe share a row block and walk the same
// causal range. Y_off: N in steps of 4, 8 vec4 of C and 8 of S_in, all contiguous along n
// (rank4t, 256 FMAs).
// Y_diag splits the decay at the block's first row r, a reference inside the block:
//   exp(cum_t − cum_s) = exp(cum_t − cum_r)·exp(cum_r − cum_s)   for s < r ≤ t,
// where cum never increases (dt ≥ 0, A ≤ 0), so both factors lie in (0, 1] and neither can
// overflow. The row factor exp(cum_t − cum_r) is applied once at the end (with
// exp(cum_t) = exp(cum_t − cum_r)·exp(cum_r) for Y_off, whose sum is scaled by exp(cum_r) ≤ 1
// first), so a step of 4 tokens s < r costs one vec4 exp of exp(cum_r − cum_s)·dt_s, 8 vec4 of
// CB, 8 of x and 256 FMAs; the two diagonal steps s ∈ r .. r + 7 keep one exp per (t, s) pair,
// masked by s ≤ t.
// Bounds on lavapipe: the 16–18 vec4 loads per step (each a loop over the SIMD lanes).
// Flag SUBGROUP (with VEC4; CPU devices with subgroups of at least 8, P a multiple of 64, WG =
// 8, ROWS = 16): a workgroup is one subgroup whose 8 lanes hold the 8 column blocks of one row
// block, so the row side of both sums (C rows, CB rows, the decay's cum and dt) is the same for
// every lane: lane l loads the quads of rows r + l and r + 8 + l (and lanes 0 and 1 cum's and
// dt's) and the others take them by subgroupBroadcast with a constant lane (a register extract
// on a CPU). With 16 rows (four blocks) per invocation a step does 512 FMAs for 10 (Y_off) or
// 11 (Y_diag) vec4 loads, against 256 for 16 or 18 without. A GPU would gain nothing (loads of
// one address by a subgroup are one transaction there), so only CPU devices compose it.
//
// Otherwise (staged tiles): one workgroup per (window chunk, head, 32-row tile of the chunk,
// 32-column tile of P) (ssd_tile.wgsl: 8 × 8 invocations, 4 × 4 outputs each), linear
// workgroup index over a 2-D grid; row tiles past the chunk's length return at once. Two
// reductions through the same staged tiles: over N (C rows, S_in columns), then over s up to
// the tile's last row (CB decayed per (t, s) pair as it is staged, x rows), in steps of BK.
// Bounds on a GPU: H·Q·P·(N + Q/2) FMAs per chunk against (2·H·P + G·N)·Q reads: compute,
// each staged element reused 32 times; the exp per staged CB element.

#include "ssm/ssd_io"
#include "ssm/ssd_tile"

#if VEC4
override WG: u32 = 64u;
// Rows of the chunk per invocation: 8 (two 4 × 8 blocks), or 16 (four) under SUBGROUP, where
// the rows' loads are shared by the subgroup and more rows spread each lane's x and state
// loads over more FMAs.
override ROWS: u32 = 8u;

@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;        // (T, H, P) view
@group(0) @binding(3) var<storage, read> cmat: array<vec4<f32>>;     // (T, G, N) view
@group(0) @binding(4) var<storage, read> zgate: array<vec4<f32>>;    // (T, H, P) view (x when absent)
@group(0) @binding(5) var<storage, read> dtcum: array<vec4<f32>>;    // (K, H, 2, Q)
@group(0) @binding(6) var<storage, read> cb: array<vec4<f32>>;       // (K, G, Q, Q)
@group(0) @binding(7) var<storage, read> states: array<vec4<f32>>;   // (K, H, P, N)
@group(0) @binding(8) var<storage, read_write> out: array<vec4<f32>>; // (T, H, P) view

// x[tok_j, h, p .. p + 8] for the 4 tokens of a step (p1: the second vec4's column, clamped
// into P): the right factor of one step of Y_diag, loaded once for every row of the block.
struct XQuads {
    a0: vec4<f32>,
    b0: vec4<f32>,
    a1: vec4<f32>,
    b1: vec4<f32>,
    a2: vec4<f32>,
    b2: vec4<f32>,
    a3: vec4<f32>,
    b3: vec4<f32>,
}

fn x_load(tok: vec4<u32>, h: u32, p: u32, p1: u32) -> XQuads {
    return XQuads(x[x_index(tok.x, h, p) / 4u], x[x_index(tok.x, h, p1) / 4u],
                  x[x_index(tok.y, h, p) / 4u], x[x_index(tok.y, h, p1) / 4u],
                  x[x_index(tok.z, h, p) / 4u], x[x_index(tok.z, h, p1) / 4u],
                  x[x_index(tok.w, h, p) / 4u], x[x_index(tok.w, h, p1) / 4u]);
}

// One step of Y_diag for 8 rows (two 4-row blocks): the left factor's values for rows 0..3 as
// a0..a3 and rows 4..7 as a4..a7 (each a vec4 over the step's 4 tokens), times the step's x.
fn x_apply(acc0: ptr<function, Blk>, acc1: ptr<function, Blk>,
           a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
           a4: vec4<f32>, a5: vec4<f32>, a6: vec4<f32>, a7: vec4<f32>, xq: XQuads) {
    rank1(acc0, vec4<f32>(a0.x, a1.x, a2.x, a3.x), xq.a0, xq.b0);
    rank1(acc1, vec4<f32>(a4.x, a5.x, a6.x, a7.x), xq.a0, xq.b0);
    rank1(acc0, vec4<f32>(a0.y, a1.y, a2.y, a3.y), xq.a1, xq.b1);
    rank1(acc1, vec4<f32>(a4.y, a5.y, a6.y, a7.y), xq.a1, xq.b1);
    rank1(acc0, vec4<f32>(a0.z, a1.z, a2.z, a3.z), xq.a2, xq.b2);
    rank1(acc1, vec4<f32>(a4.z, a5.z, a6.z, a7.z), xq.a2, xq.b2);
    rank1(acc0, vec4<f32>(a0.w, a1.w, a2.w, a3.w), xq.a3, xq.b3);
    rank1(acc1, vec4<f32>(a4.w, a5.w, a6.w, a7.w), xq.a3, xq.b3);
}

// CB row t against tokens sv of a step on the diagonal: CB·exp(cum_t − cum_s)·dt_s where
// s ≤ t and s < len, else 0 (the exponent is masked first, so a positive one never reaches exp).
fn pair(cbv: vec4<f32>, cum_t: f32, t: u32, cum_s: vec4<f32>, dts: vec4<f32>, sv: vec4<u32>,
        len: u32) -> vec4<f32> {
    let live = (sv <= vec4<u32>(t)) & (sv < vec4<u32>(len));
    let zero = vec4<f32>(0.0);
    return select(zero, cbv * exp(select(zero, vec4<f32>(cum_t) - cum_s, live)) * dts, live);
}

#if SUBGROUP
// Y_diag's left factor for 8 rows from one CB quad per lane (lane i: row i's), each value
// times f (the decay and dt of the step's tokens, below the diagonal).
fn x_apply_shared(acc0: ptr<function, Blk>, acc1: ptr<function, Blk>, cm: vec4<f32>,
                  f: vec4<f32>, xq: XQuads) {
    x_apply(acc0, acc1,
            subgroupBroadcast(cm, 0u) * f, subgroupBroadcast(cm, 1u) * f,
            subgroupBroadcast(cm, 2u) * f, subgroupBroadcast(cm, 3u) * f,
            subgroupBroadcast(cm, 4u) * f, subgroupBroadcast(cm, 5u) * f,
            subgroupBroadcast(cm, 6u) * f, subgroupBroadcast(cm, 7u) * f, xq);
}

// The same on the diagonal: row i's CB quad masked and decayed per (t, s) pair (rows r0 + i,
// their cum in ca (rows 0..3) and cb4 (rows 4..7)).
fn x_apply_diag(acc0: ptr<function, Blk>, acc1: ptr<function, Blk>, cm: vec4<f32>, r0: u32,
                ca: vec4<f32>, cb4: vec4<f32>, cum_s: vec4<f32>, dts: vec4<f32>, sv: vec4<u32>,
                len: u32, xq: XQuads) {
    x_apply(acc0, acc1,
            pair(subgroupBroadcast(cm, 0u), ca.x, r0, cum_s, dts, sv, len),
            pair(subgroupBroadcast(cm, 1u), ca.y, r0 + 1u, cum_s, dts, sv, len),
            pair(subgroupBroadcast(cm, 2u), ca.z, r0 + 2u, cum_s, dts, sv, len),
            pair(subgroupBroadcast(cm, 3u), ca.w, r0 + 3u, cum_s, dts, sv, len),
            pair(subgroupBroadcast(cm, 4u), cb4.x, r0 + 4u, cum_s, dts, sv, len),
            pair(subgroupBroadcast(cm, 5u), cb4.y, r0 + 5u, cum_s, dts, sv, len),
            pair(subgroupBroadcast(cm, 6u), cb4.z, r0 + 6u, cum_s, dts, sv, len),
            pair(subgroupBroadcast(cm, 7u), cb4.w, r0 + 7u, cum_s, dts, sv, len), xq);
}

// Y_off's step for 8 rows from one C quad per lane (lane i: row i's) and the 8 state quads.
fn c_apply_shared(acc0: ptr<function, Blk>, acc1: ptr<function, Blk>, cm: vec4<f32>,
                  st0: vec4<f32>, st1: vec4<f32>, st2: vec4<f32>, st3: vec4<f32>,
                  st4: vec4<f32>, st5: vec4<f32>, st6: vec4<f32>, st7: vec4<f32>) {
    rank4t(acc0,
           subgroupBroadcast(cm, 0u), subgroupBroadcast(cm, 1u),
           subgroupBroadcast(cm, 2u), subgroupBroadcast(cm, 3u),
           st0, st1, st2, st3, st4, st5, st6, st7);
    rank4t(acc1,
           subgroupBroadcast(cm, 4u), subgroupBroadcast(cm, 5u),
           subgroupBroadcast(cm, 6u), subgroupBroadcast(cm, 7u),
           st0, st1, st2, st3, st4, st5, st6, st7);
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
    let q = params.q;
    let pd = params.head_dim;
    let nn = params.n;
    let rb_count = q / ROWS;
    let pb_count = (pd + 7u) / 8u;
    let e = (wg.x + wg.y * groups.x) * WG + lid;
    if (e >= params.nk * params.heads * rb_count * pb_count) {
        return;
    }
    let pb = e % pb_count;
    let rb = (e / pb_count) % rb_count;
    let h = (e / (pb_count * rb_count)) % params.heads;
    let c = e / (pb_count * rb_count * params.heads);
    let len = chunk_len(c);
    let r = ROWS * rb;
    if (r >= len) {
        return;
    }
    let t0 = chunk_t0(c);
    let g = h / params.hpg;
    let p = 8u * pb;
    let p1 = min(p + 4u, pd - 4u);
    let q4 = q / 4u;
    let dt4 = dtcum_base(c, h) / 4u;
    let cum4 = dt4 + q4;
    let r4 = r / 4u;
    let step = vec4<u32>(0u, 1u, 2u, 3u);
    let cb_base = (c * params.groups + g) * q;
#if SUBGROUP
    // This lane's rows of the block (r + lane, and r + 8 + lane with ROWS = 16; clamped into
    // the chunk): the ones whose C and CB quads it loads for the whole subgroup.
    let row_a = min(r + lane, len - 1u);
    let row_b = min(r + 8u + lane, len - 1u);
#else
    // The block's rows, chunk-relative, clamped into the chunk (rows past it are never stored).
    let ra = min(vec4<u32>(r) + step, vec4<u32>(len - 1u));
    let rb4 = min(vec4<u32>(r + 4u) + step, vec4<u32>(len - 1u));
    let ta = ra + vec4<u32>(t0);
    let tb = rb4 + vec4<u32>(t0);
#endif

    // Y_off: C rows times the entering state (rows p of S_in are contiguous along n).
    let nq = nn / 4u;
    let s0 = ((c * params.heads + h) * pd + p) * nq;
    let s1 = ((c * params.heads + h) * pd + p1) * nq;
    var acc0 = blk_zero();
    var acc1 = blk_zero();
    var acc2 = blk_zero();
    var acc3 = blk_zero();
    for (var n = 0u; n < nn; n += 4u) {
        let k = n / 4u;
        let st0 = states[s0 + k];
        let st1 = states[s0 + nq + k];
        let st2 = states[s0 + 2u * nq + k];
        let st3 = states[s0 + 3u * nq + k];
        let st4 = states[s1 + k];
        let st5 = states[s1 + nq + k];
        let st6 = states[s1 + 2u * nq + k];
        let st7 = states[s1 + 3u * nq + k];
#if SUBGROUP
        c_apply_shared(&acc0, &acc1, cmat[c_index(t0 + row_a, g, n) / 4u],
                       st0, st1, st2, st3, st4, st5, st6, st7);
        if (ROWS == 16u) {
            c_apply_shared(&acc2, &acc3, cmat[c_index(t0 + row_b, g, n) / 4u],
                           st0, st1, st2, st3, st4, st5, st6, st7);
        }
#else
        rank4t(&acc0,
               cmat[c_index(ta.x, g, n) / 4u], cmat[c_index(ta.y, g, n) / 4u],
               cmat[c_index(ta.z, g, n) / 4u], cmat[c_index(ta.w, g, n) / 4u],
               st0, st1, st2, st3, st4, st5, st6, st7);
        rank4t(&acc1,
               cmat[c_index(tb.x, g, n) / 4u], cmat[c_index(tb.y, g, n) / 4u],
               cmat[c_index(tb.z, g, n) / 4u], cmat[c_index(tb.w, g, n) / 4u],
               st0, st1, st2, st3, st4, st5, st6, st7);
#endif
    }
    // cum of the block's rows (padded past the chunk's length) and of its reference row r.
    let cum_a = dtcum[cum4 + r4];
    let cum_b = dtcum[cum4 + r4 + 1u];
    var cum_c = cum_b;
    var cum_d = cum_b;
    if (ROWS == 16u) {
        cum_c = dtcum[cum4 + r4 + 2u];
        cum_d = dtcum[cum4 + r4 + 3u];
    }
    let cum_r = cum_a.x;
    let e_r = vec4<f32>(exp(cum_r));
    acc0 = blk_scale(acc0, e_r);
    acc1 = blk_scale(acc1, e_r);
    acc2 = blk_scale(acc2, e_r);
    acc3 = blk_scale(acc3, e_r);

    // Y_diag below the block (s < r): CB scaled per column by exp(cum_r − cum_s)·dt_s.
#if SUBGROUP
    let c_a = (cb_base + row_a) * q4;
    let c_b = (cb_base + row_b) * q4;
    // Lane 1 loads dt's quad, every other lane cum's: one load for both.
    let dq4 = select(cum4, dt4, lane == 1u);
    for (var k = 0u; k < r4; k++) {
        let dq = dtcum[dq4 + k];
        let f = exp(vec4<f32>(cum_r) - subgroupBroadcast(dq, 0u)) * subgroupBroadcast(dq, 1u);
        let xq = x_load(vec4<u32>(t0 + 4u * k) + step, h, p, p1);
        x_apply_shared(&acc0, &acc1, cb[c_a + k], f, xq);
        if (ROWS == 16u) {
            x_apply_shared(&acc2, &acc3, cb[c_b + k], f, xq);
        }
    }
#else
    let c0 = (cb_base + ra.x) * q4;
    let c1 = (cb_base + ra.y) * q4;
    let c2 = (cb_base + ra.z) * q4;
    let c3 = (cb_base + ra.w) * q4;
    let c4 = (cb_base + rb4.x) * q4;
    let c5 = (cb_base + rb4.y) * q4;
    let c6 = (cb_base + rb4.z) * q4;
    let c7 = (cb_base + rb4.w) * q4;
    for (var k = 0u; k < r4; k++) {
        let f = exp(vec4<f32>(cum_r) - dtcum[cum4 + k]) * dtcum[dt4 + k];
        x_apply(&acc0, &acc1,
                cb[c0 + k] * f, cb[c1 + k] * f, cb[c2 + k] * f, cb[c3 + k] * f,
                cb[c4 + k] * f, cb[c5 + k] * f, cb[c6 + k] * f, cb[c7 + k] * f,
                x_load(vec4<u32>(t0 + 4u * k) + step, h, p, p1));
    }
#endif
    acc0 = blk_scale(acc0, exp(cum_a - vec4<f32>(cum_r)));
    acc1 = blk_scale(acc1, exp(cum_b - vec4<f32>(cum_r)));
    acc2 = blk_scale(acc2, exp(cum_c - vec4<f32>(cum_r)));
    acc3 = blk_scale(acc3, exp(cum_d - vec4<f32>(cum_r)));

    // The steps on the diagonal (s = r .. r + ROWS − 1): one decay per (t, s) pair.
    let last = t0 + len - 1u;
    for (var k = r4; k < r4 + ROWS / 4u; k++) {
        let sv = vec4<u32>(4u * k) + step;
        let xq = x_load(min(vec4<u32>(t0) + sv, vec4<u32>(last)), h, p, p1);
#if SUBGROUP
        let dq = dtcum[dq4 + k];
        let cum_s = subgroupBroadcast(dq, 0u);
        let dts = subgroupBroadcast(dq, 1u);
        x_apply_diag(&acc0, &acc1, cb[c_a + k], r, cum_a, cum_b, cum_s, dts, sv, len, xq);
        if (ROWS == 16u) {
            x_apply_diag(&acc2, &acc3, cb[c_b + k], r + 8u, cum_c, cum_d, cum_s, dts, sv, len,
                         xq);
        }
#else
        let cum_s = dtcum[cum4 + k];
        let dts = dtcum[dt4 + k];
        x_apply(&acc0, &acc1,
                pair(cb[c0 + k], cum_a.x, r, cum_s, dts, sv, len),
                pair(cb[c1 + k], cum_a.y, r + 1u, cum_s, dts, sv, len),
                pair(cb[c2 + k], cum_a.z, r + 2u, cum_s, dts, sv, len),
                pair(cb[c3 + k], cum_a.w, r + 3u, cum_s, dts, sv, len),
                pair(cb[c4 + k], cum_b.x, r + 4u, cum_s, dts, sv, len),
                pair(cb[c5 + k], cum_b.y, r + 5u, cum_s, dts, sv, len),
                pair(cb[c6 + k], cum_b.z, r + 6u, cum_s, dts, sv, len),
                pair(cb[c7 + k], cum_b.w, r + 7u, cum_s, dts, sv, len), xq);
#endif
    }

    // D, the gate, and the stores.
    var d0 = vec4<f32>(0.0);
    var d1 = vec4<f32>(0.0);
    if ((params.flags & HAS_D) != 0u) {
        if ((params.flags & D_PER_P) != 0u) {
            let di = params.p_d + h * pd;
            d0 = vec4<f32>(tab_f32(di + p), tab_f32(di + p + 1u), tab_f32(di + p + 2u),
                           tab_f32(di + p + 3u));
            d1 = vec4<f32>(tab_f32(di + p1), tab_f32(di + p1 + 1u), tab_f32(di + p1 + 2u),
                           tab_f32(di + p1 + 3u));
        } else {
            d0 = vec4<f32>(tab_f32(params.p_d + h));
            d1 = d0;
        }
    }
    for (var i = 0u; i < ROWS; i++) {
        if (r + i < len) {
            let tok = t0 + r + i;
            let j = i % 4u;
            let w = i / 4u;
            let ya = blk_pick(acc0, acc1, acc2, acc3, w, j, false);
            store_out(tok, h, p, ya, d0);
            if (p + 4u < pd) {
                let yb = blk_pick(acc0, acc1, acc2, acc3, w, j, true);
                store_out(tok, h, p + 4u, yb, d1);
            }
        }
    }
}

// Row j of block w (0..3) of the four, first or second vec4 of columns.
fn blk_pick(a0: Blk, a1: Blk, a2: Blk, a3: Blk, w: u32, j: u32, second: bool) -> vec4<f32> {
    let lo = select(blk_row(a0, j, second), blk_row(a1, j, second), w == 1u);
    let hi = select(blk_row(a2, j, second), blk_row(a3, j, second), w == 3u);
    return select(lo, hi, w >= 2u);
}

// out[tok, h, p .. p + 4] = (y + d·x)·silu(z) as the flags ask.
fn store_out(tok: u32, h: u32, p: u32, y: vec4<f32>, d: vec4<f32>) {
    var v = fma(d, x[x_index(tok, h, p) / 4u], y);
    if ((params.flags & HAS_Z) != 0u) {
        let zz = zgate[z_index(tok, h, p) / 4u];
        v = v * (zz / (1.0 + exp(-zz)));
    }
    out[o_index(tok, h, p) / 4u] = v;
}
#else
@group(0) @binding(2) var<storage, read> x: array<f32>;        // (T, H, P) view
@group(0) @binding(3) var<storage, read> cmat: array<f32>;     // (T, G, N) view
@group(0) @binding(4) var<storage, read> zgate: array<f32>;    // (T, H, P) view (x when absent)
@group(0) @binding(5) var<storage, read> dtcum: array<f32>;    // (K, H, 2, Q)
@group(0) @binding(6) var<storage, read> cb: array<f32>;       // (K, G, Q, Q)
@group(0) @binding(7) var<storage, read> states: array<f32>;   // (K, H, P, N)
@group(0) @binding(8) var<storage, read_write> out: array<f32>; // (T, H, P) view

var<workgroup> wg_len: u32;

// Loads with their index clamped into range (the callers mask with `select`).
fn c_at(t0: u32, t: u32, len: u32, g: u32, n: u32) -> f32 {
    return cmat[c_index(t0 + min(t, len - 1u), g, n)];
}

fn s_at(s_base: u32, p: u32, pd: u32, n: u32) -> f32 {
    return states[(s_base + min(p, pd - 1u)) * params.n + n];
}

fn x_at(tok: u32, h: u32, p: u32, pd: u32) -> f32 {
    return x[x_index(tok, h, min(p, pd - 1u))];
}

fn cum_at(cum: u32, t: u32, len: u32) -> f32 {
    return dtcum[cum + min(t, len - 1u)];
}

fn cb_at(cb_base: u32, t: u32, len: u32, s: u32) -> f32 {
    return cb[(cb_base + min(t, len - 1u)) * params.q + s];
}

@compute @workgroup_size(8, 8)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) li: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let q = params.q;
    let pd = params.head_dim;
    let nn = params.n;
    let qt = (q + TILE - 1u) / TILE;
    let pt_count = (pd + TILE - 1u) / TILE;
    let w = wg.x + wg.y * groups.x;
    if (w >= params.nk * params.heads * qt * pt_count) {
        return;
    }
    let pt = w % pt_count;
    let rt = (w / pt_count) % qt;
    let h = (w / (pt_count * qt)) % params.heads;
    let c = w / (pt_count * qt * params.heads);
    if (lid == 0u) {
        wg_len = chunk_len(c);
    }
    let len = workgroupUniformLoad(&wg_len);
    if (rt * TILE >= len) {
        return;
    }
    let t0 = chunk_t0(c);
    let g = h / params.hpg;
    let base = dtcum_base(c, h);
    let cum = base + q;
    let s_base = (c * params.heads + h) * pd;

    // Y_off: C rows of the tile times the entering state, then the decay from the chunk start.
    var off = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var n0 = 0u; n0 < nn; n0 += BK) {
        for (var i = lid; i < 8u * BK; i += 64u) {
            let k = i / 8u;
            let rb = i % 8u;
            let n = n0 + k;
            let nc = min(n, nn - 1u);
            let t = rt * TILE + 4u * rb;
            let p = pt * TILE + 4u * rb;
            let cv = vec4<f32>(c_at(t0, t, len, g, nc), c_at(t0, t + 1u, len, g, nc),
                               c_at(t0, t + 2u, len, g, nc), c_at(t0, t + 3u, len, g, nc));
            let sv = vec4<f32>(s_at(s_base, p, pd, nc), s_at(s_base, p + 1u, pd, nc),
                               s_at(s_base, p + 2u, pd, nc), s_at(s_base, p + 3u, pd, nc));
            let nv = vec4<bool>(n < nn);
            put_a4(k, rb, select(vec4<f32>(0.0), cv, below4(t, len) & nv));
            put_b4(k, rb, select(vec4<f32>(0.0), sv, below4(p, pd) & nv));
        }
        workgroupBarrier();
        tile_fma(li.y, li.x, &off);
        workgroupBarrier();
    }
    let r0 = rt * TILE + 4u * li.y;
    var acc = Acc(
        off.r0 * exp(dtcum[cum + min(r0, q - 1u)]),
        off.r1 * exp(dtcum[cum + min(r0 + 1u, q - 1u)]),
        off.r2 * exp(dtcum[cum + min(r0 + 2u, q - 1u)]),
        off.r3 * exp(dtcum[cum + min(r0 + 3u, q - 1u)]),
    );

    // Y_diag: decayed, causally masked CB times dt-free x rows (dt_s is in the left factor).
    let s_end = min(len, rt * TILE + TILE);
    let cb_base = (c * params.groups + g) * q;
    for (var s0 = 0u; s0 < s_end; s0 += BK) {
        for (var i = lid; i < 8u * BK; i += 64u) {
            let k = i / 8u;
            let rb = i % 8u;
            let s = s0 + k;
            let sc = min(s, len - 1u);
            let t = rt * TILE + 4u * rb;
            // Row t + j is live where s ≤ t + j < len (and s < len): below that the decay's
            // exponent is positive and CB was never written, so both are masked.
            let live = (vec4<u32>(s) <= vec4<u32>(t, t + 1u, t + 2u, t + 3u)) & below4(t, len)
                & vec4<bool>(s < len);
            let cum_s = dtcum[cum + sc];
            let cum_t = vec4<f32>(cum_at(cum, t, len), cum_at(cum, t + 1u, len),
                                  cum_at(cum, t + 2u, len), cum_at(cum, t + 3u, len));
            let decay = exp(select(vec4<f32>(0.0), cum_t - vec4<f32>(cum_s), live));
            let cbv = vec4<f32>(cb_at(cb_base, t, len, sc), cb_at(cb_base, t + 1u, len, sc),
                                cb_at(cb_base, t + 2u, len, sc), cb_at(cb_base, t + 3u, len, sc));
            put_a4(k, rb, select(vec4<f32>(0.0), cbv * decay * dtcum[base + sc], live));
            let p = pt * TILE + 4u * rb;
            let tok = t0 + sc;
            let xv = vec4<f32>(x_at(tok, h, p, pd), x_at(tok, h, p + 1u, pd),
                               x_at(tok, h, p + 2u, pd), x_at(tok, h, p + 3u, pd));
            put_b4(k, rb, select(vec4<f32>(0.0), xv, below4(p, pd) & vec4<bool>(s < len)));
        }
        workgroupBarrier();
        tile_fma(li.y, li.x, &acc);
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let row = acc_row(acc, i);
        let t = rt * TILE + 4u * li.y + i;
        for (var j = 0u; j < 4u; j++) {
            let p = pt * TILE + 4u * li.x + j;
            if (t < len && p < pd) {
                let tok = t0 + t;
                let xv = x[x_index(tok, h, p)];
                var y = row[j];
                if ((params.flags & HAS_D) != 0u) {
                    var di = params.p_d + h;
                    if ((params.flags & D_PER_P) != 0u) {
                        di = params.p_d + h * pd + p;
                    }
                    y += tab_f32(di) * xv;
                }
                if ((params.flags & HAS_Z) != 0u) {
                    let zz = zgate[z_index(tok, h, p)];
                    y = y * (zz / (1.0 + exp(-zz)));
                }
                out[o_index(tok, h, p)] = y;
            }
        }
    }
}
#endif
