//! The whole Mamba-1 language model in the suite: conformance of the GPU model against the f64
//! CPU reference at tiny dims, and benchmarks at the shapes of mamba-130m and mamba-370m on
//! random weights.
//!
//! The cases and how they are timed are [`super::lm_cases`]'s, shared by every model.

use super::{BenchCase, CheckOutcome, CpuCase};
use crate::compare::Tolerance;
use crate::error::Result;
use crate::lm::SeqInput;
use crate::mamba::{MambaConfig, MambaGpuLm, MambaWeights};
use crate::ops::Cost;
use crate::reference::mamba::MambaCpuModel;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use std::sync::Arc;

/// GPU (f32 math) against the f64 reference on the same (possibly rounded) weights.
pub const TOLERANCE: Tolerance = Tolerance::new(1e-4, 1e-3);

/// Bytes and FLOPs of one forward: `seqs` sequences bringing `tokens` new tokens in all, logits
/// for `rows` positions, projections and embeddings stored as `weight_dtype`.
///
/// Bytes: every weight read once (the embedding table only as the gathered rows, plus once in
/// full as the tied or separate LM head), each sequence's conv and SSM state read and written
/// once per layer, and per token and layer each f32 intermediate written once and read once
/// (the conv output twice: by x_proj and the scan), the residual stream read by the norm and
/// read and written by the accumulating out_proj; the logits written once. FLOPs: 2 per weight of
/// the four projections per token and of the head per row, plus the causal conv (2·W per channel
/// and SiLU), the scan (8 per channel and state: Δ·A, exp, Δ·B·u, the state FMA and C·state; 9
/// per channel: softplus, D·u, the z gate) and the RMS norms.
pub fn forward_cost(
    cfg: &MambaConfig,
    weight_dtype: DType,
    seqs: usize,
    tokens: usize,
    rows: usize,
) -> Cost {
    let (h, di, n, r, w, v) = (
        cfg.hidden_size as u64,
        cfg.intermediate_size as u64,
        cfg.state_size as u64,
        cfg.time_step_rank as u64,
        cfg.conv_kernel as u64,
        cfg.vocab_size as u64,
    );
    let (t, s, rows) = (tokens as u64, seqs as u64, rows as u64);
    let layers = cfg.num_hidden_layers as u64;
    let wb = weight_dtype.size() as u64;
    let xw = r + 2 * n;
    let proj = 2 * di * h + xw * di + di * r + h * di;
    let bias = if cfg.use_bias { 2 * di + h } else { 0 };
    let conv_bias = if cfg.use_conv_bias { di } else { 0 };
    // norm, conv weight, Δ bias, A, D (all f32 on the GPU).
    let small = h + di * w + conv_bias + di + di * n + di + bias;
    let layer_weights = wb * proj + 4 * small;
    let states = 2 * 4 * s * (di * (w - 1) + di * n);
    let acts = 4 * t * (2 * (h + 2 * di + di + xw + di + di) + di + 3 * h);
    let bytes = layers * (layer_weights + states + acts)
        + wb * v * h
        + 4 * h
        + wb * t * h
        + 4 * rows * (h + v);
    let per_token_layer = 4 * h + 2 * proj + h + (2 * w + 4) * di + 8 * di * n + 9 * di;
    let flops = layers * t * per_token_layer + rows * (4 * h + 2 * v * h);
    Cost { bytes, flops }
}

use super::lm_cases::random_tokens;

