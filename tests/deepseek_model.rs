//! The DeepSeek-V2/V3 language models: the f64 CPU reference against logits transformers gave
//! for tiny random checkpoints (tests/data/deepseek_v{2,3}_tiny, made by
//! scripts/golden/deepseek.py): one-shot, batched and prefill-then-decode through the cache;
//! block prefill equal to one-token decode; weight errors (config parsing is
//! tests/deepseek_config.rs). The CLI (`ssm-mla run lm`)
//! on these checkpoints is tests/deepseek_run_lm.rs.
//!
//! Tolerance of the reference against transformers: transformers computes in f32 (eager
//! attention, the experts one by one), the reference in f64. Three blocks of dot products of at
//! most 48 terms, softmaxes over ≤ 13 keys, 5 RMSNorms per block and a 128-row head; f32
//! rounding is ~1e-7 relative per operation and transformers' own runs of the same logits differ
//! by up to 1.1e-5 (its decode vs its one-shot forward, a batch row vs the row alone, printed by
//! the script). The V2 logits reach 25 (a tied N(0, 1) embedding as the head); the measured
//! worst is 1.3e-5 absolute for V2 and 2.2e-6 for V3 (each test prints its own). atol 1e-4 +
//! rtol 1e-4 is several times that; a misplaced weight, a wrong RoPE pair order or YaRN factor or
//! a wrong expert moves logits by O(0.1-10). A router decision that flips between f32 and f64
//! would also fail it: none does on these inputs (the measured errors are printed per test).

mod common;
use common::*;

use ssm_mla::checkpoint::Checkpoint;
use ssm_mla::deepseek::{DeepseekConfig, DeepseekVersion, DeepseekWeights};
use ssm_mla::lm::{Device, LoadOptions, SeqInput};
use ssm_mla::reference::deepseek::DeepseekCpuModel;
use ssm_mla::spec::moe::TopkMethod;
use ssm_mla::{compare, Rng, SafeTensors, Tolerance};

const TRANSFORMERS_TOL: Tolerance = Tolerance::new(1e-4, 1e-4);
const MODELS: [&str; 2] = ["deepseek_v2_tiny", "deepseek_v3_tiny"];
const VOCAB: usize = 128;

fn load(name: &str) -> (DeepseekConfig, DeepseekWeights, Checkpoint) {
    let ck = Checkpoint::open(&data_dir(name)).unwrap();
    let cfg = DeepseekConfig::from_json(&ck.config, name).unwrap();
    let w = DeepseekWeights::from_safetensors(&cfg, &ck.tensors).unwrap();
    (cfg, w, ck)
}

fn check(what: &str, got: &[f64], want: &[f32], tol: Tolerance) {
    let got32: Vec<f32> = got.iter().map(|&v| v as f32).collect();
    let want64: Vec<f64> = want.iter().map(|&x| x as f64).collect();
    let c = compare(&got32, &want64, tol);
    eprintln!("{what}: {c}");
    assert!(c.passed(), "{what}: {c}");
}

#[test]
fn cpu_reference_matches_transformers_one_shot_and_batched() {
    for name in MODELS {
        let (cfg, w, _) = load(name);
        let model = DeepseekCpuModel::new(&cfg, &w);
        let file = golden_file(name);
        for k in 0..3 {
            let (_, ids) = ids_of(&file, &format!("input_ids_{k}"));
            let want = file.get(&format!("logits_{k}")).unwrap().to_f32();
            let (logits, state) = model.run(&ids).unwrap();
            assert_eq!(state.len, ids.len());
            let what = format!("{name} prompt {k} (L = {})", ids.len());
            check(&what, &logits, want, TRANSFORMERS_TOL);
        }
        let (shape, ids) = ids_of(&file, "batch_input_ids");
        let want = file.get("batch_logits").unwrap().to_f32();
        let l = shape[1];
        for (b, row) in ids.chunks(l).enumerate() {
            let (logits, _) = model.run(row).unwrap();
            let part = &want[b * l * VOCAB..(b + 1) * l * VOCAB];
            check(
                &format!("{name} batch row {b}"),
                &logits,
                part,
                TRANSFORMERS_TOL,
            );
        }
    }
}

