//! Public config fields of the released DeepSeek models (from their `config.json` files), for
//! tests, docs and benchmarks (nothing is downloaded), and the cache-size table they give.

use super::config::MlaConfig;
use crate::error::Result;

/// DeepSeek-V3 (and R1): hidden 7168, 128 heads, q_lora 1536, kv_lora 512, YaRN factor 40.
pub const DEEPSEEK_V3: &str = r#"{
  "architectures": ["DeepseekV3ForCausalLM"],
  "model_type": "deepseek_v3",
  "hidden_size": 7168,
  "num_attention_heads": 128,
  "num_key_value_heads": 128,
  "q_lora_rank": 1536,
  "kv_lora_rank": 512,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "v_head_dim": 128,
  "rope_theta": 10000,
  "rms_norm_eps": 1e-06,
  "attention_bias": false,
  "max_position_embeddings": 163840,
  "rope_scaling": {
"beta_fast": 32,
"beta_slow": 1,
"factor": 40,
"mscale": 1.0,
"mscale_all_dim": 1.0,
"original_max_position_embeddings": 4096,
"type": "yarn"
  }
}"#;

/// DeepSeek-V2: hidden 5120, 128 heads, q_lora 1536, kv_lora 512, YaRN factor 40.
pub const DEEPSEEK_V2: &str = r#"{
  "architectures": ["DeepseekV2ForCausalLM"],
  "model_type": "deepseek_v2",
  "hidden_size": 5120,
  "num_attention_heads": 128,
  "num_key_value_heads": 128,
  "q_lora_rank": 1536,
  "kv_lora_rank": 512,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "v_head_dim": 128,
  "rope_theta": 10000,
  "rms_norm_eps": 1e-06,
  "attention_bias": false,
  "max_position_embeddings": 163840,
  "rope_scaling": {
"beta_fast": 32,
"beta_slow": 1,
"factor": 40,
"mscale": 0.707,
"mscale_all_dim": 0.707,
"original_max_position_embeddings": 4096,
"type": "yarn"
  }
}"#;

/// DeepSeek-V2-Lite: hidden 2048, 16 heads, no query compression, kv_lora 512.
pub const DEEPSEEK_V2_LITE: &str = r#"{
  "architectures": ["DeepseekV2ForCausalLM"],
  "model_type": "deepseek_v2",
  "hidden_size": 2048,
  "num_attention_heads": 16,
  "num_key_value_heads": 16,
  "q_lora_rank": null,
  "kv_lora_rank": 512,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "v_head_dim": 128,
  "rope_theta": 10000,
  "rms_norm_eps": 1e-06,
  "attention_bias": false,
  "max_position_embeddings": 163840,
  "rope_scaling": {
"beta_fast": 32,
"beta_slow": 1,
"factor": 40,
"mscale": 0.707,
"mscale_all_dim": 0.707,
"original_max_position_embeddings": 4096,
"type": "yarn"
  }
}"#;

/// The three presets with their names.
pub fn all() -> [(&'static str, &'static str); 3] {
    [
        ("DeepSeek-V2", DEEPSEEK_V2),
        ("DeepSeek-V2-Lite", DEEPSEEK_V2_LITE),
        ("DeepSeek-V3", DEEPSEEK_V3),
    ]
}

/// The markdown table of `docs/mla_cache.md`: latent-cache values per token and layer vs a
/// standard MHA cache, for the preset shapes, and the bytes this crate's latent cache takes per
/// token and layer in each storage dtype (`LatentCache::bytes_per_token`; a test checks they
/// agree).
pub fn cache_size_table() -> Result<String> {
    let mut s = String::from(
        "| model | H | d_c | d_R | nope | v | MLA values/token/layer (d_c + d_R) | MHA values/token/layer (H·(nope + d_R + v)) | ratio | crate cache bytes/token/layer, f32 | crate cache, f16 | crate cache, bf16 | MHA bytes/token/layer (bf16) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, json) in all() {
        let c = MlaConfig::from_json_str(json, name)?;
        let mla = c.cache_values_per_token();
        let mha = c.mha_values_per_token();
        s.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {mla} | {mha} | {:.1}× | {} | {} | {} | {} |\n",
            c.num_heads,
            c.kv_lora_rank,
            c.qk_rope_head_dim,
            c.qk_nope_head_dim,
            c.v_head_dim,
            mha as f64 / mla as f64,
            4 * mla,
            2 * mla,
            2 * mla,
            2 * mha
        ));
    }
    Ok(s)
}
