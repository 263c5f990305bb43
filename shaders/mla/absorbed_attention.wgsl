// absorbed_attention: MLA attention on the paged latent cache (DeepSeek-V2/V3, absorbed form).
//
// For sequence b, query token i < S_q and head h ("row" r = i * H + h of the sequence):
//   s_j  = scale * (q_lat[b,i,h,:] . c_j + q_rope[b,i,h,:] . k_rope_j)
//   o_lat[b,i,h,:] = sum_j softmax_j(s) * c_j       over keys j < lim(i) = seq_len - S_q + i + 1
// (bottom-right causal; lim is clamped to [0, max_blocks * block_size]; a row with no key gets 0).
// Cache row j of sequence b lives at slot block_table[b, j / bs] * bs + j % bs, W = d_c + d_R
// floats [c | k_rope]. Only keys j < k1 (the group's last causal limit) of slots the block table
// names are read; a key row is used only where its block id is < num_blocks (else it is a masked
// key and never read), so NaN in other pages or slots cannot reach the result.
//
// Layouts (f32 unless noted, row-major): q_lat (Bt, S_q, H, d_c); q_rope (Bt, S_q, H, d_R);
// cache (num_blocks, bs, W); block_table (Bt, MB) u32; seq_lens (Bt) u32; o_lat like q_lat;
// scratch: partial accumulators (n_split, Bt, R, d_c), (m, l) pairs (n_split, Bt, R, 2) (only
// with n_split > 1), then from params.work_base a work area of WORK floats per workgroup:
// scores / probabilities [G][TK], alpha [16], l [16].
//
// Work split: workgroup = (sequence b, group of G consecutive rows, KV split s), linear index
// ((b * groups + g) * n_split + s). The cache is one "KV head" shared by every row, so each key
// row a workgroup loads is used for all G rows (heads x query tokens). Per tile of TK = 256 keys
// the workgroup runs three phases, each with the mapping that keeps its inner loop in registers:
//   S. scores, invocation = key: lane t walks its key row c_t once and accumulates the G dot
//      products q_r . c_t in G registers (q_r[d] has the same address in every lane: a uniform
//      load); writes scale * s (or -3e38 where masked) to the work area;
//   M. online softmax, invocation = row (lid < G): running max m and sum l in f32, rescale
//      alpha = exp(m_old - m_new), p = exp(s - m_new) written over the scores;
//   P. PV, invocation = output columns lid + k * 256 (k < NPC) for all G rows: acc = acc * alpha +
//      sum_t p[r][t] * c_t[col] (p uniform across lanes, c_t[col] consecutive across lanes).
//
// What bounds it and why: see absorbed_attention_vec4.wgsl (the variant used for aligned widths,
// including DeepSeek's). This scalar variant serves d_c or d_R not multiples of 4; on lavapipe
// every load is a per-lane loop, and here each inner step does 1 cache load + G query loads for
// G FMAs, so it is ~2x slower than the old vec4-tile design at DeepSeek sizes and ~7x slower than
// the vec4 variant. It could be register blocked the same way (several keys per invocation).
// Cache reads: twice per row group (phase S and phase P), as in the vec4 variant.
// Workgroup memory: 8 bytes; 256 invocations; 7 storage buffers.

override G: u32 = 16u;    // rows (heads x query tokens) per workgroup, power of two, <= 16
override NPC: u32 = 2u;   // output columns per invocation (lid + k * WG), G * NPC <= 32

const WG: u32 = 256u;
const TK: u32 = 256u;     // keys per tile (one per invocation in phase S)
const WORK: u32 = 4128u;  // 16 * TK + 32 floats of scratch per workgroup
const NEG_BIG: f32 = -3.0e38;

