//! A Hugging Face `Mamba2Config` (`config.json` with `"model_type": "mamba2"`), with the derived
//! sizes the model needs. Field names and defaults follow transformers' `Mamba2Config`:
//!
//! ```text
//! d_inner = expand · hidden_size = num_heads · head_dim      (H heads of P channels)
//! conv_dim = d_inner + 2·n_groups·state_size                 (x, B, C go through the conv)
//! in_proj (d_inner + conv_dim + H, hidden): z (d_inner) | xBC (conv_dim) | dt (H)
//! xBC after the conv: x (d_inner) | B (G·N) | C (G·N);  head h reads group h / (H/G)
//! ```
//! Values the crate does not implement (an activation other than SiLU, a conv width outside
//! 2..=4, mamba_ssm's `rms_norm: false` or `norm_before_gate: true`) are refused with an error
//! naming the field, never silently run differently.

use crate::config_fields::{format_err, get_bool, get_f64, get_usize, parse_config_text};
use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// The hyper-parameters of a Mamba-2 language model.
#[derive(Clone, Debug, PartialEq)]
pub struct Mamba2Config {
    /// Vocabulary size (`vocab_size`): rows of the embedding and of the LM head.
    pub vocab_size: usize,
    /// Model width (`hidden_size`).
    pub hidden_size: usize,
    /// Heads H (`num_heads`, default 128).
    pub num_heads: usize,
    /// Channels per head P (`head_dim`, default 64).
    pub head_dim: usize,
    /// State size N (`state_size`, default 128).
    pub state_size: usize,
    /// Groups G sharing B and C (`n_groups`, default 8); divides `num_heads`.
    pub n_groups: usize,
    /// Width factor (`expand`, default 2): d_inner = expand · hidden_size.
    pub expand: usize,
    /// Causal conv width W (`conv_kernel`, default 4; 2..=4 supported).
    pub conv_kernel: usize,
    /// Chunk length of the SSD scan (`chunk_size`, default 256). The result does not depend on
    /// it (the chunked scan equals the recurrence); kernels use it as their chunk.
    pub chunk_size: usize,
    /// Blocks (`num_hidden_layers`).
    pub num_hidden_layers: usize,
    /// Epsilon of both RMSNorms, the block's and the gated one (`layer_norm_epsilon`, 1e-5).
    pub layer_norm_epsilon: f64,
    /// Whether in_proj and out_proj carry biases (`use_bias`, default false).
    pub use_bias: bool,
    /// Whether conv1d carries a bias (`use_conv_bias`, default true).
    pub use_conv_bias: bool,
    /// dt is clamped to [lo, hi] after softplus (`time_step_limit`, default (0, ∞)).
    pub time_step_limit: (f64, f64),
    /// Keep the residual stream in f32 (`residual_in_fp32`, default true). Read and kept for
    /// round trips; the crate's residual stream is f32 (f64 in the reference) in every case.
    pub residual_in_fp32: bool,
    /// Whether the LM head shares the embedding matrix (`tie_word_embeddings`, default false).
    pub tie_word_embeddings: bool,
    /// End-of-sequence token id (`eos_token_id`, default 2), where generation stops.
    pub eos_token_id: Option<u32>,
}

/// Column ranges of in_proj's output and of the conv's output, in transformers' order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InProjSplit {
    /// The gate z: in_proj columns `z..z + d_inner`.
    pub z: usize,
    /// x, B, C before the conv: in_proj columns `xbc..xbc + conv_dim`.
    pub xbc: usize,
    /// dt before dt_bias and softplus: in_proj columns `dt..dt + H`.
    pub dt: usize,
    /// in_proj's output width d_inner + conv_dim + H.
    pub width: usize,
    /// B within the conv's output: columns `b..b + G·N` (x is `0..d_inner`).
    pub b: usize,
    /// C within the conv's output: columns `c..c + G·N`.
    pub c: usize,
}

