//! The Mamba-1 language model: the CPU reference against logits transformers gave for tiny
//! random checkpoints (tests/data/mamba_tiny_*, made by scripts/golden/mamba.py), and checkpoint
//! loading errors.
//!
//! Tolerance of the CPU reference against transformers: transformers computes in f32 (two
//! blocks of 32–96-wide dot products and a 16-state scan per token), the reference in f64, so
//! the difference is f32 rounding of O(1) logits: atol 2e-5 + rtol 1e-4 leaves room for
//! ~100 ulp of accumulated f32 error and still fails any wrong weight or layout (whose errors
//! are O(0.1–1)).

mod common;
use common::*;

use ssm_mla::checkpoint::Checkpoint;
use ssm_mla::mamba::{MambaConfig, MambaWeights};
use ssm_mla::reference::mamba::MambaCpuModel;
use ssm_mla::{compare, Tolerance};

const TRANSFORMERS_TOL: Tolerance = Tolerance::new(2e-5, 1e-4);

fn load(name: &str) -> (MambaConfig, MambaWeights, Checkpoint) {
    let ck = Checkpoint::open(&data_dir(name)).unwrap();
    assert_eq!(ck.model_type().unwrap(), "mamba");
    let cfg = MambaConfig::from_json(&ck.config, name).unwrap();
    let w = MambaWeights::from_safetensors(&cfg, &ck.tensors).unwrap();
    (cfg, w, ck)
}

/// Each golden prompt k: input_ids_k (1, L) and logits_k (1, L, vocab).
fn golden(name: &str) -> Vec<(Vec<u32>, Vec<f32>)> {
    let file = ssm_mla::SafeTensors::read(&data_dir(name).join("golden.safetensors")).unwrap();
    (0..)
        .map_while(|k| {
            let ids = file.get_ids(&format!("input_ids_{k}")).ok()?;
            let logits = file.get(&format!("logits_{k}")).unwrap();
            Some((
                ids.data.iter().map(|&t| t as u32).collect(),
                logits.to_f32().to_vec(),
            ))
        })
        .collect()
}

#[test]
fn cpu_reference_matches_transformers() {
    for name in ["mamba_tiny_tied", "mamba_tiny_untied"] {
        let (cfg, w, _) = load(name);
        let model = MambaCpuModel::new(&cfg, &w);
        let prompts = golden(name);
        assert!(prompts.len() >= 3, "{name}: golden prompts missing");
        for (k, (ids, want)) in prompts.iter().enumerate() {
            let (logits, _) = model.forward(ids).unwrap();
            let got: Vec<f32> = logits.iter().map(|&x| x as f32).collect();
            let want64: Vec<f64> = want.iter().map(|&x| x as f64).collect();
            let c = compare(&got, &want64, TRANSFORMERS_TOL);
            assert!(c.passed(), "{name} prompt {k} (L = {}): {c}", ids.len());
        }
    }
}

#[test]
fn config_fields_are_honoured() {
    let (cfg, w, _) = load("mamba_tiny_untied");
    assert_eq!(cfg.conv_kernel, 3);
    assert_eq!(cfg.intermediate_size, 96);
    assert_eq!(cfg.time_step_rank, 3);
    assert!(cfg.use_bias && !cfg.use_conv_bias && !cfg.tie_word_embeddings);
    assert!(w.lm_head.is_some() && w.layers[0].conv1d_bias.is_none());
    let (cfg, w, _) = load("mamba_tiny_tied");
    assert_eq!(cfg.time_step_rank, 2); // "auto" = ceil(32 / 16)
    assert!(w.lm_head.is_none());
}

