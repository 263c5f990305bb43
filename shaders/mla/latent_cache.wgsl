// latent_cache (append): data[slots[t] * W + d] = latent[t * W + d] for t < T, d < W,
// where W = d_c + d_R is the latent row width.
//
// Layouts (f32 unless noted, row-major):
//   latent (T, W)                          new rows [c (d_c) | k_rope (d_R)]
//   slots  (T) u32                         absolute slot = block * block_size + offset
//   data   (num_blocks, block_size, W)     the paged cache, viewed as (num_slots, W)
// A slot >= num_slots (e.g. 0xFFFFFFFF) means "skip this row": nothing is written for it.
// Slots must be distinct (two rows to one slot: which one lands is unspecified).
//
// Storage dtype (common/storage.wgsl): data may be f16 or bf16 (flag F16 or BF16), two halves
// per u32 word, element j in word j / 2 (low half for even j). A row of odd width starts
// mid-word, so a word can hold halves of two rows written by different invocations: each
// invocation owns one half and writes it with two atomics on its word (atomicAnd clears its
// half, atomicOr sets it; operations on disjoint bits commute, so any interleaving is right).
// The value is rounded by half_bits (bf16: nearest even). Under VEC4 (below) a row starts on a
// word and an invocation writes whole words (spack4, the same rounding) without atomics. The
// cache is never read here.
//
// Work split: one workgroup per row t = x + y·num_workgroups.x (the host spreads T over x and y
// past 65535 rows); its invocations walk the row in units, invocation lid taking units lid,
// lid + WG, ..: 4 elements under flag VEC4 (W % 4 = 0: latent read as vec4, the cache written as
// squads; a half row then starts on a word and an invocation owns whole words, so no atomics),
// else 1. The row comes from the grid, not from dividing a flat index by W (a scalar divide per
// lane on a CPU device). Adjacent invocations write adjacent addresses of one row, so stores
// coalesce on a GPU. What bounds it: memory, one load and one store per element (plus a slot
// load per row).

const WG: u32 = 64u;

struct Params {
    rows: u32,       // T
    w: u32,          // W
    num_slots: u32,  // num_blocks * block_size
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
@group(0) @binding(1) var<storage, read> latent: array<vec4<f32>>; // (T, W)
#else
@group(0) @binding(1) var<storage, read> latent: array<f32>;      // (T, W)
#endif
@group(0) @binding(2) var<storage, read> slots: array<u32>;       // (T)
#if VEC4
@group(0) @binding(3) var<storage, read_write> data: array<squad>; // (num_blocks, block_size, W)
const UNIT: u32 = 4u;
#else
#if F16 || BF16
@group(0) @binding(3) var<storage, read_write> data: array<atomic<u32>>; // halves, in pairs
#else
@group(0) @binding(3) var<storage, read_write> data: array<f32>;  // (num_blocks, block_size, W)
#endif
const UNIT: u32 = 1u;
#endif

#include "common/storage"

const STRIDE: u32 = WG * UNIT; // elements between an invocation's units

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = wg.x + wg.y * groups.x;
    if (t >= params.rows) {
        return;
    }
    let slot = slots[t];
    if (slot >= params.num_slots) {
        return;
    }
    let src = t * params.w;
    let dst = slot * params.w;
    // Units lid, lid + WG, .. of the row (the bound is the same across the workgroup).
    for (var d = lid * UNIT; d < params.w; d += STRIDE) {
#if VEC4
        data[(dst + d) / 4u] = spack4(latent[(src + d) / 4u]);
#else
#if F16 || BF16
        let j = dst + d;
        let shift = (j & 1u) * 16u;
        atomicAnd(&data[j / 2u], ~(0xffffu << shift));
        atomicOr(&data[j / 2u], half_bits(latent[src + d]) << shift);
#else
        data[dst + d] = latent[src + d];
#endif
#endif
    }
}
