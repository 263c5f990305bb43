//! The MLA layer in the suite: the GPU layer (absorbed, through the paged cache) against the
//! CPU naive form, and decode-step and prefill benchmarks.

use super::{BenchCase, CheckOutcome, CpuCase, CpuRun};
use crate::error::Result;
use crate::mla::layer::forward_cost;
use crate::mla::{MlaLayer, MlaWeights};
use crate::reference::mla::MlaCpuLayer;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::mla::{bench_config, small_config, Problem, TOLERANCE};
use std::sync::Arc;

/// Conformance cases: one-shot and prefill + decode, at small dims (H = 3, with and without
/// q_lora, YaRN).
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let mut out = Vec::new();
    for (q_lora, bt, s) in [(None, 1usize, 1usize), (Some(24), 2, 9)] {
        let p = Problem::random(rng, &small_config(3, q_lora, true, false), bt, s);
        let want = p.reference();
        let layer = MlaLayer::new(gpu.clone(), &p.cfg, &p.weights)?;
        let q = q_lora.map_or("null".to_string(), |r: usize| r.to_string());
        for decode_from in [None, Some(s.div_ceil(2))] {
            out.push(CheckOutcome::new(
                "mla_layer",
                format!(
                    "Bt={bt} S={s} H=3 q_lora={q}{} out",
                    decode_from.map_or(String::new(), |p| format!(" decode-from {p}"))
                ),
                TOLERANCE,
                &layer
                    .run_host_with_cache_dtype_async(&p.hidden, bt, s, decode_from, DType::F32)
                    .await?,
                &want,
            ));
        }
    }
    Ok(out)
}

/// Benchmark cases: a decode step (one token for each of Bt sequences after a context of `ctx`
/// tokens) and prefills (S new tokens for each of Bt sequences from an empty cache, reported in
/// tokens/s), the cache truncated back after each run. Quick: small dims; otherwise V2-Lite's
/// attention dims (hidden 2048, H 16, no q_lora, d_c 512), decode after 1K and 4K, prefill of
/// 128 and 512 tokens and of 4 × 128.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    let cfg = bench_config(!quick);
    // (Bt, new tokens per sequence, context before them)
    let sizes: &[(usize, usize, usize)] = if quick {
        &[(1, 1, 128), (4, 1, 128), (1, 32, 0)]
    } else {
        &[
            (1, 1, 1024),
            (4, 1, 1024),
            (1, 1, 4096),
            (1, 128, 0),
            (1, 512, 0),
            (4, 128, 0),
        ]
    };
    let mut rng = Rng::new(0xB3AC);
    let w = MlaWeights::random(&cfg, &mut rng);
    let mut cases = Vec::new();
    for &(bt, s, ctx) in sizes {
        let layer = Arc::new(MlaLayer::new(gpu.clone(), &cfg, &w)?);
        let mut cache = layer.new_cache(bt, ctx + s, 64)?;
        let seqs: Vec<usize> = (0..bt).collect();
        let hid = cfg.hidden_size;
        // Prefill the context in chunks (bounded intermediates).
        let mut done = 0;
        while done < ctx {
            let n = (ctx - done).min(256);
            let x = gpu.upload_f32(&[bt, n, hid], &rng.normal_vec(bt * n * hid, 0.0, 1.0))?;
            layer.forward(&mut cache, &seqs, &x)?;
            done += n;
        }
        let step_host = rng.normal_vec(bt * s * hid, 0.0, 1.0);
        let step = gpu.upload_f32(&[bt, s, hid], &step_host)?;
        let out = gpu.empty(&[bt, s, hid], DType::F32)?;
        let g = gpu.clone();
        let l = layer.clone();
        let mut cpu: Option<CpuRun> = None;
        if quick {
            let mut cpu_layer = MlaCpuLayer::new(&cfg, &w, bt)?;
            if ctx > 0 {
                let ctx_h = rng.normal_vec(bt * ctx * hid, 0.0, 1.0);
                cpu_layer.forward(&seqs, &ctx_h, ctx)?;
            }
            let seqs = seqs.clone();
            cpu = Some(Box::new(move || {
                let y = cpu_layer
                    .forward(&seqs, &step_host, s)
                    .expect("valid shapes");
                std::hint::black_box(y);
                for q in 0..seqs.len() {
                    cpu_layer.truncate(q, ctx);
                }
            }));
        }
        let (size, tokens) = if s == 1 {
            (format!("decode Bt={bt} ctx={ctx}"), None)
        } else {
            (format!("prefill Bt={bt} S={s}"), Some((bt * s) as u64))
        };
        cases.push(BenchCase {
            tokens,
            kernel: "mla_layer",
            size: format!("{size} hidden={hid} H={}", cfg.num_heads),
            cost: forward_cost(&cfg, bt, s, ctx + s, DType::F32, DType::F32),
            gpu: Box::new(move || {
                let mut batch = g.batch();
                l.record(&mut batch, &mut cache, &seqs, &step, &out)?;
                let t = batch.run_timed();
                for q in 0..seqs.len() {
                    cache.truncate(q, ctx);
                }
                t
            }),
            cpu,
        });
    }
    Ok(cases)
}

/// The CPU layer's decode step at small dims, for the no-GPU main job.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let cfg = bench_config(false);
    let (bt, ctx, hid) = (1, 128, cfg.hidden_size);
    let p = Problem::random(rng, &cfg, bt, ctx);
    let mut layer = MlaCpuLayer::new(&cfg, &p.weights, bt).expect("valid config");
    layer.forward(&[0], &p.hidden, ctx).expect("valid shapes");
    let step = rng.normal_vec(bt * hid, 0.0, 1.0);
    vec![CpuCase {
        size: format!("decode Bt={bt} ctx={ctx} hidden={hid} H={}", cfg.num_heads),
        cost: forward_cost(&cfg, bt, 1, ctx + 1, DType::F32, DType::F32),
        run: Box::new(move || {
            std::hint::black_box(layer.forward(&[0], &step, 1).expect("valid shapes"));
            layer.truncate(0, ctx);
        }),
    }]
}
