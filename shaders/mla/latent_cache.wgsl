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
// The value is rounded by half_bits (bf16: nearest even). The cache is never read here.
//
// Work split: one invocation per element of latent (common/elementwise.wgsl). Adjacent
// invocations write adjacent addresses of one row, so stores coalesce. What bounds it: memory,
// one load and one store per element (plus a slot load, cached).

override WG: u32 = 256u;

struct Params {
    n: u32,          // T * W
    w: u32,          // W
    num_slots: u32,  // num_blocks * block_size
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> latent: array<f32>;      // (T, W)
@group(0) @binding(2) var<storage, read> slots: array<u32>;       // (T)
#if F16 || BF16
@group(0) @binding(3) var<storage, read_write> data: array<atomic<u32>>; // halves, in pairs
#else
@group(0) @binding(3) var<storage, read_write> data: array<f32>;  // (num_blocks, block_size, W)
#endif

fn element(i: u32) {
    let t = i / params.w;
    let d = i - t * params.w;
    let slot = slots[t];
    if (slot < params.num_slots) {
#if F16 || BF16
        let j = slot * params.w + d;
        let shift = (j & 1u) * 16u;
        atomicAnd(&data[j / 2u], ~(0xffffu << shift));
        atomicOr(&data[j / 2u], half_bits(latent[i]) << shift);
#else
        data[slot * params.w + d] = latent[i];
#endif
    }
}

#include "common/storage"

#include "common/elementwise"
