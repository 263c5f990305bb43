// moe_plan: group the routed (token, slot) assignments by expert, deterministically.
//
// Input ids (T, k) u32: assignment a = t·k + j routes token t to expert ids[a]. Output plan, one
// u32 array (offsets in words):
//   [0, E]                  row_off[e]: first routed row of expert e; row_off[E] = T·k
//   [E + 1, 2E + 2)         tile_off[e]: first row tile of expert e (tiles of RM rows, never
//                           straddling two experts); tile_off[E] = the number of tiles
//   [2E + 2, 2E + 2 + T·k)  rows[r]: the assignment a of routed row r (token a / k)
//   [2E + 2 + T·k, +T·k)    row_of[a]: the routed row of assignment a (rows' inverse)
// Within an expert, rows follow the assignment order (token, then slot), so every run writes
// the same plan and the expert products and the combine are bit-reproducible.
//
// Work split: a single workgroup of WG invocations (dispatched once). Invocation i owns experts
// i, i + WG, …: it counts their assignments in one pass over ids; invocation 0 scans the counts
// into offsets (E ≤ 1024 additions); then each invocation walks ids again writing its experts'
// rows in order. Workgroup memory: two arrays of MAX_E u32 (8 KiB). Bound: 2·T·k·E id reads
// spread over min(E, WG) invocations; small next to the expert products at decode and moderate
// sizes (a multi-workgroup scan would serve very long prefills better).

const WG: u32 = 256u;
const MAX_E: u32 = 1024u;

struct Params {
    assignments: u32, // T·k
    e: u32,           // experts E
    rm: u32,          // rows per tile
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;        // (T, k)
@group(0) @binding(2) var<storage, read_write> plan: array<u32>; // see above

var<workgroup> counts: array<u32, MAX_E>;
var<workgroup> offsets: array<u32, MAX_E>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    let n = params.assignments;
    let n_e = params.e;
    for (var e = lid; e < n_e; e += WG) {
        var c = 0u;
        for (var a = 0u; a < n; a++) {
            c += select(0u, 1u, ids[a] == e);
        }
        counts[e] = c;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var r = 0u;
        var tiles = 0u;
        for (var e = 0u; e < n_e; e++) {
            offsets[e] = r;
            plan[e] = r;
            plan[n_e + 1u + e] = tiles;
            r += counts[e];
            tiles += (counts[e] + params.rm - 1u) / params.rm;
        }
        plan[n_e] = r;
        plan[2u * n_e + 1u] = tiles;
    }
    workgroupBarrier();
    let rows = 2u * n_e + 2u;
    let row_of = rows + n;
    for (var e = lid; e < n_e; e += WG) {
        var r = offsets[e];
        for (var a = 0u; a < n; a++) {
            if (ids[a] == e) {
                plan[rows + r] = a;
                plan[row_of + a] = r;
                r++;
            }
        }
    }
}
