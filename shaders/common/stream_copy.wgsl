// stream_copy: dst[i] = src[i] for i < n_vec4 (vec4<f32> elements).
//
// The bandwidth ceiling of the benchmarks: the fastest plain copy we can write, so kernel
// fractions of roofline are not flattered (what bounds it is memory, by construction). Each workgroup owns a contiguous block of WG * PER_THREAD vec4s;
// invocation `lid` loads elements lid, lid + WG, ... (adjacent invocations touch adjacent
// addresses, so loads coalesce) into registers first, then stores them, keeping PER_THREAD
// independent loads in flight. The grid may be 2-D (x * y) when there are more than 65535
// workgroups; the linear workgroup index is wg.x + wg.y * num_workgroups.x.

override WG: u32 = 256u;
override PER_THREAD: u32 = 4u;

struct Params {
    n_vec4: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;       // (n_vec4)
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;  // (n_vec4)

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let block = wg.x + wg.y * groups.x;
    let base = block * WG * PER_THREAD + lid;
    var held: array<vec4<f32>, 16>;
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = base + k * WG;
        if (i < params.n_vec4) {
            held[k] = src[i];
        }
    }
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = base + k * WG;
        if (i < params.n_vec4) {
            dst[i] = held[k];
        }
    }
}
