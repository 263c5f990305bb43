// ssd_chunk_state, stage 3 of the SSD scan: per (chunk, head) the chunk's own final state,
// as if it had started from zero:
//   S[p, n] = Σ_{s < len} exp(cum_last − cum_s)·dt_s·x[t0 + s, h, p]·B[t0 + s, g, n],
// a (P × len)·(len × N) matmul whose left side is x scaled by the decay to the chunk's end
// (≤ dt_s, so nothing overflows).
//
// Bindings (ssd_io.wgsl has params, table and the scratch layout): x (T, H, P) and B (T, G, N)
// f32 views; dtcum (K, H, 2, Q); states (K, H, P, N) f32, written.
//
// Work split: one workgroup per (window chunk, head, 32-row tile of P, 32-column tile of N)
// (ssd_tile.wgsl), linear workgroup index over a 2-D grid; the chunk's steps walked in steps of
// BK with the scaled x and B staged in workgroup memory.
// Bounds: H·P·N·Q FMAs per chunk against (H·P + G·N)·Q reads: compute on a GPU; on lavapipe,
// the barriers (two per BK steps) and the staging loads (each element reused 32 times).

#include "ssm/ssd_io"
#include "ssm/ssd_tile"

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
