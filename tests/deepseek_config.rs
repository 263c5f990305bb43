//! DeepSeek-V2/V3 configs: the golden checkpoints' config.json files (written by transformers 5.25
//! through scripts/golden/deepseek.py) parse as the tiny presets, V2-Lite's shapes, each version's
//! transformers defaults, and errors that name the field.

use ssm_mla::checkpoint::Checkpoint;
use ssm_mla::deepseek::{DeepseekConfig, DeepseekVersion};
use ssm_mla::spec::moe::{Scoring, TopkMethod};
use std::path::Path;

fn config_of(name: &str) -> DeepseekConfig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let ck = Checkpoint::open(&dir).unwrap();
    DeepseekConfig::from_json(&ck.config, name).unwrap()
}

#[test]
fn golden_configs_parse_as_the_tiny_presets() {
    let v2 = config_of("deepseek_v2_tiny");
    let v3 = config_of("deepseek_v3_tiny");
    assert_eq!(v2, DeepseekConfig::tiny_v2());
    assert_eq!(v3, DeepseekConfig::tiny_v3());
    assert_eq!(v2.version, DeepseekVersion::V2);
    assert_eq!(v2.attention.q_lora_rank, None);
    assert_eq!(v2.topk_method, TopkMethod::GroupLimitedGreedy);
    assert_eq!(
        (v2.scoring_func, v2.eos_token_id),
        (Scoring::Softmax, Some(0))
    );
    assert!(v2.tie_word_embeddings && !v2.norm_topk_prob);
    assert_eq!(v3.attention.q_lora_rank, Some(24));
    assert_eq!(
        (v3.topk_method, v3.scoring_func),
        (TopkMethod::NoauxTc, Scoring::Sigmoid)
    );
    // eos_token_id [1, 2]: the first.
    assert_eq!(v3.eos_token_id, Some(1));
    let y = v3
        .attention
        .rope_scaling
        .as_ref()
        .expect("YaRN from rope_parameters");
    assert_eq!((y.factor, y.mscale_all_dim), (4.0, 0.8));
    assert!(!v2.is_moe_layer(0) && v2.is_moe_layer(1) && v2.is_moe_layer(2));
    let moe = v3.moe_config();
    assert_eq!(
        (moe.experts, moe.top_k, moe.n_group, moe.topk_group),
        (8, 2, 4, 2)
    );
    assert_eq!((moe.routed_scaling_factor, moe.n_shared), (2.5, 1));
    // What to_json writes reads back the same.
    for cfg in [&v2, &v3, &DeepseekConfig::deepseek_v2_lite()] {
        assert_eq!(
            &DeepseekConfig::from_json(&cfg.to_json(), "round trip").unwrap(),
            cfg
        );
    }
}

#[test]
fn v2_lite_shapes_and_per_version_defaults() {
    let c = DeepseekConfig::deepseek_v2_lite();
    let a = &c.attention;
    assert_eq!(
        (c.hidden_size, c.num_hidden_layers, a.num_heads),
        (2048, 27, 16)
    );
    assert_eq!(
        (a.kv_lora_rank, a.q_lora_rank, a.qk_nope_head_dim),
        (512, None, 128)
    );
    assert_eq!((a.qk_rope_head_dim, a.v_head_dim), (64, 128));
    assert_eq!(
        (c.intermediate_size, c.moe_intermediate_size),
        (10944, 1408)
    );
    assert_eq!(
        (
            c.n_routed_experts,
            c.n_shared_experts,
            c.num_experts_per_tok
        ),
        (64, 2, 6)
    );
    assert_eq!((c.first_k_dense_replace, c.vocab_size), (1, 102400));
    assert_eq!(
        c.moe_config(),
        ssm_mla::spec::moe::MoeConfig::deepseek_v2_lite()
    );
    // Missing fields take each version's transformers default.
    let v3 = serde_json::json!({"model_type": "deepseek_v3"});
    let c = DeepseekConfig::from_json(&v3, "v3").unwrap();
    assert_eq!(
        (c.vocab_size, c.hidden_size, c.num_hidden_layers),
        (129280, 7168, 61)
    );
    assert_eq!(
        (c.n_routed_experts, c.num_experts_per_tok, c.n_group),
        (256, 8, 8)
    );
    assert_eq!((c.topk_group, c.first_k_dense_replace), (4, 3));
    assert_eq!((c.routed_scaling_factor, c.norm_topk_prob), (2.5, true));
    assert_eq!(
        (c.attention.q_lora_rank, c.eos_token_id),
        (Some(1536), Some(1))
    );
    let v2 = serde_json::json!({"model_type": "deepseek_v2", "num_experts_per_tok": 6,
        "moe_intermediate_size": 1408});
    let c = DeepseekConfig::from_json(&v2, "v2").unwrap();
    assert_eq!(
        (c.vocab_size, c.hidden_size, c.intermediate_size),
        (102400, 4096, 11008)
    );
    assert_eq!((c.first_k_dense_replace, c.n_shared_experts), (0, 2));
    assert_eq!(
        (c.topk_method, c.routed_scaling_factor),
        (TopkMethod::Greedy, 1.0)
    );
    assert_eq!((c.eos_token_id, c.attention.rope_theta), (Some(2), 10000.0));
}

