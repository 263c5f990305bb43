//! A Hugging Face `MambaConfig` (`config.json` with `"model_type": "mamba"`), with the derived
//! sizes the model needs. Field names and defaults follow transformers' `MambaConfig`:
//!
//! ```text
//! intermediate_size D_in = expand · hidden_size        time_step_rank R = ceil(hidden_size / 16) ("auto")
//! in_proj (2·D_in, hidden)   conv1d (D_in, 1, conv_kernel)   x_proj (R + 2·N, D_in)
//! dt_proj (D_in, R) + bias   A_log, (D_in, N)  D (D_in)        out_proj (hidden, D_in)
//! ```
//! Values the crate does not implement (an activation other than SiLU, a kernel width outside
//! 2..=4) are refused with an error naming the field, never silently run differently.

use crate::config_fields::{format_err, get_bool, get_f64, get_usize};
use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// The hyper-parameters of a Mamba-1 language model.
#[derive(Clone, Debug, PartialEq)]
pub struct MambaConfig {
    /// Vocabulary size (`vocab_size`): rows of the embedding and of the LM head.
    pub vocab_size: usize,
    /// Model width (`hidden_size`).
    pub hidden_size: usize,
    /// State size N (`state_size`).
    pub state_size: usize,
    /// Blocks (`num_hidden_layers`).
    pub num_hidden_layers: usize,
    /// RMSNorm epsilon (`layer_norm_epsilon`, default 1e-5).
    pub layer_norm_epsilon: f64,
    /// Inner width D_in (`intermediate_size`, default `expand · hidden_size`).
    pub intermediate_size: usize,
    /// Causal conv width W (`conv_kernel`, default 4; 2..=4 supported).
    pub conv_kernel: usize,
    /// Whether in_proj and out_proj carry biases (`use_bias`, default false).
    pub use_bias: bool,
    /// Whether conv1d carries a bias (`use_conv_bias`, default true).
    pub use_conv_bias: bool,
    /// Rank R of the Δ projection (`time_step_rank`, "auto" = ceil(hidden_size / 16)).
    pub time_step_rank: usize,
    /// Keep the residual stream in f32 whatever the weights' dtype (`residual_in_fp32`,
    /// default true). Read and kept for round trips; the crate's residual stream is f32 in
    /// every case (its math is f32), so `false` changes nothing for f32 checkpoints, and for half
    /// ones the crate stays in f32 where transformers would round the residual to the weights'
    /// dtype after each block.
    pub residual_in_fp32: bool,
    /// Whether the LM head shares the embedding matrix (`tie_word_embeddings`, default true).
    pub tie_word_embeddings: bool,
    /// End-of-sequence token id (`eos_token_id`, default 0), where generation stops.
    pub eos_token_id: Option<u32>,
}

