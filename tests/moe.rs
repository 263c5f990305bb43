//! Conformance of `moe` (DeepSeek-V2/V3 mixture of experts) against its f64 CPU reference, on
//! the default device and on one without optional features: V2 softmax greedy and
//! group-limited greedy, V3 sigmoid with correction bias and groups, norm_topk_prob on and off,
//! a routed scaling factor, 0/1/2 shared experts, ragged T (1, 7, 33, 70: more tokens than a
//! routing workgroup), experts that receive no tokens, routers built to tie (lowest index wins
//! on both sides), half expert weights, experts split over several bindings, errors naming
//! tensors, and transformers' own modules (golden files from `scripts/golden/deepseek_moe.py`).
//! y is NaN-poisoned before each run; the routing (ids exactly, weights within 1e-5 relative)
//! is compared too. Tolerances: `testing::moe::TOLERANCE` (atol 1e-5, rtol 2e-4).

mod common;
use common::*;
use ssm_mla::ops::moe::{Moe, MoeConfig, MoeWeights, Scoring, TopkMethod};
use ssm_mla::testing::moe::{DenseProblem, Problem, TOLERANCE, WEIGHT_TOLERANCE};
use ssm_mla::{DType, Gpu, GpuOptions, Rng};

fn cfg(method: TopkMethod, shared: usize) -> MoeConfig {
    let sigmoid = method == TopkMethod::NoauxTc;
    MoeConfig {
        hidden: 32,
        experts: 16,
        top_k: 4,
        n_group: 4,
        topk_group: 2,
        method,
        scoring: if sigmoid {
            Scoring::Sigmoid
        } else {
            Scoring::Softmax
        },
        norm_topk_prob: sigmoid,
        routed_scaling_factor: if sigmoid { 2.5 } else { 1.0 },
        intermediate: 12,
        n_shared: shared,
    }
}

/// Each token's (expert, weight) pairs sorted by expert: the set chosen, whatever the order of
/// near-equal scores (f32 against f64 may swap two experts' places, not the sum).
fn by_expert<W: Copy>(ids: &[usize], w: &[W], k: usize) -> (Vec<usize>, Vec<W>) {
    let mut pairs: Vec<(usize, W)> = Vec::new();
    for t in 0..ids.len() / k {
        let mut tok: Vec<(usize, W)> = (t * k..(t + 1) * k).map(|a| (ids[a], w[a])).collect();
        tok.sort_by_key(|p| p.0);
        pairs.extend(tok);
    }
    pairs.into_iter().unzip()
}

/// Run `p` and compare y, the chosen experts and their weights with the reference.
fn check(name: &str, gpu: &Gpu, op: &Moe, p: &Problem, seed: u64) {
    let (y, ids, w) = pollster::block_on(p.run(gpu, op)).unwrap();
    let r = p.routing();
    let k = p.config.top_k;
    let ids: Vec<usize> = ids.iter().map(|&e| e as usize).collect();
    let (ids, w) = by_expert(&ids, &w, k);
    let (ref_ids, ref_w) = by_expert(&r.experts, &r.weights, k);
    assert_eq!(ids, ref_ids, "{name}: chosen experts (seed {seed})");
    assert_close(
        &format!("{name} weights"),
        &w,
        &ref_w,
        WEIGHT_TOLERANCE,
        seed,
    );
    assert_close(&format!("{name} y"), &y, &p.reference(), TOLERANCE, seed);
}

fn sweep(what: &str, configs: &[MoeConfig]) {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng(what);
        let op = Moe::new(&gpu).unwrap();
        for c in configs {
            for t in [1usize, 7, 33, 70] {
                let p = Problem::random(&mut rng, c, t);
                check(&format!("{name} {what} {c:?} T={t}"), &gpu, &op, &p, seed);
            }
        }
    }
}

#[test]
fn v2_greedy_matches_reference() {
    let mut configs = Vec::new();
    for shared in [0, 1, 2] {
        let mut c = cfg(TopkMethod::Greedy, shared);
        c.n_group = 1;
        c.topk_group = 1;
        configs.push(c.clone());
        c.norm_topk_prob = true;
        c.routed_scaling_factor = 16.0;
        configs.push(c);
    }
    sweep("v2 greedy", &configs);
}

