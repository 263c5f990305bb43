// selective_scan_chunked (Mamba-1, DESIGN §3.3): the chunked parallel-in-time strategy of the
// selective scan, shared-memory variant (no subgroup operations).
// When it is used: `ScanStrategy::ChunkedParallel` on a device without subgroups (or whose
// subgroup size does not divide WG = 128); `Auto` picks ChunkedParallel when there are too few
// (batch, channel) rows to fill a GPU and the sequence is long (Bt·D·ceil(N/16) < 2048 and
// L > 512): the row-sequential kernel (selective_scan.wgsl) would then leave most of the device
// idle with a latency of L dependent steps, while this one spreads L over a workgroup. The
// subgroup variant (selective_scan_chunked_subgroup.wgsl) differs only in step 2; keep the two
// files in step. Same bindings, uniforms and outputs as selective_scan.wgsl.
//
// Math, per batch b, channel d, state n, step t:
//   dt_t   = delta[b,d,t] + delta_bias[d];  if softplus: dt_t = softplus(dt_t) (= x for x > 20)
//   x_t[n] = exp(dt_t · A[d,n]) · x_{t-1}[n] + dt_t · B_t[n] · u_t,      x_{-1} = initial_state or 0
//   y_t    = (Σ_n C_t[n] · x_t[n] + D[d] · u_t) · silu(z_t)   (D and z optional)
// The step map x ↦ a·x + b composes as (a1,b1)∘(a2,b2) = (a1·a2, a2·b1 + b2): associative, so
// time is scanned in parallel.
//
// Layouts (f32, row-major): u, delta, z, out (Bt, D, L); B, C either (D, N) constant or
// (Bt, G, N, L) variable/grouped (channel d reads group d / (D/G)); `chan` packs the per-channel
// parameters A (D, N) at 0, D (D) at p_d and delta_bias (D) at p_bias; state (Bt, D, N) holds
// initial_state on entry (when has_init; the host copies it there) and last_state on exit.
// Large tensors may be bound as windows: off_* is the element index where a binding starts.
//
// Work split: one workgroup per (b, d) row (linear workgroup index + row0, 2-D grid past 65535).
// It walks L in chunks of CHUNK = WG·ITEMS steps; invocation v owns steps v·ITEMS .. +ITEMS of a
// chunk, keeps their u and dt in registers for all N, and loops over the state dims NB at a time:
//   1. for its ITEMS steps: a_k = exp(dt_k·A), b_k = dt_k·B_k·u_k (kept), and their composition;
//   2. a Hillis–Steele workgroup scan (shared memory, log2(WG) steps) of the NB compositions gives
//      each invocation the map of all earlier runs of the chunk;
//   3. its start state = that map applied to the chunk's carried-in state s_carry[n]; replaying
//      its ITEMS steps gives x_t, accumulated into y_t += C_t[n]·x_t;
//   4. the invocation owning the chunk's last run writes x at the chunk end back to s_carry[n].
// Steps past L are identities (a = 1, b = 0). Each input element is read once per workgroup; u,
// dt and z are coalesced runs of ITEMS floats per invocation, B/C rows likewise per state dim.

const WG: u32 = 128u;
const ITEMS: u32 = 4u;
const CHUNK: u32 = 512u; // WG * ITEMS
const NB: u32 = 4u;
const MAX_N: u32 = 256u;

const B_VARIABLE: u32 = 1u;
const C_VARIABLE: u32 = 2u;
const HAS_D: u32 = 4u;
const HAS_Z: u32 = 8u;
const HAS_BIAS: u32 = 16u;
const SOFTPLUS: u32 = 32u;
const HAS_INIT: u32 = 64u;

