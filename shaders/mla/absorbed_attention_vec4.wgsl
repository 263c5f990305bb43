// absorbed_attention_vec4: the register-blocked variant of absorbed_attention.wgsl for aligned
// widths (d_c and d_R multiples of 4), used whenever they are. Same math, inputs, outputs and
// scratch layout (scratch viewed as vec4s); see absorbed_attention.wgsl for the math.
//
// Work split: workgroup = (sequence b, group of G rows, KV split s) as in the scalar kernel, 64
// invocations, tiles of TK = 64 * JB keys, three phases per tile:
//   S. scores, invocation = JB consecutive keys x all G rows: for each vec4 d4 of the row it loads
//      JB cache vec4s and G query vec4s and does G * JB vec4 dots (register accumulators);
//      writes scale * s (or -3e38 where masked) to the work area, [row][key];
//   M. online softmax, invocation = row (lid < G): running max m and sum l in f32,
//      alpha = exp(m_old - m_new), p = exp(s - m_new) written transposed, [key][16 rows];
//   P. PV, invocation cb < npl = ceil(d_c / 4 / DB) owns vec4 columns cb + k * npl (k < DB) for
//      all G rows: per key it loads DB cache vec4s and the 4 vec4s of p for the key, and does
//      G * DB vec4 FMAs.
// Work area per workgroup (vec4s, from params.work_base / 4): scores [16][TK] floats, p [TK][16]
// floats, alpha [16], l [16].
//
// What bounds it and why. Decode at H = 16 has ~15 FLOP/byte (2 * 576 + 2 * 512 FLOPs per row and
// key against a 2304-byte key row), compute-bound on lavapipe and memory-bound on big GPUs. On
// lavapipe (Mesa 22.3) every storage or workgroup-memory load, uniform address or not, is a loop
// over the 8 SIMD lanes with a bounds check per component, ~200 instructions per vec4, while a
// register FMA is one vector instruction, and a private array indexed in a loop that is not
// unrolled becomes gathers: the kernel is bound by loads, so it is register blocked like a CPU
// GEMM micro-kernel with only small constant-bound loops over the register arrays. Phase S does
// G * JB * 4 FMAs per G + JB vec4 loads (512 / 24 at G = 16, JB = 8), phase P G * DB * 4 per
// DB + 4 + 1 loads (256 / 9 at DB = 4). Measured at H = 16, 1K context: ~40-50 ms (8-9% of
// roofline; was ~150 ms, 3%, with one workgroup-memory vec4 load per 4 FMAs); phase S alone
// ~13 ms, so phase P costs ~2x what its load count predicts, most likely because its 64-vec4
// accumulator array spills or is not fully promoted to registers (next thing to try: split P
// into passes over halves of the columns, or fewer rows per invocation).
// Cache reads: each key row of a split is read twice per workgroup (S: all of it; P: the c part).
// For H = 16 one workgroup serves all heads (2 passes over the cache per step); for H = 128, 8
// workgroups (G = 16) read it, 16 passes in all, mostly cache hits when they run together.

override G: u32 = 16u;   // rows per workgroup, power of two <= 16, G * JB <= 128, G * DB <= 64
override JB: u32 = 4u;   // keys per invocation in phase S (TK = 64 * JB <= 512)
override DB: u32 = 2u;   // vec4 output column blocks per invocation in phase P

const WG: u32 = 64u;
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
@group(0) @binding(1) var<storage, read> q_lat: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> q_rope: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> cache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> block_table: array<u32>;
@group(0) @binding(5) var<storage, read> seq_lens: array<u32>;
@group(0) @binding(6) var<storage, read_write> o_lat: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> scratch: array<vec4<f32>>;

