//! `absorbed_attention` in the suite: decode, prefill and packed ragged calls on NaN-fenced
//! paged caches against the f64 reference, and decode, prefill and ragged benchmarks at
//! DeepSeek widths.

use super::{dtype_suffix, BenchCase, CheckOutcome, CpuCase, CpuRun};
use crate::error::Result;
use crate::ops::absorbed_attention::{cost, cost_packed, AbsorbedAttention};
use crate::ops::Cost;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::absorbed_attention::{Problem, Shape, HALF_CACHE_TOLERANCE, TOLERANCE};
use std::sync::Arc;

fn shape(s_q: usize, h: usize, d_c: usize, d_r: usize, block_size: usize, lens: &[usize]) -> Shape {
    Shape {
        s_q,
        query_lens: None,
        h,
        d_c,
        d_r,
        block_size,
        lens: lens.to_vec(),
        spare_entries: 1,
        spare_pages: 1,
    }
}

/// Conformance cases: DeepSeek widths decode over a ragged batch with split-KV, bottom-right
/// causal prefill with H = 5, a size-1 context; o_lat poisoned.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let op = AbsorbedAttention::new(gpu)?;
    let mut out = Vec::new();
    for s in [
        shape(1, 16, 512, 64, 64, &[700, 3, 129]),
        shape(4, 5, 512, 64, 16, &[37]),
        shape(1, 3, 64, 16, 4, &[1]),
    ] {
        let p = Problem::random(rng, &s);
        let (got, splits) = p.run(gpu, &op).await?;
        out.push(CheckOutcome::new(
            "absorbed_attention",
            format!(
                "S_q={} H={} d_c={} d_R={} bs={} lens={:?} splits={splits} o_lat",
                s.s_q, s.h, s.d_c, s.d_r, s.block_size, s.lens
            ),
            TOLERANCE,
            &got,
            &p.reference(),
        ));
    }
    // Packed ragged queries: chunked prefill beside decode, at DeepSeek widths.
    let s = Shape {
        query_lens: Some(vec![1, 9, 3]),
        ..shape(1, 16, 512, 64, 64, &[700, 40, 3])
    };
    let p = Problem::random(rng, &s);
    let (got, splits) = p.run(gpu, &op).await?;
    out.push(CheckOutcome::new(
        "absorbed_attention",
        format!(
            "packed q_lens={:?} H={} d_c={} d_R={} lens={:?} splits={splits} o_lat",
            s.query_lens.as_deref().unwrap_or_default(),
            s.h,
            s.d_c,
            s.d_r,
            s.lens
        ),
        TOLERANCE,
        &got,
        &p.reference(),
    ));
    // Half caches: DeepSeek widths (vec4 kernel) and odd widths (scalar kernel).
    for dtype in [DType::F16, DType::BF16] {
        for s in [
            shape(1, 16, 512, 64, 64, &[300, 3]),
            shape(2, 3, 7, 2, 5, &[9]),
        ] {
            let p = Problem::random(rng, &s).with_cache_dtype(dtype);
            let (got, splits) = p.run(gpu, &op).await?;
            out.push(CheckOutcome::new(
                "absorbed_attention",
                format!(
                    "S_q={} H={} d_c={} d_R={} bs={} lens={:?} splits={splits} cache {dtype}",
                    s.s_q, s.h, s.d_c, s.d_r, s.block_size, s.lens
                ),
                HALF_CACHE_TOLERANCE,
                &got,
                &p.reference(),
            ));
        }
    }
    Ok(out)
}

/// The decode benchmark sizes (S_q = 1, d_c = 512, d_R = 64, block size 64) as
/// (batch, H, context): the quick set is lavapipe-sized; the full set covers contexts 1K..32K,
/// batch 1 and 8, H 16 and 128. Sizes whose cache exceeds one storage binding on `gpu` are left
/// out.
pub fn bench_sizes(gpu: &Gpu, quick: bool) -> Vec<(usize, usize, usize)> {
    let all: Vec<(usize, usize, usize)> = if quick {
        vec![(1, 16, 1024), (1, 128, 1024)]
    } else {
        let mut v = Vec::new();
        for ctx in [1024, 4096, 32768] {
            for bt in [1, 8] {
                for h in [16, 128] {
                    v.push((bt, h, ctx));
                }
            }
        }
        v
    };
    all.into_iter()
        .filter(|&(bt, _, ctx)| {
            ((bt * (ctx + 64) + 64) * 576 * 4) as u64 <= gpu.max_binding_bytes()
        })
        .collect()
}

