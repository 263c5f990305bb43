//! The kernel suite behind `ssm-mla check`, `ssm-mla bench` and the no-argument main job.
//!
//! Each kernel has a module here (inputs from [`crate::testing`]) with three functions:
//! - `check_cases(gpu, rng)`: runs the GPU op on fresh random inputs at a few sizes (ragged, size
//!   1, larger than a workgroup) with poisoned outputs and compares with the CPU reference,
//!   returning one [`CheckOutcome`] per output tensor and size;
//! - `bench_cases(gpu, quick)`: prepares [`BenchCase`]s, each owning its inputs and closures
//!   that run the GPU op and the CPU reference once. [`measure`] evicts caches before every timed
//!   repeat ([`CacheFlush`]), so repeats on the same inputs do not run from a warm cache;
//! - `cpu_cases(rng)`: the CPU reference alone on a small input, for machines without a GPU.
//!
//! [`KERNELS`] lists them; the CLI iterates it.

pub mod absorbed_attention;
pub mod causal_conv1d;
pub mod deepseek_layer;
pub mod diagonal_scan;
pub mod embedding;
pub mod fma_peak;
pub mod latent_cache;
pub mod lm_cases;
pub mod mamba2_model;
pub mod mamba_model;
pub mod matmul;
pub mod mla_layer;
pub mod moe;
pub mod rmsnorm;
pub mod rope;
pub mod selective_scan;
pub mod ssd_scan;
pub mod state_update;
pub mod stream_copy;

mod measure;

pub use measure::{measure, measure_ceilings, BenchPlan, BenchRecord, CacheFlush, Ceilings};

use crate::compare::{Comparison, Tolerance};
use crate::error::Result;
use crate::ops::Cost;
use crate::rng::Rng;
use crate::runtime::Timing;
use crate::runtime::{DType, Gpu};
use std::future::Future;
use std::pin::Pin;
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

impl CheckOutcome {
    /// Compare `got` (the GPU output) with `reference` under `tolerance`.
    pub fn new(
        kernel: &'static str,
        case: String,
        tolerance: Tolerance,
        got: &[f32],
        reference: &[f64],
    ) -> Self {
        Self {
            kernel,
            case,
            tolerance,
            comparison: crate::compare::compare(got, reference, tolerance),
        }
    }
}

/// Closure that runs a GPU op once (record, submit, wait) and reports its time.
pub type GpuRun = Box<dyn FnMut() -> Result<Timing> + Send>;
/// Closure that runs the CPU reference once on the same size.
pub type CpuRun = Box<dyn FnMut() + Send>;

/// A kernel's bench cases with its half-capable tensor stored as the given dtype.
pub type BenchAs = fn(&Arc<Gpu>, bool, DType) -> Result<Vec<BenchCase>>;

/// One benchmark size of one kernel.
pub struct BenchCase {
    /// Kernel name.
    pub kernel: &'static str,
    /// Size label, e.g. `"Bt=1 D=256 N=16 L=4096"`.
    pub size: String,
    /// Bytes and FLOPs one run must move and do.
    pub cost: Cost,
    /// Tokens one run processes, for whole-model entries (reported as tokens/s); None for
    /// single kernels.
    pub tokens: Option<u64>,
    /// Runs the GPU op once.
    pub gpu: GpuRun,
    /// Runs the CPU reference once (None when it would take too long at this size).
    pub cpu: Option<CpuRun>,
}

/// A CPU-reference run that needs no GPU: the main job's path on a machine without an adapter.
pub struct CpuCase {
    /// Size label.
    pub size: String,
    /// Bytes and FLOPs of the computation.
    pub cost: Cost,
    /// Runs the reference once on inputs it owns.
    pub run: CpuRun,
}

/// What a kernel's `check` returns: its conformance cases, awaited. Natively block on it
/// (`pollster::block_on`); in a browser await it, since readback resolves from the event loop.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<CheckOutcome>>> + 'a>>;

/// A kernel's `check_cases` as a plain function pointer (an `async fn` has an unnameable type).
pub type CheckFn = for<'a> fn(&'a Arc<Gpu>, &'a mut Rng) -> CheckFuture<'a>;

/// Wrap a suite module's `async fn check_cases` into a [`CheckFn`].
macro_rules! check_fn {
    ($module:ident) => {{
        fn check<'a>(gpu: &'a Arc<Gpu>, rng: &'a mut Rng) -> CheckFuture<'a> {
            Box::pin($module::check_cases(gpu, rng))
        }
        check
    }};
}

/// A kernel's entry in the suite.
pub struct KernelEntry {
    /// Kernel name.
    pub name: &'static str,
    /// Conformance cases (awaited: see [`CheckFuture`]).
    pub check: CheckFn,
    /// Benchmark cases; `quick` asks for the smallest sizes only.
    pub bench: fn(&Arc<Gpu>, bool) -> Result<Vec<BenchCase>>,
    /// Benchmark cases with the kernel's half-capable tensor stored as the given dtype (`None`
    /// for kernels that store only f32 so far).
    pub bench_as: Option<BenchAs>,
    /// The CPU reference on a small random input, for machines without a GPU.
    pub cpu: fn(&mut Rng) -> Vec<CpuCase>,
}

