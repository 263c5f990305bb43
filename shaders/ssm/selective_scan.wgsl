// selective_scan (Mamba-1's selective_scan_ref): the row-sequential strategy, one body for
// every device (no shared memory, no barriers; subgroup shuffles only under flag SUBGROUP).
// When it is used: `ScanStrategy::RowSequential`, and `Auto` whenever there are enough
// independent (batch, channel) rows to fill a GPU or L is short (unless Bt·D·ceil(N/16) < 2048
// and L > 512, where Auto picks the chunked parallel-in-time kernel, selective_scan_chunked.wgsl;
// both take the bindings and uniforms of selective_scan_io.wgsl).
//
// Math, per batch b, channel d, state n, step t:
//   dt_t   = delta[b,d,t] + delta_bias[d];  if softplus: dt_t = softplus(dt_t) (= x for x > 20)
//   x_t[n] = exp(dt_t · A[d,n]) · x_{t-1}[n] + dt_t · B_t[n] · u_t,      x_{-1} = initial_state or 0
//   y_t    = (Σ_n C_t[n] · x_t[n] + D[d] · u_t) · silu(z_t)   (D and z optional)
//
// Layouts (row-major; selective_scan_io.wgsl has them per binding, and the dtypes): u, delta,
// z, out (Bt, D, L) in u's dtype (f32, or flag F16/BF16: halves, out rounded once on store);
// B, C (D, N) constant or (Bt, G, N, L) variable/grouped, f32 or u's dtype; A, D, delta_bias
// (f32) packed in `chan`; state (Bt, D, N, f32) holds initial_state on entry and last_state on
// exit. Index arithmetic and loads/stores are the io fragment's helpers.
//
// Work split: one invocation per row (b, d), WG rows per workgroup (override; the host picks 64,
// or 16 when that leaves fewer than 16 workgroups), linear workgroup index (2-D grid past 65535).
// The invocation walks time sequentially with NS = 16 states in registers (constant-indexed,
// unrolled loops): per step it reads u, delta (softplus once per step), B_t[n], C_t[n] for its
// NS states, updates them and sums y_t in a register, then writes out. N > NS: the states are
// done in passes of NS, later passes adding to out (read back) and the last applying D and z
// (f32 out only: with half out the host runs N > NS on the chunked kernel, so that out is
// rounded once rather than once per pass).
//
// Why this split (measured on lavapipe, Bt=1 D=256 N=16 L=256, CPU time of the process): the
// earlier chunked parallel scan (workgroup per row, 512-step chunks, shared-memory/subgroup carry)
// took ~100 ms; an invocation per (row, state) with T-step chunks staged in shared memory and a
// shared-memory sum over n ~25 ms, half of it in barriers (llvmpipe runs a workgroup as SIMD
// fibers and switches between them at every barrier); this barrier-free version ~5 ms.
// What bounds it on llvmpipe: load instructions, then compute. Per state update an exp (a
// ~10-instruction polynomial, counted as 1 FLOP), 3 multiplies/FMAs and, without SUBGROUP, two
// loads of B_t, C_t (each a loop over the SIMD lanes), against 8 counted FLOPs, so the FLOP
// roofline is out of reach on a CPU device by a factor of ~3-4.
// On GPUs: B_t/C_t reads are broadcasts (rows of a group share them), u/delta/z/out reads are
// stride-L across lanes (each line reused over the next 15 steps from cache); occupancy needs
// Bt·D ≳ 10⁴ rows. For few rows and long L the op switches to the chunked parallel-in-time scan
// (selective_scan_chunked.wgsl: the composition (a1,b1)∘(a2,b2) = (a1·a2, a2·b1 + b2) is
// associative, chunk prefixes are combined inside one workgroup and carried between chunks).

// Flag SUBGROUP (composed by the host on CPU adapters whose subgroups hold at least 8
// invocations): where every lane of a subgroup reads the same B_t (and C_t) — rows of one
// sequence and one group, checked at run time by subgroupAll — lane l loads states
// n0 + l % 8 and n0 + 8 + l % 8 of B_t and C_t and the subgroup shares them by shuffles, so a
// step costs 2 load instructions per matrix instead of NS. Lanes past the last row in a
// subgroup with real rows run with the last row's inputs and store nothing, keeping the
// subgroup whole for the shuffles. Why only on CPUs: on llvmpipe a storage load instruction is
// a loop over the SIMD lanes whatever the addresses, so these loads set the time; on a GPU the
// same-address loads are one broadcast from cache already.

override WG: u32 = 64u;

#include "ssm/selective_scan_io"

