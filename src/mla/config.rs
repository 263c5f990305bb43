//! The attention part of a Hugging Face DeepSeek-V2 / V2-Lite / V3 `config.json`,
//! with the derived quantities the layer needs: softmax scale, YaRN inverse frequencies and the
//! cos/sin scale, and the latent-cache size per token.
//!
//! ```text
//! scale  = (nope + d_R)^-½ · mscale²            mscale = 0.1·mscale_all_dim·ln(factor) + 1 (YaRN)
//! inv_i  = θ^(-2i/d_R), i < d_R/2;  YaRN: inv_i ← inv_i/factor·ramp_i + inv_i·(1 − ramp_i)
//! ```
//! Field names and defaults follow `transformers`' `DeepseekV3Config` and DeepSeek's own
//! `modeling_deepseek.py` (rope_interleave defaults to true, YaRN beta_fast 32, beta_slow 1,
//! mscale 1, mscale_all_dim 0).

use crate::config_fields::{format_err, get_bool, get_f64, get_usize};
use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// YaRN `rope_scaling` fields (`"type": "yarn"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Yarn {
    /// Context extension factor (`factor`).
    pub factor: f64,
    /// Context length the model was trained at (`original_max_position_embeddings`).
    pub original_max_position_embeddings: f64,
    /// Rotations above which a frequency is left alone (`beta_fast`, default 32).
    pub beta_fast: f64,
    /// Rotations below which a frequency is fully interpolated (`beta_slow`, default 1).
    pub beta_slow: f64,
    /// `mscale` (default 1).
    pub mscale: f64,
    /// `mscale_all_dim` (default 0).
    pub mscale_all_dim: f64,
}

/// The attention hyper-parameters of a DeepSeek-V2/V3 layer.
#[derive(Clone, Debug, PartialEq)]
pub struct MlaConfig {
    /// Model width (`hidden_size`).
    pub hidden_size: usize,
    /// Query heads H (`num_attention_heads`).
    pub num_heads: usize,
    /// Query compression rank (`q_lora_rank`); `None` = a plain `q_proj`.
    pub q_lora_rank: Option<usize>,
    /// Latent width d_c (`kv_lora_rank`).
    pub kv_lora_rank: usize,
    /// Per-head non-rotary query/key width (`qk_nope_head_dim`).
    pub qk_nope_head_dim: usize,
    /// Per-head rotary width d_R (`qk_rope_head_dim`), shared by all heads on the key side.
    pub qk_rope_head_dim: usize,
    /// Per-head value width (`v_head_dim`).
    pub v_head_dim: usize,
    /// RoPE base θ (`rope_theta`, default 10000).
    pub rope_theta: f64,
    /// RMSNorm epsilon (`rms_norm_eps`, default 1e-6).
    pub rms_norm_eps: f64,
    /// Rotate adjacent pairs (x\[2i\], x[2i+1]) (`rope_interleave`, default true); false rotates
    /// (x\[i\], x[i + d_R/2]).
    pub rope_interleave: bool,
    /// YaRN scaling, if `rope_scaling` is set.
    pub rope_scaling: Option<Yarn>,
    /// Whether q_a_proj (or q_proj), kv_a_proj_with_mqa and o_proj carry biases
    /// (`attention_bias`, default false).
    pub attention_bias: bool,
}

/// `mscale` of YaRN: 0.1·m·ln(scale) + 1 for scale > 1, else 1.
pub fn yarn_get_mscale(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

/// A YaRN object (`rope_scaling`, or transformers' `rope_parameters` with `rope_type` "yarn");
/// `field` names it in errors. Anything but YaRN, an explicit `attention_factor` and
/// `truncate: false` are refused: the layer derives the cos/sin factor from the mscales and
/// truncates the correction range, as DeepSeek's configs expect.
fn parse_rope_scaling(v: Option<&Value>, source: &str, field: &str) -> Result<Option<Yarn>> {
    let rs = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(rs)) => rs,
        Some(v) => {
            return Err(format_err(
                source,
                format!("field `{field}` must be an object or null, got {v}"),
            ))
        }
    };
    let src = format!("{source} ({field})");
    let kind = rs
        .get("type")
        .or_else(|| rs.get("rope_type"))
        .and_then(Value::as_str)
        .unwrap_or("yarn");
    if kind != "yarn" {
        return Err(format_err(
            &src,
            format!("{field} type {kind:?} is not supported (only \"yarn\")"),
        ));
    }
    if rs.get("attention_factor").is_some_and(|a| !a.is_null()) {
        return Err(format_err(
            &src,
            "`attention_factor` is not supported (it is derived from mscale and mscale_all_dim)",
        ));
    }
    if !get_bool(rs, &src, "truncate", true)? {
        return Err(format_err(&src, "`truncate: false` is not supported"));
    }
    Ok(Some(Yarn {
        factor: get_f64(rs, &src, "factor", None)?,
        original_max_position_embeddings: get_f64(
            rs,
            &src,
            "original_max_position_embeddings",
            None,
        )?,
        beta_fast: get_f64(rs, &src, "beta_fast", Some(32.0))?,
        beta_slow: get_f64(rs, &src, "beta_slow", Some(1.0))?,
        mscale: get_f64(rs, &src, "mscale", Some(1.0))?,
        mscale_all_dim: get_f64(rs, &src, "mscale_all_dim", Some(0.0))?,
    }))
}