impl MambaConfig {
    /// Read and parse a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format_err(&path.display().to_string(), format!("not valid JSON: {e}")))?;
        Self::from_json(&value, &path.display().to_string())
    }

    /// Parse a decoded `config.json` object (`"model_type": "mamba"` when the field is set);
    /// `src` names it in errors.
    pub fn from_json(value: &Value, src: &str) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or_else(|| format_err(src, "config is not a JSON object"))?;
        if let Some(t) = obj.get("model_type") {
            if t.as_str() != Some("mamba") {
                return Err(format_err(
                    src,
                    format!("`model_type` must be \"mamba\", got {t}"),
                ));
            }
        }
        let opt_usize = |key: &str| -> Result<Option<usize>> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(_) => get_usize(obj, src, key).map(Some),
            }
        };
        let hidden_size = get_usize(obj, src, "hidden_size")?;
        let expand = get_f64(obj, src, "expand", Some(2.0))?;
        let intermediate_size = match opt_usize("intermediate_size")? {
            Some(n) => n,
            None => (expand * hidden_size as f64) as usize,
        };
        let time_step_rank = match obj.get("time_step_rank") {
            None | Some(Value::Null) => hidden_size.div_ceil(16),
            Some(Value::String(s)) if s == "auto" => hidden_size.div_ceil(16),
            Some(Value::String(s)) => {
                return Err(format_err(
                    src,
                    format!("`time_step_rank` must be \"auto\" or an integer, got {s:?}"),
                ))
            }
            Some(_) => get_usize(obj, src, "time_step_rank")?,
        };
        if let Some(act) = obj.get("hidden_act") {
            if act.as_str() != Some("silu") {
                return Err(format_err(
                    src,
                    format!(
                        "`hidden_act` must be \"silu\" (the only activation supported), got {act}"
                    ),
                ));
            }
        }
        let eos_token_id = match obj.get("eos_token_id") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => a.first().and_then(Value::as_u64).map(|n| n as u32),
            Some(_) => Some(get_usize(obj, src, "eos_token_id")? as u32),
        };
        let cfg = MambaConfig {
            vocab_size: get_usize(obj, src, "vocab_size")?,
            hidden_size,
            state_size: opt_usize("state_size")?.unwrap_or(16),
            num_hidden_layers: get_usize(obj, src, "num_hidden_layers")?,
            layer_norm_epsilon: get_f64(obj, src, "layer_norm_epsilon", Some(1e-5))?,
            intermediate_size,
            conv_kernel: opt_usize("conv_kernel")?.unwrap_or(4),
            use_bias: get_bool(obj, src, "use_bias", false)?,
            use_conv_bias: get_bool(obj, src, "use_conv_bias", true)?,
            time_step_rank,
            residual_in_fp32: get_bool(obj, src, "residual_in_fp32", true)?,
            tie_word_embeddings: get_bool(obj, src, "tie_word_embeddings", true)?,
            eos_token_id,
        };
        cfg.check().map_err(|e| format_err(src, e.to_string()))?;
        Ok(cfg)
    }

    /// Error naming the field unless every size is usable.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("state_size", self.state_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
            ("time_step_rank", self.time_step_rank),
        ];
        for (name, n) in positive {
            if n == 0 {
                return Err(Error::invalid(format!("`{name}` must be positive, got 0")));
            }
        }
        if !(2..=4).contains(&self.conv_kernel) {
            return Err(Error::invalid(format!(
                "`conv_kernel` must be 2, 3 or 4 (causal_conv1d's widths), got {}",
                self.conv_kernel
            )));
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return Err(Error::invalid(format!(
                "`layer_norm_epsilon` must be positive, got {}",
                self.layer_norm_epsilon
            )));
        }
        Ok(())
    }

    /// The config as a transformers `config.json` object (what [`Self::from_json`] reads back).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "architectures": ["MambaForCausalLM"],
            "model_type": "mamba",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "state_size": self.state_size,
            "num_hidden_layers": self.num_hidden_layers,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "intermediate_size": self.intermediate_size,
            "conv_kernel": self.conv_kernel,
            "use_bias": self.use_bias,
            "use_conv_bias": self.use_conv_bias,
            "time_step_rank": self.time_step_rank,
            "residual_in_fp32": self.residual_in_fp32,
            "tie_word_embeddings": self.tie_word_embeddings,
            "eos_token_id": self.eos_token_id,
            "hidden_act": "silu",
        })
    }

    /// Columns of x_proj's output: R (Δ) + N (B) + N (C).
    pub fn x_proj_width(&self) -> usize {
        self.time_step_rank + 2 * self.state_size
    }

    /// A tiny config for tests: `hidden` wide, `layers` blocks, `vocab` tokens.
    pub fn tiny(vocab: usize, hidden: usize, layers: usize) -> Self {
        MambaConfig {
            vocab_size: vocab,
            hidden_size: hidden,
            state_size: 16,
            num_hidden_layers: layers,
            layer_norm_epsilon: 1e-5,
            intermediate_size: 2 * hidden,
            conv_kernel: 4,
            use_bias: false,
            use_conv_bias: true,
            time_step_rank: hidden.div_ceil(16),
            residual_in_fp32: true,
            tie_word_embeddings: true,
            eos_token_id: Some(0),
        }
    }

    /// The shapes of state-spaces' mamba-130m (`hidden` 768, 24 layers, vocab 50280).
    pub fn mamba_130m() -> Self {
        MambaConfig {
            num_hidden_layers: 24,
            vocab_size: 50280,
            ..Self::tiny(50280, 768, 24)
        }
    }

    /// The shapes of state-spaces' mamba-370m (`hidden` 1024, 48 layers, vocab 50280).
    pub fn mamba_370m() -> Self {
        Self::tiny(50280, 1024, 48)
    }
}