#[test]
fn v2_group_limited_greedy_matches_reference() {
    let mut a = cfg(TopkMethod::GroupLimitedGreedy, 2);
    let mut b = a.clone();
    b.n_group = 8;
    b.topk_group = 3;
    b.top_k = 6;
    b.n_shared = 0;
    b.routed_scaling_factor = 0.5;
    a.norm_topk_prob = true;
    sweep("v2 group_limited_greedy", &[a, b]);
}

#[test]
fn v3_sigmoid_with_bias_and_groups_matches_reference() {
    let a = cfg(TopkMethod::NoauxTc, 1);
    let mut b = a.clone();
    b.norm_topk_prob = false;
    b.routed_scaling_factor = 1.0;
    b.n_group = 2;
    b.topk_group = 1;
    b.n_shared = 0;
    let mut c = a.clone();
    c.experts = 64;
    c.n_group = 8;
    c.topk_group = 4;
    c.top_k = 8;
    c.n_shared = 2;
    sweep("v3 noaux_tc", &[a, b, c]);
}

/// Most experts get no token: a V3 bias that sends every token to the same few experts, and a
/// single token over 64 experts.
#[test]
fn experts_without_tokens() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("moe empty experts");
        let op = Moe::new(&gpu).unwrap();
        let c = cfg(TopkMethod::NoauxTc, 0);
        let mut p = Problem::random(&mut rng, &c, 40);
        let bias = p.weights.bias.as_mut().unwrap();
        for (e, b) in bias.iter_mut().enumerate() {
            *b = if [1, 2, 9, 10].contains(&e) { 5.0 } else { 0.0 };
        }
        let (_, ids, _) = pollster::block_on(p.run(&gpu, &op)).unwrap();
        let mut hit = ids.clone();
        hit.sort();
        hit.dedup();
        assert_eq!(hit, vec![1, 2, 9, 10], "{name}");
        check(&format!("{name} 4 of 16 experts used"), &gpu, &op, &p, seed);
        let mut c = cfg(TopkMethod::Greedy, 1);
        (c.experts, c.n_group, c.topk_group) = (64, 1, 1);
        let p = Problem::random(&mut rng, &c, 1);
        check(&format!("{name} T=1 E=64"), &gpu, &op, &p, seed);
    }
}

/// Routers built to tie: duplicated router rows give bit-identical logits, so scores (and V3
/// group scores) tie exactly; the lowest index must win on the GPU as in the reference.
#[test]
fn ties_pick_the_lowest_index() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("moe ties");
        let op = Moe::new(&gpu).unwrap();
        for method in [
            TopkMethod::Greedy,
            TopkMethod::GroupLimitedGreedy,
            TopkMethod::NoauxTc,
        ] {
            let mut c = cfg(method, 1);
            c.top_k = 2;
            if method == TopkMethod::Greedy {
                (c.n_group, c.topk_group) = (1, 1);
            }
            let mut p = Problem::random(&mut rng, &c, 9);
            let h = c.hidden;
            // Expert e shares the router row of e mod 4: four classes of four tied experts, and
            // every group (experts 4g .. 4g + 3) holds one of each class, so groups tie too
            // (V3's bias is zeroed). The two lowest of the best class must win: [c, c + 4].
            for e in 4..c.experts {
                let src = p.weights.router[(e % 4) * h..(e % 4 + 1) * h].to_vec();
                p.weights.router[e * h..(e + 1) * h].copy_from_slice(&src);
            }
            if let Some(b) = p.weights.bias.as_mut() {
                b.iter_mut().for_each(|v| *v = 0.0);
            }
            let r = p.routing();
            for ids in r.experts.chunks(2) {
                assert!(ids[0] < 4 && ids[1] == ids[0] + 4, "{method:?}: {ids:?}");
            }
            check(&format!("{name} ties {method:?}"), &gpu, &op, &p, seed);
        }
    }
}

