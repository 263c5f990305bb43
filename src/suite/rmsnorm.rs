//! `rmsnorm` in the suite: widths 1, ragged and wider than a workgroup against the f64
//! reference, and latent/query norm benchmarks.

use super::{dtype_suffix, BenchCase, CheckOutcome, CpuCase};
use crate::error::Result;
use crate::ops::rmsnorm::RmsNorm;
use crate::ops::rmsnorm::Rows;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::rmsnorm::{GatedProblem, Problem};
use std::sync::Arc;

/// Conformance cases (rows, d): width 1, ragged, wider than a workgroup, in f32; then the
/// ragged and the wide (vec4) sizes with f16 and bf16 rows, the weight in f32 and in the rows'
/// dtype; the gated, grouped form at a Mamba-2 shape; y poisoned.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let op = RmsNorm::new(gpu)?;
    let mut cases = vec![];
    for (rows, d) in [(1usize, 1usize), (5, 33), (3, 1536)] {
        cases.push((rows, d, DType::F32, DType::F32));
    }
    for (rows, d) in [(5usize, 33usize), (3, 1536)] {
        for dtype in [DType::F16, DType::BF16] {
            for w_dtype in [DType::F32, dtype] {
                cases.push((rows, d, dtype, w_dtype));
            }
        }
    }
    let mut out = Vec::new();
    for (rows, d, dtype, w_dtype) in cases {
        let p = Problem::random(rng, rows, d).with_dtype(dtype, w_dtype);
        let label = if dtype == DType::F32 {
            format!("rows={rows} d={d} y")
        } else {
            format!("rows={rows} d={d} {dtype} w {w_dtype} y")
        };
        out.push(CheckOutcome::new(
            "rmsnorm",
            label,
            p.tolerance(),
            &p.run(gpu, &op).await?,
            &p.reference(),
        ));
    }
    // The gated, grouped norm at a Mamba-2 shape (d_inner = 1536, z a column window of an
    // in_proj row of 3352), one group and eight, both gate orders, f32 and bf16.
    for (groups, norm_before_gate, dtype) in [
        (1, false, DType::F32),
        (8, true, DType::F32),
        (8, false, DType::BF16),
    ] {
        let (rows, d) = (3, 1536);
        let p = GatedProblem::random(
            rng,
            rows,
            d,
            Rows::contiguous(d),
            0,
            3352,
            groups,
            norm_before_gate,
        )
        .with_dtype(dtype, dtype);
        let y = p.run(gpu, &op).await?;
        out.push(CheckOutcome::new(
            "rmsnorm",
            format!(
                "gated rows={rows} d={d} groups={groups} norm_before_gate={norm_before_gate} \
                 {dtype} y"
            ),
            p.base.tolerance(),
            &p.base.rows_of(&y),
            &p.reference(),
        ));
    }
    Ok(out)
}

/// Benchmark cases: the latent norm (d_c = 512) and the query norm (1536) over a few rows.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    bench_cases_as(gpu, quick, DType::F32)
}

/// [`bench_cases`] with the rows (x, y) and the weight stored as `dtype` (bytes counted at that
/// width), for `ssm-mla bench --dtype`.
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    let sizes: &[(usize, usize)] = if quick {
        &[(64, 512)]
    } else {
        &[(8, 512), (1024, 512), (1024, 1536)]
    };
    let mut rng = Rng::new(0x2A5);
    let mut cases = Vec::new();
    for &(rows, d) in sizes {
        let op = RmsNorm::new(gpu)?;
        let p = Problem::random(&mut rng, rows, d).with_dtype(dtype, dtype);
        let (x, w) = p.upload(gpu)?;
        let y = gpu.empty(&[rows, d], dtype)?;
        let g = gpu.clone();
        let (x_rows, y_rows, eps) = (p.x_rows, p.y_rows(), p.eps);
        cases.push(BenchCase {
            tokens: None,
            kernel: "rmsnorm",
            size: format!("rows={rows} d={d}{}", dtype_suffix(dtype)),
            cost: RmsNorm::cost_as(rows, d, dtype, dtype),
            gpu: Box::new(move || {
                let mut batch = g.batch();
                op.record(&mut batch, &x, x_rows, &w, &y, y_rows, rows, eps)?;
                batch.run_timed()
            }),
            cpu: Some(Box::new(move || {
                std::hint::black_box(p.reference());
            })),
        });
    }
    Ok(cases)
}

/// The CPU reference on 64 latent rows, for the no-GPU main job.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let (rows, d) = (64, 512);
    let p = Problem::random(rng, rows, d);
    vec![CpuCase {
        size: format!("rows={rows} d={d}"),
        cost: RmsNorm::cost(rows, d),
        run: Box::new(move || {
            std::hint::black_box(p.reference());
        }),
    }]
}
