// selective_scan_chunked (Mamba-1's selective_scan_ref): the chunked parallel-in-time strategy of
// the selective scan. Flag SUBGROUP: the workgroup scan of step 2 by subgroup shuffles (the host
// composes it when the device offers SUBGROUP with a subgroup size dividing WG = 128); without
// it, a shared-memory scan. Nothing else differs.
// When it is used: `ScanStrategy::ChunkedParallel`, chosen explicitly or by `Auto` on a GPU with
// few (batch, channel) rows and a long sequence (Bt·D·ceil(N/16) < 2048 and L > 512): the
// row-sequential kernel (selective_scan.wgsl) would then leave most of the device idle with a
// latency of L dependent steps, while this one spreads L over a workgroup. Same bindings,
// uniforms and outputs as selective_scan.wgsl (selective_scan_io.wgsl).
//
// Math, per batch b, channel d, state n, step t:
//   dt_t   = delta[b,d,t] + delta_bias[d];  if softplus: dt_t = softplus(dt_t) (= x for x > 20)
//   x_t[n] = exp(dt_t · A[d,n]) · x_{t-1}[n] + dt_t · B_t[n] · u_t,      x_{-1} = initial_state or 0
//   y_t    = (Σ_n C_t[n] · x_t[n] + D[d] · u_t) · silu(z_t)   (D and z optional)
// The step map x ↦ a·x + b composes as (a1,b1)∘(a2,b2) = (a1·a2, a2·b1 + b2): associative, so
// time is scanned in parallel.
//
// Layouts (row-major; per binding, with the dtypes, in selective_scan_io.wgsl): u, delta, z, out
// (Bt, D, L) in u's dtype (f32, or flag F16/BF16: halves, out rounded once on store, by atomics
// on its word since two runs of steps may share one); B, C (D, N) constant or (Bt, G, N, L)
// variable/grouped, f32 or u's dtype; A, D, delta_bias (f32) packed in `chan`; state (Bt, D, N,
// f32) holds initial_state on entry and last_state on exit.
//
// Work split: one workgroup per (b, d) row (linear workgroup index + row0, 2-D grid past 65535).
// It walks L in chunks of CHUNK = WG·ITEMS steps; invocation v owns steps v·ITEMS .. +ITEMS of a
// chunk, keeps their u and dt in registers for all N, and loops over the state dims NB at a time:
//   1. for its ITEMS steps: a_k = exp(dt_k·A), b_k = dt_k·B_k·u_k (kept), and their composition;
//   2. a workgroup scan of the NB compositions gives each invocation the map of all earlier runs
//      of the chunk. Shared memory: Hillis–Steele, log2(WG) steps with two barriers each.
//      SUBGROUP: an inclusive scan inside each subgroup with subgroupShuffleUp (log2(subgroup
//      size) steps), the subgroup totals to shared memory, one barrier, and each invocation folds
//      the totals of earlier subgroups. The time order of invocations is then
//      v = subgroup_id · subgroup_size + lane, so any subgroup size dividing WG works (lavapipe:
//      8 or 4; NVIDIA 32; AMD 32/64);
//   3. its start state = that map applied to the chunk's carried-in state s_carry[n]; replaying
//      its ITEMS steps gives x_t, accumulated into y_t += C_t[n]·x_t;
//   4. the invocation owning the chunk's last run writes x at the chunk end back to s_carry[n].
// Steps past L are identities (a = 1, b = 0). Each input element is read once per workgroup; u,
// dt and z are coalesced runs of ITEMS floats per invocation, B/C rows likewise per state dim.
// What bounds it: on a GPU the exp per (step, state) and the scan steps per NB states; on a CPU
// device (lavapipe) its barriers, each a switch between SIMD fibers, which is why `Auto` never
// picks it there. Workgroup memory holds s_carry (N ≤ MAX_N) and the NB·WG scan pairs.

#include "ssm/selective_scan_io"

const WG: u32 = 128u;
const ITEMS: u32 = 4u;
const CHUNK: u32 = 512u; // WG * ITEMS
const NB: u32 = 4u;
const MAX_N: u32 = 256u;

var<workgroup> s_carry: array<f32, MAX_N>;
// NB * WG scan pairs (SUBGROUP: subgroup totals; WG bounds the subgroup count).
var<workgroup> s_a: array<f32, 512>;
var<workgroup> s_b: array<f32, 512>;

