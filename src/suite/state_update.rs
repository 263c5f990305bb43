//! `state_update` in the suite: the decode step against the f64 reference (groups, slots into a
//! larger pool with padding, size 1), its multi-head (Mamba-2) form, and decode-sized
//! benchmarks of both.

use super::{dtype_suffix, BenchCase, CheckOutcome, CpuCase};
use crate::error::Result;
use crate::ops::state_update::{HeadsDims, StateUpdate, UpdateDims};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::state_update::{
    dims, heads_dims, out_tolerance, state_tolerance, HeadsProblem, Problem, ALL, TOLERANCE,
};
use std::sync::Arc;

fn size_label(d: &UpdateDims) -> String {
    format!(
        "Bt={} D={} N={}{}",
        d.batch,
        d.dim,
        d.n,
        if d.slots {
            format!(" pool={}", d.pool)
        } else {
            String::new()
        }
    )
}

/// Conformance cases: a ragged size, groups with slots into a larger pool and a padded
/// request, size 1, each with f32, f16 and bf16 activations, then with the state pool in the
/// activations' half dtype too; out poisoned, out and the state pool compared.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let op = StateUpdate::new(gpu)?;
    let mut outcomes = Vec::new();
    for d in [
        dims(3, 37, 16, 1, 1, None),
        dims(4, 6, 64, 2, 2, Some(9)),
        dims(1, 1, 1, 1, 1, None),
    ] {
        for (dtype, state_dtype) in [
            (DType::F32, DType::F32),
            (DType::F16, DType::F32),
            (DType::BF16, DType::F32),
            (DType::F16, DType::F16),
            (DType::BF16, DType::BF16),
        ] {
            let p = Problem::random(rng, d, ALL)
                .with_dtype(dtype)
                .with_state_dtype(state_dtype);
            let want = p.reference()?;
            let (out, state) = p.run(gpu, &op).await?;
            let label = match (dtype, state_dtype) {
                (DType::F32, _) => size_label(&d),
                (_, DType::F32) => format!("{} {dtype}", size_label(&d)),
                _ => format!("{} {dtype} state {state_dtype}", size_label(&d)),
            };
            let state_tol = if state_dtype == DType::F32 {
                TOLERANCE
            } else {
                state_tolerance(state_dtype)
            };
            for (name, got, reference, tol) in [
                ("out", out, &want.out, out_tolerance(dtype)),
                ("state", state, &want.state, state_tol),
            ] {
                outcomes.push(CheckOutcome::new(
                    "state_update",
                    format!("{label} {name}"),
                    tol,
                    &got,
                    reference,
                ));
            }
        }
    }
    outcomes.extend(heads_check_cases(gpu, rng, &op).await?);
    Ok(outcomes)
}

fn heads_label(d: &HeadsDims) -> String {
    format!(
        "heads Bt={} H={} P={} N={} G={}{}",
        d.batch,
        d.heads,
        d.head_dim,
        d.n,
        d.b_groups,
        if d.slots {
            format!(" pool={}", d.pool)
        } else {
            String::new()
        }
    )
}