#[test]
fn bad_checkpoints_are_named_errors() {
    let (cfg, _, ck) = load("mamba_tiny_untied");
    // A missing tensor.
    let mut tensors = ssm_mla::SafeTensors::default();
    for name in ck.tensors.names() {
        if name != "backbone.layers.1.mixer.x_proj.weight" {
            tensors.insert(name, ck.tensors.get(name).unwrap().clone());
        }
    }
    let err = MambaWeights::from_safetensors(&cfg, &tensors)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("backbone.layers.1.mixer.x_proj.weight"),
        "{err}"
    );
    // A misshapen tensor.
    let mut bad = ck.tensors.clone();
    let a = ck.tensors.get("backbone.layers.0.mixer.A_log").unwrap();
    bad.insert(
        "backbone.layers.0.mixer.A_log",
        a.reshaped(&[a.shape[1], a.shape[0]]).unwrap(),
    );
    let err = MambaWeights::from_safetensors(&cfg, &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("A_log") && err.contains("(D_in, N)"), "{err}");
    // Config values the crate does not run.
    let mut v = ck.config.clone();
    v["hidden_act"] = "gelu".into();
    let err = MambaConfig::from_json(&v, "config.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("hidden_act"), "{err}");
    let mut v = ck.config.clone();
    v["conv_kernel"] = 5.into();
    let err = MambaConfig::from_json(&v, "config.json")
        .unwrap_err()
        .to_string();
    assert!(err.contains("conv_kernel"), "{err}");
    let mut v = ck.config.clone();
    v["model_type"] = "mamba2".into();
    assert!(MambaConfig::from_json(&v, "config.json").is_err());
}

