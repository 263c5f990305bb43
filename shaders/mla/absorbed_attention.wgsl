// absorbed_attention: MLA attention on the paged latent cache (DeepSeek-V2/V3, absorbed form).
//
// For sequence b, query token i < S_q and head h ("row" r = i * H + h of the sequence):
//   s_j  = scale * (q_lat[b,i,h,:] . c_j + q_rope[b,i,h,:] . k_rope_j)
//   o_lat[b,i,h,:] = sum_j softmax_j(s) * c_j       over keys j < lim(i) = seq_len - S_q + i + 1
// (bottom-right causal; lim is clamped to [0, max_blocks * block_size]; a row with no key gets 0).
// Cache row j of sequence b lives at slot block_table[b, j / bs] * bs + j % bs, W = d_c + d_R
// floats [c | k_rope]. Only keys j < lim of slots the block table names are ever loaded: the rest
// of the cache (other sequences' pages, unused slots) is never read, so NaN there is harmless.
// A block id >= num_blocks is treated as a masked key (never read).
//
// Layouts (f32 unless noted, row-major): q_lat (Bt, S_q, H, d_c); q_rope (Bt, S_q, H, d_R);
// cache (num_blocks, bs, W); block_table (Bt, MB) u32; seq_lens (Bt) u32; o_lat like q_lat;
// scratch: partial accumulators (n_split, Bt, R, d_c) then (m, l) pairs (n_split, Bt, R, 2).
//
// Work split: workgroup = (sequence b, group of G consecutive rows, KV split s), linear index
// ((b * groups + g) * n_split + s). The cache is one "KV head" shared by every row, so a
// workgroup loads a tile of TK cache rows into workgroup memory once and uses it for all G rows
// (heads x query tokens). In the tile a row is padded to RSV = NCH * (WG / G) vec4 slots:
// [c padded to a multiple of 4 | k_rope padded | zeros]. Invocation lid serves row rr = lid / IPR
// (IPR = WG / G invocations per row) and vec4 slots j, j + IPR, ... (j = lid % IPR) of the padded
// row: it keeps those NCH slots of its query [q_lat | q_rope] in registers and NPV vec4
// accumulators for the output columns of the same slots in the c part. Adjacent invocations
// touch adjacent slots, so every tile read is contiguous. At DeepSeek sizes (G = 16, IPR = 16,
// W = 576 = 144 vec4): NCH = 9, NPV = 8, TK = 4, tile 9 KiB. Per tile:
//   1. load the TK rows (zeros for keys outside [j0, k1) of this split, for a block id
//      >= num_blocks, and for padding);
//   2. partial scores: each invocation dots its q slots with each key's slots; the IPR partials
//      of a (row, key) go to workgroup memory (WG * TK floats);
//   3. softmax: invocation lid < G owns row lid's running max m and sum l (f32): it sums the
//      partials, masks keys past the row's causal limit, rescales (alpha = exp(m_old - m_new)) and
//      writes p and alpha to workgroup memory;
//   4. PV: acc = acc * alpha + sum_t p_t * c_t[slots], c from the tile.
// Split-KV: split s covers keys [s * split_len, (s + 1) * split_len) (the last split runs to the
// end); with n_split = 1 the kernel writes o_lat = acc / l directly, otherwise it writes the
// unnormalised acc and (m, l) to scratch and absorbed_attention_combine.wgsl merges them.
// Workgroup memory: TILE_V vec4 (10 KiB) + PART_MAX + 64 + 2 * 16 + 4 floats + 8 bytes
// = 14.4 KiB < 16 KiB; 256 invocations; 7 storage buffers.

override WG: u32 = 256u;  // invocations; the host always uses 256
override G: u32 = 16u;    // rows (heads x query tokens) per workgroup, power of two, <= 16
override TK: u32 = 4u;    // keys per tile, power of two <= 4, TK * RSV <= TILE_V
override NCH: u32 = 9u;   // vec4 chunks of a padded latent row per invocation (<= QMAX)
override NPV: u32 = 8u;   // of which cover the c part (output columns) (<= AMAX)
override ALIGNED: bool = true;  // d_c and d_R are multiples of 4: the padded row is the row