struct Params {
    bt: u32,
    s_q: u32,
    h: u32,
    d_c: u32,
    d_r: u32,
    block_size: u32,
    max_blocks: u32,
    num_blocks: u32,
    n_split: u32,
    split_len: u32,
    groups: u32,
    scale: f32,
    work_base: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q_lat: array<f32>;
@group(0) @binding(2) var<storage, read> q_rope: array<f32>;
@group(0) @binding(3) var<storage, read> cache: array<f32>;
@group(0) @binding(4) var<storage, read> block_table: array<u32>;
@group(0) @binding(5) var<storage, read> seq_lens: array<u32>;
@group(0) @binding(6) var<storage, read_write> o_lat: array<f32>;
@group(0) @binding(7) var<storage, read_write> scratch: array<f32>;

var<workgroup> range_s: vec2<u32>;

// Number of keys row r (of the sequence) may see, clamped to [0, cap].
fn row_limit(r: u32, seq_len: u32, cap: u32) -> u32 {
    let i = r / params.h;
    let lim = i32(seq_len) - i32(params.s_q) + i32(i) + 1;
    return u32(clamp(lim, 0, i32(cap)));
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let wid = wg.x + wg.y * groups.x;
    if (wid >= params.bt * params.groups * params.n_split) {
        return;
    }
    let s = wid % params.n_split;
    let rest = wid / params.n_split;
    let grp = rest % params.groups;
    let b = rest / params.groups;
    let rows = params.s_q * params.h;
    let row0 = grp * G;
    let w = params.d_c + params.d_r;
    let bs = params.block_size;
    let cap = params.max_blocks * bs;
    let seq_len = seq_lens[b];
    let work = params.work_base + wid * WORK;

    // The key range of this workgroup, computed by one invocation and made uniform.
    if (lid == 0u) {
        let last_row = min(row0 + G, rows) - 1u;
        let kend = row_limit(last_row, seq_len, cap);
        let k0 = s * params.split_len;
        var k1 = min(k0 + params.split_len, kend);
        if (s == params.n_split - 1u) {
            k1 = kend;
        }
        range_s = vec2<u32>(k0, max(k0, k1));
    }
    let range = workgroupUniformLoad(&range_s);
    let k0 = range.x;
    let k1 = range.y;

    // Softmax role (lid < G): running max and sum of row row0 + lid.
    var m = NEG_BIG;
    var l = 0.0;

    var acc: array<f32, 32>;
    for (var a = 0u; a < 32u; a++) {
        acc[a] = 0.0;
    }

    for (var j0 = k0; j0 < k1; j0 += TK) {
        let nt = min(TK, k1 - j0);
        // S. Scores: this invocation's key against all G rows.
        let jj = j0 + lid;
        var sc: array<f32, 16>;
        for (var hh = 0u; hh < 16u; hh++) {
            sc[hh] = 0.0;
        }
        var key_ok = false;
        if (jj < k1) {
            let blk = block_table[b * params.max_blocks + jj / bs];
            if (blk < params.num_blocks) {
                key_ok = true;
                let base = (blk * bs + jj % bs) * w;
                for (var d = 0u; d < params.d_c; d++) {
                    let c = cache[base + d];
                    for (var hh = 0u; hh < G; hh++) {
                        let qr = b * rows + min(row0 + hh, rows - 1u);
                        sc[hh] = fma(q_lat[qr * params.d_c + d], c, sc[hh]);
                    }
                }
                for (var d = 0u; d < params.d_r; d++) {
                    let c = cache[base + params.d_c + d];
                    for (var hh = 0u; hh < G; hh++) {
                        let qr = b * rows + min(row0 + hh, rows - 1u);
                        sc[hh] = fma(q_rope[qr * params.d_r + d], c, sc[hh]);
                    }
                }
            }
        }
        for (var hh = 0u; hh < G; hh++) {
            let lim = row_limit(min(row0 + hh, rows - 1u), seq_len, cap);
            let ok = key_ok && jj < lim;
            scratch[work + hh * TK + lid] = select(NEG_BIG, sc[hh] * params.scale, ok);
        }
        storageBarrier();
        // M. Online softmax, one invocation per row.
        if (lid < G) {
            let pb = work + lid * TK;
            var tmax = NEG_BIG;
            for (var t = 0u; t < nt; t++) {
                tmax = max(tmax, scratch[pb + t]);
            }
            let m_new = max(m, tmax);
            let alpha = exp(m - m_new);
            var psum = 0.0;
            for (var t = 0u; t < nt; t++) {
                let sv = scratch[pb + t];
                let p = select(0.0, exp(sv - m_new), sv > NEG_BIG);
                scratch[pb + t] = p;
                psum += p;
            }
            l = l * alpha + psum;
            m = m_new;
            scratch[work + 16u * TK + lid] = alpha;
        }
        storageBarrier();
        // P. acc = acc * alpha + sum_t p_t c_t over this invocation's columns, all G rows.
        for (var hh = 0u; hh < G; hh++) {
            let a = scratch[work + 16u * TK + hh];
            for (var k = 0u; k < NPC; k++) {
                acc[k * G + hh] *= a;
            }
        }
        for (var t = 0u; t < nt; t++) {
            let kj = j0 + t;
            let blk = block_table[b * params.max_blocks + kj / bs];
            if (blk < params.num_blocks) {
                let base = (blk * bs + kj % bs) * w;
                var cv: array<f32, 8>;
                for (var k = 0u; k < NPC; k++) {
                    cv[k] = cache[base + min(lid + k * WG, params.d_c - 1u)];
                }
                for (var hh = 0u; hh < G; hh++) {
                    let p = scratch[work + hh * TK + t];
                    for (var k = 0u; k < NPC; k++) {
                        acc[k * G + hh] = fma(p, cv[k], acc[k * G + hh]);
                    }
                }
            }
        }
        storageBarrier();
    }

    // Publish each row's sum and write out.
    if (lid < G) {
        scratch[work + 16u * TK + 16u + lid] = l;
        let my_row = row0 + lid;
        if (params.n_split > 1u && my_row < rows) {
            let part_base = (s * params.bt + b) * rows;
            let ml = params.n_split * params.bt * rows * params.d_c + 2u * (part_base + my_row);
            scratch[ml] = m;
            scratch[ml + 1u] = l;
        }
    }
    storageBarrier();
    let part_base = (s * params.bt + b) * rows;
    for (var hh = 0u; hh < G; hh++) {
        let r = row0 + hh;
        if (r < rows) {
            let lr = scratch[work + 16u * TK + 16u + hh];
            let inv = select(0.0, 1.0 / lr, lr > 0.0);
            for (var k = 0u; k < NPC; k++) {
                let col = lid + k * WG;
                if (col < params.d_c) {
                    if (params.n_split == 1u) {
                        o_lat[(b * rows + r) * params.d_c + col] = acc[k * G + hh] * inv;
                    } else {
                        scratch[(part_base + r) * params.d_c + col] = acc[k * G + hh];
                    }
                }
            }
        }
    }
}
