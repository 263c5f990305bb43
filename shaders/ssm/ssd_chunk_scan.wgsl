// ssd_chunk_scan, stage 5 of the SSD scan: the outputs of one chunk from the state entering it
// and the chunk's own inputs:
//   y[t, p] = exp(cum_t)·Σ_n C_t[n]·S_in[p, n]                               (Y_off)
//           + Σ_{s ≤ t} CB[t, s]·exp(cum_t − cum_s)·dt_s·x[t0 + s, h, p]      (Y_diag)
//           + D·x[t0 + t, h, p];   if z: y ← y·silu(z)
// The decay exp(cum_t − cum_s) is formed per (t, s) pair (never as exp(cum_t)·exp(−cum_s),
// which overflows for long chunks), and only where s ≤ t: `select` masks the rest, since CB
// above the diagonal and past the chunk's length was never written.
//
// Bindings (ssd_io.wgsl has params, table and the scratch layout): x, z, out (T, H, P) f32
// views; C (T, G, N) f32 view; dtcum (K, H, 2, Q); cb (K, G, Q, Q); states (K, H, P, N)
// holding the entering states; out written for the chunk's tokens.
//
// Work split: one workgroup per (window chunk, head, 32-row tile of the chunk, 32-column tile
// of P) (ssd_tile.wgsl: 8 × 8 invocations, 4 × 4 outputs each), linear workgroup index over a
// 2-D grid; row tiles past the chunk's
// length return at once. Two reductions through the same staged tiles: over N (C rows, S_in
// columns), then over s up to the tile's last row (decayed CB, x rows), in steps of BK.
// Bounds: H·Q·P·(N + Q/2) FMAs per chunk against (2·H·P + G·N)·Q reads: compute on a GPU;
// on lavapipe, the barriers (two per BK steps) and the exp per staged CB element.

#include "ssm/ssd_io"
#include "ssm/ssd_tile"

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
