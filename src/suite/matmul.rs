//! `matmul` in the suite: `Linear` products at every tile shape against the f64 reference, and
//! projection-sized benchmarks.

use super::{dtype_suffix, BenchCase, CheckOutcome, CpuCase};
use crate::error::Result;
use crate::ops::matmul::Matmul;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::matmul::{Problem, HALF_W_TOLERANCE, TOLERANCE};
use std::sync::Arc;

/// Conformance cases (M, N, K, bias): a decode row, ragged, larger than a 64×64 tile with a
/// ragged K; y poisoned. Then half weights (f16, bf16) on a vec4-aligned decode product and a
/// ragged one with an odd count of halves; then half activations (x and y) with half weights of
/// the same dtype, vec4-aligned and ragged.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let op = Matmul::new(gpu)?;
    let mut out = Vec::new();
    for (m, n, k, bias) in [
        (1usize, 7usize, 5usize, true),
        (3, 70, 33, false),
        (67, 130, 100, true),
    ] {
        let p = Problem::linear(rng, m, n, k, bias);
        out.push(CheckOutcome::new(
            "matmul",
            format!("M={m} N={n} K={k}{} y", if bias { " bias" } else { "" }),
            TOLERANCE,
            &p.run(gpu, &op).await?,
            &p.reference(),
        ));
    }
    for dtype in [DType::F16, DType::BF16] {
        for (m, n, k, bias) in [(2usize, 12usize, 64usize, true), (3, 7, 5, false)] {
            let p = Problem::linear(rng, m, n, k, bias).with_w_dtype(dtype);
            out.push(CheckOutcome::new(
                "matmul",
                format!(
                    "M={m} N={n} K={k}{} w {dtype}",
                    if bias { " bias" } else { "" }
                ),
                HALF_W_TOLERANCE,
                &p.run(gpu, &op).await?,
                &p.reference(),
            ));
        }
        for (m, n, k, bias) in [(2usize, 12usize, 64usize, true), (3, 7, 5, false)] {
            let p = Problem::linear(rng, m, n, k, bias)
                .with_w_dtype(dtype)
                .with_x_dtype(dtype);
            out.push(CheckOutcome::new(
                "matmul",
                format!(
                    "M={m} N={n} K={k}{} x w y {dtype}",
                    if bias { " bias" } else { "" }
                ),
                p.tolerance(),
                &p.run(gpu, &op).await?,
                &p.reference(),
            ));
        }
    }
    Ok(out)
}

/// Benchmark cases: decode-shaped (M = 4) and prefill-shaped (M = 256) projections
/// (hidden 2048 → 576, V2-Lite's kv_a_proj_with_mqa); quick keeps them small.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    bench_cases_as(gpu, quick, DType::F32)
}

/// [`bench_cases`] with the weights stored as `dtype`, and (for a half `dtype`) again with the
/// activations x and y stored as `dtype` too (bytes counted at their widths), for
/// `ssm-mla bench --dtype`.
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    let sizes: &[(usize, usize, usize)] = if quick {
        &[(4, 576, 512), (64, 576, 512)]
    } else {
        &[(4, 576, 2048), (256, 576, 2048), (4, 2048, 2048)]
    };
    let mut rng = Rng::new(0x3A7);
    let mut cases = Vec::new();
    let acts: &[DType] = if dtype == DType::F32 {
        &[DType::F32]
    } else {
        &[DType::F32, dtype]
    };
    for &(m, n, k) in sizes {
        for &act in acts {
            let op = Matmul::new(gpu)?;
            let p = Problem::linear(&mut rng, m, n, k, false)
                .with_w_dtype(dtype)
                .with_x_dtype(act);
            let t = p.upload(gpu)?;
            let y = gpu.empty(&[m, n], act)?;
            let g = gpu.clone();
            let dims = p.dims;
            let x_label = if act == DType::F32 {
                String::new()
            } else {
                format!(" x{}", dtype_suffix(act))
            };
            cases.push(BenchCase {
                tokens: None,
                kernel: "matmul",
                size: format!("M={m} N={n} K={k}{}{x_label}", dtype_suffix(dtype)),
                cost: Matmul::cost_as(&dims, false, dtype, act),
                gpu: Box::new(move || {
                    let mut batch = g.batch();
                    op.record(&mut batch, &dims, &t.x, &t.w, None, &y)?;
                    batch.run_timed()
                }),
                cpu: Some(Box::new(move || {
                    std::hint::black_box(p.reference());
                })),
            });
        }
    }
    Ok(cases)
}

/// The CPU reference on a decode-shaped product, for the no-GPU main job.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let (m, n, k) = (4, 576, 512);
    let p = Problem::linear(rng, m, n, k, false);
    vec![CpuCase {
        size: format!("M={m} N={n} K={k}"),
        cost: Matmul::cost(&p.dims, false, DType::F32),
        run: Box::new(move || {
            std::hint::black_box(p.reference());
        }),
    }]
}
