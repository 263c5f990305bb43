//! `causal_conv1d` in the suite: the prefill (batched with states, channel-last, packed ragged
//! sequences with a state pool) and the decode step against the f64 reference, and
//! prefill/decode-sized benchmarks.

use super::{dtype_suffix, BenchCase, CheckOutcome, CpuCase};
use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::causal_conv1d::{CausalConv1d, CausalConv1dUpdate};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::causal_conv1d::{
    y_tolerance, Layout, Options, Problem, UpdateProblem, TOLERANCE,
};
use std::sync::Arc;

const ALL: Options = Options {
    bias: true,
    silu: true,
};

fn outcome(case: String, got: &[f32], want: &[f64], stray: usize) -> CheckOutcome {
    outcome_tol(case, got, want, stray, TOLERANCE)
}

fn outcome_tol(
    case: String,
    got: &[f32],
    want: &[f64],
    stray: usize,
    tol: Tolerance,
) -> CheckOutcome {
    // A write outside y's view turns into a failed element.
    let mut got = got.to_vec();
    if stray > 0 {
        got[0] = f32::NAN;
    }
    CheckOutcome::new("causal_conv1d", case, tol, &got, want)
}

/// Conformance cases: batched (size 1; ragged L with initial/final states, channel-last;
/// larger than a workgroup), packed sequences into a pool (one of length 1, one shorter than
/// W − 1, a skipped slot; also with f16 and bf16 x and y), and the decode step with slots; y
/// poisoned, y and states compared.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let op = CausalConv1d::new(gpu)?;
    let mut out = Vec::new();
    let last = Layout::ChannelLast;
    let cases = [
        (
            "Bt=1 D=1 L=1 W=2",
            Problem::batched(rng, 1, 1, 1, 2, ALL, false, true),
        ),
        (
            "Bt=2 D=5 L=37 W=4 states channel-last",
            Problem::batched(rng, 2, 5, 37, 4, ALL, true, true).with_layouts(last, last),
        ),
        (
            "Bt=1 D=300 L=9 W=3",
            Problem::batched(rng, 1, 300, 9, 3, ALL, false, false),
        ),
        (
            "packed S=4 D=7 W=4 pool=6",
            Problem::packed(rng, 7, &[5, 1, 2, 9], 4, ALL, Some(6), &[2], true)
                .with_layouts(last, last),
        ),
    ];
    for (label, p) in cases {
        let want = p.reference()?;
        let got = p.run(gpu, &op).await?;
        out.push(outcome(format!("{label} y"), &got.y, &want.y, got.stray));
        if !got.states.is_empty() {
            out.push(outcome(
                format!("{label} states"),
                &got.states,
                &want.states,
                0,
            ));
        }
    }
    for dtype in [DType::F16, DType::BF16] {
        let label = format!("packed S=3 D=9 W=4 pool=4 {dtype} channel-last");
        let p = Problem::packed(rng, 9, &[6, 1, 11], 4, ALL, Some(4), &[], true)
            .with_layouts(last, last)
            .with_dtype(dtype);
        let want = p.reference()?;
        let got = p.run(gpu, &op).await?;
        out.push(outcome_tol(
            format!("{label} y"),
            &got.y,
            &want.y,
            got.stray,
            y_tolerance(dtype),
        ));
        out.push(outcome(
            format!("{label} states"),
            &got.states,
            &want.states,
            0,
        ));
    }
    let step = CausalConv1dUpdate::new(gpu)?;
    let p = UpdateProblem::random(rng, 5, 33, 4, ALL, Some(8), &[3]);
    let want = p.reference()?;
    let got = p.run(gpu, &step).await?;
    let label = "update Bt=5 D=33 W=4 pool=8";
    out.push(outcome(format!("{label} y"), &got.y, &want.y, got.stray));
    out.push(outcome(
        format!("{label} conv_state"),
        &got.states,
        &want.conv_state,
        0,
    ));
    Ok(out)
}

