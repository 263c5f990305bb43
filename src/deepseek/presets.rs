//! Configs of known shapes: the tiny V2 and V3 of the golden checkpoints in tests/data and
//! DeepSeek-V2-Lite's.

use crate::deepseek::config::DeepseekConfig;
use crate::mla::config::presets;
use serde_json::{json, Value};

impl DeepseekConfig {
    /// The tiny V2 of tests/data/deepseek_v2_tiny: hidden 32, 3 layers (layer 0 dense, 48
    /// wide), 4 heads, kv_lora 16, no query compression, nope/rope/v 8, 8 experts of 16 top-3,
    /// group_limited_greedy over 4 groups keeping 2 (with top-2 the group limit never binds:
    /// the two best experts' groups are the two best groups), 1 shared expert, scaling 1.5,
    /// vocab 128, tied head, eos 0.
    pub fn tiny_v2() -> Self {
        let json = json!({
            "model_type": "deepseek_v2", "vocab_size": 128, "hidden_size": 32,
            "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
            "kv_lora_rank": 16, "q_lora_rank": null, "qk_nope_head_dim": 8,
            "qk_rope_head_dim": 8, "v_head_dim": 8, "moe_intermediate_size": 16,
            "n_routed_experts": 8, "num_experts_per_tok": 3, "n_group": 4, "topk_group": 2,
            "n_shared_experts": 1, "first_k_dense_replace": 1,
            "topk_method": "group_limited_greedy", "routed_scaling_factor": 1.5,
            "tie_word_embeddings": true, "eos_token_id": 0,
        });
        Self::from_json(&json, "tiny_v2").expect("a valid config")
    }

    /// The tiny V3 of tests/data/deepseek_v3_tiny: as [`Self::tiny_v2`] but q_lora_rank 24,
    /// top-2 noaux_tc sigmoid routing with norm_topk_prob, scaling 2.5, an untied head, eos 1 and YaRN
    /// (factor 4 from 4096 positions, mscale 1, mscale_all_dim 0.8).
    pub fn tiny_v3() -> Self {
        let json = json!({
            "model_type": "deepseek_v3", "vocab_size": 128, "hidden_size": 32,
            "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
            "kv_lora_rank": 16, "q_lora_rank": 24, "qk_nope_head_dim": 8,
            "qk_rope_head_dim": 8, "v_head_dim": 8, "moe_intermediate_size": 16,
            "n_routed_experts": 8, "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2,
            "n_shared_experts": 1, "first_k_dense_replace": 1, "norm_topk_prob": true,
            "routed_scaling_factor": 2.5, "tie_word_embeddings": false, "eos_token_id": [1, 2],
            "rope_parameters": {
                "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                "original_max_position_embeddings": 4096, "beta_fast": 32.0, "beta_slow": 1.0,
                "mscale": 1.0, "mscale_all_dim": 0.8,
            },
        });
        Self::from_json(&json, "tiny_v3").expect("a valid config")
    }

    /// The shapes of DeepSeek-V2-Lite, from its published `config.json`: hidden 2048, 27
    /// layers (layer 0 dense, intermediate 10944), 16 heads, kv_lora 512, no query compression,
    /// nope 128, rope 64, v 128, 64 routed experts of 1408 top-6 greedy softmax, 2 shared,
    /// scaling 1.0, vocab 102400, untied head, eos 100001, YaRN factor 40 (mscale 0.707). Its
    /// moe_intermediate_size (1408) and first_k_dense_replace (1) differ from transformers'
    /// V2 defaults (1407, 0).
    pub fn deepseek_v2_lite() -> Self {
        let mut v: Value = serde_json::from_str(presets::DEEPSEEK_V2_LITE).expect("preset");
        let extra = json!({
            "vocab_size": 102400, "num_hidden_layers": 27, "intermediate_size": 10944,
            "moe_intermediate_size": 1408, "n_routed_experts": 64, "n_shared_experts": 2,
            "num_experts_per_tok": 6, "first_k_dense_replace": 1, "moe_layer_freq": 1,
            "topk_method": "greedy", "n_group": 1, "topk_group": 1, "scoring_func": "softmax",
            "norm_topk_prob": false, "routed_scaling_factor": 1.0, "bos_token_id": 100000,
            "eos_token_id": 100001, "tie_word_embeddings": false, "hidden_act": "silu",
        });
        if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
            o.extend(e);
        }
        Self::from_json(&v, "DeepSeek-V2-Lite").expect("a valid config")
    }
}