struct Params {
    rows: u32,     // workgroups (rows) in this dispatch
    row0: u32,     // first row b·D + d of this dispatch
    dim: u32,      // D
    len: u32,      // L
    n: u32,        // N
    b_groups: u32, // G of B (variable)
    c_groups: u32, // G of C (variable)
    flags: u32,
    off_x: u32,    // element offset of the u/delta/z/out windows
    off_b: u32,    // element offset of the B window
    off_c: u32,    // element offset of the C window
    off_s: u32,    // element offset of the state window
    p_d: u32,      // index of D in chan
    p_bias: u32,   // index of delta_bias in chan
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> delta: array<f32>;
@group(0) @binding(3) var<storage, read> chan: array<f32>;
@group(0) @binding(4) var<storage, read> bmat: array<f32>;
@group(0) @binding(5) var<storage, read> cmat: array<f32>;
@group(0) @binding(6) var<storage, read> zgate: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<storage, read_write> state: array<f32>;

var<workgroup> s_carry: array<f32, MAX_N>;
var<workgroup> s_a: array<f32, 512>; // NB * WG
var<workgroup> s_b: array<f32, 512>;

// ln(1 + e^x) with an accurate log1p (Goldberg's trick), x for x > 20.
fn softplus(x: f32) -> f32 {
    if (x > 20.0) {
        return x;
    }
    let e = exp(x);
    let w = 1.0 + e;
    if (w == 1.0) {
        return e;
    }
    return log(w) * (e / (w - 1.0));
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let w = wg.x + wg.y * groups.x;
    if (w >= params.rows) {
        return;
    }
    let v = lid; // time order of the invocation's run within a chunk
    let row = params.row0 + w;
    let dim = params.dim;
    let bi = row / dim;
    let d = row % dim;
    let nn = params.n;
    let len = params.len;
    let flags = params.flags;

    for (var n = lid; n < nn; n += WG) {
        var x0 = 0.0;
        if ((flags & HAS_INIT) != 0u) {
            x0 = state[row * nn + n - params.off_s];
        }
        s_carry[n] = x0;
    }
    var skip = 0.0;
    if ((flags & HAS_D) != 0u) {
        skip = chan[params.p_d + d];
    }
    var bias = 0.0;
    if ((flags & HAS_BIAS) != 0u) {
        bias = chan[params.p_bias + d];
    }
    let x_base = row * len - params.off_x;
    let b_var = (flags & B_VARIABLE) != 0u;
    let c_var = (flags & C_VARIABLE) != 0u;
    let b_base = ((bi * params.b_groups + d / (dim / params.b_groups)) * nn) * len - params.off_b;
    let c_base = ((bi * params.c_groups + d / (dim / params.c_groups)) * nn) * len - params.off_c;
    workgroupBarrier();

    let n_chunks = (len + CHUNK - 1u) / CHUNK;
    for (var chunk = 0u; chunk < n_chunks; chunk++) {
        let t_first = chunk * CHUNK + v * ITEMS;
        var uu: array<f32, ITEMS>;
        var dt: array<f32, ITEMS>;
        var y: array<f32, ITEMS>;
        for (var k = 0u; k < ITEMS; k++) {
            let t = t_first + k;
            uu[k] = 0.0;
            dt[k] = 0.0;
            y[k] = 0.0;
            if (t < len) {
                uu[k] = u[x_base + t];
                var dv = delta[x_base + t] + bias;
                if ((flags & SOFTPLUS) != 0u) {
                    dv = softplus(dv);
                }
                dt[k] = dv;
            }
        }
        for (var n0 = 0u; n0 < nn; n0 += NB) {
            // 1. per-step maps and the composition of this invocation's run, NB state dims.
            var ea: array<f32, 16>; // NB * ITEMS
            var eb: array<f32, 16>;
            for (var j = 0u; j < NB; j++) {
                let n = n0 + j;
                var pa = 1.0;
                var pb = 0.0;
                if (n < nn) {
                    let a_dn = chan[d * nn + n];
                    var b_const = 0.0;
                    if (!b_var) {
                        b_const = bmat[d * nn + n];
                    }
                    for (var k = 0u; k < ITEMS; k++) {
                        let t = t_first + k;
                        var ak = 1.0;
                        var bk = 0.0;
                        if (t < len) {
                            var bt = b_const;
                            if (b_var) {
                                bt = bmat[b_base + n * len + t];
                            }
                            ak = exp(dt[k] * a_dn);
                            bk = dt[k] * bt * uu[k];
                        }
                        ea[j * ITEMS + k] = ak;
                        eb[j * ITEMS + k] = bk;
                        pb = ak * pb + bk;
                        pa = pa * ak;
                    }
                }
                s_a[j * WG + v] = pa;
                s_b[j * WG + v] = pb;
            }
            // 2. inclusive Hillis–Steele scan over v: s[v] = run_0 ∘ … ∘ run_v.
            for (var off = 1u; off < WG; off <<= 1u) {
                workgroupBarrier();
                var qa: array<f32, NB>;
                var qb: array<f32, NB>;
                for (var j = 0u; j < NB; j++) {
                    qa[j] = 1.0;
                    qb[j] = 0.0;
                    if (v >= off) {
                        qa[j] = s_a[j * WG + v - off];
                        qb[j] = s_b[j * WG + v - off];
                    }
                }
                workgroupBarrier();
                if (v >= off) {
                    for (var j = 0u; j < NB; j++) {
                        let ca = s_a[j * WG + v];
                        let cb = s_b[j * WG + v];
                        s_a[j * WG + v] = qa[j] * ca;
                        s_b[j * WG + v] = ca * qb[j] + cb;
                    }
                }
            }
            workgroupBarrier();
            // 3. start state and replay.
            var fin: array<f32, NB>;
            for (var j = 0u; j < NB; j++) {
                let n = n0 + j;
                fin[j] = 0.0;
                if (n < nn) {
                    var x = s_carry[n];
                    if (v > 0u) {
                        x = s_a[j * WG + v - 1u] * x + s_b[j * WG + v - 1u];
                    }
                    var c_const = 0.0;
                    if (!c_var) {
                        c_const = cmat[d * nn + n];
                    }
                    for (var k = 0u; k < ITEMS; k++) {
                        let t = t_first + k;
                        x = ea[j * ITEMS + k] * x + eb[j * ITEMS + k];
                        if (t < len) {
                            var ct = c_const;
                            if (c_var) {
                                ct = cmat[c_base + n * len + t];
                            }
                            y[k] += ct * x;
                        }
                    }
                    fin[j] = x;
                }
            }
            workgroupBarrier();
            // 4. carry the chunk-end state.
            if (v == WG - 1u) {
                for (var j = 0u; j < NB; j++) {
                    if (n0 + j < nn) {
                        s_carry[n0 + j] = fin[j];
                    }
                }
            }
        }
        for (var k = 0u; k < ITEMS; k++) {
            let t = t_first + k;
            if (t < len) {
                var o = y[k] + skip * uu[k];
                if ((flags & HAS_Z) != 0u) {
                    let zz = zgate[x_base + t];
                    o = o * (zz / (1.0 + exp(-zz)));
                }
                out[x_base + t] = o;
            }
        }
    }
    workgroupBarrier();
    for (var n = lid; n < nn; n += WG) {
        state[row * nn + n - params.off_s] = s_carry[n];
    }
}
