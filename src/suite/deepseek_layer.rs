//! A whole DeepSeek decoder layer in the suite. Check: the GPU model (`DeepseekGpuLm`, the tiny
//! V2 and V3 shapes: a dense layer and MoE layers) against the f64 reference on a ragged call
//! and the decode step after it. Bench: one MoE decoder layer at DeepSeek-V2-Lite dims (hidden
//! 2048, 16 heads, d_c 512, 64 experts of 1408 top-6 plus 2 shared, bf16 weights and latent
//! cache), recorded as the model records it:
//! ```text
//! xn = rmsnorm(h);  h += MLA(xn) over the paged cache;  xn = rmsnorm(h);  h += MoE(xn)
//! ```
//! for a decode step of Bt sequences after a context (random latent rows appended to the cache
//! beforehand: only the cache matters to the timed step) and for the prefill of one prompt. Each run first restores h, so every run routes the same tokens to the same experts.
//! Prefills: one prompt of 128 and of 512 tokens, and a ragged batch of two prompts (96 and 32
//! tokens, as the transformers script's ragged case) in one call, and one of 4096 tokens (on a
//! CPU device minutes a run: `BenchPlan::long_run` times it once after one warm-up).
//! `scripts/bench/transformers_deepseek_layer.py` times transformers' layer at the same cases
//! on the CPU.

use super::{dtype_suffix, BenchCase, CheckOutcome, CpuCase};
use crate::compare::Tolerance;
use crate::deepseek::model::pass_tokens;
use crate::deepseek::{DeepseekConfig, DeepseekGpuLm, DeepseekWeights};
use crate::error::Result;
use crate::gpu_lm::split_passes;
use crate::lm::SeqInput;
use crate::mla::layer::{forward_cost, MlaCache, MlaLayer, MlaSeq};
use crate::mla::MlaWeights;
use crate::ops::moe::{Moe, MoeScratch, MoeWeights, Output};
use crate::ops::rmsnorm::{RmsNorm, Rows};
use crate::ops::Cost;
use crate::reference::deepseek::DeepseekCpuModel;
use crate::rng::Rng;
use crate::runtime::{Batch, DType, Gpu, Tensor};
use std::sync::Arc;

/// GPU model against the f64 reference (f32 math over 3 blocks; see tests/deepseek_gpu.rs).
const TOLERANCE: Tolerance = Tolerance::new(1e-4, 1e-3);

/// Conformance: per tiny config, a ragged call (23 and 5 tokens) and a decode step after it.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let mut out = Vec::new();
    for (name, cfg) in [
        ("V2", DeepseekConfig::tiny_v2()),
        ("V3", DeepseekConfig::tiny_v3()),
    ] {
        let w = DeepseekWeights::random(&cfg, rng);
        let v = cfg.vocab_size;
        let mut model =
            DeepseekGpuLm::new(gpu.clone(), cfg.clone(), &w, 2, Some(32), None, DType::F32)?;
        let prompts: Vec<Vec<u32>> = [23usize, 5]
            .iter()
            .map(|&n| (0..n).map(|_| rng.below(v) as u32).collect())
            .collect();
        let seqs: Vec<SeqInput> = prompts
            .iter()
            .enumerate()
            .map(|(slot, p)| SeqInput { slot, tokens: p })
            .collect();
        let got = model.forward_async(&seqs, false).await?;
        let next = [3u32, 4];
        let step: Vec<SeqInput> = next
            .iter()
            .enumerate()
            .map(|(slot, t)| SeqInput {
                slot,
                tokens: std::slice::from_ref(t),
            })
            .collect();
        let decoded = model.forward_async(&step, true).await?;
        let cpu = DeepseekCpuModel::new(&cfg, &w);
        for (k, p) in prompts.iter().enumerate() {
            let mut state = cpu.new_state();
            let want = cpu.forward(&mut state, p, false)?;
            out.push(CheckOutcome::new(
                "deepseek_layer",
                format!("tiny {name} model ragged L={} logits", p.len()),
                TOLERANCE,
                &got[k],
                &want,
            ));
            let want = cpu.forward(&mut state, &next[k..k + 1], true)?;
            out.push(CheckOutcome::new(
                "deepseek_layer",
                format!("tiny {name} model decode after L={} logits", p.len()),
                TOLERANCE,
                &decoded[k],
                &want,
            ));
        }
    }
    Ok(out)
}

/// One MoE decoder layer on the GPU, as `DeepseekGpuLm` records it.
struct DecoderLayer {
    attention: MlaLayer,
    moe: Moe,
    moe_weights: MoeWeights,
    rmsnorm: RmsNorm,
    norms: [Tensor; 2],
    hidden: usize,
    eps: f32,
}

