//! The whole Mamba-2 language model in the suite: conformance of the GPU model against the f64
//! CPU reference at tiny dims, and benchmarks at the shapes of mamba2-130m on random weights.
//!
//! The cases and how they are timed are [`super::lm_cases`]'s, shared by every model.

use super::{BenchCase, CheckOutcome, CpuCase};
use crate::compare::Tolerance;
use crate::error::Result;
use crate::lm::SeqInput;
use crate::mamba2::{Mamba2Config, Mamba2GpuLm, Mamba2Weights};
use crate::ops::ssd_scan::{DLayout, SsdDims, SsdOptions, SsdScan};
use crate::ops::Cost;
use crate::reference::mamba2::Mamba2CpuModel;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use std::sync::Arc;

use super::lm_cases::random_tokens;

/// GPU (f32 math) against the f64 reference on the same (possibly rounded) weights.
pub const TOLERANCE: Tolerance = Tolerance::new(1e-4, 1e-3);

/// Bytes and FLOPs of one forward: sequences of `lens` new tokens, logits for `rows`
/// positions, projections and embeddings stored as `weight_dtype`.
///
/// Bytes: every weight read once (the embedding table only as the gathered rows, plus once in
/// full as the LM head), each sequence's conv and SSM state read and written once per layer, and
/// per token and layer each f32 intermediate written once and read once (in_proj's output, the
/// conv output, the scan output and the gated norm's output), the residual stream read by the
/// norm and read and written by the accumulating out_proj; the logits written once. FLOPs: 2 per
/// weight of in_proj and out_proj per token and of the head per row, the causal conv (2·W per
/// channel and SiLU), the SSD scan as [`SsdScan::cost_of_lengths`] counts it (prefill), or the
/// decode step's 5 per state element (exp(dt·A)·h, dt·x·B, the FMA into h and C·h) when every
/// sequence brings one token, and the norms (the gated one 9 per element).
pub fn forward_cost(cfg: &Mamba2Config, weight_dtype: DType, lens: &[usize], rows: usize) -> Cost {
    let split = cfg.in_proj_split();
    let (h, di, cd, pw, w, v) = (
        cfg.hidden_size as u64,
        cfg.d_inner() as u64,
        cfg.conv_dim() as u64,
        split.width as u64,
        cfg.conv_kernel as u64,
        cfg.vocab_size as u64,
    );
    let heads = cfg.num_heads as u64;
    let state = heads * cfg.head_dim as u64 * cfg.state_size as u64;
    let t: u64 = lens.iter().map(|&l| l as u64).sum();
    let (s, rows) = (lens.len() as u64, rows as u64);
    let layers = cfg.num_hidden_layers as u64;
    let wb = weight_dtype.size() as u64;
    let proj = pw * h + h * di;
    let bias = if cfg.use_bias { pw + h } else { 0 };
    let conv_bias = if cfg.use_conv_bias { cd } else { 0 };
    // norm, conv weight, dt_bias, A, D, gated-norm weight (all f32 on the GPU).
    let small = h + cd * w + conv_bias + 3 * heads + di + bias;
    let layer_weights = wb * proj + 4 * small;
    let states = 2 * 4 * s * (cd * (w - 1) + state);
    let acts = 4 * t * (2 * (h + pw + cd + di + di) + 3 * h);
    let bytes = layers * (layer_weights + states + acts)
        + wb * v * h
        + 4 * h
        + wb * t * h
        + 4 * rows * (h + v);
    let scan = if t == s {
        5 * state * t
    } else {
        let dims = SsdDims {
            batch: lens.len(),
            len: lens.iter().copied().max().unwrap_or(0),
            heads: cfg.num_heads,
            head_dim: cfg.head_dim,
            groups: cfg.n_groups,
            n: cfg.state_size,
        };
        let opts = SsdOptions {
            d: Some(DLayout::PerHead),
            z: false,
            dt_bias: true,
            dt_softplus: true,
            initial_states: true,
        };
        SsdScan::cost_of_lengths(&dims, lens, opts, cfg.chunk_size).flops
    };
    let per_token_layer = 4 * h + 2 * proj + h + (2 * w + 4) * cd + 9 * di;
    let flops = layers * (t * per_token_layer + scan) + rows * (4 * h + 2 * v * h);
    Cost { bytes, flops }
}

