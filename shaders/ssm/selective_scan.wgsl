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
// What bounds it on llvmpipe: storage accesses, then compute. Each access is a loop over the
// SIMD lanes whatever the addresses, and so is each one in a branch no lane takes (llvmpipe
// runs both sides of a branch under a lane mask), so the body keeps only the accesses a step
// needs: with SUBGROUP the shared and per-state ways of reading B_t, C_t are separate inlined
// copies (scan_pass's constant `share`), and with VEC4 a row is read 4 steps per access.
// Per state update an exp (a ~10-instruction polynomial, counted as 1 FLOP) and 3
// multiplies/FMAs against 8 counted FLOPs, so the FLOP roofline is out of reach on a CPU
// device by a factor of ~3-4.
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
// Flag VEC4 (with SUBGROUP, f32, L % 4 = 0; selective_scan_io.wgsl binds the row-major tensors
// as vec4s): each iteration runs 4 steps from one 16-byte access per tensor (u, delta, z, out,
// and this lane's two states of B and C), 4x fewer accesses than a step at a time.

override WG: u32 = 64u;

#include "ssm/selective_scan_io"

const NS: u32 = 16u; // states per pass held in registers

// What a pass holds over its steps: its NS states and A, and B, C where they are constant.
struct Pass {
    n0: u32,             // first state
    x: array<f32, NS>,   // x_t[n0 + j]
    a: array<f32, NS>,   // A[d, n0 + j]
    bc: array<f32, NS>,  // constant B[d, n0 + j] (0 when variable)
    cc: array<f32, NS>,  // constant C[d, n0 + j]
}

// dt_t from delta[b, d, t].
fn dt_of(delta_t: f32, bias: f32) -> f32 {
    var dv = delta_t + bias;
    if ((params.flags & SOFTPLUS) != 0u) {
        dv = softplus(dv);
    }
    return dv;
}

// Step t of the pass's states: x ← exp(dt·A)·x + dt·u·B_t, returning Σ_j C_t[j]·x[j]. With
// `share`, `bl` and `cl` are this lane's B_t and C_t at states n0 + l % 8 and n0 + 8 + l % 8,
// and the subgroup hands each state's value around by shuffles; without, each state's B_t and
// C_t is loaded here.
fn scan_step(p: RowPlan, t: u32, dv: f32, du: f32, bl: vec2<f32>, cl: vec2<f32>,
    k: ptr<function, Pass>, share: bool) -> f32 {
    let nn = params.n;
    let b_var = (params.flags & B_VARIABLE) != 0u;
    let c_var = (params.flags & C_VARIABLE) != 0u;
    let n0 = (*k).n0;
    var y = 0.0;
    for (var j = 0u; j < NS; j++) {
        let nv = n0 + j < nn;
        let jj = n0 + select(0u, j, nv);
        var bt = (*k).bc[j];
        var ct = (*k).cc[j];
        if (share) {
#if SUBGROUP
            if (b_var) {
                bt = subgroupShuffle(select(bl.x, bl.y, j >= 8u), j % 8u);
            }
            if (c_var) {
                ct = subgroupShuffle(select(cl.x, cl.y, j >= 8u), j % 8u);
            }
#endif
        } else {
            if (b_var) {
                bt = load_b(p.b0 + jj * p.bn + t * p.bt);
            }
            if (c_var) {
                ct = load_c(p.c0 + jj * p.cn + t * p.ct);
            }
        }
        (*k).x[j] = exp(dv * (*k).a[j]) * (*k).x[j] + du * bt;
        y += select(0.0, ct * (*k).x[j], nv);
    }
    return y;
}

// out at one step from the pass's Σ C·x: plus the earlier passes' sum `prev`, and in the last
// pass D·u and the gate silu(z).
fn out_value(y: f32, prev: f32, uu: f32, zz: f32, skip: f32, last: bool) -> f32 {
    var o = y + prev;
    if (last) {
        o += skip * uu;
        if ((params.flags & HAS_Z) != 0u) {
            o = o * (zz / (1.0 + exp(-zz)));
        }
    }
    return o;
}

#if VEC4
// What one VEC4 iteration reads for its 4 steps t .. t + 3.
struct Quad {
    u: vec4<f32>,
    delta: vec4<f32>,
    bl: mat2x4<f32>,   // this lane's B at its two shared states (columns), per step (rows)
    cl: mat2x4<f32>,
    prev: vec4<f32>,   // out of the earlier passes
    z: vec4<f32>,
}

// Step t + s of a VEC4 iteration: its out value.
fn quad_step(p: RowPlan, t: u32, s: u32, q: Quad, bias: f32, skip: f32, last: bool,
    k: ptr<function, Pass>, share: bool) -> f32 {
    let dv = dt_of(q.delta[s], bias);
    let y = scan_step(p, t + s, dv, dv * q.u[s], vec2<f32>(q.bl[0][s], q.bl[1][s]),
        vec2<f32>(q.cl[0][s], q.cl[1][s]), k, share);
    return out_value(y, q.prev[s], q.u[s], q.z[s], skip, last);
}
#endif