#[test]
fn half_weights_match_reference() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("moe half weights");
        let op = Moe::new(&gpu).unwrap();
        for dtype in [DType::F16, DType::BF16] {
            for c in [
                cfg(TopkMethod::GroupLimitedGreedy, 2),
                cfg(TopkMethod::NoauxTc, 1),
            ] {
                for t in [1usize, 33] {
                    let p = Problem::random(&mut rng, &c, t).with_dtype(dtype);
                    check(
                        &format!("{name} {dtype} {:?} T={t}", c.method),
                        &gpu,
                        &op,
                        &p,
                        seed,
                    );
                }
            }
        }
    }
}

/// The decoder layer's residual add: y starts random and the block is added into it, routed
/// experts and shared expert alike.
#[test]
fn accumulate_adds_into_y() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("moe accumulate");
        let op = Moe::new(&gpu).unwrap();
        for c in [
            cfg(TopkMethod::GroupLimitedGreedy, 2),
            cfg(TopkMethod::NoauxTc, 0),
        ] {
            for t in [1usize, 33] {
                let p = Problem::random(&mut rng, &c, t);
                let y0 = rng.normal_vec(t * c.hidden, 0.0, 1.0);
                let y = p.run_accumulate(&gpu, &op, &y0).unwrap();
                let want: Vec<f64> = p
                    .reference()
                    .iter()
                    .zip(&y0)
                    .map(|(a, &b)| a + b as f64)
                    .collect();
                let what = format!("{name} accumulate {:?} T={t}", c.method);
                assert_close(&what, &y, &want, TOLERANCE, seed);
            }
        }
    }
}

/// DeepSeek's dense MLP layers: y += down(silu(gate·x) ⊙ up·x), ragged T, f32 and half weights.
#[test]
fn dense_mlp_adds_into_y() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("moe dense");
        let op = Moe::new(&gpu).unwrap();
        for dtype in [DType::F32, DType::BF16] {
            for (t, hidden, inter) in [(1usize, 64usize, 96usize), (3, 32, 8), (37, 64, 1028)] {
                let p = DenseProblem::random(&mut rng, hidden, inter, t, dtype);
                let y = p.run(&gpu, &op).unwrap();
                let what = format!("{name} dense {dtype} T={t} hidden={hidden} I={inter}");
                assert_close(&what, &y, &p.reference(), TOLERANCE, seed);
            }
        }
        // hidden not a multiple of 4 is refused by name.
        let p = DenseProblem::random(&mut rng, 6, 8, 2, DType::F32);
        let err = p.run(&gpu, &op).unwrap_err().to_string();
        assert!(err.contains("hidden"), "{err}");
    }
}

/// A device whose largest binding holds 3 experts' projections: experts in 6 ranges, one
/// dispatch each, same result.
#[test]
fn experts_split_over_bindings() {
    let mut c = cfg(TopkMethod::NoauxTc, 1);
    (c.hidden, c.intermediate) = (64, 64);
    let one = (c.intermediate * c.hidden * 4) as u64;
    let gpu = Gpu::with_options(&GpuOptions {
        max_storage_binding: Some(3 * one + 8),
        ..Default::default()
    })
    .unwrap();
    let (mut rng, seed) = rng("moe split");
    let op = Moe::new(&gpu).unwrap();
    for t in [1usize, 7, 33] {
        let p = Problem::random(&mut rng, &c, t);
        let w = p.upload(&gpu).unwrap();
        assert_eq!(w.groups.len(), 6);
        check(&format!("split T={t}"), &gpu, &op, &p, seed);
    }
}