/// Conformance: a tiny random model (f32 and bf16 weights; two groups, biases, a finite dt
/// limit) on the GPU against the CPU reference: a ragged prefill of two sequences (one longer
/// than two SSD chunks; every position's logits) and then one decode step of both (last rows).
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let cfg = Mamba2Config {
        num_heads: 6,
        head_dim: 8,
        state_size: 12,
        n_groups: 2,
        use_bias: true,
        time_step_limit: (0.02, 0.4),
        ..Mamba2Config::tiny(61, 24, 2)
    };
    let mut out = Vec::new();
    for dtype in [DType::F32, DType::BF16] {
        let w = Mamba2Weights::random(&cfg, rng, dtype)?;
        let cpu = Mamba2CpuModel::new(&cfg, &w);
        let mut model = Mamba2GpuLm::new(gpu.clone(), cfg.clone(), &w, 2, None)?;
        let a = random_tokens(rng, cfg.vocab_size, 35);
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
                "mamba2_model",
                format!(
                    "hidden=24 H=6 G=2 layers=2 prefill L={}{dt} logits",
                    ids.len()
                ),
                TOLERANCE,
                &got[i],
                &want,
            ));
            let mut more = ids.clone();
            more.push(next[i]);
            let (want, _) = cpu.forward(&more)?;
            out.push(CheckOutcome::new(
                "mamba2_model",
                format!(
                    "hidden=24 H=6 G=2 layers=2 decode after L={}{dt} last logits",
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

/// Benchmark cases with the projections and embeddings stored as `dtype`: mamba2-130m shapes,
/// prefill L = 128 and 512 and decode Bt = 1 and 4. Quick: the one-token decode step only.
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    let cfg = Mamba2Config::mamba2_130m();
    if quick {
        return model_cases(gpu, "mamba2-130m", &cfg, dtype, &[], &[1]);
    }
    model_cases(gpu, "mamba2-130m", &cfg, dtype, &[128, 512], &[1, 4])
}

/// The cases of one model (random weights of `cfg` stored as `dtype`): a prefill of each length
/// in `prefill`, a decode step of each batch size in `decode` (see [`super::lm_cases`]). Also
/// the criterion bench's entry point, at a tiny config.
pub fn model_cases(
    gpu: &Arc<Gpu>,
    name: &str,
    cfg: &Mamba2Config,
    dtype: DType,
    prefill: &[usize],
    decode: &[usize],
) -> Result<Vec<BenchCase>> {
    let mut rng = Rng::new(0x3A3C);
    let slots = 1 + decode.iter().sum::<usize>();
    let w = Mamba2Weights::random(cfg, &mut rng, dtype)?;
    let model = Mamba2GpuLm::new(gpu.clone(), cfg.clone(), &w, slots, None)?;
    let cfg = cfg.clone();
    super::lm_cases::model_cases(
        "mamba2_model",
        &format!("{name} "),
        Box::new(model),
        &super::dtype_suffix(dtype),
        prefill,
        decode,
        &mut rng,
        move |seqs, tokens, rows| {
            // Prefill cases are one sequence; decode cases one token per sequence.
            let lens = if tokens == seqs {
                vec![1; seqs]
            } else {
                vec![tokens]
            };
            forward_cost(&cfg, dtype, &lens, rows)
        },
    )
}

/// The f64 CPU reference on a tiny random model (16-token prefill), for the no-GPU main job.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let cfg = Mamba2Config::tiny(256, 64, 2);
    let w = Mamba2Weights::random(&cfg, rng, DType::F32).expect("valid config");
    let prompt = random_tokens(rng, cfg.vocab_size, 16);
    vec![CpuCase {
        size: format!("hidden=64 layers=2 prefill Bt=1 L={}", prompt.len()),
        cost: forward_cost(&cfg, DType::F32, &[prompt.len()], prompt.len()),
        run: Box::new(move || {
            let model = Mamba2CpuModel::new(&cfg, &w);
            std::hint::black_box(model.forward(&prompt).expect("valid tokens"));
        }),
    }]
}
