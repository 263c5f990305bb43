//! `selective_scan` in the suite: both strategies against the f64 reference, and Mamba-sized
//! benchmarks.

use super::{dtype_suffix, BenchCase, CheckOutcome, CpuCase, CpuRun};
use crate::error::Result;
use crate::ops::selective_scan::{BcLayout, ScanDims, ScanOptions, ScanStrategy, SelectiveScan};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::selective_scan::{dims, out_tolerance, Problem, ALL, MAMBA, TOLERANCE};
use std::sync::Arc;

/// Conformance cases: all options at a ragged size, grouped B with constant C past one chunk
/// (chunked parallel strategy), and size 1 (both row-sequential); each with f32, then f16 and
/// bf16 u, delta, z and out (B and C halves too at the ragged size, f32 past one chunk).
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let cases = [
        (
            dims(2, 3, 7, 16, BcLayout::Grouped(1), BcLayout::Grouped(1)),
            ALL,
            ScanStrategy::RowSequential,
        ),
        (
            dims(1, 4, 1100, 16, BcLayout::Grouped(2), BcLayout::Constant),
            MAMBA,
            ScanStrategy::ChunkedParallel,
        ),
        (
            dims(1, 1, 1, 1, BcLayout::Constant, BcLayout::Constant),
            ScanOptions::default(),
            ScanStrategy::RowSequential,
        ),
    ];
    let mut outcomes = Vec::new();
    for (i, (d, opts, strategy)) in cases.into_iter().enumerate() {
        let op = SelectiveScan::with_strategy(gpu, strategy)?;
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let p = Problem::random(rng, d, opts).with_dtype(dtype, i != 1);
            let want = p.reference()?;
            let (out, last) = p.run(gpu, &op).await?;
            let label = format!(
                "Bt={} D={} L={} N={} {}{}",
                d.batch,
                d.dim,
                d.len,
                d.n,
                strategy.name(),
                dtype_suffix(dtype)
            );
            for (name, got, reference, tol) in [
                ("out", out, &want.out, out_tolerance(dtype)),
                ("last_state", last, &want.last_state, TOLERANCE),
            ] {
                outcomes.push(CheckOutcome::new(
                    "selective_scan",
                    format!("{label} {name}"),
                    tol,
                    &got,
                    reference,
                ));
            }
        }
    }
    Ok(outcomes)
}

/// Benchmark sizes (Bt 1..8, D 256..2048, N 16, L 256..16384), Mamba's options (variable B
/// and C, D, z, delta_bias, softplus); plus a long-L few-rows size (Bt=1 D=4 L=8192) where
/// `Auto` uses the chunked parallel-in-time strategy on a GPU.
fn bench_sizes(quick: bool) -> Vec<ScanDims> {
    let v = BcLayout::Grouped(1);
    if quick {
        vec![dims(1, 256, 256, 16, v, v), dims(1, 4, 8192, 16, v, v)]
    } else {
        vec![
            dims(1, 256, 256, 16, v, v),
            dims(1, 4, 8192, 16, v, v),
            dims(2, 512, 2048, 16, v, v),
            dims(1, 1024, 4096, 16, v, v),
            dims(1, 2048, 16384, 16, v, v),
        ]
    }
}

fn size_label(d: &ScanDims) -> String {
    format!("Bt={} D={} N={} L={}", d.batch, d.dim, d.n, d.len)
}

/// Benchmark cases, labelled with the strategy `Auto` records for each size on this device.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    bench_cases_as(gpu, quick, DType::F32)
}

/// [`bench_cases`] with u, delta, z, out and the (variable) B and C stored as `dtype`, as
/// `mamba_ssm` runs a half model (bytes counted at that width), for `ssm-mla bench --dtype`.
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    let mut rng = Rng::new(0x55A7);
    let mut cases = Vec::new();
    for d in bench_sizes(quick) {
        let op = SelectiveScan::new(gpu)?;
        let p = Problem::random(&mut rng, d, MAMBA).with_dtype(dtype, true);
        let t = p.upload(gpu)?;
        let out = gpu.empty(&[d.batch, d.dim, d.len], dtype)?;
        let last = gpu.empty(&[d.batch, d.dim, d.n], DType::F32)?;
        let g = gpu.clone();
        // The f64 reference takes about a second per 10⁸ state updates; skip it above that.
        let cpu: Option<CpuRun> = (d.batch * d.dim * d.len * d.n <= 1 << 26).then(|| {
            Box::new(move || {
                std::hint::black_box(p.reference().ok());
            }) as CpuRun
        });
        let strategy = op.strategy_for_dtype(&d, dtype);
        cases.push(BenchCase {
            tokens: None,
            kernel: "selective_scan",
            size: format!(
                "{} {}{}",
                size_label(&d),
                strategy.name(),
                dtype_suffix(dtype)
            ),
            cost: SelectiveScan::cost_as(&d, MAMBA, dtype, dtype),
            gpu: Box::new(move || {
                let mut batch = g.batch();
                op.record(&mut batch, &t.inputs(), &out, &last)?;
                batch.run_timed()
            }),
            cpu,
        });
    }
    Ok(cases)
}

/// The CPU reference on the smallest benchmark size, for machines without a GPU.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let d = bench_sizes(true)[0];
    let p = Problem::random(rng, d, MAMBA);
    vec![CpuCase {
        size: size_label(&d),
        cost: SelectiveScan::cost(&d, MAMBA),
        run: Box::new(move || {
            std::hint::black_box(p.reference().ok());
        }),
    }]
}
