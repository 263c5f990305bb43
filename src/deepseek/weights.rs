//! The weights of a DeepSeek-V2/V3 language model under transformers' checkpoint names, as f32
//! values on the host (halves widened exactly): read from a checkpoint with every shape checked
//! against the config, or made at random for tests, and written back as a Hugging Face
//! directory.
//!
//! ```text
//! model.embed_tokens.weight                           (vocab, hidden)
//! model.layers.{i}.input_layernorm.weight             (hidden)
//! model.layers.{i}.self_attn.*                        the MLA layer (see crate::mla::weights)
//! model.layers.{i}.post_attention_layernorm.weight    (hidden)
//! dense layers (i < first_k_dense_replace):
//!   model.layers.{i}.mlp.{gate,up}_proj.weight        (intermediate, hidden)
//!   model.layers.{i}.mlp.down_proj.weight             (hidden, intermediate)
//! MoE layers (see crate::spec::moe):
//!   model.layers.{i}.mlp.gate.weight                  (E, hidden)
//!   model.layers.{i}.mlp.gate.e_score_correction_bias (E)                       V3 only
//!   model.layers.{i}.mlp.experts.{e}.{gate,up,down}_proj.weight
//!   model.layers.{i}.mlp.shared_experts.{gate,up,down}_proj.weight
//! model.norm.weight                                   (hidden)
//! lm_head.weight                                      (vocab, hidden), unread when tied
//! ```
//! Layers past `num_hidden_layers` (V3's multi-token-prediction layer) are not read.

use crate::deepseek::config::DeepseekConfig;
use crate::error::{Error, Result};
use crate::io::{HostTensor, SafeTensors};
use crate::mla::weights::MlaWeights;
use crate::rng::Rng;
use crate::runtime::DType;
use crate::spec::moe::{MoeHostWeights, Scoring, SwigluWeights};
use std::path::Path;

/// A layer's MLP: a dense SwiGLU or the mixture of experts.
#[derive(Clone, Debug, PartialEq)]
pub enum DeepseekMlp {
    /// gate_proj, up_proj (intermediate, hidden) and down_proj (hidden, intermediate).
    Dense(SwigluWeights),
    /// The router, routed and shared experts.
    Moe(MoeHostWeights),
}

/// One block's weights.
#[derive(Clone, Debug, PartialEq)]
pub struct DeepseekLayerWeights {
    /// RMSNorm before attention (hidden).
    pub input_layernorm: Vec<f32>,
    /// The MLA layer.
    pub attention: MlaWeights,
    /// RMSNorm before the MLP (hidden).
    pub post_attention_layernorm: Vec<f32>,
    /// The MLP.
    pub mlp: DeepseekMlp,
}

/// A whole model's weights.
#[derive(Clone, Debug, PartialEq)]
pub struct DeepseekWeights {
    /// Token embeddings (vocab, hidden).
    pub embed_tokens: Vec<f32>,
    /// The blocks, first to last.
    pub layers: Vec<DeepseekLayerWeights>,
    /// Final RMSNorm (hidden).
    pub norm: Vec<f32>,
    /// LM head (vocab, hidden); None when tied to the embeddings.
    pub lm_head: Option<Vec<f32>>,
}

fn take(file: &SafeTensors, name: &str, spelled: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let t = file.get(name)?;
    t.expect(name, spelled, shape)?;
    Ok(t.to_f32().to_vec())
}

fn random_swiglu(rng: &mut Rng, hidden: usize, inter: usize) -> SwigluWeights {
    let (sh, si) = (1.0 / (hidden as f64).sqrt(), 1.0 / (inter as f64).sqrt());
    SwigluWeights {
        gate: rng.normal_vec(inter * hidden, 0.0, sh),
        up: rng.normal_vec(inter * hidden, 0.0, sh),
        down: rng.normal_vec(hidden * inter, 0.0, si),
    }
}