/// The prefill and packed benchmark shapes at DeepSeek widths (H = 16, d_c 512, d_R 64, pages
/// of 64), as (label, query tokens per sequence, context per sequence): one sequence of S_q new
/// tokens over a context of S_q (bottom-right causal, a fresh prompt), and a ragged packed call
/// of decoding and prefilling sequences over longer contexts (chunked prefill). The quick set is
/// lavapipe-sized.
pub fn prefill_sizes(quick: bool) -> Vec<(&'static str, Vec<usize>, Vec<usize>)> {
    if quick {
        vec![
            ("prefill", vec![128], vec![128]),
            ("ragged", vec![1, 1, 32, 96], vec![256; 4]),
        ]
    } else {
        vec![
            ("prefill", vec![128], vec![128]),
            ("prefill", vec![512], vec![512]),
            ("ragged", vec![1, 1, 128, 384], vec![1024; 4]),
        ]
    }
}

/// Benchmark cases: decode at the sizes of [`bench_sizes`], then prefill and packed ragged calls
/// at the sizes of [`prefill_sizes`]; the CPU reference runs only where it takes well under a
/// second.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    bench_cases_as(gpu, quick, DType::F32)
}

/// One bench case of `problem` (uploaded once, o_lat poisoned once).
fn bench_case(gpu: &Arc<Gpu>, p: Problem, cost: Cost, size: String) -> Result<BenchCase> {
    let op = AbsorbedAttention::new(gpu)?;
    let t = p.upload(gpu)?;
    let o_lat = p.poisoned_output(gpu)?;
    let g = gpu.clone();
    let cpu: Option<CpuRun> = (cost.flops < 2_000_000_000).then(|| {
        Box::new(move || {
            std::hint::black_box(p.reference());
        }) as CpuRun
    });
    Ok(BenchCase {
        tokens: None,
        kernel: "absorbed_attention",
        size,
        cost,
        gpu: Box::new(move || {
            let mut batch = g.batch();
            op.record(&mut batch, &t.inputs(), &o_lat)?;
            batch.run_timed()
        }),
        cpu,
    })
}

/// [`bench_cases`] with the kernel's half-capable tensor stored as `dtype` (bytes counted at
/// that width), for `ssm-mla bench --dtype`.
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    let mut rng = Rng::new(0xA77E);
    let mut cases = Vec::new();
    for (bt, h, ctx) in bench_sizes(gpu, quick) {
        let s = Shape::decode(bt, h, ctx);
        let p = Problem::random(&mut rng, &s).with_cache_dtype(dtype);
        let cost = cost(bt, 1, h, ctx, s.d_c, s.d_r, s.block_size, dtype);
        let size = format!(
            "decode Bt={bt} H={h} ctx={ctx} d_c={} d_R={}{}",
            s.d_c,
            s.d_r,
            dtype_suffix(dtype)
        );
        cases.push(bench_case(gpu, p, cost, size)?);
    }
    let h = 16;
    for (label, q_lens, lens) in prefill_sizes(quick) {
        let s = Shape {
            s_q: q_lens[0],
            query_lens: (q_lens.len() > 1).then(|| q_lens.clone()),
            ..Shape::decode(lens.len(), h, 1)
        };
        let s = Shape { lens, ..s };
        let p = Problem::random(&mut rng, &s).with_cache_dtype(dtype);
        let seqs: Vec<(usize, usize)> = q_lens.iter().copied().zip(s.lens.clone()).collect();
        let (cost, size) = if s.query_lens.is_some() {
            let c = cost_packed(&seqs, h, s.d_c, s.d_r, s.block_size, dtype);
            let size = format!("{label} q_lens={q_lens:?} H={h} ctx={:?}", s.lens);
            (c, size)
        } else {
            let (s_q, ctx) = seqs[0];
            let c = cost(1, s_q, h, ctx, s.d_c, s.d_r, s.block_size, dtype);
            (c, format!("{label} S_q={s_q} H={h} ctx={ctx}"))
        };
        let size = format!("{size} d_c={} d_R={}{}", s.d_c, s.d_r, dtype_suffix(dtype));
        cases.push(bench_case(gpu, p, cost, size)?);
    }
    Ok(cases)
}

/// The CPU reference on one decode step (Bt=1, H=16, 1K context), for the no-GPU main job.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let (bt, h, ctx) = (1, 16, 1024);
    let s = Shape::decode(bt, h, ctx);
    let p = Problem::random(rng, &s);
    vec![CpuCase {
        size: format!("decode Bt={bt} H={h} ctx={ctx} d_c={} d_R={}", s.d_c, s.d_r),
        cost: cost(bt, 1, h, ctx, s.d_c, s.d_r, s.block_size, DType::F32),
        run: Box::new(move || {
            std::hint::black_box(p.reference());
        }),
    }]
}