@compute @workgroup_size(WG)
fn main(
#if SUBGROUP
    @builtin(subgroup_id) sid: u32,
    @builtin(subgroup_size) sgs: u32,
    @builtin(subgroup_invocation_id) lane: u32,
#endif
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let w = wg.x + wg.y * groups.x;
    if (w >= params.rows) {
        return;
    }
#if SUBGROUP
    let v = sid * sgs + lane; // time order of the invocation's run within a chunk
#else
    let v = lid; // time order of the invocation's run within a chunk
#endif
    let row = params.row0 + w;
    let dim = params.dim;
    let d = row % dim;
    let nn = params.n;
    let len = params.len;
    let flags = params.flags;

    for (var n = lid; n < nn; n += WG) {
        var x0 = 0.0;
        if ((flags & HAS_INIT) != 0u) {
            x0 = state[state_index(row, n)];
        }
        s_carry[n] = x0;
    }
    let skip = skip_of(d);
    let bias = bias_of(d);
    let x_base = x_index(row, 0u);
    let b_var = (flags & B_VARIABLE) != 0u;
    let c_var = (flags & C_VARIABLE) != 0u;
    let b_base = bc_index(row, 0u, params.b_groups, params.off_b);
    let c_base = bc_index(row, 0u, params.c_groups, params.off_c);
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
                uu[k] = load_u(x_base + t);
                var dv = load_delta(x_base + t) + bias;
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
#if SUBGROUP
            var ex_a: array<f32, NB>;
            var ex_b: array<f32, NB>;
#endif
            for (var j = 0u; j < NB; j++) {
                let n = n0 + j;
                var pa = 1.0;
                var pb = 0.0;
                if (n < nn) {
                    let a_dn = chan[d * nn + n];
                    var b_const = 0.0;
                    if (!b_var) {
                        b_const = load_b(d * nn + n);
                    }
                    for (var k = 0u; k < ITEMS; k++) {
                        let t = t_first + k;
                        var ak = 1.0;
                        var bk = 0.0;
                        if (t < len) {
                            var bt = b_const;
                            if (b_var) {
                                bt = load_b(b_base + n * len + t);
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
#if SUBGROUP
                // 2a. inclusive scan inside the subgroup; exclusive value by one more shuffle.
                for (var off = 1u; off < sgs; off <<= 1u) {
                    let qa = subgroupShuffleUp(pa, off);
                    let qb = subgroupShuffleUp(pb, off);
                    if (lane >= off) {
                        pb = pa * qb + pb;
                        pa = qa * pa;
                    }
                }
                var xa = subgroupShuffleUp(pa, 1u);
                var xb = subgroupShuffleUp(pb, 1u);
                if (lane == 0u) {
                    xa = 1.0;
                    xb = 0.0;
                }
                ex_a[j] = xa;
                ex_b[j] = xb;
                if (lane == sgs - 1u) {
                    s_a[j * WG + sid] = pa;
                    s_b[j * WG + sid] = pb;
                }
#else
                s_a[j * WG + v] = pa;
                s_b[j * WG + v] = pb;
#endif
            }
#if !SUBGROUP
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
#endif
            workgroupBarrier();
            // 3. start state and replay.
            var fin: array<f32, NB>;
            for (var j = 0u; j < NB; j++) {
                let n = n0 + j;
                fin[j] = 0.0;
                if (n < nn) {
                    var x = s_carry[n];
#if SUBGROUP
                    // the totals of earlier subgroups, then the lanes before this one.
                    for (var s = 0u; s < sid; s++) {
                        x = s_a[j * WG + s] * x + s_b[j * WG + s];
                    }
                    x = ex_a[j] * x + ex_b[j];
#else
                    if (v > 0u) {
                        x = s_a[j * WG + v - 1u] * x + s_b[j * WG + v - 1u];
                    }
#endif
                    var c_const = 0.0;
                    if (!c_var) {
                        c_const = load_c(d * nn + n);
                    }
                    for (var k = 0u; k < ITEMS; k++) {
                        let t = t_first + k;
                        x = ea[j * ITEMS + k] * x + eb[j * ITEMS + k];
                        if (t < len) {
                            var ct = c_const;
                            if (c_var) {
                                ct = load_c(c_base + n * len + t);
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
                    let zz = load_z(x_base + t);
                    o = o * (zz / (1.0 + exp(-zz)));
                }
                store_out(x_base + t, o);
            }
        }
    }
    workgroupBarrier();
    for (var n = lid; n < nn; n += WG) {
        state[state_index(row, n)] = s_carry[n];
    }
}
