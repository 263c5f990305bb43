//! How a linear scan maps onto the GPU, shared by the scan ops that have both strategies
//! (`selective_scan`, `diagonal_scan`): one invocation walking each row sequentially, or one
//! workgroup per row scanning chunks of the sequence in parallel and carrying the prefix.
//! Both take the same inputs, write the same outputs and need one dispatch for any length.

/// `Auto` picks the chunked scan below this many (row, 16-state pass) work items...
pub const AUTO_MAX_ROW_PASSES: usize = 2048;
/// ...and above this many steps (one chunk of the chunked kernels).
pub const AUTO_MIN_LEN: usize = 512;

/// How the scan maps onto the GPU (both strategies take the same inputs, write the same outputs
/// and use one dispatch per call for any L; see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ScanStrategy {
    /// Pick per call from the sizes and the device: on a GPU, [`ScanStrategy::ChunkedParallel`]
    /// when `Bt·D·ceil(N/16) < 2048` and `L > 512` (too few rows to fill a GPU, long sequence),
    /// [`ScanStrategy::RowSequential`] otherwise. On a CPU device (lavapipe, SwiftShader, WARP)
    /// always row-sequential: a workgroup barrier there is a switch between CPU fibers, and the
    /// chunked scan measured 6× slower at Bt=1 D=4 N=16 L=8192 on lavapipe (26.7 vs 4.2 ms).
    #[default]
    Auto,
    /// One invocation per (batch, channel) row walking L sequentially.
    RowSequential,
    /// One workgroup per row, L in chunks of 512 scanned in parallel, prefix carried.
    ChunkedParallel,
}

impl ScanStrategy {
    /// The concrete strategy (never `Auto`) for a scan of `rows` independent rows (Bt·channels)
    /// of `n` states each over `len` steps, on a device of this type. Auto: row-sequential on a CPU device; on a GPU chunked when
    /// `rows·ceil(n/16) < 2048` and `len > 512`, else row-sequential.
    pub fn resolve_sizes(
        self,
        rows: usize,
        n: usize,
        len: usize,
        device: wgpu::DeviceType,
    ) -> ScanStrategy {
        match self {
            ScanStrategy::Auto if device == wgpu::DeviceType::Cpu => ScanStrategy::RowSequential,
            ScanStrategy::Auto => {
                let passes = rows * n.div_ceil(16);
                if passes < AUTO_MAX_ROW_PASSES && len > AUTO_MIN_LEN {
                    ScanStrategy::ChunkedParallel
                } else {
                    ScanStrategy::RowSequential
                }
            }
            s => s,
        }
    }

    /// Short name (`row-sequential`, `chunked`, `auto`).
    pub fn name(self) -> &'static str {
        match self {
            ScanStrategy::Auto => "auto",
            ScanStrategy::RowSequential => "row-sequential",
            ScanStrategy::ChunkedParallel => "chunked",
        }
    }
}
