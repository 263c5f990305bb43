// grid: which work item a workgroup's grid position runs.
//
// A CPU device (llvmpipe) hands each of its K threads one contiguous K-th of a dispatch's
// workgroups. Where work varies along the grid (a causal prefill's short and long rows, a
// ragged call's small and large sequences, the idle tail of a grid sized for the worst case),
// that puts most of the work on one thread. Position p of chunk p / c (c = total / K) runs item
// (p % c) * K + p / c instead, so each thread takes every K-th item. A bijection of
// [0, total): positions past c * K (none when the host pads the grid to a multiple of K) keep
// their own index. K = 1 (GPUs, which schedule workgroups dynamically) is the identity.
fn interleaved_item(p: u32, total: u32, k: u32) -> u32 {
    let kk = max(k, 1u);
    let chunk = total / kk;
    if (kk == 1u || p >= chunk * kk) {
        return p;
    }
    return (p % chunk) * kk + p / chunk;
}