/// Conformance: a tiny random model (f32 and bf16 weights) on the GPU against the CPU
/// reference, a ragged prefill of two sequences (every position's logits) and then one decode
/// step of both (last rows).
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let cfg = MambaConfig {
        intermediate_size: 84,
        ..MambaConfig::tiny(61, 40, 2)
    };
    let mut out = Vec::new();
    for dtype in [DType::F32, DType::BF16] {
        let w = MambaWeights::random(&cfg, rng, dtype)?;
        let cpu = MambaCpuModel::new(&cfg, &w);
        let mut model = MambaGpuLm::new(gpu.clone(), cfg.clone(), &w, 2, None)?;
        let a = random_tokens(rng, cfg.vocab_size, 7);
        let b = random_tokens(rng, cfg.vocab_size, 2);
        let got = model
            .forward_async(
                &[
                    SeqInput {
                        slot: 0,
                        tokens: &a,
                    },
                    SeqInput {
                        slot: 1,
                        tokens: &b,
                    },
                ],
                false,
            )
            .await?;
        let next = random_tokens(rng, cfg.vocab_size, 2);
        let step = model
            .forward_async(
                &[
                    SeqInput {
                        slot: 0,
                        tokens: &next[..1],
                    },
                    SeqInput {
                        slot: 1,
                        tokens: &next[1..],
                    },
                ],
                true,
            )
            .await?;
        let v = cfg.vocab_size;
        let dt = super::dtype_suffix(dtype);
        for (i, ids) in [&a, &b].into_iter().enumerate() {
            let (want, _) = cpu.forward(ids)?;
            out.push(CheckOutcome::new(
                "mamba_model",
                format!("hidden=40 layers=2 prefill L={}{dt} logits", ids.len()),
                TOLERANCE,
                &got[i],
                &want,
            ));
            let mut more = ids.clone();
            more.push(next[i]);
            let (want, _) = cpu.forward(&more)?;
            out.push(CheckOutcome::new(
                "mamba_model",
                format!(
                    "hidden=40 layers=2 decode after L={}{dt} last logits",
                    ids.len()
                ),
                TOLERANCE,
                &step[i],
                &want[(more.len() - 1) * v..],
            ));
        }
    }
    Ok(out)
}

/// Benchmark cases with f32 weights (see [`bench_cases_as`]).
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    bench_cases_as(gpu, quick, DType::F32)
}

/// Benchmark cases with the projections and embeddings stored as `dtype`: mamba-130m and
/// mamba-370m shapes, prefill L = 128 and 512 and decode Bt = 1 and 4. Quick: mamba-130m's
/// one-token decode step only (one model load and a case of well under a second on lavapipe, so
/// the main job's quick bench stays short; a 128-token prefill there takes ~8 s a run).
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    let mut cases = Vec::new();
    if quick {
        cases.extend(model_cases(
            gpu,
            "mamba-130m",
            &MambaConfig::mamba_130m(),
            dtype,
            &[],
            &[1],
        )?);
        return Ok(cases);
    }
    for (name, cfg) in [
        ("mamba-130m", MambaConfig::mamba_130m()),
        ("mamba-370m", MambaConfig::mamba_370m()),
    ] {
        cases.extend(model_cases(gpu, name, &cfg, dtype, &[128, 512], &[1, 4])?);
    }
    Ok(cases)
}

/// The cases of one model (random weights of `cfg` stored as `dtype`, loaded once and shared by
/// its cases): a prefill of each length in `prefill`, a decode step of each batch in `decode`
/// (see [`super::lm_cases`]). Also the criterion bench's entry point, at a tiny config.
pub fn model_cases(
    gpu: &Arc<Gpu>,
    name: &str,
    cfg: &MambaConfig,
    dtype: DType,
    prefill: &[usize],
    decode: &[usize],
) -> Result<Vec<BenchCase>> {
    let mut rng = Rng::new(0x3A3B);
    let slots = 1 + decode.iter().sum::<usize>();
    let w = MambaWeights::random(cfg, &mut rng, dtype)?;
    let model = MambaGpuLm::new(gpu.clone(), cfg.clone(), &w, slots, None)?;
    let cfg = cfg.clone();
    super::lm_cases::model_cases(
        "mamba_model",
        &format!("{name} "),
        Box::new(model),
        &super::dtype_suffix(dtype),
        prefill,
        decode,
        &mut rng,
        move |seqs, tokens, rows| forward_cost(&cfg, dtype, seqs, tokens, rows),
    )
}

/// The f64 CPU reference on a tiny random model (16-token prefill), for the no-GPU main job.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let cfg = MambaConfig::tiny(256, 64, 2);
    let w = MambaWeights::random(&cfg, rng, DType::F32).expect("valid config");
    let prompt = random_tokens(rng, cfg.vocab_size, 16);
    vec![CpuCase {
        size: format!("hidden=64 layers=2 prefill Bt=1 L={}", prompt.len()),
        cost: forward_cost(&cfg, DType::F32, 1, prompt.len(), prompt.len()),
        run: Box::new(move || {
            let model = MambaCpuModel::new(&cfg, &w);
            std::hint::black_box(model.forward(&prompt).expect("valid tokens"));
        }),
    }]
}
