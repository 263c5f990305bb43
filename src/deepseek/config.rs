//! A Hugging Face DeepSeek-V2 or V3 `config.json` (`"model_type": "deepseek_v2"` or
//! `"deepseek_v3"`): the attention part as an [`MlaConfig`] (its own parser, which reads both
//! transformers' `rope_parameters` and the older `rope_theta` + `rope_scaling`), the MLPs and the
//! MoE routing. Field names and defaults follow transformers' `DeepseekV2Config` and
//! `DeepseekV3Config`, which differ (a missing field takes its version's default):
//!
//! | field | V2 | V3 |
//! |---|---|---|
//! | vocab_size, hidden_size, intermediate_size | 102400, 4096, 11008 | 129280, 7168, 18432 |
//! | num_hidden_layers, num_attention_heads | 32, 32 | 61, 128 |
//! | first_k_dense_replace | 0 | 3 |
//! | n_routed_experts, n_shared_experts, num_experts_per_tok | 64, 2, required | 256, 1, 8 |
//! | moe_intermediate_size | 1407 | 2048 |
//! | n_group, topk_group | none (1) | 8, 4 |
//! | topk_method, scoring | greedy, softmax | noaux_tc, sigmoid (fixed) |
//! | norm_topk_prob, routed_scaling_factor | false, 1.0 | true, 2.5 |
//! | q_lora_rank, kv_lora_rank, qk_nope/qk_rope/v head dims | 1536, 512, 128/64/128 | same |
//! | eos_token_id | 2 | 1 |
//!
//! Both: rms_norm_eps 1e-6, hidden_act silu, tie_word_embeddings false, rope_theta 10000. Layer
//! i is MoE when i ≥ first_k_dense_replace, as in transformers. Values transformers would run
//! differently from what is written, or the crate does not implement, are refused naming the
//! field: DeepSeek's `moe_layer_freq` ≠ 1 (transformers ignores it), V2 `norm_topk_prob: true`
//! (transformers' V2 router ignores it while DeepSeek's own code normalises), a V2 `topk_method`
//! other than greedy / group_limited_greedy or a V3 one other than noaux_tc, a `scoring_func`
//! other than the version's, `attention_bias` or `mlp_bias` true (V2 and V3 put the attention
//! biases on different projections; no released checkpoint has them), V2 `rope_interleave:
//! false` (transformers' V2 always rotates interleaved pairs) and any activation but SiLU.

use crate::config_fields::{format_err, get_bool, get_f64, get_usize, parse_config_text};
use crate::error::{Error, Result};
use crate::mla::config::MlaConfig;
use crate::runtime::DType;
use crate::spec::moe::{MoeConfig, Scoring, TopkMethod};
use serde_json::{json, Map, Value};
use std::path::Path;

/// Which DeepSeek generation a config describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeepseekVersion {
    /// `deepseek_v2` (V2, V2-Lite, V2.5): softmax router, greedy or group-limited top-k.
    V2,
    /// `deepseek_v3` (V3, R1): sigmoid router with a score-correction bias, noaux_tc top-k.
    V3,
}

impl DeepseekVersion {
    /// The `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::V2 => "deepseek_v2",
            Self::V3 => "deepseek_v3",
        }
    }
}

/// The hyper-parameters of a DeepSeek-V2/V3 language model.
#[derive(Clone, Debug, PartialEq)]
pub struct DeepseekConfig {
    /// V2 or V3 (`model_type`).
    pub version: DeepseekVersion,
    /// The attention layers' config (hidden size, heads, ranks, RoPE / YaRN, rms_norm_eps).
    pub attention: MlaConfig,
    /// Vocabulary size (`vocab_size`).
    pub vocab_size: usize,
    /// Model width (`hidden_size`, the same as `attention.hidden_size`).
    pub hidden_size: usize,
    /// Blocks (`num_hidden_layers`).
    pub num_hidden_layers: usize,
    /// Intermediate width of the dense SwiGLU MLPs (`intermediate_size`).
    pub intermediate_size: usize,
    /// The first this many layers have a dense MLP (`first_k_dense_replace`).
    pub first_k_dense_replace: usize,
    /// Every how many layers an MoE sits (`moe_layer_freq`, DeepSeek's field; only 1 is run).
    pub moe_layer_freq: usize,
    /// Routed experts E (`n_routed_experts`).
    pub n_routed_experts: usize,
    /// Shared experts (`n_shared_experts`): one SwiGLU of width moe_intermediate · n_shared.
    pub n_shared_experts: usize,
    /// Experts per token k (`num_experts_per_tok`).
    pub num_experts_per_tok: usize,
    /// Intermediate width of each expert (`moe_intermediate_size`).
    pub moe_intermediate_size: usize,
    /// Expert groups (`n_group`; 1 when absent, for greedy routing).
    pub n_group: usize,
    /// Groups kept per token (`topk_group`; 1 when absent).
    pub topk_group: usize,
    /// How the top-k experts are chosen (`topk_method`).
    pub topk_method: TopkMethod,
    /// Softmax (V2) or sigmoid (V3) router scores (`scoring_func`).
    pub scoring_func: Scoring,
    /// Normalise the k weights to sum 1 (`norm_topk_prob`; V3 only).
    pub norm_topk_prob: bool,
    /// Factor on the routed experts' weights (`routed_scaling_factor`).
    pub routed_scaling_factor: f64,
    /// Epsilon of every RMSNorm (`rms_norm_eps`, also `attention.rms_norm_eps`).
    pub rms_norm_eps: f64,
    /// Whether the LM head shares the embedding matrix (`tie_word_embeddings`).
    pub tie_word_embeddings: bool,
    /// End-of-sequence token (`eos_token_id`; the first of a list).
    pub eos_token_id: Option<u32>,
}