var<workgroup> range_s: vec2<u32>;

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
    let tk = WG * JB;
    let s = wid % params.n_split;
    let rest = wid / params.n_split;
    let grp = rest % params.groups;
    let b = rest / params.groups;
    let rows = params.s_q * params.h;
    let row0 = grp * G;
    let dc4 = params.d_c / 4u;
    let dr4 = params.d_r / 4u;
    let w4 = dc4 + dr4;
    let bs = params.block_size;
    let cap = params.max_blocks * bs;
    let seq_len = seq_lens[b];
    // Work area (vec4 indices): scores [16][tk], p [tk][16], alpha [16], l [16] (floats).
    let work = params.work_base / 4u + wid * (8u * tk + 8u);
    let p_at = work + 4u * tk;
    let alpha_at = work + 8u * tk;
    let l_at = alpha_at + 4u;
    // Phase P lanes: lane cb < npl owns vec4 columns cb + k * npl (k < DB); other lanes idle.
    let npl = (dc4 + DB - 1u) / DB;

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

    var m = NEG_BIG;
    var l = 0.0;
    var acc: array<vec4<f32>, 64>;
    // Nested small loops everywhere (not one loop over G * DB): a loop the compiler does not
    // unroll indexes the array dynamically, and then every access to it becomes a gather.
    for (var hh = 0u; hh < G; hh++) {
        for (var k = 0u; k < DB; k++) {
            acc[hh * DB + k] = vec4<f32>(0.0);
        }
    }

    for (var j0 = k0; j0 < k1; j0 += tk) {
        let nt = min(tk, k1 - j0);
        // S. Scores of keys j0 + lid * JB + k (k < JB) against the G rows.
        var sc: array<f32, 128>;
        for (var hh = 0u; hh < G; hh++) {
            for (var k = 0u; k < JB; k++) {
                sc[hh * JB + k] = 0.0;
            }
        }
        var base: array<u32, 8>;
        var ok: array<bool, 8>;
        var any_ok = false;
        for (var k = 0u; k < JB; k++) {
            let jj = j0 + lid * JB + k;
            var blk = params.num_blocks;
            if (jj < k1) {
                blk = block_table[b * params.max_blocks + jj / bs];
            }
            ok[k] = blk < params.num_blocks;
            base[k] = select(0u, (blk * bs + jj % bs) * w4, ok[k]);
            any_ok = any_ok || ok[k];
        }
        if (any_ok) {
            for (var d4 = 0u; d4 < dc4; d4++) {
                var cv: array<vec4<f32>, 8>;
                for (var k = 0u; k < JB; k++) {
                    cv[k] = cache[base[k] + d4];
                }
                for (var hh = 0u; hh < G; hh++) {
                    let q = q_lat[(b * rows + min(row0 + hh, rows - 1u)) * dc4 + d4];
                    for (var k = 0u; k < JB; k++) {
                        sc[hh * JB + k] += dot(q, cv[k]);
                    }
                }
            }
            for (var d4 = 0u; d4 < dr4; d4++) {
                var cv: array<vec4<f32>, 8>;
                for (var k = 0u; k < JB; k++) {
                    cv[k] = cache[base[k] + dc4 + d4];
                }
                for (var hh = 0u; hh < G; hh++) {
                    let q = q_rope[(b * rows + min(row0 + hh, rows - 1u)) * dr4 + d4];
                    for (var k = 0u; k < JB; k++) {
                        sc[hh * JB + k] += dot(q, cv[k]);
                    }
                }
            }
        }
        for (var hh = 0u; hh < G; hh++) {
            let lim = row_limit(min(row0 + hh, rows - 1u), seq_len, cap);
            var v: vec4<f32>;
            for (var k = 0u; k < JB; k++) {
                let jj = j0 + lid * JB + k;
                let valid = ok[k] && jj < lim;
                v[k % 4u] = select(NEG_BIG, sc[hh * JB + k] * params.scale, valid);
                if (k % 4u == 3u || k == JB - 1u) {
                    scratch[work + (hh * tk + lid * JB + k) / 4u] = v;
                }
            }
        }
        storageBarrier();
        // M. Online softmax, one invocation per row; p written as [key][16 rows].
        if (lid < G) {
            let sb = work * 4u + lid * tk;
            var tmax = NEG_BIG;
            for (var t = 0u; t < nt; t++) {
                let i = sb + t;
                tmax = max(tmax, scratch[i / 4u][i % 4u]);
            }
            let m_new = max(m, tmax);
            let alpha = exp(m - m_new);
            var psum = 0.0;
            for (var t = 0u; t < nt; t++) {
                let i = sb + t;
                let sv = scratch[i / 4u][i % 4u];
                let p = select(0.0, exp(sv - m_new), sv > NEG_BIG);
                let o = p_at * 4u + t * 16u + lid;
                scratch[o / 4u][o % 4u] = p;
                psum += p;
            }
            l = l * alpha + psum;
            m = m_new;
            let o = alpha_at * 4u + lid;
            scratch[o / 4u][o % 4u] = alpha;
        }
        storageBarrier();
        // P. acc = acc * alpha + sum_t p_t c_t over DB vec4 columns, all G rows.
        for (var cb = lid; cb < npl; cb += WG) {
        for (var h4 = 0u; h4 < (G + 3u) / 4u; h4++) {
            let a4 = scratch[alpha_at + h4];
            for (var e = 0u; e < 4u; e++) {
                let hh = h4 * 4u + e;
                if (hh < G) {
                    for (var k = 0u; k < DB; k++) {
                        acc[hh * DB + k] *= a4[e];
                    }
                }
            }
        }
        // Branch-free (a branch would turn every accumulator update into a masked select on
        // lavapipe): a key with a bad block id reads slot 0 and zeroes it with a select.
        for (var t = 0u; t < nt; t++) {
            let kj = j0 + t;
            let blk = block_table[b * params.max_blocks + kj / bs];
            let valid = blk < params.num_blocks;
            let kb = select(0u, (blk * bs + kj % bs) * w4, valid);
            var cv: array<vec4<f32>, 16>;
            for (var k = 0u; k < DB; k++) {
                let c = cache[kb + min(cb + k * npl, dc4 - 1u)];
                cv[k] = select(vec4<f32>(0.0), c, valid);
            }
            var pv: array<vec4<f32>, 4>;
            for (var h4 = 0u; h4 < 4u; h4++) {
                pv[h4] = scratch[p_at + t * 4u + h4];
            }
            for (var hh = 0u; hh < G; hh++) {
                let p = vec4<f32>(pv[hh / 4u][hh % 4u]);
                for (var k = 0u; k < DB; k++) {
                    acc[hh * DB + k] = fma(p, cv[k], acc[hh * DB + k]);
                }
            }
        }
        }
        storageBarrier();
    }

    let part_base = (s * params.bt + b) * rows;
    if (lid < G) {
        let o = l_at * 4u + lid;
        scratch[o / 4u][o % 4u] = l;
        let my_row = row0 + lid;
        if (params.n_split > 1u && my_row < rows) {
            let ml = params.n_split * params.bt * rows * params.d_c + 2u * (part_base + my_row);
            scratch[ml / 4u][ml % 4u] = m;
            scratch[ml / 4u][ml % 4u + 1u] = l;
        }
    }
    storageBarrier();
    for (var cb = lid; cb < npl; cb += WG) {
    for (var hh = 0u; hh < G; hh++) {
        let r = row0 + hh;
        if (r < rows) {
            let o = l_at * 4u + hh;
            let lr = scratch[o / 4u][o % 4u];
            let inv = select(0.0, 1.0 / lr, lr > 0.0);
            for (var k = 0u; k < DB; k++) {
                let col = cb + k * npl;
                if (col < dc4) {
                    if (params.n_split == 1u) {
                        o_lat[(b * rows + r) * dc4 + col] = acc[hh * DB + k] * inv;
                    } else {
                        scratch[(part_base + r) * dc4 + col] = acc[hh * DB + k];
                    }
                }
            }
        }
    }
}
}