/// The multi-head form: the Mamba-2-130m decode shape (H = 24, P = 64, N = 128, G = 1, D per
/// head) and a grouped one with slots and D per channel, in f32 and with bf16 activations and
/// state; out poisoned, out and the state pool compared.
async fn heads_check_cases(
    gpu: &Arc<Gpu>,
    rng: &mut Rng,
    op: &StateUpdate,
) -> Result<Vec<CheckOutcome>> {
    let mut outcomes = Vec::new();
    for (d, d_hp) in [
        (heads_dims(2, 24, 64, 128, 1, None), false),
        (heads_dims(4, 8, 16, 64, 4, Some(6)), true),
    ] {
        for dtype in [DType::F32, DType::BF16] {
            let p = HeadsProblem::random(rng, d, ALL, d_hp)
                .with_dtype(dtype)
                .with_state_dtype(dtype);
            let want = p.reference()?;
            let (out, state) = p.run(gpu, op).await?;
            let label = match dtype {
                DType::F32 => heads_label(&d),
                _ => format!("{} {dtype} state {dtype}", heads_label(&d)),
            };
            for (name, got, reference, tol) in [
                ("out", out, &want.out, out_tolerance(dtype)),
                ("state", state, &want.state, state_tolerance(dtype)),
            ] {
                outcomes.push(CheckOutcome::new(
                    "state_update",
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

fn bench_sizes(quick: bool) -> Vec<UpdateDims> {
    if quick {
        vec![dims(1, 2048, 16, 1, 1, None)]
    } else {
        vec![
            dims(1, 2048, 16, 1, 1, None),
            dims(8, 2048, 16, 1, 1, None),
            dims(8, 4096, 16, 1, 1, Some(64)),
            dims(8, 2048, 128, 8, 8, None),
        ]
    }
}

/// Benchmark cases (decode: Bt 1..8, D 2048..4096, N 16..128; the multi-head form at
/// Mamba-2-130m's shape), every option on.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    bench_cases_as(gpu, quick, DType::F32)
}

/// [`bench_cases`] with the activations stored as `dtype`, and (for a half `dtype`) again with
/// the state pool stored as `dtype` too (bytes counted at their widths), for
/// `ssm-mla bench --dtype`.
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    let mut rng = Rng::new(0xDEC0);
    let mut cases = Vec::new();
    let state_dtypes: &[DType] = if dtype == DType::F32 {
        &[DType::F32]
    } else {
        &[DType::F32, dtype]
    };
    for d in bench_sizes(quick) {
        for &state_dtype in state_dtypes {
            let op = StateUpdate::new(gpu)?;
            let p = Problem::random(&mut rng, d, ALL)
                .with_dtype(dtype)
                .with_state_dtype(state_dtype);
            let t = p.upload(gpu)?;
            let out = gpu.empty(&[d.batch, d.dim], dtype)?;
            let g = gpu.clone();
            let state_label = if state_dtype == DType::F32 {
                String::new()
            } else {
                format!(" state{}", dtype_suffix(state_dtype))
            };
            cases.push(BenchCase {
                tokens: None,
                kernel: "state_update",
                size: format!("{}{}{state_label}", size_label(&d), dtype_suffix(dtype)),
                cost: StateUpdate::cost(&d, ALL, dtype, state_dtype),
                gpu: Box::new(move || {
                    let mut batch = g.batch();
                    op.record(&mut batch, &t.inputs(), &out)?;
                    batch.run_timed()
                }),
                cpu: Some(Box::new(move || {
                    std::hint::black_box(p.reference().ok());
                })),
            });
        }
    }
    for d in heads_bench_sizes(quick) {
        for &state_dtype in state_dtypes {
            let op = StateUpdate::new(gpu)?;
            let p = HeadsProblem::random(&mut rng, d, ALL, false)
                .with_dtype(dtype)
                .with_state_dtype(state_dtype);
            let t = p.upload(gpu)?;
            let out = gpu.empty(&[d.batch, d.heads, d.head_dim], dtype)?;
            let g = gpu.clone();
            let state_label = if state_dtype == DType::F32 {
                String::new()
            } else {
                format!(" state{}", dtype_suffix(state_dtype))
            };
            cases.push(BenchCase {
                tokens: None,
                kernel: "state_update",
                size: format!("{}{}{state_label}", heads_label(&d), dtype_suffix(dtype)),
                cost: StateUpdate::cost_heads(&d, ALL, dtype, state_dtype),
                gpu: Box::new(move || {
                    let mut batch = g.batch();
                    op.record_heads_tensors(&mut batch, &t.inputs(), &out)?;
                    batch.run_timed()
                }),
                cpu: Some(Box::new(move || {
                    std::hint::black_box(p.reference().ok());
                })),
            });
        }
    }
    Ok(cases)
}

/// The multi-head bench sizes: Mamba-2-130m's decode step (H = 24, P = 64, N = 128, G = 1) at
/// Bt = 1 and 8 (quick: Bt = 1 only).
fn heads_bench_sizes(quick: bool) -> Vec<HeadsDims> {
    let mut sizes = vec![heads_dims(1, 24, 64, 128, 1, None)];
    if !quick {
        sizes.push(heads_dims(8, 24, 64, 128, 1, None));
    }
    sizes
}

/// The CPU reference on the smallest benchmark size, for machines without a GPU.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let d = bench_sizes(true)[0];
    let p = Problem::random(rng, d, ALL);
    vec![CpuCase {
        size: size_label(&d),
        cost: StateUpdate::cost(&d, ALL, DType::F32, DType::F32),
        run: Box::new(move || {
            std::hint::black_box(p.reference().ok());
        }),
    }]
}