const TILE_V: u32 = 640u;   // vec4s of workgroup memory for the key tile (10 KiB)
const PART_MAX: u32 = 1024u;
const QMAX: u32 = 16u;
const AMAX: u32 = 8u;
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
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q_lat: array<f32>;
@group(0) @binding(2) var<storage, read> q_rope: array<f32>;
@group(0) @binding(3) var<storage, read> cache: array<f32>;
@group(0) @binding(4) var<storage, read> block_table: array<u32>;
@group(0) @binding(5) var<storage, read> seq_lens: array<u32>;
@group(0) @binding(6) var<storage, read_write> o_lat: array<f32>;
@group(0) @binding(7) var<storage, read_write> scratch: array<f32>;

var<workgroup> tile: array<vec4<f32>, TILE_V>;
var<workgroup> partial: array<f32, PART_MAX>;
var<workgroup> probs: array<f32, 64>;
var<workgroup> alpha_s: array<f32, 16>;
var<workgroup> l_s: array<f32, 16>;
var<workgroup> key_ok: array<u32, 4>;
var<workgroup> range_s: vec2<u32>;

// Element e (< 4 * RSV) of the padded latent row [c padded to dc4 | k_rope padded to dr4 | 0..]
// of a q or cache row: (source index within the row's c or rope part, which part, valid).
// Returns the flat index into the W-wide row, or 0xFFFFFFFF where the element is padding.
fn padded_to_flat(e: u32, dc4: u32) -> u32 {
    if (e < dc4) {
        return select(0xFFFFFFFFu, e, e < params.d_c);
    }
    let r = e - dc4;
    return select(0xFFFFFFFFu, params.d_c + r, r < params.d_r);
}

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
    let ipr = WG / G;             // invocations per row
    let rsv = NCH * ipr;          // vec4s per padded row in the tile
    let dc4 = (params.d_c + 3u) / 4u * 4u;

    // The key range of this workgroup, computed by one invocation and made uniform.
    if (lid == 0u) {
        let seq_len = seq_lens[b];
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
    let seq_len = seq_lens[b];

    // This invocation: row rr of the group, vec4 slots j, j + ipr, ... of the padded row.
    let rr = lid / ipr;
    let j = lid % ipr;
    let my_q = row0 + rr;
    let qrow = b * rows + my_q;
    var q: array<vec4<f32>, QMAX>;
    var acc: array<vec4<f32>, AMAX>;
    for (var k = 0u; k < NCH; k++) {
        var v = vec4<f32>(0.0);
        if (my_q < rows) {
            for (var c = 0u; c < 4u; c++) {
                let f = padded_to_flat((j + k * ipr) * 4u + c, dc4);
                if (f < params.d_c) {
                    v[c] = q_lat[qrow * params.d_c + f];
                } else if (f < w) {
                    v[c] = q_rope[qrow * params.d_r + f - params.d_c];
                }
            }
        }
        q[k] = v;
    }
    for (var k = 0u; k < NPV; k++) {
        acc[k] = vec4<f32>(0.0);
    }

    // Softmax role (lid < G): running max and sum of row row0 + lid.
    var m = NEG_BIG;
    var l = 0.0;
    let my_row = row0 + lid;
    var my_lim = 0u;
    if (lid < G && my_row < rows) {
        my_lim = row_limit(my_row, seq_len, cap);
    }

    for (var j0 = k0; j0 < k1; j0 += TK) {
        workgroupBarrier();
        // 1a. Load TK cache rows into the padded tile (zeros for keys outside [j0, k1), for
        // keys with a bad block id, and for padding).
        if (lid < TK) {
            let jj = j0 + lid;
            var ok = 0u;
            if (jj < k1) {
                let blk = block_table[b * params.max_blocks + jj / bs];
                ok = select(0u, 1u, blk < params.num_blocks);
            }
            key_ok[lid] = ok;
        }
        for (var e = lid; e < TK * rsv; e += WG) {
            let t = e / rsv;
            let vslot = e - t * rsv;
            let jj = j0 + t;
            var v = vec4<f32>(0.0);
            if (jj < k1) {
                let blk = block_table[b * params.max_blocks + jj / bs];
                if (blk < params.num_blocks) {
                    let base = (blk * bs + jj % bs) * w;
                    let f0 = vslot * 4u;
                    if (ALIGNED) {
                        if (f0 < w) {
                            let x = base + f0;
                            v = vec4<f32>(cache[x], cache[x + 1u], cache[x + 2u], cache[x + 3u]);
                        }
                    } else {
                        for (var c = 0u; c < 4u; c++) {
                            let f = padded_to_flat(f0 + c, dc4);
                            if (f < w) {
                                v[c] = cache[base + f];
                            }
                        }
                    }
                }
            }
            tile[e] = v;
        }
        workgroupBarrier();
        // 1b. Partial scores of row rr over this invocation's slots, for each key of the tile.
        for (var t = 0u; t < TK; t++) {
            var d4 = vec4<f32>(0.0);
            for (var k = 0u; k < NCH; k++) {
                d4 = fma(q[k], tile[t * rsv + j + k * ipr], d4);
            }
            partial[(rr * TK + t) * ipr + j] = d4.x + d4.y + d4.z + d4.w;
        }
        workgroupBarrier();
        // 2. Online softmax per row.
        if (lid < G) {
            var sc: array<f32, 4>;
            var tmax = NEG_BIG;
            for (var t = 0u; t < TK; t++) {
                var sum = 0.0;
                let pb = (lid * TK + t) * ipr;
                for (var p = 0u; p < ipr; p++) {
                    sum += partial[pb + p];
                }
                let valid = key_ok[t] == 1u && j0 + t < my_lim;
                sc[t] = select(NEG_BIG, sum * params.scale, valid);
                tmax = max(tmax, sc[t]);
            }
            let m_new = max(m, tmax);
            let alpha = exp(m - m_new);
            var psum = 0.0;
            for (var t = 0u; t < TK; t++) {
                let p = select(0.0, exp(sc[t] - m_new), sc[t] > NEG_BIG);
                probs[lid * TK + t] = p;
                psum += p;
            }
            l = l * alpha + psum;
            m = m_new;
            alpha_s[lid] = alpha;
        }
        workgroupBarrier();
        // 3. acc = acc * alpha + P V over this invocation's output slots (c part of the row).
        let a = alpha_s[rr];
        for (var k = 0u; k < NPV; k++) {
            acc[k] = acc[k] * a;
        }
        for (var t = 0u; t < TK; t++) {
            let p = probs[rr * TK + t];
            for (var k = 0u; k < NPV; k++) {
                acc[k] = fma(vec4<f32>(p), tile[t * rsv + j + k * ipr], acc[k]);
            }
        }
    }

    // Publish each row's sum and write out.
    if (lid < G) {
        l_s[lid] = l;
    }
    workgroupBarrier();
    let part_base = (s * params.bt + b) * rows;
    if (params.n_split > 1u && lid < G && my_row < rows) {
        let ml = params.n_split * params.bt * rows * params.d_c + 2u * (part_base + my_row);
        scratch[ml] = m;
        scratch[ml + 1u] = l;
    }
    if (my_q < rows) {
        let lr = l_s[rr];
        let inv = select(0.0, 1.0 / lr, lr > 0.0);
        for (var k = 0u; k < NPV; k++) {
            for (var c = 0u; c < 4u; c++) {
                let col = (j + k * ipr) * 4u + c;
                if (col < params.d_c) {
                    if (params.n_split == 1u) {
                        o_lat[qrow * params.d_c + col] = acc[k][c] * inv;
                    } else {
                        scratch[(part_base + my_q) * params.d_c + col] = acc[k][c];
                    }
                }
            }
        }
    }
}