impl DeepseekWeights {
    /// Read every tensor the config calls for from `file`, checking names and shapes; errors
    /// name the tensor and the shape it should have.
    pub fn from_safetensors(cfg: &DeepseekConfig, file: &SafeTensors) -> Result<Self> {
        let (h, v, inter) = (cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size);
        let moe = cfg.moe_config();
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = |what: &str| format!("model.layers.{i}.{what}");
            let mlp = if cfg.is_moe_layer(i) {
                DeepseekMlp::Moe(MoeHostWeights::from_safetensors(&moe, file, &l("mlp."))?)
            } else {
                DeepseekMlp::Dense(SwigluWeights {
                    gate: take(
                        file,
                        &l("mlp.gate_proj.weight"),
                        "(intermediate, hidden)",
                        &[inter, h],
                    )?,
                    up: take(
                        file,
                        &l("mlp.up_proj.weight"),
                        "(intermediate, hidden)",
                        &[inter, h],
                    )?,
                    down: take(
                        file,
                        &l("mlp.down_proj.weight"),
                        "(hidden, intermediate)",
                        &[h, inter],
                    )?,
                })
            };
            layers.push(DeepseekLayerWeights {
                input_layernorm: take(file, &l("input_layernorm.weight"), "(hidden)", &[h])?,
                attention: MlaWeights::from_safetensors(file, &cfg.attention, Some(i))?,
                post_attention_layernorm: take(
                    file,
                    &l("post_attention_layernorm.weight"),
                    "(hidden)",
                    &[h],
                )?,
                mlp,
            });
        }
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(take(file, "lm_head.weight", "(vocab, hidden)", &[v, h])?)
        };
        Ok(DeepseekWeights {
            embed_tokens: take(
                file,
                "model.embed_tokens.weight",
                "(vocab, hidden)",
                &[v, h],
            )?,
            layers,
            norm: take(file, "model.norm.weight", "(hidden)", &[h])?,
            lm_head,
        })
    }

    /// Random weights of the config's shapes: matrices N(0, 1/in), embeddings N(0, 1), norm
    /// weights uniform in [0.5, 1.5] (away from their init of 1), the V3 score-correction
    /// bias N(0, 0.1²).
    pub fn random(cfg: &DeepseekConfig, rng: &mut Rng) -> Self {
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        let moe = cfg.moe_config();
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let input_layernorm = rng.uniform_vec(h, 0.5, 1.5);
            let attention = MlaWeights::random(&cfg.attention, rng);
            let post_attention_layernorm = rng.uniform_vec(h, 0.5, 1.5);
            let mlp = if cfg.is_moe_layer(i) {
                DeepseekMlp::Moe(MoeHostWeights {
                    router: rng.normal_vec(moe.experts * h, 0.0, 1.0 / (h as f64).sqrt()),
                    bias: (moe.scoring == Scoring::Sigmoid)
                        .then(|| rng.normal_vec(moe.experts, 0.0, 0.1)),
                    experts: (0..moe.experts)
                        .map(|_| random_swiglu(rng, h, moe.intermediate))
                        .collect(),
                    shared: (moe.n_shared > 0)
                        .then(|| random_swiglu(rng, h, moe.shared_intermediate())),
                })
            } else {
                DeepseekMlp::Dense(random_swiglu(rng, h, cfg.intermediate_size))
            };
            layers.push(DeepseekLayerWeights {
                input_layernorm,
                attention,
                post_attention_layernorm,
                mlp,
            });
        }
        DeepseekWeights {
            embed_tokens: rng.normal_vec(v * h, 0.0, 1.0),
            layers,
            norm: rng.uniform_vec(h, 0.5, 1.5),
            lm_head: (!cfg.tie_word_embeddings)
                .then(|| rng.normal_vec(v * h, 0.0, 1.0 / (h as f64).sqrt())),
        }
    }

    /// The LM head matrix (vocab, hidden): lm_head, or the embeddings when tied.
    pub fn head(&self) -> &[f32] {
        self.lm_head.as_deref().unwrap_or(&self.embed_tokens)
    }

    /// Every tensor under its transformers name, f32 (the MLA matrices in their dtype).
    pub fn named_tensors(&self, cfg: &DeepseekConfig) -> Result<Vec<(String, HostTensor)>> {
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        let t = |shape: &[usize], data: &[f32]| HostTensor::new(shape, data.to_vec());
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            t(&[v, h], &self.embed_tokens)?,
        )];
        let swiglu =
            |out: &mut Vec<(String, HostTensor)>, base: &str, w: &SwigluWeights| -> Result<()> {
                let i = w.gate.len() / h;
                out.push((format!("{base}.gate_proj.weight"), t(&[i, h], &w.gate)?));
                out.push((format!("{base}.up_proj.weight"), t(&[i, h], &w.up)?));
                out.push((format!("{base}.down_proj.weight"), t(&[h, i], &w.down)?));
                Ok(())
            };
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}.");
            out.push((
                format!("{p}input_layernorm.weight"),
                t(&[h], &l.input_layernorm)?,
            ));
            out.extend(l.attention.host_tensors(&format!("{p}self_attn."))?);
            out.push((
                format!("{p}post_attention_layernorm.weight"),
                t(&[h], &l.post_attention_layernorm)?,
            ));
            match &l.mlp {
                DeepseekMlp::Dense(w) => swiglu(&mut out, &format!("{p}mlp"), w)?,
                DeepseekMlp::Moe(m) => {
                    let e = m.experts.len();
                    out.push((format!("{p}mlp.gate.weight"), t(&[e, h], &m.router)?));
                    if let Some(b) = &m.bias {
                        out.push((format!("{p}mlp.gate.e_score_correction_bias"), t(&[e], b)?));
                    }
                    for (k, w) in m.experts.iter().enumerate() {
                        swiglu(&mut out, &format!("{p}mlp.experts.{k}"), w)?;
                    }
                    if let Some(w) = &m.shared {
                        swiglu(&mut out, &format!("{p}mlp.shared_experts"), w)?;
                    }
                }
            }
        }
        out.push(("model.norm.weight".to_string(), t(&[h], &self.norm)?));
        if let Some(head) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), t(&[v, h], head)?));
        }
        Ok(out)
    }

    /// The same weights with everything the GPU model stores in a weight dtype rounded to
    /// `dtype` (nearest even): the attention projections, the dense and expert MLPs, the
    /// embeddings and the head; the norms and the router stay f32. The CPU reference fed the
    /// result computes with the values a GPU model loaded with that weight dtype holds.
    pub fn rounded_to(&self, dtype: DType) -> Result<Self> {
        dtype.expect_float("DeepseekWeights::rounded_to")?;
        let round = |v: &[f32]| v.iter().map(|&x| dtype.round_f32(x)).collect::<Vec<_>>();
        let swiglu = |w: &SwigluWeights| SwigluWeights {
            gate: round(&w.gate),
            up: round(&w.up),
            down: round(&w.down),
        };
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let mlp = match &l.mlp {
                DeepseekMlp::Dense(w) => DeepseekMlp::Dense(swiglu(w)),
                DeepseekMlp::Moe(m) => DeepseekMlp::Moe(MoeHostWeights {
                    experts: m.experts.iter().map(swiglu).collect(),
                    shared: m.shared.as_ref().map(swiglu),
                    router: m.router.clone(),
                    bias: m.bias.clone(),
                }),
            };
            layers.push(DeepseekLayerWeights {
                input_layernorm: l.input_layernorm.clone(),
                attention: l.attention.rounded_to(dtype)?,
                post_attention_layernorm: l.post_attention_layernorm.clone(),
                mlp,
            });
        }
        Ok(DeepseekWeights {
            embed_tokens: round(&self.embed_tokens),
            layers,
            norm: self.norm.clone(),
            lm_head: self.lm_head.as_deref().map(round),
        })
    }

    /// Check every tensor against `cfg` (for weights built in memory), by writing them under
    /// their names and reading them back through [`Self::from_safetensors`].
    pub fn check(&self, cfg: &DeepseekConfig) -> Result<()> {
        if self.layers.len() != cfg.num_hidden_layers {
            return Err(Error::invalid(format!(
                "{} layers of weights for num_hidden_layers {}",
                self.layers.len(),
                cfg.num_hidden_layers
            )));
        }
        let mut st = SafeTensors::default();
        for (name, t) in self.named_tensors(cfg)? {
            st.insert(&name, t);
        }
        Self::from_safetensors(cfg, &st).map(|_| ())
    }

    /// Write a Hugging Face directory: `config.json` (from `cfg`) and `model.safetensors`.
    pub fn write_dir(&self, cfg: &DeepseekConfig, dir: &Path) -> Result<()> {
        crate::checkpoint::write_dir(dir, &cfg.to_json(), &self.named_tensors(cfg)?)
    }
}