// One pass over the row's L steps for its NS states from n0. `share` is a constant at each call
// site (true only under SUBGROUP, for a subgroup whose lanes all read the same B_t and C_t), so
// the compiler drops the other branch from each inlined copy: on llvmpipe a load in a branch no
// lane takes still costs its loop over the SIMD lanes, and the shared copy's step would
// otherwise carry 32 such per-state loads of B_t and C_t beside its 4 useful ones.
fn scan_pass(p: RowPlan, d: u32, n0: u32, real: bool, lane: u32, share: bool) {
    let nn = params.n;
    let flags = params.flags;
    let b_var = (flags & B_VARIABLE) != 0u;
    let c_var = (flags & C_VARIABLE) != 0u;
    let has_z = (flags & HAS_Z) != 0u;
    let len = p.len;
    let skip = skip_of(d);
    let bias = bias_of(d);
    let last = n0 + NS >= nn;
    var k: Pass;
    k.n0 = n0;
    for (var j = 0u; j < NS; j++) {
        let n = min(n0 + j, nn - 1u);
        k.a[j] = chan[d * nn + n];
        k.x[j] = 0.0;
        if ((flags & HAS_INIT) != 0u) {
            k.x[j] = state[p.s0 + n];
        }
        k.bc[j] = 0.0;
        if (!b_var) {
            k.bc[j] = load_b(d * nn + n);
        }
        k.cc[j] = 0.0;
        if (!c_var) {
            k.cc[j] = load_c(d * nn + n);
        }
    }
    // Share: this lane's two states of B_t and C_t (states past N read state n0), and where
    // their rows start.
    let l8 = lane % 8u;
    let n_lo = n0 + select(0u, l8, n0 + l8 < nn);
    let n_hi = n0 + select(0u, l8 + 8u, n0 + l8 + 8u < nn);
    let b_lo = p.b0 + n_lo * p.bn;
    let b_hi = p.b0 + n_hi * p.bn;
    let c_lo = p.c0 + n_lo * p.cn;
    let c_hi = p.c0 + n_hi * p.cn;
#if VEC4
    // Four steps per iteration, every row-major tensor read (and out written) 16 bytes at a
    // time: ut = dt = zt = ot = bt = ct = 1 and rows start on a vec4.
    for (var t = 0u; t < len; t += 4u) {
        var q: Quad;
        q.u = load_u4(p.u0 + t);
        q.delta = load_delta4(p.d0 + t);
        if (share && b_var) {
            q.bl = mat2x4<f32>(load_b4(b_lo + t), load_b4(b_hi + t));
        }
        if (share && c_var) {
            q.cl = mat2x4<f32>(load_c4(c_lo + t), load_c4(c_hi + t));
        }
        if (n0 > 0u) {
            q.prev = load_out4(p.o0 + t);
        }
        if (last && has_z) {
            q.z = load_z4(p.z0 + t);
        }
        // The four steps in order, as four calls with a constant s, so that each component
        // index is a constant once inlined (a loop over s kept them dynamic).
        let o0 = quad_step(p, t, 0u, q, bias, skip, last, &k, share);
        let o1 = quad_step(p, t, 1u, q, bias, skip, last, &k, share);
        let o2 = quad_step(p, t, 2u, q, bias, skip, last, &k, share);
        let o3 = quad_step(p, t, 3u, q, bias, skip, last, &k, share);
        if (real) {
            store_out4(p.o0 + t, vec4<f32>(o0, o1, o2, o3));
        }
    }
#else
    var pending = 0.0; // half out: the even element of a word, stored with the odd one
    for (var t = 0u; t < len; t++) {
        let uu = load_u(p.u0 + t * p.ut);
        let dv = dt_of(load_delta(p.d0 + t * p.dt), bias);
        var bl = vec2<f32>();
        var cl = vec2<f32>();
        if (share && b_var) {
            bl = vec2<f32>(load_b(b_lo + t * p.bt), load_b(b_hi + t * p.bt));
        }
        if (share && c_var) {
            cl = vec2<f32>(load_c(c_lo + t * p.ct), load_c(c_hi + t * p.ct));
        }
        let y = scan_step(p, t, dv, dv * uu, bl, cl, &k, share);
        var prev = 0.0;
        if (n0 > 0u) {
            prev = load_out(p.o0 + t * p.ot);
        }
        var zz = 0.0;
        if (last && has_z) {
            zz = load_z(p.z0 + t * p.zt);
        }
        let o = out_value(y, prev, uu, zz, skip, last);
        // Half out is never PACKED (the host takes only f32 there), so ot = 1 whenever
        // store_out_step pairs consecutive steps into one word.
        if (real) {
            store_out_step(p.o0 + t * p.ot, t, len, o, &pending);
        }
    }
#endif
    for (var j = 0u; j < NS; j++) {
        if (real && n0 + j < nn) {
            state[p.s0 + n0 + j] = k.x[j];
        }
    }
}

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
    let lane = 0u;
    let row = params.row0 + w;
#endif
    let d = row % params.dim;
    let p = row_plan(row);
#if SUBGROUP
    // Shared B_t / C_t: the whole subgroup on the same start and length (dead rows included,
    // which then leave together).
    let uniform_bc = subgroupAll(p.b0 == subgroupBroadcastFirst(p.b0)
        && p.c0 == subgroupBroadcastFirst(p.c0)
        && p.len == subgroupBroadcastFirst(p.len)
        && subgroupAll(p.live) == subgroupAny(p.live));
#endif
    if (!p.live) {
        return;
    }
    for (var n0 = 0u; n0 < params.n; n0 += NS) {
#if SUBGROUP
        if (uniform_bc) {
            scan_pass(p, d, n0, real, lane, true);
        } else {
            scan_pass(p, d, n0, real, lane, false);
        }
#else
        scan_pass(p, d, n0, real, lane, false);
#endif
    }
}
