//! The work split of one SSD scan: the chunk table (chunks never cross a sequence boundary),
//! the windows of consecutive chunks that fit the device's storage bindings and grid, and each
//! window's segments (one per sequence with chunks in it) for the state-passing stage.

use super::{limit, SsdDims, TILE};
use crate::error::Result;
use crate::runtime::{Gpu, View};

/// One window of consecutive chunks: five dispatches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Window {
    /// First chunk (index into the chunk table).
    pub k0: usize,
    /// Chunks in the window.
    pub nk: usize,
    /// First segment (index into the segment table).
    pub seg0: usize,
    /// Segments in the window.
    pub nseg: usize,
    /// Tokens `tok0 .. tok1` of the window.
    pub tok0: usize,
    pub tok1: usize,
}

/// The tables the kernels read and the windows to dispatch.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    /// Two words per chunk: first token, length.
    pub chunks: Vec<u32>,
    /// Four words per segment: pool row, first window-local chunk, chunk count, fresh.
    pub segs: Vec<u32>,
    pub windows: Vec<Window>,
    /// The most chunks in one window (sizes the scratch).
    pub max_nk: usize,
}

/// Cut the sequences of `cu` into chunks of at most `q` tokens and the chunks into windows of
/// at most `per_window`. A segment is `fresh` (starts from zero rather than its pool row) when
/// `fresh_start` and it holds its sequence's first chunk.
pub(super) fn chunk_plan(
    cu: &[u32],
    slots: &[u32],
    q: usize,
    fresh_start: bool,
    per_window: usize,
) -> Plan {
    let mut chunks = Vec::new();
    let mut owner = Vec::new(); // (sequence, first chunk of it)
    for s in 0..slots.len() {
        let (first, end) = (cu[s] as usize, cu[s + 1] as usize);
        for t0 in (first..end).step_by(q) {
            chunks.push(t0 as u32);
            chunks.push((end - t0).min(q) as u32);
            owner.push((s, t0 == first));
        }
    }
    let count = owner.len();
    let mut segs = Vec::new();
    let mut windows = Vec::new();
    let per_window = per_window.max(1);
    let mut k0 = 0;
    while k0 < count {
        let nk = per_window.min(count - k0);
        let seg0 = segs.len() / 4;
        for k in k0..k0 + nk {
            let (s, first) = owner[k];
            if k == k0 || owner[k - 1].0 != s {
                segs.extend_from_slice(&[
                    slots[s],
                    (k - k0) as u32,
                    0,
                    (fresh_start && first) as u32,
                ]);
            }
            let last = segs.len() - 2;
            segs[last] += 1;
        }
        let last_chunk = k0 + nk - 1;
        windows.push(Window {
            k0,
            nk,
            seg0,
            nseg: segs.len() / 4 - seg0,
            tok0: chunks[2 * k0] as usize,
            tok1: (chunks[2 * last_chunk] + chunks[2 * last_chunk + 1]) as usize,
        });
        k0 += nk;
    }
    let max_nk = windows.iter().map(|w| w.nk).max().unwrap_or(0);
    Plan {
        chunks,
        segs,
        windows,
        max_nk,
    }
}

/// The most chunks one window may hold on this device: its CB, chunk states and dt/cum scratch
/// and each activation view's range over the window's tokens (`views`, token axis first) must
/// each fit one storage binding, and each stage's grid the device's two-dimensional grid. A
/// `Limit` error when not even one chunk fits.
pub(super) fn chunks_per_window(
    gpu: &Gpu,
    dims: &SsdDims,
    q: usize,
    views: &[(&str, &View)],
) -> Result<usize> {
    let align = gpu.limits().min_storage_buffer_offset_alignment.max(4) as usize;
    let max_bind = gpu.max_binding_bytes() as usize;
    let room = max_bind.saturating_sub(align) / 4; // elements
    let (h, p, g, n) = (dims.heads, dims.head_dim, dims.groups, dims.n);
    let mut best = usize::MAX;
    for (what, per_chunk) in [
        ("C·Bᵀ of one chunk", g * q * q),
        ("the state of one chunk", h * p * n),
        ("dt and its cumsum for one chunk", 2 * h * q),
    ] {
        if per_chunk > room {
            return Err(limit(
                format!("{what} ({per_chunk} elements) in the SSD scan"),
                format!("max_storage_buffer_binding_size = {max_bind}"),
            ));
        }
        best = best.min(room / per_chunk);
    }
    for (name, v) in views {
        let (shape, st) = (v.shape(), v.strides());
        let inner: usize = shape[1..]
            .iter()
            .zip(&st[1..])
            .map(|(s, t)| (s - 1) * t)
            .sum();
        if st[0] == 0 {
            continue;
        }
        // A window of k chunks spans ≤ k·Q tokens: ((k·Q − 1)·st_t + inner + 1) elements.
        let fit = room
            .checked_sub(inner + 1)
            .map(|r| (r / st[0] + 1) / q)
            .unwrap_or(0);
        if fit == 0 {
            return Err(limit(
                format!("`{name}` over one chunk of {q} tokens in the SSD scan"),
                format!("max_storage_buffer_binding_size = {max_bind}"),
            ));
        }
        best = best.min(fit);
    }
    let max_dim = gpu.limits().max_compute_workgroups_per_dimension.max(1) as usize;
    let grid = max_dim * max_dim;
    // The staged tiles' workgroups per chunk; the register tiles (4 × 8 or 8 × 8 outputs per
    // invocation, 64 per workgroup) and the vec4 state pass need fewer.
    let (qt, pt, nt) = (q.div_ceil(TILE), p.div_ceil(TILE), n.div_ceil(TILE));
    for per_chunk in [
        g * qt * qt,
        h * pt * nt,
        h * qt * pt,
        h.div_ceil(super::CUMSUM_WG),
    ] {
        best = best.min(grid / per_chunk.max(1));
    }
    Ok(best.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_inside_sequences_and_windows_split_segments() {
        // Sequences of 5, 0, 1 and 9 tokens, Q = 4: chunks (0,4) (4,1) | (5,1) | (6,4) (10,4) (14,1).
        let cu = [0, 5, 5, 6, 15];
        let slots = [7, 6, 5, 4];
        let plan = chunk_plan(&cu, &slots, 4, true, 4);
        assert_eq!(plan.chunks, vec![0, 4, 4, 1, 5, 1, 6, 4, 10, 4, 14, 1]);
        assert_eq!(plan.windows.len(), 2);
        assert_eq!(plan.windows[0].nk, 4);
        // Window 0: sequence 0 (2 chunks, fresh), sequence 2 (1 chunk, fresh), sequence 3
        // (1 chunk, fresh); window 1: sequence 3 again (2 chunks, continuing).
        assert_eq!(
            plan.segs,
            vec![7, 0, 2, 1, 5, 2, 1, 1, 4, 3, 1, 1, 4, 0, 2, 0]
        );
        assert_eq!((plan.windows[1].seg0, plan.windows[1].nseg), (3, 1));
        assert_eq!((plan.windows[1].tok0, plan.windows[1].tok1), (10, 15));
        assert_eq!(plan.max_nk, 4);
    }
}