#[test]
fn config_errors_name_the_field() {
    let base = DeepseekConfig::tiny_v2().to_json();
    let base3 = DeepseekConfig::tiny_v3().to_json();
    let cases: [(&serde_json::Value, &str, serde_json::Value, &str); 11] = [
        (&base, "hidden_act", "gelu".into(), "hidden_act"),
        (&base, "moe_layer_freq", 2.into(), "moe_layer_freq"),
        (&base, "topk_method", "noaux_tc".into(), "topk_method"),
        (&base3, "topk_method", "greedy".into(), "topk_method"),
        (&base, "scoring_func", "sigmoid".into(), "scoring_func"),
        (&base, "norm_topk_prob", true.into(), "norm_topk_prob"),
        (&base, "attention_bias", true.into(), "attention_bias"),
        (
            &base,
            "num_experts_per_tok",
            serde_json::Value::Null,
            "num_experts_per_tok",
        ),
        (&base, "model_type", "llama".into(), "model_type"),
        (&base, "rope_interleave", false.into(), "rope_interleave"),
        (&base, "vocab_size", "many".into(), "vocab_size"),
    ];
    for (cfg, key, value, named) in cases {
        let mut v = cfg.clone();
        v[key] = value.clone();
        let err = DeepseekConfig::from_json(&v, "config.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(named) && err.contains("config.json"),
            "{key} = {value}: {err}"
        );
    }
    let mut v = base3.clone();
    v["rope_parameters"]["rope_type"] = "linear".into();
    let err = DeepseekConfig::from_json(&v, "c").unwrap_err().to_string();
    assert!(err.contains("rope_parameters"), "{err}");
}

/// What a V2-Lite decode step reads and what a token takes in the caches (the README's
/// figures): 13.76 M attention parameters per layer, the dense layer's 67.24 M, 6 routed and 2
/// shared experts of 8.65 M per MoE layer, the head's 209.7 M, at 2 bytes, plus f32 norms and
/// routers; 27 layers × 576 cached values per token.
#[test]
fn v2_lite_decode_bytes_and_cache_size() {
    let c = DeepseekConfig::deepseek_v2_lite();
    let attention = 13_762_560u64;
    let experts = 6 * 8_650_752 + 17_301_504u64;
    let halves = 27 * attention + 67_239_936 + 26 * experts + 2048 + 102_400 * 2048;
    let f32s = 27 * (512 + 2 * 2048) + 26 * 64 * 2048 + 2048u64;
    assert_eq!(
        c.decode_weight_bytes(ssm_mla::DType::BF16),
        2 * halves + 4 * f32s
    );
    assert_eq!(c.decode_weight_bytes(ssm_mla::DType::BF16), 4_909_942_784);
    assert_eq!(c.cache_bytes_per_token(ssm_mla::DType::BF16), 31_104);
    assert_eq!(c.cache_bytes_per_token(ssm_mla::DType::F32), 62_208);
}
