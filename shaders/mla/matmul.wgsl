// matmul: y[g, m, n] = Σ_k x[g, m, k] · w(g, n, k) (+ bias[n]),  g < G, m < M, n < N, k < K.
//
// Strided layouts (element offsets into each buffer):
//   x[g, m, k] = x[x_off + g·x_gs + m·x_rs + k]
//   w(g, n, k) = w[w_off + g·w_gs + n·w_rs + k]   when w_trans = 1 (PyTorch Linear: W is [N, K])
//              = w[w_off + g·w_gs + k·w_rs + n]   when w_trans = 0 (W is [K, N])
//   y[g, m, n] = y[y_off + g·y_gs + m·y_rs + n]
// so one kernel does the projections (G = 1, y = x·Wᵀ + b) and the per-head absorb products of
// MLA (G = H, strided head slices of q, kv_b_proj and o_lat).
//
// Flag VEC4, the fast path: x and w bound as vec4<f32>, for layouts the host has checked are
// aligned (x_off, x_gs, x_rs, K, w_off, w_gs, w_rs ≡ 0 mod 4, and N when W is [K, N]; y has any
// alignment, scalar stores). One invocation per (g, block of RM rows, block of 4·NV columns). A
// workgroup of WG invocations owns a tile of WG/cb row blocks × cb column blocks (invocation lid:
// row block lid / cb, column block lid % cb; cb = WG when there is one row block, else 8), tiles
// enumerated over (g, tile row, tile column) with the column fastest from the linear workgroup
// index wg.x + wg.y·num_workgroups.x. With cb = 8 (llvmpipe's SIMD width) consecutive SIMD
// groups of a workgroup reuse the same columns of w from cache for the next rows. Each
// invocation walks K in vec4 steps with no workgroup memory and no barrier: per step it loads RM
// vec4 of x (one per row, along k) and 4·NV vec4 of w (W_TRANS: one per column along k,
// transposed in registers; else one per k along n) and does 16·RM·NV FMAs into RM·NV vec4
// accumulators held in named variables (no dynamically indexed private arrays). Rows or columns
// past the end are clamped for loading and never stored.
// Why (Mesa lavapipe): llvmpipe turns every non-uniform storage or workgroup-memory load into a
// loop over the 8 SIMD lanes with a bounds check per component, so a load *instruction* costs
// tens of FMAs (a vec4 load amortises the lane loop over 4 components), staging in workgroup
// memory saves nothing, and every barrier is a coroutine switch per 8 lanes. What bounds it:
// decode (M ≤ 8) memory, each vec4 of W loaded once; prefill (large M) the RM + 4·NV = 16 vec4
// load instructions per 256 FMAs (per lane), not the FMAs.
//
// Flag SUBGROUP (with VEC4), for a CPU device whose subgroups are its 8 SIMD lanes (the host
// composes it only there, with W_TRANS, RM = 32 or 64 and NV = 2 for prefill, RM = 1, 2 or 4
// and NV = 1 for decode): a workgroup is one subgroup of 8 lanes and owns RM rows (from the
// workgroup index alone) × 32·NV columns, lane l of column tile t owning the 4·NV columns
// (8t + l)·4·NV ..; tiles enumerated over (g, row tile, column tile) with the column fastest.
// Per vec4 step of K each lane loads max(RM/8, 1) vec4 of x (rows m0 + l + 8j: one row per lane
// and group of 8 rows) and the 4·NV vec4 of w of its own columns, takes every row's x from the
// lane that loaded it by subgroupBroadcast with a constant lane (a register extract on a CPU),
// and does 16·RM·NV FMAs into NV·RM named vec4 accumulators. No lane returns early (lanes past
// the last column compute clamped columns and store nothing), so every broadcast reads a live
// lane.
// Why (lavapipe): a load costs a loop over the 8 lanes whether or not the lanes' addresses agree
// (the compiler cannot prove the shared x rows uniform), so sharing x by broadcasts turns RM
// load instructions per step into RM/8, and with RM = 32 or 64 each lane loop over w serves
// that many rows instead of 8. What bounds it there: the 8 w loads per step, each gathering 8
// lanes' columns from 64 rows of W far apart in memory (the gathers, not the FMAs, set the
// time), and the 8·RM accumulator floats per lane, which live in memory rather than in the
// CPU's vector registers (the 8 columns' w values of a step fill them). 64 rows halve the w
// loads per FMA again; the host takes them where the last row tile wastes little. These bodies
// are large (their pipelines are slow to build), so only M ≥ the host's threshold composes
// them. On a GPU it would gain nothing (x loads shared by a subgroup are
// already one transaction) and hold too many registers, so GPUs never get it.
// Tried for decode and not kept (lavapipe, M = 4): the 8 lanes splitting K instead of the
// columns (adjacent lanes reading adjacent 16 bytes of one W row, partial dots summed by
// subgroupAdd) was no faster, and lanes as rows with W loaded at a subgroup-uniform address was
// several times slower. The lane loop runs once per lane and 4-byte component whatever the
// addresses, so decode time is W's bytes through that loop; half weights halve them. Decode
// takes NV = 1: the same loads per byte, 32 rows of W gathered at a time instead of 64 (faster
// on lavapipe), and twice the workgroups for the CPU's threads to share at a short N.
//
// Storage dtypes (common/storage.wgsl): w may be f32, f16 or bf16 (the first role: flags F16,
// BF16, NATIVE_F16); the activations x and y share the second role's dtype, f32, f16 or bf16
// (flags F16_B, BF16_B, NATIVE_F16_B), independently of w. Loads widen to f32 (VEC4: a squad of
// 4 values per load, 8 bytes for halves; the fallback: one element of a sword); bias is f32;
// accumulation is f32; y is rounded on store. x is read only through x_index / x_at / x_quad
// (one place for its index arithmetic). y is stored one element at a time and neighbouring
// columns belong to different invocations, so a half y store is two atomics on its word
// (atomicAnd clears the half, atomicOr sets it; disjoint bits commute), as latent_cache does:
// any y layout (odd N, offsets, strides) works.
//
// Without VEC4, the general fallback for unaligned layouts (10–70× slower on lavapipe): each
// workgroup owns one (g, BM×BN output tile), BM = BM_T·RM rows and BN = BN_T·RN columns; its
// BM_T × BN_T invocations each accumulate RM × RN outputs in registers, reading rows
// ty + r·BM_T and columns tx + c·BN_T of the tile (strided, so neighbours hit neighbouring
// workgroup-memory words). K is walked in steps of BK: the workgroup stages the x tile (BM×BK)
// and the w tile (BN×BK) in workgroup memory, loading along the contiguous index so adjacent
// invocations read adjacent addresses, then every invocation does BK rank-1 updates.
// Out-of-range elements are staged as 0 and never stored. The linear workgroup index
// wg.x + wg.y·num_workgroups.x enumerates (g, tile_m, tile_n) with tile_n fastest.
// Limits: BM·BK ≤ 1024, BN·BK ≤ 2048 (12 KiB of workgroup memory), RM·RN ≤ 16,
// WG = BM_T·BN_T ≤ 256.

