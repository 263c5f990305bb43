//! `rope` in the suite: interleaved and half-split rotations against the f64 reference, and
//! q_rope-sized benchmarks.

use super::{dtype_suffix, BenchCase, CheckOutcome, CpuCase};
use crate::error::Result;
use crate::ops::rope::{Rope, RopeLayout};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::rope::{Frequencies, Problem};
use std::sync::Arc;

/// Conformance cases (T, H, d, interleave): the smallest, half-split, many tokens and heads,
/// each with x and y in f32, f16 and bf16; y poisoned.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let op = Rope::new(gpu)?;
    let mut out = Vec::new();
    for (tokens, heads, d, interleave) in [
        (1usize, 1usize, 2usize, true),
        (5, 3, 8, false),
        (37, 16, 64, true),
    ] {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let p = Problem::random(
                rng,
                tokens,
                heads,
                0,
                Frequencies::plain(d, interleave),
                200,
            )
            .with_dtype(dtype);
            out.push(CheckOutcome::new(
                "rope",
                format!(
                    "T={tokens} H={heads} d={d}{}{} y",
                    if interleave { " interleave" } else { "" },
                    dtype_suffix(dtype)
                ),
                p.tolerance(),
                &p.run(gpu, &op).await?,
                &p.reference(),
            ));
        }
    }
    Ok(out)
}

/// Benchmark cases: q_rope of a prefill (T tokens × H heads × 64).
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    bench_cases_as(gpu, quick, DType::F32)
}

/// [`bench_cases`] with x and y stored as `dtype` (bytes counted at that width), for
/// `ssm-mla bench --dtype`.
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    let sizes: &[(usize, usize)] = if quick {
        &[(64, 16)]
    } else {
        &[(8, 128), (1024, 16), (1024, 128)]
    };
    let d = 64;
    let mut rng = Rng::new(0x20BE);
    let mut cases = Vec::new();
    for &(tokens, heads) in sizes {
        let op = Rope::new(gpu)?;
        let p = Problem::random(
            &mut rng,
            tokens,
            heads,
            0,
            Frequencies::plain(d, true),
            4096,
        )
        .with_dtype(dtype);
        let t = p.upload(gpu)?;
        let y = gpu.empty(&[tokens, heads, d], dtype)?;
        let g = gpu.clone();
        let l = RopeLayout::contiguous(heads, d);
        cases.push(BenchCase {
            tokens: None,
            kernel: "rope",
            size: format!("T={tokens} H={heads} d={d}{}", dtype_suffix(dtype)),
            cost: Rope::cost_as(tokens, heads, d, dtype),
            gpu: Box::new(move || {
                let mut batch = g.batch();
                op.record(
                    &mut batch,
                    &t.x,
                    l,
                    &y,
                    l,
                    &t.positions,
                    &t.tables,
                    tokens,
                    heads,
                )?;
                batch.run_timed()
            }),
            cpu: Some(Box::new(move || {
                std::hint::black_box(p.reference());
            })),
        });
    }
    Ok(cases)
}

/// The CPU reference on 64 tokens × 16 heads × 64, for the no-GPU main job.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let (tokens, heads, d) = (64, 16, 64);
    let p = Problem::random(rng, tokens, heads, 0, Frequencies::plain(d, true), 4096);
    vec![CpuCase {
        size: format!("T={tokens} H={heads} d={d}"),
        cost: Rope::cost(tokens, heads, d),
        run: Box::new(move || {
            std::hint::black_box(p.reference());
        }),
    }]
}