/// One pass of a bench case: its sequences' tokens, packed (T_p, hidden) into `h` (rewritten
/// from `h0` before every run, so each run routes the same tokens), and the normed rows `xn`.
struct Pass {
    seqs: Vec<MlaSeq>,
    h0: Vec<f32>,
    h: Tensor,
    xn: Tensor,
}

/// The passes of a case (split as the model splits a call, [`split_passes`]): sequences of
/// `lens` new tokens, their rows packed in order in `h0`.
fn passes_of(
    gpu: &Gpu,
    lens: &[usize],
    h0: &[f32],
    hidden: usize,
    max: usize,
) -> Result<Vec<Pass>> {
    // Where each sequence's rows start in h0.
    let starts: Vec<usize> = lens
        .iter()
        .scan(0, |next, &l| {
            let start = *next;
            *next += l;
            Some(start)
        })
        .collect();
    split_passes(lens, max)
        .into_iter()
        .map(|chunks| {
            let mut rows = Vec::new();
            for c in &chunks {
                let first = starts[c.seq] + c.start;
                rows.extend_from_slice(&h0[first * hidden..(first + c.len) * hidden]);
            }
            let t = rows.len() / hidden;
            Ok(Pass {
                seqs: chunks
                    .iter()
                    .map(|c| MlaSeq {
                        seq: c.seq,
                        tokens: c.len,
                    })
                    .collect(),
                h: gpu.upload_f32(&[t, hidden], &rows)?,
                xn: gpu.empty(&[t, hidden], DType::F32)?,
                h0: rows,
            })
        })
        .collect()
}

impl DecoderLayer {
    /// Record every pass (h restored first), returning each pass's MoE routing scratch.
    fn record_passes(
        &self,
        batch: &mut Batch,
        cache: &mut MlaCache,
        passes: &[Pass],
    ) -> Result<Vec<MoeScratch>> {
        let mut routings = Vec::with_capacity(passes.len());
        for p in passes {
            batch.write(&p.h, 0, &p.h0)?;
            routings.push(self.record(batch, cache, &p.seqs, &p.h, &p.xn)?);
        }
        Ok(routings)
    }

    /// Record the layer over `h` (T, hidden), adding into it; returns the MoE's routing
    /// scratch (which experts the tokens reached).
    fn record(
        &self,
        batch: &mut Batch,
        cache: &mut MlaCache,
        seqs: &[MlaSeq],
        h: &Tensor,
        xn: &Tensor,
    ) -> Result<MoeScratch> {
        let t = h.shape()[0];
        let rows = Rows::contiguous(self.hidden);
        self.rmsnorm
            .record(batch, h, rows, &self.norms[0], xn, rows, t, self.eps)?;
        self.attention
            .record_packed(batch, cache, seqs, xn, h, true)?;
        self.rmsnorm
            .record(batch, h, rows, &self.norms[1], xn, rows, t, self.eps)?;
        self.moe
            .record_with_scratch(batch, xn, &self.moe_weights, h, Output::Accumulate)
    }
}