#if VEC4
override WG: u32 = 64u;
override RM: u32 = 4u; // 1, 2, 4 or 8; SUBGROUP: 1, 2, 4, 8, 16, 32 or 64
override NV: u32 = 2u; // 1 or 2; SUBGROUP: 2
override W_TRANS: u32 = 1u;
alias elem = squad_b;  // of x
alias welem = squad;   // of w
#else
override WG: u32 = 256u;
override BM_T: u32 = 16u;
override BN_T: u32 = 16u;
override RM: u32 = 4u;
override RN: u32 = 4u;
override BK: u32 = 16u;
alias elem = sword_b;
alias welem = sword;
#endif
#include "common/storage"

struct Params {
    g: u32,
    m: u32,
    n: u32,
    k: u32,
    x_off: u32,
    x_gs: u32,
    x_rs: u32,
    w_off: u32,
    w_gs: u32,
    w_rs: u32,
    w_trans: u32,
    y_off: u32,
    y_gs: u32,
    y_rs: u32,
    flags: u32,       // HAS_BIAS | ACCUMULATE
    tiles_m: u32,
    tiles_n: u32,
    groups: u32,
    cb: u32,       // VEC4: column blocks per workgroup
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;       // (G, M, K) strided
@group(0) @binding(2) var<storage, read> w: array<welem>;      // (G, N, K) or (G, K, N) strided
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // (N)
#if F16_B || BF16_B
@group(0) @binding(4) var<storage, read_write> y: array<atomic<u32>>; // (G, M, N), halves in pairs
#else
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // (G, M, N) strided
#endif

// Element offset of x[g, m, k] (the one place that knows x's layout).
fn x_index(g: u32, m: u32, k: u32) -> u32 {
    return params.x_off + g * params.x_gs + m * params.x_rs + k;
}

const HAS_BIAS: u32 = 1u;
// y += x·op(w) (+ bias): the value already in y is added (a residual stream updated in place;
// each y element belongs to one invocation, so the read-modify-write needs no synchronisation).
const ACCUMULATE: u32 = 2u;

// y[i] = v (+ y[i] with ACCUMULATE), rounded to y's dtype.
fn store_y(i: u32, v: f32) {
    let acc = (params.flags & ACCUMULATE) != 0u;
#if F16_B || BF16_B
    let shift = (i & 1u) * 16u;
    var o = v;
    if (acc) {
        o += sget_bits_b(atomicLoad(&y[i / 2u]), i & 1u);
    }
    atomicAnd(&y[i / 2u], ~(0xffffu << shift));
    atomicOr(&y[i / 2u], half_bits_b(o) << shift);
#else
    if (acc) {
        y[i] = v + y[i];
    } else {
        y[i] = v;
    }
#endif
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
#if SUBGROUP
    @builtin(subgroup_invocation_id) lid: u32,
#else
    @builtin(local_invocation_index) lid: u32,
#endif
) {
    let linear = wg.x + wg.y * nwg.x;
    if (linear >= params.groups) {
        return;
    }
    tile(linear, lid);
}

#if VEC4
// Weights 4k .. 4k + 3 (vec4 index k) as f32.
fn wq(k: u32) -> vec4<f32> {
    return sget4(w[k]);
}

// acc + wt · xv with explicit FMAs: wt's columns are indexed by k, its rows by output column.
fn mac(acc: vec4<f32>, wt: mat4x4<f32>, xv: vec4<f32>) -> vec4<f32> {
    var a = fma(wt[0], vec4<f32>(xv.x), acc);
    a = fma(wt[1], vec4<f32>(xv.y), a);
    a = fma(wt[2], vec4<f32>(xv.z), a);
    return fma(wt[3], vec4<f32>(xv.w), a);
}

#if SUBGROUP
// One row's accumulators (a: columns n0, b: n1, NV = 2 only) += (wa, wb) · its x quad v.
fn mac2(a: ptr<function, vec4<f32>>, b: ptr<function, vec4<f32>>, wa: mat4x4<f32>,
        wb: mat4x4<f32>, v: vec4<f32>) {
    *a = mac(*a, wa, v);
    if (NV > 1u) {
        *b = mac(*b, wb, v);
    }
}

// Up to eight rows' accumulators (a_i, b_i: columns n0 and n1) += (wa, wb) · the x quad of row
// i, which lane i loaded (x here is this lane's quad; the broadcasts read lane i's). Rows i <
// `rows` only (a constant once inlined, so the rows past it are compiled out).
fn mac8(x: vec4<f32>, wa: mat4x4<f32>, wb: mat4x4<f32>, rows: u32,
        a0: ptr<function, vec4<f32>>, b0: ptr<function, vec4<f32>>,
        a1: ptr<function, vec4<f32>>, b1: ptr<function, vec4<f32>>,
        a2: ptr<function, vec4<f32>>, b2: ptr<function, vec4<f32>>,
        a3: ptr<function, vec4<f32>>, b3: ptr<function, vec4<f32>>,
        a4: ptr<function, vec4<f32>>, b4: ptr<function, vec4<f32>>,
        a5: ptr<function, vec4<f32>>, b5: ptr<function, vec4<f32>>,
        a6: ptr<function, vec4<f32>>, b6: ptr<function, vec4<f32>>,
        a7: ptr<function, vec4<f32>>, b7: ptr<function, vec4<f32>>) {
    mac2(a0, b0, wa, wb, subgroupBroadcast(x, 0u));
    if (rows > 1u) {
        mac2(a1, b1, wa, wb, subgroupBroadcast(x, 1u));
    }
    if (rows > 2u) {
        mac2(a2, b2, wa, wb, subgroupBroadcast(x, 2u));
        mac2(a3, b3, wa, wb, subgroupBroadcast(x, 3u));
    }
    if (rows > 4u) {
        mac2(a4, b4, wa, wb, subgroupBroadcast(x, 4u));
        mac2(a5, b5, wa, wb, subgroupBroadcast(x, 5u));
        mac2(a6, b6, wa, wb, subgroupBroadcast(x, 6u));
        mac2(a7, b7, wa, wb, subgroupBroadcast(x, 7u));
    }
}
#endif

// vec4 index of the start of x row m0 + r (clamped to the last row) for batch entry g.
fn x_row(g: u32, m0: u32, r: u32) -> u32 {
    let m = min(m0 + r, params.m - 1u);
    return x_index(g, m, 0u) / 4u;
}

// x values 4q .. 4q + 3 (vec4 index q) as f32.
fn x_quad(q: u32) -> vec4<f32> {
    return sget4_b(x[q]);
}

// W_TRANS: vec4 index of the start of w row n0 + j (clamped to the last column).
fn w_row(g: u32, n0: u32, j: u32) -> u32 {
    let n = min(n0 + j, params.n - 1u);
    return (params.w_off + g * params.w_gs + n * params.w_rs) / 4u;
}

// Four weights of row k4·4 + j (W_TRANS = 0) for columns n0 .. n0 + 3 (n0 clamped in range).
fn w_quad(base: u32, k4: u32, j: u32) -> vec4<f32> {
    return wq(base + ((k4 * 4u + j) * params.w_rs) / 4u);
}

// Store the (up to) four outputs of row m0 + r, columns n0 .. n0 + 3.
fn store(g: u32, m0: u32, r: u32, n0: u32, v: vec4<f32>) {
    let m = m0 + r;
    if (m >= params.m) {
        return;
    }
    let base = params.y_off + g * params.y_gs + m * params.y_rs;
    store1(base, n0, v.x);
    store1(base, n0 + 1u, v.y);
    store1(base, n0 + 2u, v.z);
    store1(base, n0 + 3u, v.w);
}

fn store1(base: u32, n: u32, v: f32) {
    if (n < params.n) {
        var o = v;
        if ((params.flags & HAS_BIAS) != 0u) {
            o += bias[n];
        }
        store_y(base + n, o);
    }
}

#if SUBGROUP
// The output tile of workgroup `linear` (one subgroup): RM rows × 8 lanes' 4·NV columns.
fn tile(linear: u32, lane: u32) {
    let wtn = (params.tiles_n + 7u) / 8u;
    let wtm = params.tiles_m;
    let g = linear / (wtm * wtn);
    let rem = linear % (wtm * wtn);
    let m0 = (rem / wtn) * RM;
    // Lanes past the last column block compute clamped columns and store nothing; all lanes
    // stay active for the broadcasts.
    let n0 = ((rem % wtn) * 8u + lane) * (4u * NV);
    let n1 = n0 + 4u;
    let k4s = params.k / 4u;
    // This lane's x rows: m0 + lane + 8·j.
    let xr0 = x_row(g, m0, lane + 0u);
    let xr1 = x_row(g, m0, lane + 8u);
    let xr2 = x_row(g, m0, lane + 16u);
    let xr3 = x_row(g, m0, lane + 24u);
    let xr4 = x_row(g, m0, lane + 32u);
    let xr5 = x_row(g, m0, lane + 40u);
    let xr6 = x_row(g, m0, lane + 48u);
    let xr7 = x_row(g, m0, lane + 56u);
    // W_TRANS: the rows of the 4·NV columns; else the vec4 index of w(g, n0.., k = 0) per quad.
    let wr0 = w_row(g, n0, 0u);
    let wr1 = w_row(g, n0, 1u);
    let wr2 = w_row(g, n0, 2u);
    let wr3 = w_row(g, n0, 3u);
    let wr4 = w_row(g, n0, 4u);
    let wr5 = w_row(g, n0, 5u);
    let wr6 = w_row(g, n0, 6u);
    let wr7 = w_row(g, n0, 7u);
    let q0 = (params.w_off + g * params.w_gs + min(n0, params.n - 4u)) / 4u;
    let q1 = (params.w_off + g * params.w_gs + min(n1, params.n - 4u)) / 4u;
    var a0 = vec4<f32>(0.0); var b0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0); var b1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0); var b2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0); var b3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0); var b4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0); var b5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0); var b6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0); var b7 = vec4<f32>(0.0);
    var a8 = vec4<f32>(0.0); var b8 = vec4<f32>(0.0);
    var a9 = vec4<f32>(0.0); var b9 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0); var b10 = vec4<f32>(0.0);
    var a11 = vec4<f32>(0.0); var b11 = vec4<f32>(0.0);
    var a12 = vec4<f32>(0.0); var b12 = vec4<f32>(0.0);
    var a13 = vec4<f32>(0.0); var b13 = vec4<f32>(0.0);
    var a14 = vec4<f32>(0.0); var b14 = vec4<f32>(0.0);
    var a15 = vec4<f32>(0.0); var b15 = vec4<f32>(0.0);
    var a16 = vec4<f32>(0.0); var b16 = vec4<f32>(0.0);
    var a17 = vec4<f32>(0.0); var b17 = vec4<f32>(0.0);
    var a18 = vec4<f32>(0.0); var b18 = vec4<f32>(0.0);
    var a19 = vec4<f32>(0.0); var b19 = vec4<f32>(0.0);
    var a20 = vec4<f32>(0.0); var b20 = vec4<f32>(0.0);
    var a21 = vec4<f32>(0.0); var b21 = vec4<f32>(0.0);
    var a22 = vec4<f32>(0.0); var b22 = vec4<f32>(0.0);
    var a23 = vec4<f32>(0.0); var b23 = vec4<f32>(0.0);
    var a24 = vec4<f32>(0.0); var b24 = vec4<f32>(0.0);
    var a25 = vec4<f32>(0.0); var b25 = vec4<f32>(0.0);
    var a26 = vec4<f32>(0.0); var b26 = vec4<f32>(0.0);
    var a27 = vec4<f32>(0.0); var b27 = vec4<f32>(0.0);
    var a28 = vec4<f32>(0.0); var b28 = vec4<f32>(0.0);
    var a29 = vec4<f32>(0.0); var b29 = vec4<f32>(0.0);
    var a30 = vec4<f32>(0.0); var b30 = vec4<f32>(0.0);
    var a31 = vec4<f32>(0.0); var b31 = vec4<f32>(0.0);
    var a32 = vec4<f32>(0.0); var b32 = vec4<f32>(0.0);
    var a33 = vec4<f32>(0.0); var b33 = vec4<f32>(0.0);
    var a34 = vec4<f32>(0.0); var b34 = vec4<f32>(0.0);
    var a35 = vec4<f32>(0.0); var b35 = vec4<f32>(0.0);
    var a36 = vec4<f32>(0.0); var b36 = vec4<f32>(0.0);
    var a37 = vec4<f32>(0.0); var b37 = vec4<f32>(0.0);
    var a38 = vec4<f32>(0.0); var b38 = vec4<f32>(0.0);
    var a39 = vec4<f32>(0.0); var b39 = vec4<f32>(0.0);
    var a40 = vec4<f32>(0.0); var b40 = vec4<f32>(0.0);
    var a41 = vec4<f32>(0.0); var b41 = vec4<f32>(0.0);
    var a42 = vec4<f32>(0.0); var b42 = vec4<f32>(0.0);
    var a43 = vec4<f32>(0.0); var b43 = vec4<f32>(0.0);
    var a44 = vec4<f32>(0.0); var b44 = vec4<f32>(0.0);
    var a45 = vec4<f32>(0.0); var b45 = vec4<f32>(0.0);
    var a46 = vec4<f32>(0.0); var b46 = vec4<f32>(0.0);
    var a47 = vec4<f32>(0.0); var b47 = vec4<f32>(0.0);
    var a48 = vec4<f32>(0.0); var b48 = vec4<f32>(0.0);
    var a49 = vec4<f32>(0.0); var b49 = vec4<f32>(0.0);
    var a50 = vec4<f32>(0.0); var b50 = vec4<f32>(0.0);
    var a51 = vec4<f32>(0.0); var b51 = vec4<f32>(0.0);
    var a52 = vec4<f32>(0.0); var b52 = vec4<f32>(0.0);
    var a53 = vec4<f32>(0.0); var b53 = vec4<f32>(0.0);
    var a54 = vec4<f32>(0.0); var b54 = vec4<f32>(0.0);
    var a55 = vec4<f32>(0.0); var b55 = vec4<f32>(0.0);
    var a56 = vec4<f32>(0.0); var b56 = vec4<f32>(0.0);
    var a57 = vec4<f32>(0.0); var b57 = vec4<f32>(0.0);
    var a58 = vec4<f32>(0.0); var b58 = vec4<f32>(0.0);
    var a59 = vec4<f32>(0.0); var b59 = vec4<f32>(0.0);
    var a60 = vec4<f32>(0.0); var b60 = vec4<f32>(0.0);
    var a61 = vec4<f32>(0.0); var b61 = vec4<f32>(0.0);
    var a62 = vec4<f32>(0.0); var b62 = vec4<f32>(0.0);
    var a63 = vec4<f32>(0.0); var b63 = vec4<f32>(0.0);

    for (var k4 = 0u; k4 < k4s; k4++) {
        var wa: mat4x4<f32>;
        var wb: mat4x4<f32>;
        if (W_TRANS == 1u) {
            wa = transpose(mat4x4<f32>(wq(wr0 + k4), wq(wr1 + k4), wq(wr2 + k4), wq(wr3 + k4)));
            if (NV > 1u) {
                wb = transpose(mat4x4<f32>(wq(wr4 + k4), wq(wr5 + k4), wq(wr6 + k4), wq(wr7 + k4)));
            }
        } else {
            wa = mat4x4<f32>(w_quad(q0, k4, 0u), w_quad(q0, k4, 1u), w_quad(q0, k4, 2u), w_quad(q0, k4, 3u));
            if (NV > 1u) {
                wb = mat4x4<f32>(w_quad(q1, k4, 0u), w_quad(q1, k4, 1u), w_quad(q1, k4, 2u), w_quad(q1, k4, 3u));
            }
        }
        // One x load per lane and row group; row m0 + 8·j + i is broadcast from lane i. With
        // fewer than 8 rows only their lanes load (llvmpipe's lane loop skips the others).
        var x0 = vec4<f32>(0.0);
        if (RM >= 8u || lane < RM) {
            x0 = x_quad(xr0 + k4);
        }
        mac8(x0, wa, wb, min(RM, 8u), &a0, &b0, &a1, &b1, &a2, &b2, &a3, &b3,
             &a4, &b4, &a5, &b5, &a6, &b6, &a7, &b7);
        if (RM > 8u) {
            mac8(x_quad(xr1 + k4), wa, wb, 8u, &a8, &b8, &a9, &b9, &a10, &b10, &a11, &b11,
                 &a12, &b12, &a13, &b13, &a14, &b14, &a15, &b15);
        }
        if (RM > 16u) {
            mac8(x_quad(xr2 + k4), wa, wb, 8u, &a16, &b16, &a17, &b17, &a18, &b18, &a19, &b19,
                 &a20, &b20, &a21, &b21, &a22, &b22, &a23, &b23);
            mac8(x_quad(xr3 + k4), wa, wb, 8u, &a24, &b24, &a25, &b25, &a26, &b26, &a27, &b27,
                 &a28, &b28, &a29, &b29, &a30, &b30, &a31, &b31);
        }
        if (RM > 32u) {
            mac8(x_quad(xr4 + k4), wa, wb, 8u, &a32, &b32, &a33, &b33, &a34, &b34, &a35, &b35,
                 &a36, &b36, &a37, &b37, &a38, &b38, &a39, &b39);
            mac8(x_quad(xr5 + k4), wa, wb, 8u, &a40, &b40, &a41, &b41, &a42, &b42, &a43, &b43,
                 &a44, &b44, &a45, &b45, &a46, &b46, &a47, &b47);
            mac8(x_quad(xr6 + k4), wa, wb, 8u, &a48, &b48, &a49, &b49, &a50, &b50, &a51, &b51,
                 &a52, &b52, &a53, &b53, &a54, &b54, &a55, &b55);
            mac8(x_quad(xr7 + k4), wa, wb, 8u, &a56, &b56, &a57, &b57, &a58, &b58, &a59, &b59,
                 &a60, &b60, &a61, &b61, &a62, &b62, &a63, &b63);
        }
    }

    // The stores, one row per trip through one copy of the store code (the unrolled form made
    // the body markedly slower to build; this runs once per tile).
    for (var r = 0u; r < RM; r++) {
        var va: vec4<f32>;
        var vb: vec4<f32>;
        switch r {
            case 0u: { va = a0; vb = b0; }
            case 1u: { va = a1; vb = b1; }
            case 2u: { va = a2; vb = b2; }
            case 3u: { va = a3; vb = b3; }
            case 4u: { va = a4; vb = b4; }
            case 5u: { va = a5; vb = b5; }
            case 6u: { va = a6; vb = b6; }
            case 7u: { va = a7; vb = b7; }
            case 8u: { va = a8; vb = b8; }
            case 9u: { va = a9; vb = b9; }
            case 10u: { va = a10; vb = b10; }
            case 11u: { va = a11; vb = b11; }
            case 12u: { va = a12; vb = b12; }
            case 13u: { va = a13; vb = b13; }
            case 14u: { va = a14; vb = b14; }
            case 15u: { va = a15; vb = b15; }
            case 16u: { va = a16; vb = b16; }
            case 17u: { va = a17; vb = b17; }
            case 18u: { va = a18; vb = b18; }
            case 19u: { va = a19; vb = b19; }
            case 20u: { va = a20; vb = b20; }
            case 21u: { va = a21; vb = b21; }
            case 22u: { va = a22; vb = b22; }
            case 23u: { va = a23; vb = b23; }
            case 24u: { va = a24; vb = b24; }
            case 25u: { va = a25; vb = b25; }
            case 26u: { va = a26; vb = b26; }
            case 27u: { va = a27; vb = b27; }
            case 28u: { va = a28; vb = b28; }
            case 29u: { va = a29; vb = b29; }
            case 30u: { va = a30; vb = b30; }
            case 31u: { va = a31; vb = b31; }
            case 32u: { va = a32; vb = b32; }
            case 33u: { va = a33; vb = b33; }
            case 34u: { va = a34; vb = b34; }
            case 35u: { va = a35; vb = b35; }
            case 36u: { va = a36; vb = b36; }
            case 37u: { va = a37; vb = b37; }
            case 38u: { va = a38; vb = b38; }
            case 39u: { va = a39; vb = b39; }
            case 40u: { va = a40; vb = b40; }
            case 41u: { va = a41; vb = b41; }
            case 42u: { va = a42; vb = b42; }
            case 43u: { va = a43; vb = b43; }
            case 44u: { va = a44; vb = b44; }
            case 45u: { va = a45; vb = b45; }
            case 46u: { va = a46; vb = b46; }
            case 47u: { va = a47; vb = b47; }
            case 48u: { va = a48; vb = b48; }
            case 49u: { va = a49; vb = b49; }
            case 50u: { va = a50; vb = b50; }
            case 51u: { va = a51; vb = b51; }
            case 52u: { va = a52; vb = b52; }
            case 53u: { va = a53; vb = b53; }
            case 54u: { va = a54; vb = b54; }
            case 55u: { va = a55; vb = b55; }
            case 56u: { va = a56; vb = b56; }
            case 57u: { va = a57; vb = b57; }
            case 58u: { va = a58; vb = b58; }
            case 59u: { va = a59; vb = b59; }
            case 60u: { va = a60; vb = b60; }
            case 61u: { va = a61; vb = b61; }
            case 62u: { va = a62; vb = b62; }
            default: { va = a63; vb = b63; }
        }
        store(g, m0, r, n0, va);
        if (NV > 1u) {
            store(g, m0, r, n1, vb);
        }
    }
}
#else
// The output tile of workgroup `linear`: rb × cb blocks of RM rows × 4·NV columns.
fn tile(linear: u32, lid: u32) {
    let cb = params.cb;
    let rb = WG / cb;
    let wtm = (params.tiles_m + rb - 1u) / rb;
    let wtn = (params.tiles_n + cb - 1u) / cb;
    let g = linear / (wtm * wtn);
    let rem = linear % (wtm * wtn);
    let tm = (rem / wtn) * rb + lid / cb;
    let tn = (rem % wtn) * cb + lid % cb;
    if (tm >= params.tiles_m || tn >= params.tiles_n) {
        return;
    }
    let m0 = tm * RM;
    let n0 = tn * (4u * NV);
    let n1 = n0 + 4u;
    let k4s = params.k / 4u;

    let x0 = x_row(g, m0, 0u);
    let x1 = x_row(g, m0, 1u);
    let x2 = x_row(g, m0, 2u);
    let x3 = x_row(g, m0, 3u);
    let x4 = x_row(g, m0, 4u);
    let x5 = x_row(g, m0, 5u);
    let x6 = x_row(g, m0, 6u);
    let x7 = x_row(g, m0, 7u);
    // W_TRANS: the rows of the 4·NV columns; else the vec4 index of w(g, n0.., k = 0) per quad.
    let wr0 = w_row(g, n0, 0u);
    let wr1 = w_row(g, n0, 1u);
    let wr2 = w_row(g, n0, 2u);
    let wr3 = w_row(g, n0, 3u);
    let wr4 = w_row(g, n0, 4u);
    let wr5 = w_row(g, n0, 5u);
    let wr6 = w_row(g, n0, 6u);
    let wr7 = w_row(g, n0, 7u);
    let q0 = (params.w_off + g * params.w_gs + min(n0, params.n - 4u)) / 4u;
    let q1 = (params.w_off + g * params.w_gs + min(n1, params.n - 4u)) / 4u;

    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    var b2 = vec4<f32>(0.0);
    var b3 = vec4<f32>(0.0);
    var b4 = vec4<f32>(0.0);
    var b5 = vec4<f32>(0.0);
    var b6 = vec4<f32>(0.0);
    var b7 = vec4<f32>(0.0);

    for (var k4 = 0u; k4 < k4s; k4++) {
        var wa: mat4x4<f32>;
        var wb: mat4x4<f32>;
        if (W_TRANS == 1u) {
            wa = transpose(mat4x4<f32>(wq(wr0 + k4), wq(wr1 + k4), wq(wr2 + k4), wq(wr3 + k4)));
            if (NV > 1u) {
                wb = transpose(mat4x4<f32>(wq(wr4 + k4), wq(wr5 + k4), wq(wr6 + k4), wq(wr7 + k4)));
            }
        } else {
            wa = mat4x4<f32>(w_quad(q0, k4, 0u), w_quad(q0, k4, 1u), w_quad(q0, k4, 2u), w_quad(q0, k4, 3u));
            if (NV > 1u) {
                wb = mat4x4<f32>(w_quad(q1, k4, 0u), w_quad(q1, k4, 1u), w_quad(q1, k4, 2u), w_quad(q1, k4, 3u));
            }
        }
        let v0 = x_quad(x0 + k4);
        a0 = mac(a0, wa, v0);
        if (NV > 1u) { b0 = mac(b0, wb, v0); }
        if (RM > 1u) {
            let v1 = x_quad(x1 + k4);
            a1 = mac(a1, wa, v1);
            if (NV > 1u) { b1 = mac(b1, wb, v1); }
        }
        if (RM > 2u) {
            let v2 = x_quad(x2 + k4);
            a2 = mac(a2, wa, v2);
            if (NV > 1u) { b2 = mac(b2, wb, v2); }
            let v3 = x_quad(x3 + k4);
            a3 = mac(a3, wa, v3);
            if (NV > 1u) { b3 = mac(b3, wb, v3); }
        }
        if (RM > 4u) {
            let v4 = x_quad(x4 + k4);
            a4 = mac(a4, wa, v4);
            if (NV > 1u) { b4 = mac(b4, wb, v4); }
            let v5 = x_quad(x5 + k4);
            a5 = mac(a5, wa, v5);
            if (NV > 1u) { b5 = mac(b5, wb, v5); }
            let v6 = x_quad(x6 + k4);
            a6 = mac(a6, wa, v6);
            if (NV > 1u) { b6 = mac(b6, wb, v6); }
            let v7 = x_quad(x7 + k4);
            a7 = mac(a7, wa, v7);
            if (NV > 1u) { b7 = mac(b7, wb, v7); }
        }
    }

    store(g, m0, 0u, n0, a0);
    if (NV > 1u) { store(g, m0, 0u, n1, b0); }
    if (RM > 1u) {
        store(g, m0, 1u, n0, a1);
        if (NV > 1u) { store(g, m0, 1u, n1, b1); }
    }
    if (RM > 2u) {
        store(g, m0, 2u, n0, a2);
        store(g, m0, 3u, n0, a3);
        if (NV > 1u) {
            store(g, m0, 2u, n1, b2);
            store(g, m0, 3u, n1, b3);
        }
    }
    if (RM > 4u) {
        store(g, m0, 4u, n0, a4);
        store(g, m0, 5u, n0, a5);
        store(g, m0, 6u, n0, a6);
        store(g, m0, 7u, n0, a7);
        if (NV > 1u) {
            store(g, m0, 4u, n1, b4);
            store(g, m0, 5u, n1, b5);
            store(g, m0, 6u, n1, b6);
            store(g, m0, 7u, n1, b7);
        }
    }
}
#endif
#else
// x[g, m, k] as f32.
fn x_at(g: u32, m: u32, k: u32) -> f32 {
    let i = x_index(g, m, k);
    return sget_b(x[i / SPW_B], i % SPW_B);
}

