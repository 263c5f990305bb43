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
// workgroup loads a tile of TK cache rows (TK * W floats, 9 KiB at W = 576) into workgroup memory
// once and uses it for all G rows (heads x query tokens). Per tile, three phases:
//   1. scores: the G * TK dot products of length W are split over WG / (G * TK) invocations each
//      (`parts`), q read from global memory (L1-resident, tiny), keys from the tile; partial sums
//      go to workgroup memory;
//   2. softmax: invocation lid < G owns row lid's running max m and sum l (f32): it sums the
//      partials, masks keys past the row's causal limit, rescales (alpha = exp(m_old - m_new)) and
//      writes p and alpha to workgroup memory;
//   3. PV: invocation lid owns output columns lid + k * WG (k < CPI) of all G rows (G * CPI <= 32
//      accumulators in registers): acc = acc * alpha + sum_t p_t * c_t[col], c from the tile.
// Split-KV: split s covers keys [s * split_len, (s + 1) * split_len) (the last split runs to the
// end); with n_split = 1 the kernel writes o_lat = acc / l directly, otherwise it writes the
// unnormalised acc and (m, l) to scratch and absorbed_attention_combine.wgsl merges them.
// Workgroup memory: TILE_MAX + WG + 64 + 3 * 32 + 4 floats = 10.6 KiB; 256 invocations.

override WG: u32 = 256u;  // invocations; must be 256 (G * TK * parts = WG)
override G: u32 = 16u;    // rows (heads x query tokens) per workgroup, power of two, <= 32
override TK: u32 = 4u;    // keys per tile, power of two, G * TK <= 64, TK * W <= TILE_MAX
override CPI: u32 = 2u;   // output columns per invocation = ceil(d_c / WG), G * CPI <= 32

const TILE_MAX: u32 = 2304u;
const ACC_MAX: u32 = 32u;
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

var<workgroup> tile: array<f32, TILE_MAX>;
var<workgroup> partial: array<f32, 256>;
var<workgroup> probs: array<f32, 64>;
var<workgroup> alpha_s: array<f32, 32>;
var<workgroup> m_s: array<f32, 32>;
var<workgroup> l_s: array<f32, 32>;
var<workgroup> key_ok: array<u32, 4>;
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

    // Score role: score index within the tile and which part of the W-long dot product.
    let ns = G * TK;
    let nparts = WG / ns;
    let sidx = lid % ns;
    let part = lid / ns;
    let sr = sidx / TK;
    let st = sidx % TK;
    let plen = (w + nparts - 1u) / nparts;
    let d_lo = min(part * plen, w);
    let d_hi = min(d_lo + plen, w);
    let srow = row0 + sr;
    let qrow = min(b * rows + srow, params.bt * rows - 1u);

    // Softmax role (lid < G): running max and sum of row row0 + lid.
    var m = NEG_BIG;
    var l = 0.0;
    let my_row = row0 + lid;
    var my_lim = 0u;
    if (lid < G && my_row < rows) {
        my_lim = row_limit(my_row, seq_len, cap);
    }

    var acc: array<f32, ACC_MAX>;
    for (var a = 0u; a < G * CPI; a++) {
        acc[a] = 0.0;
    }

    for (var j0 = k0; j0 < k1; j0 += TK) {
        workgroupBarrier();
        // 1a. Load TK cache rows (zeros for keys outside [j0, k1) or with a bad block id).
        if (lid < TK) {
            let j = j0 + lid;
            var ok = 0u;
            if (j < k1) {
                let blk = block_table[b * params.max_blocks + j / bs];
                ok = select(0u, 1u, blk < params.num_blocks);
            }
            key_ok[lid] = ok;
        }
        for (var e = lid; e < TK * w; e += WG) {
            let t = e / w;
            let d = e - t * w;
            let j = j0 + t;
            var v = 0.0;
            if (j < k1) {
                let blk = block_table[b * params.max_blocks + j / bs];
                if (blk < params.num_blocks) {
                    v = cache[(blk * bs + j % bs) * w + d];
                }
            }
            tile[e] = v;
        }
        workgroupBarrier();
        // 1b. Partial dot products.
        var dot = 0.0;
        if (srow < rows) {
            let tb = st * w;
            let dc_hi = min(d_hi, params.d_c);
            for (var d = d_lo; d < dc_hi; d++) {
                dot = fma(q_lat[qrow * params.d_c + d], tile[tb + d], dot);
            }
            for (var d = max(d_lo, params.d_c); d < d_hi; d++) {
                dot = fma(q_rope[qrow * params.d_r + d - params.d_c], tile[tb + d], dot);
            }
        }
        partial[lid] = dot;
        workgroupBarrier();
        // 2. Online softmax per row.
        if (lid < G) {
            var sc: array<f32, 4>;
            var tmax = NEG_BIG;
            for (var t = 0u; t < TK; t++) {
                var sum = 0.0;
                for (var p = 0u; p < nparts; p++) {
                    sum += partial[p * ns + lid * TK + t];
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
        // 3. acc = acc * alpha + P V for the columns this invocation owns.
        for (var k = 0u; k < CPI; k++) {
            let c = lid + k * WG;
            if (c < params.d_c) {
                for (var rr = 0u; rr < G; rr++) {
                    var v = acc[rr * CPI + k] * alpha_s[rr];
                    for (var t = 0u; t < TK; t++) {
                        v = fma(probs[rr * TK + t], tile[t * w + c], v);
                    }
                    acc[rr * CPI + k] = v;
                }
            }
        }
    }

    // Publish each row's (m, l) and write out.
    if (lid < G) {
        m_s[lid] = m;
        l_s[lid] = l;
    }
    workgroupBarrier();
    let part_base = (s * params.bt + b) * rows;
    if (params.n_split > 1u && lid < G && my_row < rows) {
        let ml = params.n_split * params.bt * rows * params.d_c + 2u * (part_base + my_row);
        scratch[ml] = m;
        scratch[ml + 1u] = l;
    }
    for (var rr = 0u; rr < G; rr++) {
        let r = row0 + rr;
        if (r < rows) {
            let lr = l_s[rr];
            let inv = select(0.0, 1.0 / lr, lr > 0.0);
            for (var k = 0u; k < CPI; k++) {
                let c = lid + k * WG;
                if (c < params.d_c) {
                    if (params.n_split == 1u) {
                        o_lat[(b * rows + r) * params.d_c + c] = acc[rr * CPI + k] * inv;
                    } else {
                        scratch[(part_base + r) * params.d_c + c] = acc[rr * CPI + k];
                    }
                }
            }
        }
    }
}