/// Benchmark cases: prefill (Bt 1..4, D 1536..2048 (Mamba-130M..370M's D_in), L 256..2048,
/// W = 4, bias and SiLU, channel-last as a model's in_proj produces it) and decode steps.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    bench_cases_as(gpu, quick, DType::F32)
}

/// [`bench_cases`] with x and y stored as `dtype` (bytes counted at that width), for
/// `ssm-mla bench --dtype`.
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    let sizes: &[(usize, usize, usize)] = if quick {
        &[(1, 1536, 256)]
    } else {
        &[(1, 1536, 256), (1, 2048, 2048), (4, 2048, 1024)]
    };
    let mut rng = Rng::new(0xC0DE);
    let mut cases = Vec::new();
    for &(bt, dim, len) in sizes {
        let op = CausalConv1d::new(gpu)?;
        let p = Problem::batched(&mut rng, bt, dim, len, 4, ALL, true, true)
            .with_layouts(Layout::ChannelLast, Layout::ChannelLast)
            .with_dtype(dtype);
        let t = p.upload(gpu)?;
        let (_, y) = crate::testing::causal_conv1d::place(
            gpu,
            Layout::ChannelLast,
            &[bt, dim, len],
            dtype,
            None,
        )?;
        let g = gpu.clone();
        cases.push(BenchCase {
            tokens: None,
            kernel: "causal_conv1d",
            size: format!("Bt={bt} D={dim} L={len} W=4{}", dtype_suffix(dtype)),
            cost: CausalConv1d::cost(&p.dims, true, true, true, dtype),
            gpu: Box::new(move || {
                let mut batch = g.batch();
                op.record(&mut batch, &t.inputs(), &y)?;
                batch.run_timed()
            }),
            cpu: Some(Box::new(move || {
                std::hint::black_box(p.reference().ok());
            })),
        });
    }
    let steps: &[(usize, usize)] = if quick {
        &[(1, 1536)]
    } else {
        &[(1, 1536), (8, 2048)]
    };
    for &(bt, dim) in steps {
        let op = CausalConv1dUpdate::new(gpu)?;
        let p = UpdateProblem::random(&mut rng, bt, dim, 4, ALL, None, &[]).with_dtype(dtype);
        let x = gpu.upload_f32_as(&[bt, dim], dtype, &p.x)?;
        let state = gpu.upload_f32(&[bt, dim, 3], &p.conv_state)?;
        let weight = gpu.upload_f32(&[dim, 4], &p.weight)?;
        let bias = gpu.upload_f32(&[dim], p.bias.as_deref().unwrap_or(&[]))?;
        let y = gpu.empty(&[bt, dim], dtype)?;
        let g = gpu.clone();
        let cost = CausalConv1dUpdate::cost(&p.dims, true, true, dtype);
        cases.push(BenchCase {
            tokens: None,
            kernel: "causal_conv1d",
            size: format!("update Bt={bt} D={dim} W=4{}", dtype_suffix(dtype)),
            cost,
            gpu: Box::new(move || {
                let mut batch = g.batch();
                let xv = x.view();
                op.record(
                    &mut batch,
                    &crate::ops::causal_conv1d::CausalConv1dUpdateInputs {
                        x: &xv,
                        conv_state: &state,
                        weight: &weight,
                        bias: Some(&bias),
                        activation: crate::ops::causal_conv1d::Activation::Silu,
                        slots: None,
                    },
                    &y.view(),
                )?;
                batch.run_timed()
            }),
            cpu: Some(Box::new(move || {
                std::hint::black_box(p.reference().ok());
            })),
        });
    }
    Ok(cases)
}

/// The CPU reference on the smallest prefill benchmark size, for machines without a GPU.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let p = Problem::batched(rng, 1, 1536, 256, 4, ALL, true, true);
    vec![CpuCase {
        size: "Bt=1 D=1536 L=256 W=4".into(),
        cost: CausalConv1d::cost(&p.dims, true, true, true, DType::F32),
        run: Box::new(move || {
            std::hint::black_box(p.reference().ok());
        }),
    }]
}
