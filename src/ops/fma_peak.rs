//! `fma_peak`: the arithmetic ceiling of the benchmarks. Each element runs 8 independent vec4
//! FMA chains for `iters` steps; see `shaders/common/fma_peak.wgsl`.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::Batch;
use crate::runtime::Gpu;
use crate::runtime::{DType, Tensor};
use crate::runtime::{Kernel, Shader};
use crate::shader::{wgsl, Access, Flags, KernelInterface, Variant};
use std::sync::Arc;

/// The WGSL body.
pub const SHADER: Shader = wgsl!("common/fma_peak");

/// Default workgroup size.
pub const WG: u32 = 256;

/// Parameters of the FMA chains: x ← x·m + c, `iters` times.
#[derive(Clone, Copy, Debug)]
pub struct FmaPeakParams {
    /// Steps per chain (a multiple of 8).
    pub iters: u32,
    /// Multiplier (|m| < 1 keeps values bounded).
    pub m: f32,
    /// Addend.
    pub c: f32,
}

impl Default for FmaPeakParams {
    fn default() -> Self {
        Self {
            iters: 1024,
            m: 0.999,
            c: 0.001,
        }
    }
}

/// A built FMA-peak op.
#[derive(Clone, Debug)]
pub struct FmaPeak {
    kernel: Arc<Kernel>,
    wg: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    n: u32,
    iters: u32,
    m: f32,
    c: f32,
}

/// What the kernel is passed: its `Uniforms`, then seed and out.
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[("seed", Access::Read), ("out", Access::ReadWrite)],
};

/// The kernel.
pub const KERNEL: Variant = SHADER.variant(Flags::NONE, INTERFACE);

impl FmaPeak {
    /// Build (or fetch from the cache) the pipeline.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Self::with_workgroup(gpu, WG)
    }

    /// Build with `wg` invocations per workgroup (the bench runner tries several).
    pub fn with_workgroup(gpu: &Gpu, wg: u32) -> Result<Self> {
        if wg == 0 || wg > 1024 {
            return Err(Error::invalid(format!("fma_peak workgroup size {wg}")));
        }
        Ok(Self {
            kernel: gpu.kernel(&KERNEL, &[("WG", wg as f64)])?,
            wg,
        })
    }

    /// Record out[i] = chains(seed[i]); `seed` and `out` are f32 of equal length.
    pub fn record(
        &self,
        batch: &mut Batch,
        seed: &Tensor,
        out: &Tensor,
        params: FmaPeakParams,
    ) -> Result<()> {
        seed.expect("seed", "(n)", &[seed.len()], DType::F32)?;
        out.expect("out", "(n) like seed", &[seed.len()], DType::F32)?;
        if params.iters % 8 != 0 {
            return Err(Error::invalid(format!(
                "fma_peak iters = {}: must be a multiple of 8 (the loop runs 8 steps per trip)",
                params.iters
            )));
        }
        if seed.is_empty() {
            return Err(Error::shape("seed", "(n) with n > 0", seed.shape()));
        }
        let n = u32::try_from(seed.len()).map_err(|_| Error::Limit {
            what: "fma_peak length".into(),
            detail: "more than 2^32 elements".into(),
        })?;
        let uniforms = Uniforms {
            n,
            iters: params.iters,
            m: params.m,
            c: params.c,
        };
        batch.dispatch(
            &self.kernel,
            &uniforms,
            &[seed.into(), out.into()],
            n.div_ceil(self.wg),
        )
    }

    /// FLOPs for `n` elements (8 chains × 4 lanes × 2 per FMA per step) and bytes moved.
    pub fn cost(n: usize, params: FmaPeakParams) -> Cost {
        Cost {
            bytes: 8 * n as u64,
            flops: n as u64 * params.iters as u64 * 8 * 4 * 2,
        }
    }
}

/// Conformance cases for `ssm-mla check` (see [`crate::suite`]).
pub fn check_cases(
    gpu: &Arc<Gpu>,
    rng: &mut crate::Rng,
) -> Result<Vec<crate::suite::CheckOutcome>> {
    let op = FmaPeak::new(gpu)?;
    let mut out = Vec::new();
    for (n, iters) in [(1usize, 8u32), (300, 104)] {
        let params = FmaPeakParams {
            iters,
            m: 0.99,
            c: 0.01,
        };
        let data = rng.uniform_vec(n, -1.0, 1.0);
        let seed = gpu.upload_f32(&[n], &data)?;
        let result = gpu.nan_f32(&[n])?;
        let mut batch = gpu.batch();
        op.record(&mut batch, &seed, &result, params)?;
        batch.run()?;
        let tolerance = crate::Tolerance::new(1e-5, 1e-5);
        out.push(crate::suite::CheckOutcome {
            kernel: "fma_peak",
            case: format!("n={n} iters={iters} out"),
            tolerance,
            comparison: crate::compare(
                &gpu.read_f32(&result)?,
                &crate::reference::fma_peak::fma_peak(&data, params),
                tolerance,
            ),
        });
    }
    Ok(out)
}

/// Benchmark cases: enough invocations to fill any GPU, enough steps to dwarf memory traffic.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<crate::suite::BenchCase>> {
    let (n, iters) = if quick {
        (1 << 14, 512)
    } else {
        (1 << 16, 2048)
    };
    let params = FmaPeakParams {
        iters,
        ..Default::default()
    };
    let op = FmaPeak::new(gpu)?;
    let host: Vec<f32> = (0..n).map(|i| (i % 97) as f32 / 97.0).collect();
    let seed = gpu.upload_f32(&[n], &host)?;
    let result = gpu.empty(&[n], DType::F32)?;
    let g = gpu.clone();
    // The f64 reference of the full size takes seconds on a CPU; run it in quick mode only.
    let cpu: Option<crate::suite::CpuRun> = quick.then(|| {
        Box::new(move || {
            std::hint::black_box(crate::reference::fma_peak::fma_peak(&host, params));
        }) as crate::suite::CpuRun
    });
    Ok(vec![crate::suite::BenchCase {
        kernel: "fma_peak",
        size: format!("n={n} iters={iters}"),
        cost: FmaPeak::cost(n, params),
        gpu: Box::new(move || {
            let mut batch = g.batch();
            op.record(&mut batch, &seed, &result, params)?;
            batch.run_timed()
        }),
        cpu,
    }])
}

/// The CPU reference on a small input, for the no-GPU main job.
pub fn cpu_cases(rng: &mut crate::Rng) -> Vec<crate::suite::CpuCase> {
    let n = 1 << 10;
    let params = FmaPeakParams {
        iters: 256,
        ..Default::default()
    };
    let data = rng.uniform_vec(n, -1.0, 1.0);
    vec![crate::suite::CpuCase {
        size: format!("n={n} iters={}", params.iters),
        cost: FmaPeak::cost(n, params),
        run: Box::new(move || {
            std::hint::black_box(crate::reference::fma_peak::fma_peak(&data, params));
        }),
    }]
}
