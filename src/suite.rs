//! The kernel suite behind `ssm-mla check`, `ssm-mla bench` and the no-argument main job.
//!
//! Each kernel contributes two functions next to its op:
//! - `check_cases(gpu, rng)`: runs the GPU op on fresh random inputs at a few sizes (ragged, size
//!   1, larger than a workgroup) with poisoned outputs and compares with the CPU reference,
//!   returning one [`CheckOutcome`] per output tensor and size;
//! - `bench_cases(gpu, quick)`: prepares [`BenchCase`]s, each owning its inputs (several sets,
//!   rotated between repeats so caches do not flatter) and closures that run the GPU op and the
//!   CPU reference once.
//!
//! [`KERNELS`] lists them; the CLI iterates it.

use crate::batch::Timing;
use crate::compare::{Comparison, Tolerance};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::Cost;
use crate::rng::Rng;
use std::sync::Arc;

/// The result of one conformance case.
#[derive(Clone, Debug)]
pub struct CheckOutcome {
    /// Kernel name (as its shader file).
    pub kernel: &'static str,
    /// Size and options, e.g. `"Bt=2 D=5 N=16 L=7 z,D"`, plus the output tensor name.
    pub case: String,
    /// Tolerance applied.
    pub tolerance: Tolerance,
    /// How the GPU output compared with the reference.
    pub comparison: Comparison,
}

/// Closure that runs a GPU op once (record, submit, wait) and reports its time.
pub type GpuRun = Box<dyn FnMut() -> Result<Timing> + Send>;
/// Closure that runs the CPU reference once on the same size.
pub type CpuRun = Box<dyn FnMut() + Send>;

/// One benchmark size of one kernel.
pub struct BenchCase {
    /// Kernel name.
    pub kernel: &'static str,
    /// Size label, e.g. `"Bt=1 D=256 N=16 L=4096"`.
    pub size: String,
    /// Bytes and FLOPs one run must move and do.
    pub cost: Cost,
    /// Runs the GPU op once.
    pub gpu: GpuRun,
    /// Runs the CPU reference once (None when it would take too long at this size).
    pub cpu: Option<CpuRun>,
}

/// A kernel's entry in the suite.
pub struct KernelEntry {
    /// Kernel name.
    pub name: &'static str,
    /// Conformance cases.
    pub check: fn(&Arc<Gpu>, &mut Rng) -> Result<Vec<CheckOutcome>>,
    /// Benchmark cases; `quick` asks for the smallest sizes only.
    pub bench: fn(&Arc<Gpu>, bool) -> Result<Vec<BenchCase>>,
}

/// Every kernel, in the order the CLI reports them. The ceilings (stream_copy, fma_peak) come
/// first; they are also measured separately by the bench runner.
pub const KERNELS: &[KernelEntry] = &[
    KernelEntry {
        name: "stream_copy",
        check: crate::ops::stream_copy::check_cases,
        bench: crate::ops::stream_copy::bench_cases,
    },
    KernelEntry {
        name: "fma_peak",
        check: crate::ops::fma_peak::check_cases,
        bench: crate::ops::fma_peak::bench_cases,
    },
    KernelEntry {
        name: "diagonal_scan",
        check: crate::ops::diagonal_scan::check_cases,
        bench: crate::ops::diagonal_scan::bench_cases,
    },
];
