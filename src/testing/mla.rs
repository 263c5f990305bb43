//! MLA-layer fixtures: small DeepSeek-shaped configs (with and without q_lora, YaRN and biases),
//! random weights ([`MlaWeights::random`]) and hidden states ~ N(0, 1), their upload, and the
//! f64 naive-form reference.

use crate::compare::Tolerance;
use crate::error::Result;
use crate::mla::config::presets;
use crate::mla::{MlaConfig, MlaWeights};
use crate::reference::mla::naive;
use crate::rng::Rng;
use crate::runtime::{Gpu, Tensor};

/// The GPU layer against the CPU naive form: |out − ref| ≤ 1e-4 + 2e-3·|ref| (f32 through six
/// chained products of length ≤ 64 and a softmax; outputs are O(1)).
pub const TOLERANCE: Tolerance = Tolerance::new(1e-4, 2e-3);

fn config(json: &str, what: &str) -> MlaConfig {
    MlaConfig::from_json_str(json, what).expect("fixture configs parse")
}

/// hidden 64, d_c 32, nope 16, d_R 8, v 16 with `heads` heads, optional q_lora rank, YaRN
/// (factor 4 over 64 positions) and attention biases.
pub fn small_config(heads: usize, q_lora: Option<usize>, yarn: bool, bias: bool) -> MlaConfig {
    let rope_scaling = if yarn {
        r#"{"type": "yarn", "factor": 4, "original_max_position_embeddings": 64, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.5}"#
    } else {
        "null"
    };
    let q_lora = q_lora.map_or("null".to_string(), |r| r.to_string());
    config(
        &format!(
            r#"{{"hidden_size": 64, "num_attention_heads": {heads}, "q_lora_rank": {q_lora},
                "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
                "rope_theta": 10000, "rms_norm_eps": 1e-6, "attention_bias": {bias},
                "rope_scaling": {rope_scaling}}}"#
        ),
        "small config",
    )
}

/// hidden 32, 3 heads, d_c 16, everything 8 wide, YaRN: for long loops on a software device.
pub fn tiny_config() -> MlaConfig {
    config(
        r#"{"hidden_size": 32, "num_attention_heads": 3, "q_lora_rank": 16,
            "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8,
            "v_head_dim": 8, "rope_theta": 10000, "rms_norm_eps": 1e-6,
            "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 128,
                             "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}}"#,
        "tiny config",
    )
}

/// The benchmark config: DeepSeek-V2-Lite's attention (hidden 2048, 16 heads, no q_lora, d_c
/// 512) when `full`, else hidden 128, 4 heads, q_lora 64, d_c 64 with YaRN.
pub fn bench_config(full: bool) -> MlaConfig {
    if full {
        return config(presets::DEEPSEEK_V2_LITE, "DeepSeek-V2-Lite");
    }
    config(
        r#"{"hidden_size": 128, "num_attention_heads": 4, "q_lora_rank": 64, "kv_lora_rank": 64,
            "qk_nope_head_dim": 32, "qk_rope_head_dim": 16, "v_head_dim": 32, "rope_theta": 10000,
            "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 256,
            "mscale": 1.0, "mscale_all_dim": 1.0}}"#,
        "bench config",
    )
}

/// One forward's host inputs: a config, its weights and hidden states (Bt, S, hidden).
#[derive(Clone, Debug)]
pub struct Problem {
    /// The config.
    pub cfg: MlaConfig,
    /// The layer's weights.
    pub weights: MlaWeights,
    /// Sequences Bt.
    pub bt: usize,
    /// Tokens per sequence S.
    pub s: usize,
    /// hidden states (Bt, S, hidden).
    pub hidden: Vec<f32>,
}

impl Problem {
    /// Random weights for `cfg` and random hidden states of Bt sequences of S tokens.
    pub fn random(rng: &mut Rng, cfg: &MlaConfig, bt: usize, s: usize) -> Self {
        let weights = MlaWeights::random(cfg, rng);
        let hidden = rng.normal_vec(bt * s * cfg.hidden_size, 0.0, 1.0);
        Self {
            cfg: cfg.clone(),
            weights,
            bt,
            s,
            hidden,
        }
    }

    /// The f64 reference (naive form, causal over each sequence's S tokens).
    pub fn reference(&self) -> Vec<f64> {
        naive(&self.cfg, &self.weights, &self.hidden, self.bt, self.s)
    }

    /// Upload the hidden states (Bt, S, hidden).
    pub fn upload(&self, gpu: &Gpu) -> Result<Tensor> {
        gpu.upload_f32(&[self.bt, self.s, self.cfg.hidden_size], &self.hidden)
    }
}
