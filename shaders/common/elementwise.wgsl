// The entry point of a kernel with one invocation per element i < params.n: it calls the body's
// `fn element(i: u32)`. WG (the body's, an override or a constant) invocations per workgroup;
// past max_compute_workgroups_per_dimension workgroups the host splits the grid over x and y
// (`Gpu::grid`), so the linear workgroup index is wg.x + wg.y * num_workgroups.x and the
// invocations past n of the last workgroups do nothing.

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wg.x + wg.y * groups.x) * WG + lid;
    if (i < params.n) {
        element(i);
    }
}
