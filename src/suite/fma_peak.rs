//! `fma_peak` in the suite: the FMA chains against their f64 reference, and the arithmetic
//! ceiling benchmark.

use super::{BenchCase, CheckOutcome, CpuCase, CpuRun};
use crate::error::Result;
use crate::ops::fma_peak::{FmaPeak, FmaPeakParams};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::fma_peak::{Problem, TOLERANCE};
use std::sync::Arc;

/// Conformance cases: one element, and a ragged count with more steps; out poisoned.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let op = FmaPeak::new(gpu)?;
    let mut out = Vec::new();
    for (n, iters) in [(1usize, 8u32), (300, 104)] {
        let params = FmaPeakParams {
            iters,
            m: 0.99,
            c: 0.01,
        };
        let p = Problem::random(rng, n, params);
        out.push(CheckOutcome::new(
            "fma_peak",
            format!("n={n} iters={iters} out"),
            TOLERANCE,
            &p.run(gpu, &op).await?,
            &p.reference(),
        ));
    }
    Ok(out)
}

/// Benchmark cases: enough invocations to fill any GPU, enough steps to dwarf memory traffic.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
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
    let p = Problem::random(&mut Rng::new(0xF3A), n, params);
    let seed = p.upload(gpu)?;
    let result = gpu.empty(&[n], DType::F32)?;
    let g = gpu.clone();
    // The f64 reference of the full size takes seconds on a CPU; run it in quick mode only.
    let cpu: Option<CpuRun> = quick.then(|| {
        Box::new(move || {
            std::hint::black_box(p.reference());
        }) as CpuRun
    });
    Ok(vec![BenchCase {
        tokens: None,
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
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let n = 1 << 10;
    let params = FmaPeakParams {
        iters: 256,
        ..Default::default()
    };
    let p = Problem::random(rng, n, params);
    vec![CpuCase {
        size: format!("n={n} iters={}", params.iters),
        cost: FmaPeak::cost(n, params),
        run: Box::new(move || {
            std::hint::black_box(p.reference());
        }),
    }]
}
