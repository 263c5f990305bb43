//! `latent_cache` in the suite: appends compared exactly over the whole cache, and append
//! benchmarks at DeepSeek width.

use super::{dtype_suffix, BenchCase, CheckOutcome, CpuCase};
use crate::error::Result;
use crate::ops::latent_cache::LatentCacheAppend;
use crate::rng::Rng;
use crate::runtime::DType;
use crate::runtime::Gpu;
use crate::testing::latent_cache::{half_tolerance, Problem, TOLERANCE};
use std::sync::Arc;

/// Conformance cases: appends at DeepSeek width and a ragged one, with some rows skipped; the
/// whole cache is compared exactly.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let op = LatentCacheAppend::new(gpu)?;
    let mut out = Vec::new();
    for (num_blocks, bs, d_c, d_r, t) in [
        (4usize, 16usize, 512usize, 64usize, 37usize),
        (3, 5, 7, 3, 1),
    ] {
        let p = Problem::random(rng, num_blocks, bs, d_c, d_r, t);
        out.push(CheckOutcome::new(
            "latent_cache",
            format!("blocks={num_blocks} bs={bs} W={} T={t} cache", p.width()),
            TOLERANCE,
            &p.run(gpu, &op).await?,
            &p.reference(),
        ));
    }
    // Half caches: DeepSeek width and an odd width (rows start mid-word).
    for dtype in [DType::F16, DType::BF16] {
        for (num_blocks, bs, d_c, d_r, t) in
            [(2usize, 8usize, 512usize, 64usize, 9usize), (3, 5, 4, 3, 7)]
        {
            let p = Problem::random(rng, num_blocks, bs, d_c, d_r, t).with_dtype(dtype);
            out.push(CheckOutcome::new(
                "latent_cache",
                format!(
                    "blocks={num_blocks} bs={bs} W={} T={t} cache {dtype}",
                    p.width()
                ),
                half_tolerance(dtype),
                &p.run(gpu, &op).await?,
                &p.reference(),
            ));
        }
    }
    Ok(out)
}

/// Benchmark cases: appending one decode step's rows (T = 8) and a prefill chunk (T = 4096) at
/// DeepSeek width into a 64K-slot cache (8K slots in quick mode).
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    bench_cases_as(gpu, quick, DType::F32)
}

/// [`bench_cases`] with the kernel's half-capable tensor stored as `dtype` (bytes counted at
/// that width), for `ssm-mla bench --dtype`.
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    let (d_c, d_r, bs) = (512, 64, 64);
    let w = d_c + d_r;
    // The full size holds 64K tokens, capped so the cache fits one storage binding.
    let max_blocks = (gpu.max_binding_bytes() as usize / (bs * w * 4)).max(1);
    let num_blocks = if quick { 128 } else { 1024 }.min(max_blocks);
    let mut rng = Rng::new(0x1A7);
    let mut cases = Vec::new();
    for t in [8usize, 4096] {
        let op = LatentCacheAppend::new(gpu)?;
        let p = Problem::random(&mut rng, num_blocks, bs, d_c, d_r, t).with_dtype(dtype);
        let inputs = p.upload(gpu)?;
        let g = gpu.clone();
        cases.push(BenchCase {
            tokens: None,
            kernel: "latent_cache",
            size: format!(
                "append T={t} W={w} slots={}{}",
                num_blocks * bs,
                dtype_suffix(dtype)
            ),
            cost: LatentCacheAppend::cost(t, w, dtype),
            gpu: Box::new(move || {
                let mut batch = g.batch();
                op.record(&mut batch, &inputs.cache, &inputs.latent, &inputs.slots)?;
                batch.run_timed()
            }),
            cpu: Some(Box::new(move || {
                std::hint::black_box(p.reference());
            })),
        });
    }
    Ok(cases)
}

/// The CPU reference on a small random input, for the no-GPU main job.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let (d_c, d_r, bs, num_blocks, t) = (512, 64, 64, 64, 256);
    let p = Problem::random(rng, num_blocks, bs, d_c, d_r, t);
    vec![CpuCase {
        size: format!("append T={t} W={}", p.width()),
        cost: LatentCacheAppend::cost(t, p.width(), DType::F32),
        run: Box::new(move || {
            std::hint::black_box(p.reference());
        }),
    }]
}