/// transformers' defaults for the fields [`DeepseekConfig::from_json`] fills in when absent.
fn defaults(version: DeepseekVersion) -> Value {
    match version {
        DeepseekVersion::V2 => json!({
            "vocab_size": 102400, "hidden_size": 4096, "intermediate_size": 11008,
            "num_hidden_layers": 32, "num_attention_heads": 32, "first_k_dense_replace": 0,
            "kv_lora_rank": 512, "q_lora_rank": 1536, "n_routed_experts": 64,
            "n_shared_experts": 2, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
            "v_head_dim": 128, "routed_scaling_factor": 1.0, "topk_method": "greedy",
            "norm_topk_prob": false, "moe_intermediate_size": 1407, "eos_token_id": 2,
        }),
        DeepseekVersion::V3 => json!({
            "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432,
            "num_hidden_layers": 61, "num_attention_heads": 128, "first_k_dense_replace": 3,
            "kv_lora_rank": 512, "q_lora_rank": 1536, "n_routed_experts": 256,
            "n_shared_experts": 1, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
            "v_head_dim": 128, "routed_scaling_factor": 2.5, "topk_method": "noaux_tc",
            "norm_topk_prob": true, "moe_intermediate_size": 2048, "eos_token_id": 1,
            "n_group": 8, "topk_group": 4, "num_experts_per_tok": 8,
        }),
    }
}

