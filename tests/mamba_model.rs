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

use ssm_mla::checkpoint::Checkpoint;
use ssm_mla::mamba::{MambaConfig, MambaWeights};
use ssm_mla::reference::mamba::MambaCpuModel;
use ssm_mla::{compare, Tolerance};
use std::path::{Path, PathBuf};

const TRANSFORMERS_TOL: Tolerance = Tolerance::new(2e-5, 1e-4);

fn data_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

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