#[test]
fn random_models_round_trip_through_a_directory() {
    let cfg = MambaConfig {
        use_bias: true,
        tie_word_embeddings: false,
        ..MambaConfig::tiny(40, 24, 2)
    };
    let (mut rng, _) = common::rng("random_models_round_trip_through_a_directory");
    for dtype in [ssm_mla::DType::F32, ssm_mla::DType::BF16] {
        let w = MambaWeights::random(&cfg, &mut rng, dtype).unwrap();
        let dir =
            std::env::temp_dir().join(format!("ssm-mla-mamba-{}-{dtype}", std::process::id()));
        w.write_dir(&cfg, &dir).unwrap();
        let ck = Checkpoint::open(&dir).unwrap();
        let cfg2 = MambaConfig::from_json(&ck.config, "config.json").unwrap();
        assert_eq!(cfg2, cfg);
        let w2 = MambaWeights::from_safetensors(&cfg2, &ck.tensors).unwrap();
        assert_eq!(w2, w);
        assert_eq!(w2.layers[0].in_proj.dtype(), dtype);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// GPU (f32 math) against transformers or the f64 reference: f32 dot products of ≤ 96 terms and
/// a 16-state recurrence per step, over 2 blocks and the LM head: ~1e-6 relative per operation,
/// amplified through the norms; atol 1e-4 + rtol 1e-3 fails any misplaced weight or state.
const GPU_TOL: Tolerance = Tolerance::new(1e-4, 1e-3);

fn gpu_model(name: &str, slots: usize) -> Box<dyn ssm_mla::lm::CausalLm> {
    let device = ssm_mla::lm::Device::Gpu(common::gpu());
    let options = ssm_mla::lm::LoadOptions {
        slots,
        weight_dtype: None,
        ..Default::default()
    };
    ssm_mla::models::load(&data_dir(name), &device, &options).unwrap()
}

fn assert_logits(what: &str, got: &[f32], want: &[f32], tol: Tolerance) {
    let want64: Vec<f64> = want.iter().map(|&x| x as f64).collect();
    let c = compare(got, &want64, tol);
    assert!(c.passed(), "{what}: {c}");
}

#[test]
fn gpu_model_matches_transformers_one_shot_ragged_and_decoding() {
    use ssm_mla::lm::SeqInput;
    for name in ["mamba_tiny_tied", "mamba_tiny_untied"] {
        let prompts = golden(name);
        let mut model = gpu_model(name, prompts.len());
        // Every prompt in one ragged call (lengths 5, 12, 1: no padding).
        let seqs: Vec<SeqInput> = prompts
            .iter()
            .enumerate()
            .map(|(k, (ids, _))| SeqInput {
                slot: k,
                tokens: ids,
            })
            .collect();
        let out = model.forward(&seqs, false).unwrap();
        for (k, (ids, want)) in prompts.iter().enumerate() {
            assert_logits(
                &format!("{name} ragged prompt {k} (L = {})", ids.len()),
                &out[k],
                want,
                GPU_TOL,
            );
        }
        // Prefill 3 tokens of each (or all it has), then decode the rest one token per call,
        // every unfinished sequence together.
        let v = 64;
        let mut got: Vec<Vec<f32>> = vec![Vec::new(); prompts.len()];
        for k in 0..prompts.len() {
            model.reset(k).unwrap();
        }
        let split: Vec<usize> = prompts.iter().map(|(ids, _)| ids.len().min(3)).collect();
        let seqs: Vec<SeqInput> = prompts
            .iter()
            .enumerate()
            .map(|(k, (ids, _))| SeqInput {
                slot: k,
                tokens: &ids[..split[k]],
            })
            .collect();
        for (k, o) in model.forward(&seqs, false).unwrap().into_iter().enumerate() {
            got[k].extend(o);
        }
        let longest = prompts.iter().map(|(ids, _)| ids.len()).max().unwrap();
        for t in 3..longest {
            let seqs: Vec<SeqInput> = prompts
                .iter()
                .enumerate()
                .filter(|(_, (ids, _))| t < ids.len())
                .map(|(k, (ids, _))| SeqInput {
                    slot: k,
                    tokens: &ids[t..t + 1],
                })
                .collect();
            let ks: Vec<usize> = seqs.iter().map(|s| s.slot).collect();
            for (k, o) in ks.into_iter().zip(model.forward(&seqs, false).unwrap()) {
                assert_eq!(o.len(), v);
                got[k].extend(o);
            }
        }
        for (k, (_, want)) in prompts.iter().enumerate() {
            assert_logits(
                &format!("{name} decoded prompt {k}"),
                &got[k],
                want,
                GPU_TOL,
            );
        }
        // last_only: one row per sequence, the last position's.
        for k in 0..prompts.len() {
            model.reset(k).unwrap();
        }
        let seqs: Vec<SeqInput> = prompts
            .iter()
            .enumerate()
            .map(|(k, (ids, _))| SeqInput {
                slot: k,
                tokens: ids,
            })
            .collect();
        let last = model.forward(&seqs, true).unwrap();
        for (k, (ids, want)) in prompts.iter().enumerate() {
            let l = ids.len();
            assert_logits(
                &format!("{name} last row {k}"),
                &last[k],
                &want[(l - 1) * v..],
                GPU_TOL,
            );
        }
    }
}

#[test]
fn gpu_model_matches_the_cpu_reference_on_random_models() {
    use ssm_mla::lm::{CausalLm, SeqInput};
    use ssm_mla::mamba::MambaGpuLm;
    let (mut rng, seed) = common::rng("mamba gpu vs cpu");
    let gpu = common::gpu();
    // Wider than a workgroup of scan rows (D_in = 160 > 64), odd sizes, W = 2, biases on.
    let cfg = MambaConfig {
        use_bias: true,
        conv_kernel: 2,
        state_size: 8,
        tie_word_embeddings: false,
        ..MambaConfig::tiny(77, 40, 3)
    };
    let cfg = MambaConfig {
        intermediate_size: 84,
        ..cfg
    };
    // bf16 weights: the CPU reference reads the same rounded values, so the comparison
    // measures the GPU's f32 math only (GPU_TOL).
    for dtype in [ssm_mla::DType::F32, ssm_mla::DType::BF16] {
        let w = MambaWeights::random(&cfg, &mut rng, dtype).unwrap();
        let cpu = MambaCpuModel::new(&cfg, &w);
        let mut model = MambaGpuLm::new(gpu.clone(), cfg.clone(), &w, 2, None).unwrap();
        let a: Vec<u32> = (0..9).map(|_| rng.below(77) as u32).collect();
        let b: Vec<u32> = (0..2).map(|_| rng.below(77) as u32).collect();
        let out = model
            .forward(
                &[
                    SeqInput {
                        slot: 1,
                        tokens: &a,
                    },
                    SeqInput {
                        slot: 0,
                        tokens: &b,
                    },
                ],
                false,
            )
            .unwrap();
        for (ids, got) in [(&a, &out[0]), (&b, &out[1])] {
            let (want, _) = cpu.forward(ids).unwrap();
            let c = compare(got, &want, GPU_TOL);
            assert!(c.passed(), "{dtype} L = {} (seed {seed}): {c}", ids.len());
        }
        assert!(model
            .forward(
                &[SeqInput {
                    slot: 2,
                    tokens: &a
                }],
                false
            )
            .is_err());
        assert!(model
            .forward(
                &[SeqInput {
                    slot: 0,
                    tokens: &[77]
                }],
                false
            )
            .is_err());
    }
}

#[test]
fn tables_and_prompts_past_one_binding_are_split() {
    use ssm_mla::lm::{CausalLm, SeqInput};
    use ssm_mla::mamba::MambaGpuLm;
    // A device whose storage bindings hold 16 KiB: the (1000, 16) f32 embedding table (64 KB)
    // goes up in row chunks, and the logits of more than 4 tokens do not fit one binding, so a
    // forward runs in passes that continue from the slots' states.
    let options = ssm_mla::GpuOptions {
        max_storage_binding: Some(16 * 1024),
        ..Default::default()
    };
    let gpu = std::sync::Arc::new(ssm_mla::Gpu::with_options(&options).unwrap());
    let (mut rng, seed) = common::rng("mamba small bindings");
    let cfg = MambaConfig {
        intermediate_size: 32,
        ..MambaConfig::tiny(1000, 16, 2)
    };
    let w = MambaWeights::random(&cfg, &mut rng, ssm_mla::DType::F32).unwrap();
    let cpu = MambaCpuModel::new(&cfg, &w);
    let mut model = MambaGpuLm::new(gpu, cfg.clone(), &w, 2, None).unwrap();
    let a: Vec<u32> = (0..9).map(|_| rng.below(1000) as u32).collect();
    let b: Vec<u32> = (0..3).map(|_| 999 - rng.below(10) as u32).collect();
    let seqs = [
        SeqInput {
            slot: 0,
            tokens: &a,
        },
        SeqInput {
            slot: 1,
            tokens: &b,
        },
    ];
    let out = model.forward(&seqs, false).unwrap();
    for (ids, got) in [(&a, &out[0]), (&b, &out[1])] {
        let (want, _) = cpu.forward(ids).unwrap();
        let c = compare(got, &want, GPU_TOL);
        assert!(c.passed(), "L = {} (seed {seed}): {c}", ids.len());
    }
    for s in 0..2 {
        model.reset(s).unwrap();
    }
    let last = model.forward(&seqs, true).unwrap();
    let (want, _) = cpu.forward(&a).unwrap();
    let c = compare(&last[0], &want[8 * 1000..], GPU_TOL);
    assert!(c.passed(), "last row (seed {seed}): {c}");
}

#[test]
fn sharded_checkpoints_load_like_single_files() {
    // The tiny checkpoint split over two shard files with a model.safetensors.index.json, as
    // transformers writes large models: the same weights come back, and a shard missing from
    // the directory is an error naming it.
    let src = data_dir("mamba_tiny_untied");
    let full = ssm_mla::SafeTensors::read(&src.join("model.safetensors")).unwrap();
    let dir = std::env::temp_dir().join(format!("ssm-mla-sharded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let names = full.names();
    let mut map = serde_json::Map::new();
    for (k, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", k + 1);
        let tensors: Vec<(&str, &ssm_mla::HostTensor)> =
            part.iter().map(|&n| (n, full.get(n).unwrap())).collect();
        ssm_mla::io::write_safetensors(&dir.join(&file), &tensors).unwrap();
        for &n in part {
            map.insert(n.to_string(), file.clone().into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    let cfg = MambaConfig::from_json(&ck.config, "config.json").unwrap();
    let (_, single, _) = load("mamba_tiny_untied");
    assert_eq!(
        MambaWeights::from_safetensors(&cfg, &ck.tensors).unwrap(),
        single
    );
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let err = Checkpoint::open(&dir).unwrap_err().to_string();
    assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