var<workgroup> x_tile: array<f32, 1024>;
var<workgroup> w_tile: array<f32, 2048>;

// The output tile of workgroup `linear`: BM × BN outputs.
fn tile(linear: u32, lid: u32) {
    let bm = BM_T * RM;
    let bn = BN_T * RN;
    let tiles = params.tiles_m * params.tiles_n;
    let g = linear / tiles;
    let rem = linear % tiles;
    let m0 = (rem / params.tiles_n) * bm;
    let n0 = (rem % params.tiles_n) * bn;
    let tx = lid % BN_T;
    let ty = lid / BN_T;
    let w_base = params.w_off + g * params.w_gs;

    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = 0.0;
    }
    var a: array<f32, 4>;
    var b: array<f32, 4>;

    for (var k0 = 0u; k0 < params.k; k0 += BK) {
        // Stage x: element i of the tile is (row i / BK, k i % BK), stored k-major.
        for (var i = lid; i < bm * BK; i += WG) {
            let mm = i / BK;
            let kk = i % BK;
            var v = 0.0;
            if (m0 + mm < params.m && k0 + kk < params.k) {
                v = x_at(g, m0 + mm, k0 + kk);
            }
            x_tile[kk * bm + mm] = v;
        }
        // Stage w along its contiguous index.
        for (var i = lid; i < bn * BK; i += WG) {
            var nn: u32;
            var kk: u32;
            var src: u32;
            if (params.w_trans == 1u) {
                nn = i / BK;
                kk = i % BK;
                src = w_base + (n0 + nn) * params.w_rs + k0 + kk;
            } else {
                nn = i % bn;
                kk = i / bn;
                src = w_base + (k0 + kk) * params.w_rs + n0 + nn;
            }
            var v = 0.0;
            if (n0 + nn < params.n && k0 + kk < params.k) {
                v = sget(w[src / SPW], src % SPW);
            }
            w_tile[kk * bn + nn] = v;
        }
        workgroupBarrier();
        let kmax = min(BK, params.k - k0);
        for (var kk = 0u; kk < kmax; kk++) {
            for (var r = 0u; r < RM; r++) {
                a[r] = x_tile[kk * bm + ty + r * BM_T];
            }
            for (var c = 0u; c < RN; c++) {
                b[c] = w_tile[kk * bn + tx + c * BN_T];
            }
            for (var r = 0u; r < RM; r++) {
                for (var c = 0u; c < RN; c++) {
                    acc[r * RN + c] = fma(a[r], b[c], acc[r * RN + c]);
                }
            }
        }
        workgroupBarrier();
    }

    let y_base = params.y_off + g * params.y_gs;
    for (var r = 0u; r < RM; r++) {
        let m = m0 + ty + r * BM_T;
        if (m >= params.m) {
            continue;
        }
        for (var c = 0u; c < RN; c++) {
            let n = n0 + tx + c * BN_T;
            if (n < params.n) {
                var v = acc[r * RN + c];
                if ((params.flags & HAS_BIAS) != 0u) {
                    v += bias[n];
                }
                store_y(y_base + m * params.y_rs + n, v);
            }
        }
    }
}
#endif
