// ssd_chunk_cb, stage 2 of the SSD scan: per (chunk, group) the Q × Q matrix
// CB[t, s] = Σ_n C[t0 + t, g, n]·B[t0 + s, g, n], the "attention scores" of the dual form.
//
// Bindings (ssd_io.wgsl has params, table and the scratch layout): B, C (T, G, N) f32 views;
// cb (K, G, Q, Q) f32, written for t, s < the chunk's length on and below the diagonal blocks
// (ssd_chunk_scan reads CB only where s ≤ t, and masks the rest of a diagonal block).
//
// VEC4 (register tiles, ssd_tile.wgsl; B, C and cb bound as vec4): one invocation per (window
// chunk, group, 4 rows t, 8 columns s), WG per workgroup, the column block fastest; blocks
// wholly above the diagonal or past the chunk's length return at once. N is walked in steps of
// 4: 4 vec4 of C (rows) and 8 of B (columns), all contiguous along n, for 128 FMAs (rank4t).
// Bounds on lavapipe: those 12 vec4 loads per step, each a loop over the SIMD lanes.
//
// Otherwise (staged tiles): one workgroup per (window chunk, group, 32-row tile, 32-column
// tile) (ssd_tile.wgsl: 8 × 8 invocations, 4 × 4 outputs each), linear workgroup index over a
// 2-D grid; tiles wholly above the diagonal or past the chunk's length return at once. N is
// walked in steps of BK: C rows and B rows staged in workgroup memory, then BK rank-1 updates.
// Bounds on a GPU: G·Q²·N/2 FMAs per chunk against 2·Q·G·N reads: compute (a matmul of inner
// size N), each staged element reused 32 times.

#include "ssm/ssd_io"
#include "ssm/ssd_tile"

#if VEC4
override WG: u32 = 64u;

@group(0) @binding(2) var<storage, read> bmat: array<vec4<f32>>;    // (T, G, N) view
@group(0) @binding(3) var<storage, read> cmat: array<vec4<f32>>;    // (T, G, N) view
@group(0) @binding(4) var<storage, read_write> cb: array<vec4<f32>>; // (K, G, Q, Q)

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let q = params.q;
    let rb_count = q / 4u;
    let sb_count = q / 8u;
    let e = (wg.x + wg.y * groups.x) * WG + lid;
    if (e >= params.nk * params.groups * rb_count * sb_count) {
        return;
    }
    let sb = e % sb_count;
    let rb = (e / sb_count) % rb_count;
    let g = (e / (sb_count * rb_count)) % params.groups;
    let c = e / (sb_count * rb_count * params.groups);
    let len = chunk_len(c);
    let t = 4u * rb;
    let s = 8u * sb;
    if (s > t + 3u || t >= len || s >= len) {
        return;
    }
    // Rows and columns clamped into the chunk (their products are never read).
    let t0 = chunk_t0(c);
    let last = t0 + len - 1u;
    let ta = t0 + t;
    let tb = min(ta + 1u, last);
    let tc = min(ta + 2u, last);
    let td = min(ta + 3u, last);
    let sa = t0 + s;
    var acc = blk_zero();
    for (var n = 0u; n < params.n; n += 4u) {
        rank4t(&acc,
               cmat[c_index(ta, g, n) / 4u], cmat[c_index(tb, g, n) / 4u],
               cmat[c_index(tc, g, n) / 4u], cmat[c_index(td, g, n) / 4u],
               bmat[b_index(sa, g, n) / 4u], bmat[b_index(min(sa + 1u, last), g, n) / 4u],
               bmat[b_index(min(sa + 2u, last), g, n) / 4u],
               bmat[b_index(min(sa + 3u, last), g, n) / 4u],
               bmat[b_index(min(sa + 4u, last), g, n) / 4u],
               bmat[b_index(min(sa + 5u, last), g, n) / 4u],
               bmat[b_index(min(sa + 6u, last), g, n) / 4u],
               bmat[b_index(min(sa + 7u, last), g, n) / 4u]);
    }
    let base = (c * params.groups + g) * q;
    for (var i = 0u; i < 4u; i++) {
        if (t + i < len) {
            let at = ((base + t + i) * q + s) / 4u;
            cb[at] = blk_row(acc, i, false);
            cb[at + 1u] = blk_row(acc, i, true);
        }
    }
}
#else
@group(0) @binding(2) var<storage, read> bmat: array<f32>;   // (T, G, N) view
@group(0) @binding(3) var<storage, read> cmat: array<f32>;   // (T, G, N) view
@group(0) @binding(4) var<storage, read_write> cb: array<f32>; // (K, G, Q, Q)

var<workgroup> wg_len: u32;

// C and B of chunk-relative token t (clamped into the chunk; the caller masks).
fn c_at(t0: u32, t: u32, len: u32, g: u32, n: u32) -> f32 {
    return cmat[c_index(t0 + min(t, len - 1u), g, n)];
}

fn b_at(t0: u32, t: u32, len: u32, g: u32, n: u32) -> f32 {
    return bmat[b_index(t0 + min(t, len - 1u), g, n)];
}

@compute @workgroup_size(8, 8)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_id) li: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let q = params.q;
    let qt = (q + TILE - 1u) / TILE;
    let w = wg.x + wg.y * groups.x;
    if (w >= params.nk * params.groups * qt * qt) {
        return;
    }
    let ts = w % qt;
    let tt = (w / qt) % qt;
    let g = (w / (qt * qt)) % params.groups;
    let c = w / (qt * qt * params.groups);
    if (ts > tt) {
        return;
    }
    if (lid == 0u) {
        wg_len = chunk_len(c);
    }
    let len = workgroupUniformLoad(&wg_len);
    if (tt * TILE >= len) {
        return;
    }
    let t0 = chunk_t0(c);
    let nn = params.n;
    var acc = Acc(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var n0 = 0u; n0 < nn; n0 += BK) {
        for (var i = lid; i < 8u * BK; i += 64u) {
            let k = i / 8u;
            let rb = i % 8u;
            let n = n0 + k;
            let nc = min(n, nn - 1u);
            let t = tt * TILE + 4u * rb;
            let s = ts * TILE + 4u * rb;
            let cv = vec4<f32>(c_at(t0, t, len, g, nc), c_at(t0, t + 1u, len, g, nc),
                               c_at(t0, t + 2u, len, g, nc), c_at(t0, t + 3u, len, g, nc));
            let bv = vec4<f32>(b_at(t0, s, len, g, nc), b_at(t0, s + 1u, len, g, nc),
                               b_at(t0, s + 2u, len, g, nc), b_at(t0, s + 3u, len, g, nc));
            put_a4(k, rb, select(vec4<f32>(0.0), cv, below4(t, len) & vec4<bool>(n < nn)));
            put_b4(k, rb, select(vec4<f32>(0.0), bv, below4(s, len) & vec4<bool>(n < nn)));
        }
        workgroupBarrier();
        tile_fma(li.y, li.x, &acc);
        workgroupBarrier();
    }
    let base = (c * params.groups + g) * q;
    for (var i = 0u; i < 4u; i++) {
        let row = acc_row(acc, i);
        let t = tt * TILE + 4u * li.y + i;
        for (var j = 0u; j < 4u; j++) {
            let s = ts * TILE + 4u * li.x + j;
            if (t < len && s < len) {
                cb[(base + t) * q + s] = row[j];
            }
        }
    }
}
#endif