/// Through the registry's CPU model: prefill the first `from` tokens of `ids` in one call,
/// then one token per call; every position's logits.
fn prefill_then_decode(name: &str, ids: &[u32], from: usize) -> Vec<f64> {
    let options = LoadOptions {
        slots: 2,
        weight_dtype: None,
        ..Default::default()
    };
    let mut lm = ssm_mla::models::load(&data_dir(name), &Device::Cpu, &options).unwrap();
    assert_eq!(lm.vocab_size(), VOCAB);
    let feed = |lm: &mut Box<dyn ssm_mla::lm::CausalLm>, tokens: &[u32]| {
        lm.forward(&[SeqInput { slot: 1, tokens }], false)
            .unwrap()
            .remove(0)
    };
    let mut got = feed(&mut lm, &ids[..from]);
    for t in from..ids.len() {
        got.extend(feed(&mut lm, &ids[t..t + 1]));
    }
    got.iter().map(|&x| x as f64).collect()
}

#[test]
fn cpu_model_matches_transformers_decoding_through_the_cache() {
    for name in MODELS {
        let file = golden_file(name);
        let from = file.get_ids("decode_from").unwrap().data[0] as usize;
        let (_, ids) = ids_of(&file, "input_ids_0");
        let want = file.get("decode_logits_0").unwrap().to_f32();
        let got = prefill_then_decode(name, &ids, from);
        check(
            &format!("{name} decode from {from}"),
            &got,
            want,
            TRANSFORMERS_TOL,
        );
    }
}

/// Prefill as one block, in ragged chunks, or one token at a time: the same f64 logits, up to
/// summation order (the cache holds exactly what a one-shot run computes).
#[test]
fn block_prefill_equals_one_token_decode() {
    for name in MODELS {
        let (cfg, w, _) = load(name);
        let model = DeepseekCpuModel::new(&cfg, &w);
        let ids: Vec<u32> = (0..11).map(|i| (i * 37 + 5) % VOCAB as u32).collect();
        let (one_shot, _) = model.run(&ids).unwrap();
        for chunks in [vec![1; 11], vec![4, 1, 6], vec![10, 1]] {
            let mut state = model.new_state();
            let mut got = Vec::new();
            let mut at = 0;
            for n in chunks.iter().copied() {
                got.extend(model.forward(&mut state, &ids[at..at + n], false).unwrap());
                at += n;
            }
            let worst = got
                .iter()
                .zip(&one_shot)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                worst < 1e-9,
                "{name} chunks {chunks:?}: max |diff| {worst:e}"
            );
            // last_only gives the last row of the same computation.
            let mut state = model.new_state();
            let last = model.forward(&mut state, &ids, true).unwrap();
            assert_eq!(last.len(), VOCAB);
            let tail = &one_shot[(ids.len() - 1) * VOCAB..];
            assert!(last.iter().zip(tail).all(|(a, b)| (a - b).abs() < 1e-9));
        }
    }
}

#[test]
fn weight_errors_name_the_tensor_and_shape() {
    for name in MODELS {
        let (cfg, _, ck) = load(name);
        let without = |drop: &str| {
            let mut st = SafeTensors::default();
            for n in ck.tensors.names() {
                if n != drop {
                    st.insert(n, ck.tensors.get(n).unwrap().clone());
                }
            }
            DeepseekWeights::from_safetensors(&cfg, &st)
                .unwrap_err()
                .to_string()
        };
        let mut dropped = vec![
            "model.layers.2.mlp.experts.5.up_proj.weight",
            "model.layers.0.mlp.down_proj.weight",
            "model.layers.1.self_attn.kv_b_proj.weight",
            "model.layers.1.post_attention_layernorm.weight",
            "model.norm.weight",
        ];
        if cfg.version == DeepseekVersion::V3 {
            dropped.extend([
                "lm_head.weight",
                "model.layers.1.mlp.gate.e_score_correction_bias",
            ]);
        }
        for d in dropped {
            let err = without(d);
            assert!(err.contains(d), "{name} without {d}: {err}");
        }
        // A wrong shape names the tensor and the shape it should have.
        let mut st = ck.tensors.clone();
        let bad = "model.layers.1.mlp.shared_experts.down_proj.weight";
        st.insert(
            bad,
            ssm_mla::HostTensor::new(&[16, 32], vec![0.0; 512]).unwrap(),
        );
        let err = DeepseekWeights::from_safetensors(&cfg, &st)
            .unwrap_err()
            .to_string();
        assert!(err.contains(bad) && err.contains("32, 16"), "{err}");
    }
}

