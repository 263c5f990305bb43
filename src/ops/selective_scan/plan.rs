//! The work split of one selective-scan call: which (batch, channel) rows each dispatch takes.
//! One dispatch covers every row unless a tensor's window would exceed the device's largest
//! storage binding or the workgroup grid; then rows are cut into windows that fit, keeping the
//! grouped B/C windows aligned to whole batches.

use super::{limit, BcLayout, ScanDims};
use crate::error::Result;
use crate::runtime::Gpu;

/// Elements of the scratch that packs A (D, N), D (D) and delta_bias (D) for the kernel.
pub(super) fn packed_len(dims: &ScanDims) -> usize {
    dims.dim * dims.n + 2 * dims.dim
}

/// The row ranges `[r0, r1)` of the dispatches (rows are Bt·D (batch, channel) pairs), or a
/// `Limit` error when even one row, one batch of grouped B/C or the packed parameters exceed a
/// binding, or an index would pass 32 bits.
pub(super) fn row_windows(gpu: &Gpu, dims: &ScanDims) -> Result<Vec<(usize, usize)>> {
    let ScanDims {
        batch: bt,
        dim,
        len,
        n,
        ..
    } = *dims;
    let rows = bt * dim;
    let too_many = |what: &str, count: usize| {
        limit(
            format!("{what} of {count} elements"),
            "the kernel indexes with 32-bit integers (at most 2^32 - 1 elements)".into(),
        )
    };
    if rows * len >= u32::MAX as usize {
        return Err(too_many("u", rows * len));
    }
    for (name, layout) in [("B", dims.b), ("C", dims.c)] {
        let count: usize = layout.shape(dims).iter().product();
        if count >= u32::MAX as usize {
            return Err(too_many(name, count));
        }
    }
    // Plan the dispatches (one unless a tensor exceeds a storage binding) before recording.
    let align = gpu.limits().min_storage_buffer_offset_alignment.max(4) as usize;
    let max_bind = gpu.max_binding_bytes() as usize;
    // Elements per window, worst alignment; halves are counted at 4 bytes too (a conservative
    // bound: their windows hold half the bytes, so any plan made here fits them).
    let room = max_bind.saturating_sub(align) / 4;
    let per_row = len.max(n);
    if room < per_row {
        return Err(limit(
            format!("one (batch, channel) row of the selective scan (L = {len}, N = {n})"),
            format!("max_storage_buffer_binding_size = {max_bind}"),
        ));
    }
    let per_batch_bc = [dims.b, dims.c]
        .iter()
        .filter_map(|l| match l {
            BcLayout::Grouped(g) => Some(g * n * len),
            BcLayout::Constant => None,
        })
        .max();
    let batches_per = match per_batch_bc {
        Some(e) if e > room => {
            return Err(limit(
                format!("one batch of B/C ({e} elements)"),
                format!("max_storage_buffer_binding_size = {max_bind}"),
            ))
        }
        Some(e) => room / e,
        None => usize::MAX,
    };
    let chan_len = packed_len(dims);
    if chan_len > room {
        return Err(limit(
            format!("A, D and delta_bias ({chan_len} elements)"),
            format!("max_storage_buffer_binding_size = {max_bind}"),
        ));
    }
    let max_groups = gpu.limits().max_compute_workgroups_per_dimension.max(1) as usize;
    let max_groups = max_groups * max_groups;
    let mut plan = Vec::new();
    let mut r0 = 0;
    while r0 < rows {
        let mut r1 = rows.min(r0 + room / per_row).min(r0 + max_groups);
        if batches_per != usize::MAX {
            r1 = r1.min((r0 / dim + batches_per) * dim);
        }
        plan.push((r0, r1));
        r0 = r1;
    }
    Ok(plan)
}