/// Every kernel, in the order the CLI reports them. The ceilings (stream_copy, fma_peak) come
/// first; they are also measured separately by the bench runner.
pub const KERNELS: &[KernelEntry] = &[
    KernelEntry {
        name: "stream_copy",
        check: check_fn!(stream_copy),
        bench: stream_copy::bench_cases,
        bench_as: None,
        cpu: stream_copy::cpu_cases,
    },
    KernelEntry {
        name: "fma_peak",
        check: check_fn!(fma_peak),
        bench: fma_peak::bench_cases,
        bench_as: None,
        cpu: fma_peak::cpu_cases,
    },
    KernelEntry {
        name: "selective_scan",
        check: check_fn!(selective_scan),
        bench: selective_scan::bench_cases,
        bench_as: Some(selective_scan::bench_cases_as),
        cpu: selective_scan::cpu_cases,
    },
    KernelEntry {
        name: "ssd_scan",
        check: check_fn!(ssd_scan),
        bench: ssd_scan::bench_cases,
        bench_as: None,
        cpu: ssd_scan::cpu_cases,
    },
    KernelEntry {
        name: "state_update",
        check: check_fn!(state_update),
        bench: state_update::bench_cases,
        bench_as: Some(state_update::bench_cases_as),
        cpu: state_update::cpu_cases,
    },
    KernelEntry {
        name: "causal_conv1d",
        check: check_fn!(causal_conv1d),
        bench: causal_conv1d::bench_cases,
        bench_as: Some(causal_conv1d::bench_cases_as),
        cpu: causal_conv1d::cpu_cases,
    },
    KernelEntry {
        name: "latent_cache",
        check: check_fn!(latent_cache),
        bench: latent_cache::bench_cases,
        bench_as: Some(latent_cache::bench_cases_as),
        cpu: latent_cache::cpu_cases,
    },
    KernelEntry {
        name: "absorbed_attention",
        check: check_fn!(absorbed_attention),
        bench: absorbed_attention::bench_cases,
        bench_as: Some(absorbed_attention::bench_cases_as),
        cpu: absorbed_attention::cpu_cases,
    },
    KernelEntry {
        name: "matmul",
        check: check_fn!(matmul),
        bench: matmul::bench_cases,
        bench_as: Some(matmul::bench_cases_as),
        cpu: matmul::cpu_cases,
    },
    KernelEntry {
        name: "rmsnorm",
        check: check_fn!(rmsnorm),
        bench: rmsnorm::bench_cases,
        bench_as: Some(rmsnorm::bench_cases_as),
        cpu: rmsnorm::cpu_cases,
    },
    KernelEntry {
        name: "rope",
        check: check_fn!(rope),
        bench: rope::bench_cases,
        bench_as: Some(rope::bench_cases_as),
        cpu: rope::cpu_cases,
    },
    KernelEntry {
        name: "mla_layer",
        check: check_fn!(mla_layer),
        bench: mla_layer::bench_cases,
        bench_as: None,
        cpu: mla_layer::cpu_cases,
    },
    KernelEntry {
        name: "moe",
        check: check_fn!(moe),
        bench: moe::bench_cases,
        bench_as: Some(moe::bench_cases_as),
        cpu: moe::cpu_cases,
    },
    KernelEntry {
        name: "deepseek_layer",
        check: check_fn!(deepseek_layer),
        bench: deepseek_layer::bench_cases,
        bench_as: None,
        cpu: deepseek_layer::cpu_cases,
    },
    KernelEntry {
        name: "embedding",
        check: check_fn!(embedding),
        bench: embedding::bench_cases,
        bench_as: Some(embedding::bench_cases_as),
        cpu: embedding::cpu_cases,
    },
    KernelEntry {
        name: "diagonal_scan",
        check: check_fn!(diagonal_scan),
        bench: diagonal_scan::bench_cases,
        bench_as: Some(diagonal_scan::bench_cases_as),
        cpu: diagonal_scan::cpu_cases,
    },
    KernelEntry {
        name: "mamba_model",
        check: check_fn!(mamba_model),
        bench: mamba_model::bench_cases,
        bench_as: Some(mamba_model::bench_cases_as),
        cpu: mamba_model::cpu_cases,
    },
    KernelEntry {
        name: "mamba2_model",
        check: check_fn!(mamba2_model),
        bench: mamba2_model::bench_cases,
        bench_as: Some(mamba2_model::bench_cases_as),
        cpu: mamba2_model::cpu_cases,
    },
];

/// The size label's dtype suffix: nothing for f32, " bf16" for example otherwise.
pub(crate) fn dtype_suffix(dtype: DType) -> String {
    match dtype {
        DType::F32 => String::new(),
        other => format!(" {other}"),
    }
}
