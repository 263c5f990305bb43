// ssd_state_passing, stage 4 of the SSD scan: the scan of chunk states along each sequence.
// Per (segment, head, p, n) element: running = the pool row's state (or 0 for a fresh
// segment); for each of the segment's chunks in order, the chunk's own state S_c is replaced
// by running (the state entering the chunk, which ssd_chunk_scan reads) and
// running ← exp(cum_last_c)·running + S_c; at the end running goes back to the pool row. A
// segment is one sequence's chunks inside this window of chunks: a sequence cut by a window
// boundary continues, in the next window, from the state this one left in its pool row.
//
// Bindings (ssd_io.wgsl has params, table and the scratch layout): dtcum (K, H, 2, Q) read
// (cum_last at Q − 1: padded); states (K, H, P, N) read and rewritten; pool (Pool, H, P, N).
//
// Work split: one invocation per (segment, h, p, n) — with VEC4 (N a multiple of 4; states and
// pool bound as vec4) per (segment, h, p, 4 consecutive n) — WG per workgroup, linear workgroup
// index over a 2-D grid; the walk over a segment's chunks is sequential (K/S steps, each one
// load, one FMA, one store, independent across the H·P·N elements).
// Bounds: memory: every chunk state read and written once (2·K·H·P·N floats), on a GPU
// (VEC4: 16-byte accesses) and on lavapipe alike, where each access is a loop over the SIMD
// lanes, so VEC4 moves 4 values per loop.

override WG: u32 = 256u;

#include "ssm/ssd_io"

@group(0) @binding(2) var<storage, read> dtcum: array<f32>;        // (K, H, 2, Q)
#if VEC4
alias elem = vec4<f32>;
const PER: u32 = 4u; // elements per invocation
#else
alias elem = f32;
const PER: u32 = 1u;
#endif
@group(0) @binding(3) var<storage, read_write> states: array<elem>; // (K, H, P, N)
@group(0) @binding(4) var<storage, read_write> pool: array<elem>;   // (Pool, H, P, N)

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // In units of elem.
    let hpn = params.heads * params.head_dim * params.n / PER;
    let e = (wg.x + wg.y * groups.x) * WG + lid;
    if (e >= params.nseg * hpn) {
        return;
    }
    let seg = e / hpn;
    let r = e % hpn;
    let h = r / (params.head_dim * params.n / PER);
    let entry = params.p_segs + 4u * (params.seg0 + seg);
    let slot = table[entry];
    let first = table[entry + 1u];
    let count = table[entry + 2u];
    let fresh = table[entry + 3u] != 0u;
    let q = params.q;
    // A fresh segment's pool row may hold anything (even NaN): select, never multiply by 0.
    var running = select(pool[slot * hpn + r], elem(0.0), fresh);
    for (var k = 0u; k < count; k++) {
        let c = first + k;
        let own = states[c * hpn + r];
        states[c * hpn + r] = running;
        running = exp(dtcum[dtcum_base(c, h) + 2u * q - 1u]) * running + own;
    }
    pool[slot * hpn + r] = running;
}