const NS: u32 = 16u; // states per pass held in registers
@compute @workgroup_size(WG)
fn main(
#if SUBGROUP
    @builtin(subgroup_invocation_id) lane: u32,
#endif
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let w = (wg.x + wg.y * groups.x) * WG + lid;
#if SUBGROUP
    if ((wg.x + wg.y * groups.x) * WG >= params.rows) {
        return;
    }
    let real = w < params.rows;
    // Subgroups with no real row leave together (a subgroup stays whole for its shuffles).
    if (!subgroupAny(real)) {
        return;
    }
    let row = params.row0 + min(w, params.rows - 1u);
#else
    if (w >= params.rows) {
        return;
    }
    let real = true;
    let row = params.row0 + w;
#endif
    let nn = params.n;
    let flags = params.flags;
    let dim = params.dim;
    let b_var = (flags & B_VARIABLE) != 0u;
    let c_var = (flags & C_VARIABLE) != 0u;
    let d = row % dim;
    let p = row_plan(row);
#if SUBGROUP
    // Shared B_t / C_t: the whole subgroup on the same start and length (dead rows included,
    // which then leave together).
    let uniform_bc = subgroupAll(p.b0 == subgroupBroadcastFirst(p.b0)
        && p.c0 == subgroupBroadcastFirst(p.c0)
        && p.len == subgroupBroadcastFirst(p.len)
        && subgroupAll(p.live) == subgroupAny(p.live));
    let share_b = uniform_bc && b_var;
    let share_c = uniform_bc && c_var;
    let l8 = lane % 8u;
#endif
    if (!p.live) {
        return;
    }
    let len = p.len;
    let skip = skip_of(d);
    let bias = bias_of(d);
    for (var n0 = 0u; n0 < nn; n0 += NS) {
        let last = n0 + NS >= nn;
        var a: array<f32, NS>;
        var x: array<f32, NS>;
        var bc: array<f32, NS>;
        var cc: array<f32, NS>;
        for (var j = 0u; j < NS; j++) {
            let n = min(n0 + j, nn - 1u);
            a[j] = chan[d * nn + n];
            x[j] = 0.0;
            if ((flags & HAS_INIT) != 0u) {
                x[j] = state[p.s0 + n];
            }
            bc[j] = 0.0;
            if (!b_var) {
                bc[j] = load_b(d * nn + n);
            }
            cc[j] = 0.0;
            if (!c_var) {
                cc[j] = load_c(d * nn + n);
            }
        }
        let b_base = p.b0 + n0 * p.bn;
        let c_base = p.c0 + n0 * p.cn;
        var pending = 0.0; // half out: the even element of a word, stored with the odd one
        for (var t = 0u; t < len; t++) {
            let uu = load_u(p.u0 + t * p.ut);
            var dv = load_delta(p.d0 + t * p.dt) + bias;
            if ((flags & SOFTPLUS) != 0u) {
                dv = softplus(dv);
            }
            let du = dv * uu;
            var y = 0.0;
#if SUBGROUP
            // This lane's two states of B_t and C_t (states past N read state n0).
            var b_lo = 0.0;
            var b_hi = 0.0;
            var c_lo = 0.0;
            var c_hi = 0.0;
            let j_lo = select(0u, l8, n0 + l8 < nn);
            let j_hi = select(0u, l8 + 8u, n0 + l8 + 8u < nn);
            if (share_b) {
                b_lo = load_b(b_base + j_lo * p.bn + t * p.bt);
                b_hi = load_b(b_base + j_hi * p.bn + t * p.bt);
            }
            if (share_c) {
                c_lo = load_c(c_base + j_lo * p.cn + t * p.ct);
                c_hi = load_c(c_base + j_hi * p.cn + t * p.ct);
            }
#endif
            for (var j = 0u; j < NS; j++) {
                let nv = n0 + j < nn;
                let jj = select(0u, j, nv);
                var bt = bc[j];
                var ct = cc[j];
#if SUBGROUP
                if (share_b) {
                    bt = subgroupShuffle(select(b_lo, b_hi, j >= 8u), j % 8u);
                } else if (b_var) {
                    bt = load_b(b_base + jj * p.bn + t * p.bt);
                }
                if (share_c) {
                    ct = subgroupShuffle(select(c_lo, c_hi, j >= 8u), j % 8u);
                } else if (c_var) {
                    ct = load_c(c_base + jj * p.cn + t * p.ct);
                }
#else
                if (b_var) {
                    bt = load_b(b_base + jj * p.bn + t * p.bt);
                }
                if (c_var) {
                    ct = load_c(c_base + jj * p.cn + t * p.ct);
                }
#endif
                x[j] = exp(dv * a[j]) * x[j] + du * bt;
                y += select(0.0, ct * x[j], nv);
            }
            var o = y;
            if (n0 > 0u) {
                o += load_out(p.o0 + t * p.ot);
            }
            if (last) {
                o += skip * uu;
                if ((flags & HAS_Z) != 0u) {
                    let zz = load_z(p.z0 + t * p.zt);
                    o = o * (zz / (1.0 + exp(-zz)));
                }
            }
            // Half out is never PACKED (the host takes only f32 there), so ot = 1 whenever
            // store_out_step pairs consecutive steps into one word.
            if (real) {
                store_out_step(p.o0 + t * p.ot, t, len, o, &pending);
            }
        }
        for (var j = 0u; j < NS; j++) {
            if (real && n0 + j < nn) {
                state[p.s0 + n0 + j] = x[j];
            }
        }
    }
}
