//! `diagonal_scan` in the suite: both strategies against the f64 recurrence, and SSM-sized
//! benchmarks (N = 16 complex modes, ZOH).

use super::{dtype_suffix, BenchCase, CheckOutcome, CpuCase};
use crate::error::Result;
use crate::hippo::Discretisation;
use crate::ops::diagonal_scan::{DiagonalScan, Dims, T, WG};
use crate::ops::selective_scan::ScanStrategy;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::diagonal_scan::{y_tolerance, Problem};
use std::sync::Arc;

fn dims(batch: usize, channels: usize, len: usize, modes: usize) -> Dims {
    Dims {
        batch,
        channels,
        len,
        modes,
    }
}

/// Conformance cases: size 1, ragged, several chunks long, N past one block of 16 modes; ZOH
/// and bilinear; both strategies; y poisoned; each with f32, f16 and bf16 u and y.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    use Discretisation::{Bilinear, Zoh};
    use ScanStrategy::{ChunkedParallel, RowSequential};
    let chunk = (WG * T) as usize;
    let mut out = Vec::new();
    for (d, method, strategy) in [
        (dims(1, 1, 1, 1), Zoh, RowSequential),
        (dims(2, 3, 77, 16), Bilinear, ChunkedParallel),
        (dims(1, 2, 2 * chunk + 37, 8), Zoh, ChunkedParallel),
        (dims(2, 3, 301, 21), Bilinear, RowSequential),
    ] {
        let op = DiagonalScan::with_strategy(gpu, strategy)?;
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let p = Problem::random(rng, d).with_dtype(dtype);
            out.push(CheckOutcome::new(
                "diagonal_scan",
                format!(
                    "Bt={} H={} L={} N={} {method} {}{} y",
                    d.batch,
                    d.channels,
                    d.len,
                    d.modes,
                    op.strategy_for_dtype(d, dtype).name(),
                    dtype_suffix(dtype)
                ),
                y_tolerance(dtype),
                &p.run(gpu, &op, method).await?,
                &p.reference(method)?,
            ));
        }
    }
    Ok(out)
}

/// Benchmark cases (N = 16 complex modes, ZOH; quick: the smallest size), the smallest also
/// with the chunked strategy forced, for comparison.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    bench_cases_as(gpu, quick, DType::F32)
}

/// [`bench_cases`] with u and y stored as `dtype` (bytes counted at that width), for
/// `ssm-mla bench --dtype`.
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    use ScanStrategy::{Auto, ChunkedParallel};
    let sizes: &[(usize, usize, usize, ScanStrategy)] = if quick {
        &[(1, 256, 256, Auto), (1, 256, 256, ChunkedParallel)]
    } else {
        &[
            (1, 256, 256, Auto),
            (1, 256, 256, ChunkedParallel),
            (1, 256, 4096, Auto),
            (4, 1024, 1024, Auto),
        ]
    };
    let mut cases = Vec::new();
    let mut rng = Rng::new(7);
    for &(bt, h, l, strategy) in sizes {
        let d = dims(bt, h, l, 16);
        let op = DiagonalScan::with_strategy(gpu, strategy)?;
        let p = Problem::random(&mut rng, d).with_dtype(dtype);
        let t = p.upload(gpu)?;
        let y = gpu.empty(&[bt, h, l], dtype)?;
        let g = gpu.clone();
        cases.push(BenchCase {
            tokens: None,
            kernel: "diagonal_scan",
            size: format!(
                "Bt={bt} H={h} L={l} N={} {}{}",
                d.modes,
                op.strategy_for_dtype(d, dtype).name(),
                dtype_suffix(dtype)
            ),
            cost: DiagonalScan::cost_as(d, dtype),
            gpu: Box::new(move || {
                let mut batch = g.batch();
                op.record(&mut batch, &t.u, &t.ssm, &y, Discretisation::Zoh)?;
                batch.run_timed()
            }),
            cpu: Some(Box::new(move || {
                std::hint::black_box(p.reference(Discretisation::Zoh).expect("consistent sizes"));
            })),
        });
    }
    Ok(cases)
}

/// The CPU reference alone at a small size, for machines without a GPU.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let d = dims(1, 64, 1024, 16);
    let p = Problem::random(rng, d);
    vec![CpuCase {
        size: format!("Bt={} H={} L={} N={}", d.batch, d.channels, d.len, d.modes),
        cost: DiagonalScan::cost(d),
        run: Box::new(move || {
            std::hint::black_box(p.reference(Discretisation::Zoh).expect("consistent sizes"));
        }),
    }]
}