impl DeepseekConfig {
    /// Read and parse a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let src = path.display().to_string();
        let value = parse_config_text(&text)
            .map_err(|e| format_err(&src, format!("not valid JSON: {e}")))?;
        Self::from_json(&value, &src)
    }

    /// Parse a decoded `config.json` object; `src` names it in errors.
    pub fn from_json(value: &Value, src: &str) -> Result<Self> {
        let given = value
            .as_object()
            .ok_or_else(|| format_err(src, "config is not a JSON object"))?;
        let version = match given.get("model_type").and_then(Value::as_str) {
            Some("deepseek_v2") => DeepseekVersion::V2,
            Some("deepseek_v3") => DeepseekVersion::V3,
            _ => {
                return Err(format_err(
                    src,
                    format!(
                        "`model_type` must be \"deepseek_v2\" or \"deepseek_v3\", got {}",
                        given.get("model_type").unwrap_or(&Value::Null)
                    ),
                ))
            }
        };
        let mut obj: Map<String, Value> = given.clone();
        if let Value::Object(d) = defaults(version) {
            for (k, v) in d {
                obj.entry(k).or_insert(v);
            }
        }
        let obj = &obj;
        let refuse = |key: &str, why: String| format_err(src, format!("`{key}` {why}"));
        let v2 = version == DeepseekVersion::V2;
        if let Some(act) = obj.get("hidden_act") {
            if act.as_str() != Some("silu") {
                return Err(refuse(
                    "hidden_act",
                    format!("must be \"silu\" (the only activation supported), got {act}"),
                ));
            }
        }
        for key in ["attention_bias", "mlp_bias"] {
            if get_bool(obj, src, key, false)? {
                return Err(refuse(key, "true is not supported".into()));
            }
        }
        if v2 && !get_bool(obj, src, "rope_interleave", true)? {
            return Err(refuse(
                "rope_interleave",
                "false is not supported for deepseek_v2 (transformers' V2 always rotates \
                 interleaved pairs)"
                    .into(),
            ));
        }
        let moe_layer_freq = match obj.get("moe_layer_freq") {
            None | Some(Value::Null) => 1,
            Some(_) => get_usize(obj, src, "moe_layer_freq")?,
        };
        if moe_layer_freq != 1 {
            return Err(refuse(
                "moe_layer_freq",
                format!("must be 1 (every layer from first_k_dense_replace on is MoE, as transformers runs it), got {moe_layer_freq}"),
            ));
        }
        let method = obj.get("topk_method").and_then(Value::as_str).unwrap_or("");
        let topk_method =
            TopkMethod::parse(method).map_err(|e| refuse("topk_method", e.to_string()))?;
        let allowed = match version {
            DeepseekVersion::V2 => topk_method != TopkMethod::NoauxTc,
            DeepseekVersion::V3 => topk_method == TopkMethod::NoauxTc,
        };
        if !allowed {
            return Err(refuse(
                "topk_method",
                format!(
                    "{method:?} is not what transformers' {} router runs",
                    version.model_type()
                ),
            ));
        }
        let scoring_func = if v2 {
            Scoring::Softmax
        } else {
            Scoring::Sigmoid
        };
        if let Some(s) = obj.get("scoring_func") {
            let want = if v2 { "softmax" } else { "sigmoid" };
            if s.as_str() != Some(want) {
                return Err(refuse(
                    "scoring_func",
                    format!("must be \"{want}\" for {}, got {s}", version.model_type()),
                ));
            }
        }
        let norm_topk_prob = get_bool(obj, src, "norm_topk_prob", !v2)?;
        if v2 && norm_topk_prob {
            return Err(refuse(
                "norm_topk_prob",
                "true is not supported for deepseek_v2: transformers' V2 router ignores it, \
                 DeepSeek's own code normalises"
                    .into(),
            ));
        }
        let usize_or = |key: &str, default: usize| -> Result<usize> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(_) => get_usize(obj, src, key),
            }
        };
        let eos_token_id = match obj.get("eos_token_id") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => a.first().and_then(Value::as_u64).map(|n| n as u32),
            Some(_) => Some(get_usize(obj, src, "eos_token_id")? as u32),
        };
        let attention = MlaConfig::from_json(&Value::Object(obj.clone()), src)?;
        let cfg = DeepseekConfig {
            version,
            vocab_size: get_usize(obj, src, "vocab_size")?,
            hidden_size: attention.hidden_size,
            num_hidden_layers: get_usize(obj, src, "num_hidden_layers")?,
            intermediate_size: get_usize(obj, src, "intermediate_size")?,
            first_k_dense_replace: get_usize(obj, src, "first_k_dense_replace")?,
            moe_layer_freq,
            n_routed_experts: get_usize(obj, src, "n_routed_experts")?,
            n_shared_experts: get_usize(obj, src, "n_shared_experts")?,
            num_experts_per_tok: get_usize(obj, src, "num_experts_per_tok")?,
            moe_intermediate_size: get_usize(obj, src, "moe_intermediate_size")?,
            n_group: usize_or("n_group", 1)?,
            topk_group: usize_or("topk_group", 1)?,
            topk_method,
            scoring_func,
            norm_topk_prob,
            routed_scaling_factor: get_f64(obj, src, "routed_scaling_factor", None)?,
            rms_norm_eps: attention.rms_norm_eps,
            tie_word_embeddings: get_bool(obj, src, "tie_word_embeddings", false)?,
            eos_token_id,
            attention,
        };
        cfg.check().map_err(|e| format_err(src, e.to_string()))?;
        Ok(cfg)
    }

    /// Error naming the field unless the sizes are usable: positive widths, the attention config
    /// valid, and (when any layer is MoE) the MoE config valid for the crate's kernels.
    pub fn check(&self) -> Result<()> {
        for (name, n) in [
            ("vocab_size", self.vocab_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
        ] {
            if n == 0 {
                return Err(Error::invalid(format!("`{name}` must be positive, got 0")));
            }
        }
        if self.hidden_size != self.attention.hidden_size {
            return Err(Error::invalid("`hidden_size` differs from the attention's"));
        }
        self.attention.validate()?;
        if self.moe_layer_freq != 1 {
            return Err(Error::invalid("`moe_layer_freq` must be 1"));
        }
        if (0..self.num_hidden_layers).any(|i| self.is_moe_layer(i)) {
            self.moe_config().validate()?;
        }
        Ok(())
    }

    /// Whether layer `i` has an MoE MLP (else a dense SwiGLU): i ≥ first_k_dense_replace.
    pub fn is_moe_layer(&self, i: usize) -> bool {
        i >= self.first_k_dense_replace
    }

    /// Bytes of weights one decode step of one sequence reads with the GPU model: every
    /// attention projection, the dense MLPs, per MoE layer the router (f32), the `top_k`
    /// routed experts the token picks and the shared experts (not the other routed experts),
    /// the token's embedding row, the final norm and the head, at `weight_dtype`'s width
    /// (norms and routers f32). What bounds decode on a memory-bound device.
    pub fn decode_weight_bytes(&self, weight_dtype: DType) -> u64 {
        let a = &self.attention;
        let (h, moe) = (self.hidden_size as u64, self.moe_config());
        let q = match a.q_lora_rank {
            Some(r) => r as u64 * h + a.q_dim() as u64 * r as u64,
            None => a.q_dim() as u64 * h,
        };
        let (d_c, heads) = (a.kv_lora_rank as u64, a.num_heads as u64);
        let attention = q
            + a.latent_dim() as u64 * h
            + heads * (a.qk_nope_head_dim + a.v_head_dim) as u64 * d_c
            + h * heads * a.v_head_dim as u64;
        let norms = d_c + a.q_lora_rank.unwrap_or(0) as u64 + 2 * h;
        let swiglu = |i: usize| 3 * i as u64 * h;
        let moe_layers = (0..self.num_hidden_layers)
            .filter(|&i| self.is_moe_layer(i))
            .count() as u64;
        let layers = self.num_hidden_layers as u64;
        let per_token_experts =
            moe.top_k as u64 * swiglu(moe.intermediate) + swiglu(moe.shared_intermediate());
        let wide = layers * attention
            + (layers - moe_layers) * swiglu(self.intermediate_size)
            + moe_layers * per_token_experts
            + h
            + self.vocab_size as u64 * h;
        let f32s = layers * norms + moe_layers * (moe.experts as u64 * h) + h;
        wide * weight_dtype.size() as u64 + 4 * f32s
    }

    /// Bytes one token takes in the latent caches of all layers: (d_c + d_R) values per layer
    /// at `cache_dtype`'s width.
    pub fn cache_bytes_per_token(&self, cache_dtype: DType) -> u64 {
        (self.num_hidden_layers * self.attention.latent_dim() * cache_dtype.size()) as u64
    }

    /// The MoE block of the MoE layers.
    pub fn moe_config(&self) -> MoeConfig {
        MoeConfig {
            hidden: self.hidden_size,
            experts: self.n_routed_experts,
            top_k: self.num_experts_per_tok,
            n_group: self.n_group,
            topk_group: self.topk_group,
            method: self.topk_method,
            scoring: self.scoring_func,
            norm_topk_prob: self.norm_topk_prob,
            routed_scaling_factor: self.routed_scaling_factor,
            intermediate: self.moe_intermediate_size,
            n_shared: self.n_shared_experts,
        }
    }

    /// The config as transformers ≥ 5 writes it (`rope_parameters`), which
    /// [`Self::from_json`] reads back.
    pub fn to_json(&self) -> Value {
        let a = &self.attention;
        let mut rope = json!({ "rope_type": "default", "rope_theta": a.rope_theta });
        if let Some(y) = &a.rope_scaling {
            rope = json!({
                "rope_type": "yarn", "rope_theta": a.rope_theta, "factor": y.factor,
                "original_max_position_embeddings": y.original_max_position_embeddings,
                "beta_fast": y.beta_fast, "beta_slow": y.beta_slow, "mscale": y.mscale,
                "mscale_all_dim": y.mscale_all_dim,
            });
        }
        let method = match self.topk_method {
            TopkMethod::Greedy => "greedy",
            TopkMethod::GroupLimitedGreedy => "group_limited_greedy",
            TopkMethod::NoauxTc => "noaux_tc",
        };
        let arch = match self.version {
            DeepseekVersion::V2 => "DeepseekV2ForCausalLM",
            DeepseekVersion::V3 => "DeepseekV3ForCausalLM",
        };
        json!({
            "architectures": [arch],
            "model_type": self.version.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "intermediate_size": self.intermediate_size,
            "num_attention_heads": a.num_heads,
            "num_key_value_heads": a.num_heads,
            "q_lora_rank": a.q_lora_rank,
            "kv_lora_rank": a.kv_lora_rank,
            "qk_nope_head_dim": a.qk_nope_head_dim,
            "qk_rope_head_dim": a.qk_rope_head_dim,
            "v_head_dim": a.v_head_dim,
            "rope_interleave": a.rope_interleave,
            "rope_parameters": rope,
            "rms_norm_eps": self.rms_norm_eps,
            "first_k_dense_replace": self.first_k_dense_replace,
            "n_routed_experts": self.n_routed_experts,
            "n_shared_experts": self.n_shared_experts,
            "num_experts_per_tok": self.num_experts_per_tok,
            "moe_intermediate_size": self.moe_intermediate_size,
            "n_group": self.n_group,
            "topk_group": self.topk_group,
            "topk_method": method,
            "norm_topk_prob": self.norm_topk_prob,
            "routed_scaling_factor": self.routed_scaling_factor,
            "hidden_act": "silu",
            "attention_bias": false,
            "tie_word_embeddings": self.tie_word_embeddings,
            "eos_token_id": self.eos_token_id,
        })
    }
}
