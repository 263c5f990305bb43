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
// Work split: one invocation per output element (element-wise entry, 2-D grid past 65535
// workgroups): consecutive invocations read consecutive elements of one table row, so loads and
// stores are coalesced. Bound: memory (T·H table elements read, T·H f32 written).

const WG: u32 = 256u;

struct Params {
    n: u32,      // T · H
    hidden: u32, // H
    row0: u32,   // first vocabulary row of this table chunk
    rows: u32,   // rows in this chunk
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<sword>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

#include "common/storage"

fn element(i: u32) {
    let t = i / params.hidden;
    let j = i % params.hidden;
    let id = ids[t];
    if (id < params.row0 || id - params.row0 >= params.rows) {
        return;
    }
    let e = (id - params.row0) * params.hidden + j;
    out[i] = sget(table[e / SPW], e % SPW);
}

#include "common/elementwise"