/// Random weights written as a Hugging Face directory load back through the registry and give
/// the reference's logits; `check` accepts them.
#[test]
fn random_weights_round_trip_through_a_directory() {
    for cfg in [DeepseekConfig::tiny_v2(), DeepseekConfig::tiny_v3()] {
        let mut rng = Rng::new(7);
        let w = DeepseekWeights::random(&cfg, &mut rng);
        w.check(&cfg).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "ssm-mla-deepseek-{}-{}",
            cfg.version.model_type(),
            std::process::id()
        ));
        w.write_dir(&cfg, &dir).unwrap();
        let ck = Checkpoint::open(&dir).unwrap();
        let back_cfg = DeepseekConfig::from_json(&ck.config, "back").unwrap();
        assert_eq!(back_cfg, cfg);
        assert_eq!(
            DeepseekWeights::from_safetensors(&cfg, &ck.tensors).unwrap(),
            w
        );
        let ids = [3u32, 9, 27, 81, 115];
        let (want, _) = DeepseekCpuModel::new(&cfg, &w).run(&ids).unwrap();
        let mut lm = ssm_mla::models::load(&dir, &Device::Cpu, &LoadOptions::default()).unwrap();
        let got = lm
            .forward(
                &[SeqInput {
                    slot: 0,
                    tokens: &ids,
                }],
                false,
            )
            .unwrap();
        assert!(want
            .iter()
            .zip(&got[0])
            .all(|(a, &b)| (a - b as f64).abs() <= 1e-5 * (1.0 + a.abs())));
        assert_eq!(lm.eos_token_id(), cfg.eos_token_id);
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// The golden comparison sees each routing and RoPE detail: changing any one of them moves the
/// logits far outside the tolerance.
#[test]
fn golden_logits_see_every_routing_and_rope_detail() {
    type Change = fn(&mut DeepseekConfig, &mut DeepseekWeights);
    let changes: [(&str, &str, Change); 6] = [
        (
            "deepseek_v2_tiny",
            "greedy instead of group-limited",
            |c, _| c.topk_method = TopkMethod::Greedy,
        ),
        ("deepseek_v2_tiny", "routed_scaling_factor 1", |c, _| {
            c.routed_scaling_factor = 1.0
        }),
        ("deepseek_v3_tiny", "no e_score_correction_bias", |_, w| {
            for l in &mut w.layers {
                if let ssm_mla::deepseek::DeepseekMlp::Moe(m) = &mut l.mlp {
                    m.bias.iter_mut().flatten().for_each(|b| *b = 0.0);
                }
            }
        }),
        ("deepseek_v3_tiny", "no norm_topk_prob", |c, _| {
            c.norm_topk_prob = false
        }),
        ("deepseek_v3_tiny", "no YaRN", |c, _| {
            c.attention.rope_scaling = None
        }),
        ("deepseek_v3_tiny", "rotate halves", |c, _| {
            c.attention.rope_interleave = false
        }),
    ];
    for (name, what, change) in changes {
        let (mut cfg, mut w, _) = load(name);
        change(&mut cfg, &mut w);
        let file = golden_file(name);
        let (_, ids) = ids_of(&file, "input_ids_0");
        let want: Vec<f64> = file
            .get("logits_0")
            .unwrap()
            .to_f32()
            .iter()
            .map(|&x| x as f64)
            .collect();
        let (got, _) = DeepseekCpuModel::new(&cfg, &w).run(&ids).unwrap();
        let got32: Vec<f32> = got.iter().map(|&v| v as f32).collect();
        let c = compare(&got32, &want, TRANSFORMERS_TOL);
        eprintln!("{name} with {what}: {c}");
        assert!(!c.passed(), "{name}: {what} went unnoticed");
    }
}