impl MlaConfig {
    /// Read and parse a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Parse the JSON text of a `config.json`; `source` names it in errors.
    pub fn from_json_str(text: &str, source: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| format_err(source, format!("not valid JSON: {e}")))?;
        Self::from_json(&value, source)
    }

    /// Parse an already-decoded JSON object.
    pub fn from_json(value: &Value, source: &str) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or_else(|| format_err(source, "a config must be a JSON object"))?;
        let q_lora_rank = match obj.get("q_lora_rank") {
            None | Some(Value::Null) => None,
            Some(_) => Some(get_usize(obj, source, "q_lora_rank")?),
        };
        // transformers ≥ 5 writes `rope_parameters` (rope_theta, rope_type and the YaRN fields
        // in one object); older files and DeepSeek's own write `rope_theta` and `rope_scaling`.
        let (rope_theta, rope_scaling) = match obj.get("rope_parameters") {
            None | Some(Value::Null) => (
                get_f64(obj, source, "rope_theta", Some(10000.0))?,
                parse_rope_scaling(obj.get("rope_scaling"), source, "rope_scaling")?,
            ),
            Some(Value::Object(rp)) => {
                let src = format!("{source} (rope_parameters)");
                let theta = match rp.get("rope_theta") {
                    Some(_) => get_f64(rp, &src, "rope_theta", None)?,
                    None => get_f64(obj, source, "rope_theta", Some(10000.0))?,
                };
                let kind = rp.get("rope_type").or_else(|| rp.get("type"));
                let scaling = match kind.and_then(Value::as_str) {
                    None | Some("default") => None,
                    Some(_) => {
                        parse_rope_scaling(obj.get("rope_parameters"), source, "rope_parameters")?
                    }
                };
                (theta, scaling)
            }
            Some(v) => {
                return Err(format_err(
                    source,
                    format!("field `rope_parameters` must be an object or null, got {v}"),
                ))
            }
        };
        let config = MlaConfig {
            hidden_size: get_usize(obj, source, "hidden_size")?,
            num_heads: get_usize(obj, source, "num_attention_heads")?,
            q_lora_rank,
            kv_lora_rank: get_usize(obj, source, "kv_lora_rank")?,
            qk_nope_head_dim: get_usize(obj, source, "qk_nope_head_dim")?,
            qk_rope_head_dim: get_usize(obj, source, "qk_rope_head_dim")?,
            v_head_dim: get_usize(obj, source, "v_head_dim")?,
            rope_theta,
            rms_norm_eps: get_f64(obj, source, "rms_norm_eps", Some(1e-6))?,
            rope_interleave: get_bool(obj, source, "rope_interleave", true)?,
            rope_scaling,
            attention_bias: get_bool(obj, source, "attention_bias", false)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Check the values are usable: every width positive, d_R even, θ > 1, eps ≥ 0, and YaRN
    /// fields in range.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_heads),
            ("kv_lora_rank", self.kv_lora_rank),
            ("qk_rope_head_dim", self.qk_rope_head_dim),
            ("v_head_dim", self.v_head_dim),
            ("q_lora_rank", self.q_lora_rank.unwrap_or(1)),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::invalid(format!("config: {name} must be positive")));
            }
        }
        if self.qk_rope_head_dim % 2 != 0 {
            return Err(Error::invalid(format!(
                "config: qk_rope_head_dim must be even (RoPE rotates pairs), got {}",
                self.qk_rope_head_dim
            )));
        }
        if !(self.rope_theta > 1.0 && self.rope_theta.is_finite()) {
            return Err(Error::invalid(format!(
                "config: rope_theta must be a finite number > 1, got {}",
                self.rope_theta
            )));
        }
        if !(self.rms_norm_eps >= 0.0 && self.rms_norm_eps.is_finite()) {
            return Err(Error::invalid(format!(
                "config: rms_norm_eps must be finite and ≥ 0, got {}",
                self.rms_norm_eps
            )));
        }
        if let Some(y) = &self.rope_scaling {
            if !(y.factor > 0.0 && y.factor.is_finite()) {
                return Err(Error::invalid(format!(
                    "config: rope_scaling.factor must be positive, got {}",
                    y.factor
                )));
            }
            if y.original_max_position_embeddings.is_nan()
                || y.original_max_position_embeddings < 1.0
            {
                return Err(Error::invalid(format!(
                    "config: rope_scaling.original_max_position_embeddings must be ≥ 1, got {}",
                    y.original_max_position_embeddings
                )));
            }
            if !(y.beta_fast > 0.0 && y.beta_slow > 0.0) {
                return Err(Error::invalid(format!(
                    "config: rope_scaling.beta_fast and beta_slow must be positive, got {} and {}",
                    y.beta_fast, y.beta_slow
                )));
            }
            if !(y.mscale.is_finite() && y.mscale_all_dim.is_finite()) {
                return Err(Error::invalid("config: rope_scaling.mscale must be finite"));
            }
        }
        Ok(())
    }

    /// Per-head query/key width: nope + d_R.
    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }

    /// Width of one latent-cache row, d_c + d_R.
    pub fn latent_dim(&self) -> usize {
        self.kv_lora_rank + self.qk_rope_head_dim
    }

    /// Softmax scale: (nope + d_R)^-½, times mscale² with mscale = yarn_get_mscale(factor,
    /// mscale_all_dim) under YaRN (as `DeepseekV3Attention` computes it).
    pub fn softmax_scale(&self) -> f64 {
        let base = (self.qk_head_dim() as f64).powf(-0.5);
        match &self.rope_scaling {
            Some(y) if y.mscale_all_dim != 0.0 => {
                let m = yarn_get_mscale(y.factor, y.mscale_all_dim);
                base * m * m
            }
            _ => base,
        }
    }

    /// RoPE inverse frequencies, d_R/2 of them, with the YaRN correction when configured
    /// (as `transformers`' `_compute_yarn_parameters` and DeepSeek's
    /// `DeepseekV2YarnRotaryEmbedding` compute them).
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.qk_rope_head_dim;
        let theta = self.rope_theta;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| theta.powf(-((2 * i) as f64) / d as f64))
            .collect();
        let Some(y) = &self.rope_scaling else {
            return base;
        };
        let corr = |rotations: f64| {
            d as f64
                * (y.original_max_position_embeddings / (2.0 * std::f64::consts::PI * rotations))
                    .ln()
                / (2.0 * theta.ln())
        };
        let lo = corr(y.beta_fast).floor().max(0.0);
        let mut hi = corr(y.beta_slow).ceil().min((d - 1) as f64);
        if lo == hi {
            hi += 0.001;
        }
        base.iter()
            .enumerate()
            .map(|(i, &inv)| {
                let ramp = ((i as f64 - lo) / (hi - lo)).clamp(0.0, 1.0);
                inv / y.factor * ramp + inv * (1.0 - ramp)
            })
            .collect()
    }

    /// Scale applied to cos and sin: yarn_get_mscale(factor, mscale) /
    /// yarn_get_mscale(factor, mscale_all_dim) under YaRN (1 for DeepSeek's configs), else 1.
    pub fn rope_attention_factor(&self) -> f64 {
        match &self.rope_scaling {
            Some(y) => {
                yarn_get_mscale(y.factor, y.mscale) / yarn_get_mscale(y.factor, y.mscale_all_dim)
            }
            None => 1.0,
        }
    }

    /// Values the latent cache stores per token and layer: c (d_c) and k_rope (d_R).
    pub fn cache_values_per_token(&self) -> usize {
        self.latent_dim()
    }

    /// Values a standard multi-head attention cache of the same model would store per token
    /// and layer: K of H·(nope + d_R) and V of H·v_head_dim.
    pub fn mha_values_per_token(&self) -> usize {
        self.num_heads * (self.qk_head_dim() + self.v_head_dim)
    }

    /// Width of the query projection's output, H·(nope + d_R).
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.qk_head_dim()
    }
}

pub use super::presets::{self, cache_size_table};