/// `time_step_limit`: `[lo, hi]`, each a number or transformers' tagged float
/// (`{"__float__": "Infinity"}`).
fn time_step_limit(obj: &serde_json::Map<String, Value>, src: &str) -> Result<(f64, f64)> {
    let bad = |v: &Value| {
        format_err(
            src,
            format!("field `time_step_limit` must be [low, high] with low ≤ high, got {v}"),
        )
    };
    let v = match obj.get("time_step_limit") {
        None | Some(Value::Null) => return Ok((0.0, f64::INFINITY)),
        Some(v) => v,
    };
    let number = |x: &Value| -> Option<f64> {
        match x {
            Value::Number(n) => n.as_f64(),
            Value::Object(o) => match o.get("__float__")?.as_str()? {
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                _ => None,
            },
            _ => None,
        }
    };
    match v.as_array().map(|a| a.as_slice()) {
        Some([lo, hi]) => match (number(lo), number(hi)) {
            (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
            _ => Err(bad(v)),
        },
        _ => Err(bad(v)),
    }
}

impl Mamba2Config {
    /// Read and parse a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let value = parse_config_text(&text)
            .map_err(|e| format_err(&path.display().to_string(), format!("not valid JSON: {e}")))?;
        Self::from_json(&value, &path.display().to_string())
    }

    /// Parse a decoded `config.json` object (`"model_type": "mamba2"` when the field is set);
    /// `src` names it in errors.
    pub fn from_json(value: &Value, src: &str) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or_else(|| format_err(src, "config is not a JSON object"))?;
        if let Some(t) = obj.get("model_type") {
            if t.as_str() != Some("mamba2") {
                return Err(format_err(
                    src,
                    format!("`model_type` must be \"mamba2\", got {t}"),
                ));
            }
        }
        let usize_or = |key: &str, default: usize| -> Result<usize> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(_) => get_usize(obj, src, key),
            }
        };
        let refuse = |key: &str, why: &str| format_err(src, format!("`{key}` {why}"));
        if let Some(act) = obj.get("hidden_act") {
            if act.as_str() != Some("silu") {
                return Err(refuse(
                    "hidden_act",
                    &format!("must be \"silu\" (the only activation supported), got {act}"),
                ));
            }
        }
        // mamba_ssm's options for the gated norm; transformers always runs RMSNorm on y·silu(z).
        if !get_bool(obj, src, "rms_norm", true)? {
            return Err(refuse(
                "rms_norm",
                "false (a LayerNorm in the gated norm) is not supported; only RMSNorm is",
            ));
        }
        if get_bool(obj, src, "norm_before_gate", false)? {
            return Err(refuse(
                "norm_before_gate",
                "true is not supported: the gated norm gates first (y·silu(z)), as transformers does",
            ));
        }
        let eos_token_id = match obj.get("eos_token_id") {
            None => Some(2),
            Some(Value::Null) => None,
            Some(Value::Array(a)) => a.first().and_then(Value::as_u64).map(|n| n as u32),
            Some(_) => Some(get_usize(obj, src, "eos_token_id")? as u32),
        };
        let cfg = Mamba2Config {
            vocab_size: get_usize(obj, src, "vocab_size")?,
            hidden_size: get_usize(obj, src, "hidden_size")?,
            num_heads: usize_or("num_heads", 128)?,
            head_dim: usize_or("head_dim", 64)?,
            state_size: usize_or("state_size", 128)?,
            n_groups: usize_or("n_groups", 8)?,
            expand: usize_or("expand", 2)?,
            conv_kernel: usize_or("conv_kernel", 4)?,
            chunk_size: usize_or("chunk_size", 256)?,
            num_hidden_layers: get_usize(obj, src, "num_hidden_layers")?,
            layer_norm_epsilon: get_f64(obj, src, "layer_norm_epsilon", Some(1e-5))?,
            use_bias: get_bool(obj, src, "use_bias", false)?,
            use_conv_bias: get_bool(obj, src, "use_conv_bias", true)?,
            time_step_limit: time_step_limit(obj, src)?,
            residual_in_fp32: get_bool(obj, src, "residual_in_fp32", true)?,
            tie_word_embeddings: get_bool(obj, src, "tie_word_embeddings", false)?,
            eos_token_id,
        };
        cfg.check().map_err(|e| format_err(src, e.to_string()))?;
        Ok(cfg)
    }

    /// Error naming the field unless every size is usable and consistent.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_heads", self.num_heads),
            ("head_dim", self.head_dim),
            ("state_size", self.state_size),
            ("n_groups", self.n_groups),
            ("expand", self.expand),
            ("chunk_size", self.chunk_size),
            ("num_hidden_layers", self.num_hidden_layers),
        ];
        for (name, n) in positive {
            if n == 0 {
                return Err(Error::invalid(format!("`{name}` must be positive, got 0")));
            }
        }
        if self.hidden_size * self.expand != self.num_heads * self.head_dim {
            return Err(Error::invalid(format!(
                "inconsistent `num_heads` · `head_dim` ({} · {}) must equal `hidden_size` · \
                 `expand` ({} · {})",
                self.num_heads, self.head_dim, self.hidden_size, self.expand
            )));
        }
        if self.num_heads % self.n_groups != 0 {
            return Err(Error::invalid(format!(
                "`n_groups` ({}) must divide `num_heads` ({})",
                self.n_groups, self.num_heads
            )));
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
        let (lo, hi) = self.time_step_limit;
        if lo.is_nan() || hi.is_nan() || lo > hi || lo < 0.0 {
            return Err(Error::invalid(format!(
                "`time_step_limit` must be [low, high] with 0 ≤ low ≤ high, got [{lo}, {hi}]"
            )));
        }
        Ok(())
    }

    /// The config as a transformers `config.json` object (what [`Self::from_json`] reads back;
    /// an infinite limit is written as transformers writes it, `{"__float__": "Infinity"}`).
    pub fn to_json(&self) -> Value {
        let float = |x: f64| {
            if x == f64::INFINITY {
                serde_json::json!({ "__float__": "Infinity" })
            } else {
                serde_json::json!(x)
            }
        };
        let (lo, hi) = self.time_step_limit;
        serde_json::json!({
            "architectures": ["Mamba2ForCausalLM"],
            "model_type": "mamba2",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "state_size": self.state_size,
            "n_groups": self.n_groups,
            "expand": self.expand,
            "conv_kernel": self.conv_kernel,
            "chunk_size": self.chunk_size,
            "num_hidden_layers": self.num_hidden_layers,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "use_bias": self.use_bias,
            "use_conv_bias": self.use_conv_bias,
            "time_step_limit": [float(lo), float(hi)],
            "residual_in_fp32": self.residual_in_fp32,
            "tie_word_embeddings": self.tie_word_embeddings,
            "eos_token_id": self.eos_token_id,
            "hidden_act": "silu",
        })
    }

    /// Inner width d_inner = expand · hidden_size (= num_heads · head_dim).
    pub fn d_inner(&self) -> usize {
        self.expand * self.hidden_size
    }

    /// Channels through the conv: d_inner + 2·G·N (x, B and C).
    pub fn conv_dim(&self) -> usize {
        self.d_inner() + 2 * self.n_groups * self.state_size
    }

    /// Channels of the gated norm's groups: d_inner / G.
    pub fn norm_group_size(&self) -> usize {
        self.d_inner() / self.n_groups
    }

    /// Where z, xBC and dt lie in in_proj's output, and B and C in the conv's output.
    pub fn in_proj_split(&self) -> InProjSplit {
        let (di, cd, gn) = (
            self.d_inner(),
            self.conv_dim(),
            self.n_groups * self.state_size,
        );
        InProjSplit {
            z: 0,
            xbc: di,
            dt: di + cd,
            width: di + cd + self.num_heads,
            b: di,
            c: di + gn,
        }
    }

    /// A tiny config for tests: `hidden` wide (d_inner = 2·hidden in `hidden / 8` heads of 16),
    /// `layers` blocks, `vocab` tokens, N = 16, one group.
    pub fn tiny(vocab: usize, hidden: usize, layers: usize) -> Self {
        Mamba2Config {
            vocab_size: vocab,
            hidden_size: hidden,
            num_heads: 2 * hidden / 16,
            head_dim: 16,
            state_size: 16,
            n_groups: 1,
            expand: 2,
            conv_kernel: 4,
            chunk_size: 16,
            num_hidden_layers: layers,
            layer_norm_epsilon: 1e-5,
            use_bias: false,
            use_conv_bias: true,
            time_step_limit: (0.0, f64::INFINITY),
            residual_in_fp32: true,
            tie_word_embeddings: true,
            eos_token_id: Some(0),
        }
    }

    /// The shapes of state-spaces' mamba2-130m: hidden 768, 24 layers, 24 heads of 64,
    /// N = 128, one group, chunk 256, vocab 50288, tied head.
    pub fn mamba2_130m() -> Self {
        Mamba2Config {
            num_heads: 24,
            head_dim: 64,
            state_size: 128,
            chunk_size: 256,
            ..Self::tiny(50288, 768, 24)
        }
    }
}
