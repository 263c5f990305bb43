// embedding: out[t, j] = table[ids[t], j], the first op of a language model (token ids to the
// residual stream).
//
// Layouts (row-major): ids (T) u32 token ids (checked against the vocabulary on the host);
// table (rows, H): rows row0 .. row0 + rows of the vocabulary, in its storage dtype
// (common/storage.wgsl: f32, or f16/bf16 two per u32 word), widened to f32; out (T, H) f32, the
// residual stream. A table larger than one storage binding is split into row chunks, one
// dispatch each: a dispatch writes only the tokens whose id falls in its chunk, so together they
// write every element once.
//
// Work split: one workgroup per token t = x + y·num_workgroups.x (the host spreads T over x and
// y past 65535 tokens); its invocations walk the row in units, invocation lid taking units lid,
// lid + WG, ..: 4 elements under flag VEC4 (H % 4 = 0: the table read as squads, out written as
// vec4), else 1. The token comes from the grid, not from dividing a flat index by H: a division
// by a run-time value is a scalar divide per lane on a CPU device, and two of them per element
// set lavapipe's time; a workgroup per token (not per WG units of it) keeps the workgroups few,
// each of which costs a CPU device a call. Consecutive invocations read consecutive elements of
// one table row, so loads and stores are coalesced on a GPU. Bound: memory (T·H table elements
// read, T·H f32 written).

const WG: u32 = 64u;

struct Params {
    tokens: u32, // T
    hidden: u32, // H
    row0: u32,   // first vocabulary row of this table chunk
    rows: u32,   // rows in this chunk
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
#if VEC4
@group(0) @binding(2) var<storage, read> table: array<squad>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
const UNIT: u32 = 4u;
#else
@group(0) @binding(2) var<storage, read> table: array<sword>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
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
    if (t >= params.tokens) {
        return;
    }
    let id = ids[t];
    if (id < params.row0 || id - params.row0 >= params.rows) {
        return;
    }
    let src = (id - params.row0) * params.hidden;
    let dst = t * params.hidden;
    // Units lid, lid + WG, .. of the row (the bound is the same across the workgroup).
    for (var j = lid * UNIT; j < params.hidden; j += STRIDE) {
#if VEC4
        out[(dst + j) / 4u] = sget4(table[(src + j) / 4u]);
#else
        let e = src + j;
        out[dst + j] = sget(table[e / SPW], e % SPW);
#endif
    }
}
