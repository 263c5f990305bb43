//! `embedding` in the suite: f32, f16 and bf16 tables (exact: widening a half is exact), one
//! token, ragged counts; benchmarks at a Mamba-130m table (vocab 50280 × 768).

use super::{dtype_suffix, BenchCase, CheckOutcome, CpuCase};
use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::embedding::{split_rows, Embedding};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu, Tensor};
use crate::testing::embedding::Problem;
use std::sync::Arc;

/// Conformance cases: (vocab, hidden, tokens) with every table dtype, output poisoned.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let mut out = Vec::new();
    for (vocab, hidden, tokens) in [(3usize, 5usize, 1usize), (50, 24, 7), (130, 33, 300)] {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let p = Problem::random(rng, vocab, hidden, tokens, dtype);
            out.push(CheckOutcome::new(
                "embedding",
                format!(
                    "vocab={vocab} H={hidden} T={tokens}{} out",
                    dtype_suffix(dtype)
                ),
                Tolerance::new(0.0, 0.0),
                &p.run(gpu).await?,
                &p.reference(),
            ));
        }
    }
    Ok(out)
}

/// Benchmark cases: a prefill's and a decode step's lookups in a Mamba-130m-sized table.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    bench_cases_as(gpu, quick, DType::F32)
}

/// [`bench_cases`] with the table stored as `dtype` (bytes counted at its width).
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    let (vocab, hidden) = if quick { (4096, 768) } else { (50280, 768) };
    let tokens: &[usize] = if quick { &[512] } else { &[1, 512, 4096] };
    let mut rng = Rng::new(0xE3B);
    let mut cases = Vec::new();
    for &t in tokens {
        let p = Problem::random(&mut rng, vocab, hidden, t, dtype);
        // As the models keep it: row chunks that each fit one storage binding (mamba-130m's
        // f32 table, 154 MB, exceeds a default 128 MiB binding).
        let ids = Embedding::upload_ids(gpu, &p.ids, vocab)?;
        let table = split_rows(gpu, &p.table, dtype)?;
        let out = gpu.nan_f32(&[t, hidden])?;
        let g = gpu.clone();
        cases.push(BenchCase {
            kernel: "embedding",
            size: format!("vocab={vocab} H={hidden} T={t}{}", dtype_suffix(dtype)),
            cost: Embedding::cost(t, hidden, dtype),
            tokens: None,
            gpu: Box::new(move || {
                let mut batch = g.batch();
                let chunks: Vec<(usize, &Tensor)> = table.iter().map(|(r, c)| (*r, c)).collect();
                Embedding::record_chunks(&mut batch, &ids, &chunks, &out)?;
                batch.run_timed()
            }),
            cpu: Some(Box::new(move || {
                std::hint::black_box(p.reference());
            })),
        });
    }
    Ok(cases)
}

/// The CPU reference alone on a small lookup.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let p = Problem::random(rng, 4096, 768, 512, DType::F32);
    vec![CpuCase {
        size: "vocab=4096 H=768 T=512".into(),
        cost: Embedding::cost(512, 768, DType::F32),
        run: Box::new(move || {
            std::hint::black_box(p.reference());
        }),
    }]
}