#[test]
fn errors_name_the_tensor() {
    let gpu = gpu();
    let op = Moe::new(&gpu).unwrap();
    let c = cfg(TopkMethod::NoauxTc, 1);
    let p = Problem::random(&mut Rng::new(1), &c, 3);
    let w = p.upload(&gpu).unwrap();
    let x = gpu.upload_f32(&[3, 32], &p.x).unwrap();
    let bad_x = gpu.upload_f32(&[3, 31], &p.x[..93]).unwrap();
    let y = gpu.nan_f32(&[3, 32]).unwrap();
    let err = |r: ssm_mla::Result<()>| r.unwrap_err().to_string();
    let mut b = gpu.batch();
    let e = err(op.record(&mut b, &bad_x, &w, &y));
    assert!(e.contains("`x`") && e.contains("hidden = 32"), "{e}");
    let e = err(op.record(&mut b, &x, &w, &gpu.nan_f32(&[4, 32]).unwrap()));
    assert!(e.contains("`y`"), "{e}");
    let e = err(op.record(&mut b, &x, &w, &x));
    assert!(e.contains("share"), "{e}");
    let mut no_bias = w.clone();
    no_bias.bias = None;
    let e = err(op.record(&mut b, &x, &no_bias, &y));
    assert!(e.contains("e_score_correction_bias"), "{e}");
    let mut bad: MoeWeights = w.clone();
    bad.groups[0].up = gpu.nan_f32(&[16, 12, 31]).unwrap();
    let e = err(op.record(&mut b, &x, &bad, &y));
    assert!(e.contains("experts.up_proj"), "{e}");
    assert_eq!(b.dispatches(), 0, "nothing recorded on error");
    let mut weights = p.weights.clone();
    weights.experts[3].down.pop();
    let e = MoeWeights::upload(&gpu, &c, &weights, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("experts.3.down_proj.weight"), "{e}");
    let mut c2 = c.clone();
    c2.topk_group = 1;
    c2.top_k = 5;
    assert!(c2
        .validate()
        .unwrap_err()
        .to_string()
        .contains("topk_group"));
}

/// transformers' `DeepseekV2Moe` (group_limited_greedy, scaling 1.5) and `DeepseekV3MoE`
/// (noaux_tc, bias, norm_topk_prob, scaling 2.5) at hidden 16, I 8, 8 experts top-3 in 4 groups
/// keeping 2, 2 shared experts, T = 11, as written by `scripts/golden/deepseek_moe.py`: the
/// reference and the GPU op (f32 weights) both match transformers' float32 y.
#[test]
fn golden_transformers_modules() {
    use ssm_mla::reference::moe::moe;
    use ssm_mla::spec::moe::MoeHostWeights;
    use ssm_mla::SafeTensors;
    let tol = ssm_mla::Tolerance::new(2e-6, 1e-5);
    for (file, method) in [
        ("deepseek_v2_moe", TopkMethod::GroupLimitedGreedy),
        ("deepseek_v3_moe", TopkMethod::NoauxTc),
    ] {
        let v3 = method == TopkMethod::NoauxTc;
        let c = MoeConfig {
            hidden: 16,
            experts: 8,
            top_k: 3,
            n_group: 4,
            topk_group: 2,
            method,
            scoring: if v3 {
                Scoring::Sigmoid
            } else {
                Scoring::Softmax
            },
            norm_topk_prob: v3,
            routed_scaling_factor: if v3 { 2.5 } else { 1.5 },
            intermediate: 8,
            n_shared: 2,
        };
        let path = format!(
            "{}/tests/data/{file}.safetensors",
            env!("CARGO_MANIFEST_DIR")
        );
        let st = SafeTensors::read(std::path::Path::new(&path)).unwrap();
        let weights = MoeHostWeights::from_safetensors(&c, &st, "").unwrap();
        let x = st.get("x").unwrap().to_f32().to_vec();
        let y: Vec<f64> = st
            .get("y")
            .unwrap()
            .to_f32()
            .iter()
            .map(|&v| v as f64)
            .collect();
        let reference = moe(&c, &weights, &x);
        let r32: Vec<f32> = reference.iter().map(|&v| v as f32).collect();
        assert_close(
            &format!("{file}: reference vs transformers"),
            &r32,
            &y,
            tol,
            0,
        );
        let p = Problem {
            config: c.clone(),
            weights,
            tokens: x.len() / 16,
            x,
            dtype: DType::F32,
        };
        for (name, gpu) in gpus() {
            let (out, _, _) = pollster::block_on(p.run(&gpu, &Moe::new(&gpu).unwrap())).unwrap();
            assert_close(
                &format!("{name} {file}: GPU vs transformers"),
                &out,
                &y,
                tol,
                0,
            );
            let c = ssm_mla::compare(&out, &y, tol);
            eprintln!("{name} {file}: GPU vs transformers {c}");
        }
        eprintln!(
            "{file}: reference vs transformers {}",
            ssm_mla::compare(&r32, &y, tol)
        );
    }
}
