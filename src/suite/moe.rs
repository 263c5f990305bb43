//! `moe` in the suite: DeepSeek-V2 and V3 routing at small sizes against the f64 reference, and
//! DeepSeek-V2-Lite's MoE layer (hidden 2048, 64 experts top-6, I = 1408, 2 shared experts,
//! bf16 expert weights) as the benchmark, bytes counted as the weights of the experts actually
//! routed to (from the reference routing of the same x) plus the activations and the router.

use super::{dtype_suffix, BenchCase, CheckOutcome, CpuCase};
use crate::error::Result;
use crate::ops::moe::{ExpertGroup, Moe, MoeConfig, MoeWeights, Scoring, SwigluMlp, TopkMethod};
use crate::reference::moe::{route_token, router_logits};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::moe::{Problem, TOLERANCE};
use std::sync::Arc;

/// A small V2 group-limited and a small V3 block (hidden 64, 16 experts, I 32).
fn small(v3: bool) -> MoeConfig {
    MoeConfig {
        hidden: 64,
        experts: 16,
        top_k: 4,
        n_group: 4,
        topk_group: 2,
        method: if v3 {
            TopkMethod::NoauxTc
        } else {
            TopkMethod::GroupLimitedGreedy
        },
        scoring: if v3 {
            Scoring::Sigmoid
        } else {
            Scoring::Softmax
        },
        norm_topk_prob: v3,
        routed_scaling_factor: if v3 { 2.5 } else { 1.0 },
        intermediate: 32,
        n_shared: if v3 { 1 } else { 2 },
    }
}

/// Conformance: V2 group-limited and V3 at T = 1 and 33 (f32 weights), then bf16 weights; y
/// poisoned.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let op = Moe::new(gpu)?;
    let mut out = Vec::new();
    for (v3, t, dtype) in [
        (false, 1usize, DType::F32),
        (false, 33, DType::F32),
        (true, 1, DType::F32),
        (true, 33, DType::F32),
        (true, 7, DType::BF16),
    ] {
        let p = Problem::random(rng, &small(v3), t).with_dtype(dtype);
        let (y, _, _) = p.run(gpu, &op).await?;
        out.push(CheckOutcome::new(
            "moe",
            format!(
                "{} T={t} E=16 k=4{} y",
                if v3 { "V3" } else { "V2" },
                dtype_suffix(dtype)
            ),
            TOLERANCE,
            &y,
            &p.reference(),
        ));
    }
    Ok(out)
}

/// DeepSeek-V2-Lite's MoE layer with bf16 expert weights at T = 1, 8, 32 (quick: T = 1; a 512-token
/// prefill does not finish in minutes on lavapipe yet).
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    bench_cases_as(gpu, quick, DType::BF16)
}

/// Weights at `cfg`'s real size without 64 distinct host experts (2.2 GB of f32): four random
/// templates repeated over the experts, uploaded range by range; returns them and the router.
pub(crate) fn bench_weights(
    gpu: &Gpu,
    cfg: &MoeConfig,
    dtype: DType,
    rng: &mut Rng,
) -> Result<MoeWeights> {
    let (h, i) = (cfg.hidden, cfg.intermediate);
    let sh = 1.0 / (h as f64).sqrt();
    let templates: Vec<[Vec<f32>; 3]> = (0..4)
        .map(|_| {
            [
                rng.normal_vec(i * h, 0.0, sh),
                rng.normal_vec(i * h, 0.0, sh),
                rng.normal_vec(h * i, 0.0, 1.0 / (i as f64).sqrt()),
            ]
        })
        .collect();
    let per = crate::ops::moe::experts_per_binding(cfg, dtype, gpu.max_binding_bytes())?;
    let mut groups = Vec::new();
    for first in (0..cfg.experts).step_by(per) {
        let count = per.min(cfg.experts - first);
        let stacked = |part: usize| -> Vec<f32> {
            (first..first + count)
                .flat_map(|e| templates[e % 4][part].iter().copied())
                .collect()
        };
        groups.push(ExpertGroup {
            first,
            count,
            gate: gpu.upload_f32_as(&[count, i, h], dtype, &stacked(0))?,
            up: gpu.upload_f32_as(&[count, i, h], dtype, &stacked(1))?,
            down: gpu.upload_f32_as(&[count, h, i], dtype, &stacked(2))?,
        });
    }
    let si = cfg.shared_intermediate();
    let shared = (cfg.n_shared > 0)
        .then(|| -> Result<SwigluMlp> {
            Ok(SwigluMlp {
                gate: gpu.upload_f32_as(&[si, h], dtype, &rng.normal_vec(si * h, 0.0, sh))?,
                up: gpu.upload_f32_as(&[si, h], dtype, &rng.normal_vec(si * h, 0.0, sh))?,
                down: gpu.upload_f32_as(
                    &[h, si],
                    dtype,
                    &rng.normal_vec(h * si, 0.0, 1.0 / (si as f64).sqrt()),
                )?,
            })
        })
        .transpose()?;
    let router = rng.normal_vec(cfg.experts * h, 0.0, sh);
    Ok(MoeWeights {
        config: cfg.clone(),
        router: gpu.upload_f32(&[cfg.experts, h], &router)?,
        bias: None,
        groups,
        shared,
        dtype,
    })
}

/// [`bench_cases`] with the expert weights stored as `dtype`. The CPU reference is not timed
/// at this size (its weights would not fit a bench's host memory budget).
pub fn bench_cases_as(gpu: &Arc<Gpu>, quick: bool, dtype: DType) -> Result<Vec<BenchCase>> {
    let tokens: &[usize] = if quick { &[1] } else { &[1, 8, 32] };
    let cfg = MoeConfig::deepseek_v2_lite();
    let mut rng = Rng::new(0x30E);
    let w = Arc::new(bench_weights(gpu, &cfg, dtype, &mut rng)?);
    let router = gpu.read_f32(&w.router)?;
    let mut cases = Vec::new();
    for &t in tokens {
        let xs = rng.normal_vec(t * cfg.hidden, 0.0, 1.0);
        let logits = router_logits(&cfg, &router, &xs);
        let mut hit = vec![false; cfg.experts];
        for l in logits.chunks(cfg.experts) {
            route_token(&cfg, l, None)
                .0
                .iter()
                .for_each(|&e| hit[e] = true);
        }
        let hit = hit.iter().filter(|&&b| b).count();
        let op = Moe::new(gpu)?;
        let x = gpu.upload_f32(&[t, cfg.hidden], &xs)?;
        let y = gpu.empty(&[t, cfg.hidden], DType::F32)?;
        let (g, w) = (gpu.clone(), w.clone());
        cases.push(BenchCase {
            tokens: None,
            kernel: "moe",
            size: format!(
                "V2-Lite T={t} E=64 k=6 I=1408 hit={hit}{}",
                dtype_suffix(dtype)
            ),
            cost: Moe::cost(&cfg, t, hit, dtype),
            gpu: Box::new(move || {
                let mut batch = g.batch();
                op.record(&mut batch, &x, &w, &y)?;
                batch.run_timed()
            }),
            cpu: None,
        });
    }
    Ok(cases)
}

/// The CPU reference on the small V3 block, for the no-GPU main job.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let cfg = small(true);
    let p = Problem::random(rng, &cfg, 8);
    let hit = p.experts_hit();
    vec![CpuCase {
        size: format!("V3 T=8 E=16 k=4 hit={hit}"),
        cost: Moe::cost(&cfg, 8, hit, DType::F32),
        run: Box::new(move || {
            std::hint::black_box(p.reference());
        }),
    }]
}