/// Decode steps after a context and single-prompt prefills (see the module docs); quick: one
/// decode step after 128 tokens and a 16-token prefill.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    let cfg = DeepseekConfig::deepseek_v2_lite();
    let (a, moe_cfg) = (cfg.attention.clone(), cfg.moe_config());
    let wd = DType::BF16;
    let cd = DType::BF16;
    let mut rng = Rng::new(0xD5EE);
    let mla_w = MlaWeights::random(&a, &mut rng).rounded_to(wd)?;
    let hid = cfg.hidden_size;
    let layer = Arc::new(DecoderLayer {
        attention: MlaLayer::new(gpu.clone(), &a, &mla_w)?,
        moe: Moe::new(gpu)?,
        moe_weights: super::moe::bench_weights(gpu, &moe_cfg, wd, &mut rng)?,
        rmsnorm: RmsNorm::new(gpu)?,
        norms: [
            gpu.upload_f32(&[hid], &rng.uniform_vec(hid, 0.5, 1.5))?,
            gpu.upload_f32(&[hid], &rng.uniform_vec(hid, 0.5, 1.5))?,
        ],
        hidden: hid,
        eps: cfg.rms_norm_eps as f32,
    });
    // (new tokens of each sequence, context before them); several lengths: a ragged prefill.
    let shapes: Vec<(Vec<usize>, usize)> = if quick {
        vec![(vec![1], 128), (vec![16], 0)]
    } else {
        vec![
            (vec![1], 1024),
            (vec![1; 8], 1024),
            (vec![1], 4096),
            (vec![1; 8], 4096),
            (vec![1], 32768),
            (vec![128], 0),
            (vec![512], 0),
            (vec![96, 32], 0),
            (vec![4096], 0),
        ]
    };
    let mut cases = Vec::new();
    for (lens, ctx) in shapes {
        let bt = lens.len();
        let s = lens.iter().copied().max().unwrap_or(0);
        let mut cache = MlaCache::new(gpu, &a, bt, ctx + s, 64, cd)?;
        // As the model does: a call whose activations or attention scratch would not fit one
        // storage binding runs in passes (the 4096-token prefill: two, the second attending to
        // what the first wrote), all recorded into the one timed batch.
        let pass = pass_tokens(gpu, &cfg, ctx + s, bt, true)?;
        // The context: random latent rows appended as they are (only the cache's size matters to
        // the timed step, and running the attention over 32K tokens of context would take
        // hours on a CPU device), at most 4096 rows a call to keep each upload small.
        let width = a.latent_dim();
        let mut done = 0;
        while done < ctx {
            let n = (ctx - done).min(4096 / bt);
            let part: Vec<MlaSeq> = (0..bt).map(|seq| MlaSeq { seq, tokens: n }).collect();
            let rows = rng.normal_vec(bt * n * width, 0.0, 1.0);
            let rows = gpu.upload_f32(&[bt * n, width], &rows)?;
            let mut batch = gpu.batch();
            layer
                .attention
                .record_append_latent(&mut batch, &mut cache, &part, &rows)?;
            batch.run()?;
            done += n;
        }
        let t: usize = lens.iter().sum();
        let h0 = rng.normal_vec(t * hid, 0.0, 1.0);
        let passes = passes_of(gpu, &lens, &h0, hid, pass)?;
        // One run to learn how many distinct experts these tokens reach (for the byte count).
        let hit = {
            let mut batch = gpu.batch();
            let routings = layer.record_passes(&mut batch, &mut cache, &passes)?;
            batch.run()?;
            for q in 0..bt {
                cache.truncate(q, ctx);
            }
            let mut seen = vec![false; moe_cfg.experts];
            for routing in routings {
                gpu.read_u32(&routing.ids)?
                    .iter()
                    .for_each(|&e| seen[e as usize] = true);
            }
            seen.iter().filter(|&&b| b).count()
        };
        let attn = if lens.iter().all(|&l| l == s) {
            forward_cost(&a, bt, s, ctx + s, wd, cd)
        } else {
            // Ragged: each sequence's tokens and attention, the weights read once per call.
            let weights = forward_cost(&a, 1, 0, 0, wd, cd).bytes;
            lens.iter().fold(
                Cost {
                    bytes: weights,
                    flops: 0,
                },
                |c, &l| {
                    let one = forward_cost(&a, 1, l, ctx + l, wd, cd);
                    Cost {
                        bytes: c.bytes + one.bytes - weights,
                        flops: c.flops + one.flops,
                    }
                },
            )
        };
        let experts = Moe::cost(&moe_cfg, t, hit, wd);
        let cost = Cost {
            bytes: attn.bytes + experts.bytes,
            flops: attn.flops + experts.flops,
        };
        let size = if s == 1 {
            format!(
                "V2-Lite decode Bt={bt} ctx={ctx} hit={hit}{}",
                dtype_suffix(wd)
            )
        } else if bt == 1 || lens.iter().all(|&l| l == s) {
            format!(
                "V2-Lite prefill Bt={bt} L={s} hit={hit}{}",
                dtype_suffix(wd)
            )
        } else {
            let ls: Vec<String> = lens.iter().map(|l| l.to_string()).collect();
            format!(
                "V2-Lite ragged prefill L={} hit={hit}{}",
                ls.join("+"),
                dtype_suffix(wd)
            )
        };
        let (g, l) = (gpu.clone(), layer.clone());
        cases.push(BenchCase {
            kernel: "deepseek_layer",
            size,
            cost,
            tokens: Some(t as u64),
            gpu: Box::new(move || {
                let mut batch = g.batch();
                l.record_passes(&mut batch, &mut cache, &passes)?;
                let timing = batch.run_timed();
                for q in 0..bt {
                    cache.truncate(q, ctx);
                }
                timing
            }),
            cpu: None,
        });
    }
    Ok(cases)
}

/// The f64 reference of the tiny V3 model on a 12-token prompt, for the no-GPU main job.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let cfg = DeepseekConfig::tiny_v3();
    let w = DeepseekWeights::random(&cfg, rng);
    let prompt: Vec<u32> = (0..12).map(|_| rng.below(cfg.vocab_size) as u32).collect();
    let cost = forward_cost(&cfg.attention, 1, 12, 12, DType::F32, DType::F32);
    vec![CpuCase {
        size: "tiny V3 model L=12".to_string(),
        cost,
        run: Box::new(move || {
            let cpu = DeepseekCpuModel::new(&cfg, &w);
            let mut state = cpu.new_state();
            std::hint::black_box(
                cpu.forward(&mut state, &prompt, false)
                    .expect("valid tokens"),
            );
        }),
    }]
}
