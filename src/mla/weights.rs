//! The weights of one MLA layer on the host, under the Hugging Face names (row-major
//! [out, in], as in PyTorch `Linear`):
//!
//! | tensor | shape |
//! |---|---|
//! | `q_proj.weight` (no query compression) | [H·(nope + d_R), hidden] |
//! | `q_a_proj.weight`, `q_a_layernorm.weight`, `q_b_proj.weight` | [q_lora, hidden], \[q_lora\], [H·(nope + d_R), q_lora] |
//! | `kv_a_proj_with_mqa.weight` | [d_c + d_R, hidden] |
//! | `kv_a_layernorm.weight` | \[d_c\] |
//! | `kv_b_proj.weight` | [H·(nope + v), d_c] |
//! | `o_proj.weight` | [hidden, H·v] |
//!
//! With `attention_bias` the layers `DeepseekV3Attention` gives a bias carry one:
//! `q_a_proj.bias` (or `q_proj.bias`), `kv_a_proj_with_mqa.bias`, `o_proj.bias`.
//! Files may prefix every name with `model.layers.<i>.self_attn.`.
//!
//! The projection matrices keep the dtype they were stored in ([`MlaWeights::dtype`]: f32, f16
//! or bf16, the values held here widened exactly to f32) and are uploaded in it; biases and the
//! two small norm vectors are always f32 on the GPU (the bias add and rmsnorm read f32 only).

use crate::error::{Error, Result};
use crate::io::{HostTensor, SafeTensors};
use crate::mla::config::MlaConfig;
use crate::rng::Rng;
use crate::runtime::DType;

/// A linear layer: y = x·Wᵀ + b, W row-major [out, in].
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Weight, `out × in` values.
    pub weight: Vec<f32>,
    /// Optional bias, `out` values.
    pub bias: Option<Vec<f32>>,
    /// Output features.
    pub out_features: usize,
    /// Input features.
    pub in_features: usize,
}

/// The query path: a plain projection, or the low-rank one with a norm in between.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryWeights {
    /// `q_proj` [H·(nope + d_R), hidden] (`q_lora_rank` null).
    Direct {
        /// q_proj.
        q_proj: Linear,
    },
    /// `q_b_proj(rmsnorm(q_a_proj(h)))`.
    LowRank {
        /// q_a_proj [q_lora, hidden].
        q_a_proj: Linear,
        /// q_a_layernorm weight \[q_lora\].
        q_a_layernorm: Vec<f32>,
        /// q_b_proj [H·(nope + d_R), q_lora].
        q_b_proj: Linear,
    },
}

/// One layer's attention weights, shapes checked against its [`MlaConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct MlaWeights {
    /// Query projection(s).
    pub query: QueryWeights,
    /// kv_a_proj_with_mqa [d_c + d_R, hidden].
    pub kv_a_proj_with_mqa: Linear,
    /// kv_a_layernorm weight \[d_c\].
    pub kv_a_layernorm: Vec<f32>,
    /// kv_b_proj weight [H·(nope + v), d_c]: per head, `nope` rows of W_UK then `v` rows of W_UV.
    pub kv_b_proj: Vec<f32>,
    /// o_proj [hidden, H·v].
    pub o_proj: Linear,
    /// Storage dtype of the projection matrices (F32, F16 or BF16): the GPU layer uploads them
    /// in it. Their values here are exactly representable in it (widened from the file's words).
    pub dtype: DType,
}

/// A named tensor to write or check: (name, shape, values).
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

fn random_linear(rng: &mut Rng, out: usize, inp: usize, bias: bool) -> Linear {
    // Like PyTorch's default init scale, so activations stay O(1).
    let std = 1.0 / (inp as f64).sqrt();
    Linear {
        weight: rng.normal_vec(out * inp, 0.0, std),
        bias: bias.then(|| rng.normal_vec(out, 0.0, 0.1)),
        out_features: out,
        in_features: inp,
    }
}

impl MlaWeights {
    /// Random weights of the config's shapes (N(0, 1/in) weights, norm weights near 1, small
    /// biases when `attention_bias`), for tests and benchmarks.
    pub fn random(cfg: &MlaConfig, rng: &mut Rng) -> Self {
        let bias = cfg.attention_bias;
        let query = match cfg.q_lora_rank {
            None => QueryWeights::Direct {
                q_proj: random_linear(rng, cfg.q_dim(), cfg.hidden_size, bias),
            },
            Some(r) => QueryWeights::LowRank {
                q_a_proj: random_linear(rng, r, cfg.hidden_size, bias),
                q_a_layernorm: rng.uniform_vec(r, 0.5, 1.5),
                q_b_proj: random_linear(rng, cfg.q_dim(), r, false),
            },
        };
        let d_c = cfg.kv_lora_rank;
        Self {
            query,
            kv_a_proj_with_mqa: random_linear(rng, cfg.latent_dim(), cfg.hidden_size, bias),
            kv_a_layernorm: rng.uniform_vec(d_c, 0.5, 1.5),
            kv_b_proj: rng.normal_vec(
                cfg.num_heads * (cfg.qk_nope_head_dim + cfg.v_head_dim) * d_c,
                0.0,
                1.0 / (d_c as f64).sqrt(),
            ),
            o_proj: random_linear(rng, cfg.hidden_size, cfg.num_heads * cfg.v_head_dim, bias),
            dtype: DType::F32,
        }
    }

    /// The same weights with the projection matrices rounded to `dtype` (F32, F16 or BF16,
    /// round to nearest even) and stored as it; biases and norm vectors are unchanged (they stay
    /// f32 on the GPU). The CPU reference fed the result computes with the rounded values.
    pub fn rounded_to(&self, dtype: DType) -> Result<Self> {
        if !dtype.is_float() {
            return Err(Error::DType {
                name: "MlaWeights::rounded_to".into(),
                expected: "f32, f16 or bf16".into(),
                got: dtype.to_string(),
            });
        }
        let round = |v: &[f32]| v.iter().map(|&x| dtype.round_f32(x)).collect::<Vec<_>>();
        let lin = |l: &Linear| Linear {
            weight: round(&l.weight),
            ..l.clone()
        };
        let query = match &self.query {
            QueryWeights::Direct { q_proj } => QueryWeights::Direct {
                q_proj: lin(q_proj),
            },
            QueryWeights::LowRank {
                q_a_proj,
                q_a_layernorm,
                q_b_proj,
            } => QueryWeights::LowRank {
                q_a_proj: lin(q_a_proj),
                q_a_layernorm: q_a_layernorm.clone(),
                q_b_proj: lin(q_b_proj),
            },
        };
        Ok(Self {
            query,
            kv_a_proj_with_mqa: lin(&self.kv_a_proj_with_mqa),
            kv_a_layernorm: self.kv_a_layernorm.clone(),
            kv_b_proj: round(&self.kv_b_proj),
            o_proj: lin(&self.o_proj),
            dtype,
        })
    }

    /// Every tensor under its Hugging Face name (without prefix), e.g. to write a safetensors file.
    pub fn named_tensors(&self) -> Vec<NamedTensor> {
        let mut out: Vec<NamedTensor> = Vec::new();
        let mut linear = |name: &str, l: &Linear| {
            out.push((
                format!("{name}.weight"),
                vec![l.out_features, l.in_features],
                l.weight.clone(),
            ));
            if let Some(b) = &l.bias {
                out.push((format!("{name}.bias"), vec![l.out_features], b.clone()));
            }
        };
        match &self.query {
            QueryWeights::Direct { q_proj } => linear("q_proj", q_proj),
            QueryWeights::LowRank {
                q_a_proj, q_b_proj, ..
            } => {
                linear("q_a_proj", q_a_proj);
                linear("q_b_proj", q_b_proj);
            }
        }
        linear("kv_a_proj_with_mqa", &self.kv_a_proj_with_mqa);
        linear("o_proj", &self.o_proj);
        if let QueryWeights::LowRank { q_a_layernorm, .. } = &self.query {
            out.push((
                "q_a_layernorm.weight".into(),
                vec![q_a_layernorm.len()],
                q_a_layernorm.clone(),
            ));
        }
        out.push((
            "kv_a_layernorm.weight".into(),
            vec![self.kv_a_layernorm.len()],
            self.kv_a_layernorm.clone(),
        ));
        let d_c = self.kv_a_layernorm.len();
        out.push((
            "kv_b_proj.weight".into(),
            vec![self.kv_b_proj.len() / d_c.max(1), d_c],
            self.kv_b_proj.clone(),
        ));
        out
    }

    /// Build from named tensors: `get(name)` returns (shape, values) or the missing-tensor
    /// error. Every shape is checked against `cfg`; the error names the tensor and the expected
    /// shape.
    pub fn from_lookup<'a>(
        cfg: &MlaConfig,
        get: impl Fn(&str) -> Result<(&'a [usize], &'a [f32])>,
    ) -> Result<Self> {
        cfg.validate()?;
        let fetch = |name: &str, spelled: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let (got, data) = get(name)?;
            if got != shape {
                return Err(Error::shape(name, format!("{spelled} = {shape:?}"), got));
            }
            Ok(data.to_vec())
        };
        let linear = |name: &str,
                      spelled_out: &str,
                      spelled_in: &str,
                      out: usize,
                      inp: usize,
                      bias: bool|
         -> Result<Linear> {
            let weight = fetch(
                &format!("{name}.weight"),
                &format!("[{spelled_out}, {spelled_in}]"),
                &[out, inp],
            )?;
            let bias = if bias {
                Some(fetch(
                    &format!("{name}.bias"),
                    &format!("[{spelled_out}] (attention_bias is true)"),
                    &[out],
                )?)
            } else {
                None
            };
            Ok(Linear {
                weight,
                bias,
                out_features: out,
                in_features: inp,
            })
        };
        let hidden = cfg.hidden_size;
        let bias = cfg.attention_bias;
        let query = match cfg.q_lora_rank {
            None => QueryWeights::Direct {
                q_proj: linear(
                    "q_proj",
                    "H·(nope + d_R)",
                    "hidden",
                    cfg.q_dim(),
                    hidden,
                    bias,
                )?,
            },
            Some(r) => QueryWeights::LowRank {
                q_a_proj: linear("q_a_proj", "q_lora_rank", "hidden", r, hidden, bias)?,
                q_a_layernorm: fetch("q_a_layernorm.weight", "[q_lora_rank]", &[r])?,
                q_b_proj: linear(
                    "q_b_proj",
                    "H·(nope + d_R)",
                    "q_lora_rank",
                    cfg.q_dim(),
                    r,
                    false,
                )?,
            },
        };
        let d_c = cfg.kv_lora_rank;
        let h = cfg.num_heads;
        Ok(Self {
            query,
            kv_a_proj_with_mqa: linear(
                "kv_a_proj_with_mqa",
                "d_c + d_R",
                "hidden",
                cfg.latent_dim(),
                hidden,
                bias,
            )?,
            kv_a_layernorm: fetch("kv_a_layernorm.weight", "[d_c]", &[d_c])?,
            kv_b_proj: fetch(
                "kv_b_proj.weight",
                "[H·(nope + v), d_c]",
                &[h * (cfg.qk_nope_head_dim + cfg.v_head_dim), d_c],
            )?,
            o_proj: linear("o_proj", "hidden", "H·v", hidden, h * cfg.v_head_dim, bias)?,
            dtype: DType::F32,
        })
    }

    /// Check the shapes against `cfg` (useful for weights built by hand).
    pub fn check(&self, cfg: &MlaConfig) -> Result<()> {
        let named = self.named_tensors();
        Self::from_lookup(cfg, |name| {
            named
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, s, d)| (s.as_slice(), d.as_slice()))
                .ok_or_else(|| Error::MissingTensor {
                    name: name.to_string(),
                    context: String::new(),
                })
        })
        .map(|_| ())
    }

    /// Load a layer from a safetensors file's tensors. Names may carry a
    /// `model.layers.<i>.self_attn.` prefix: with `layer` = Some(i) that prefix is used; with
    /// None, unprefixed names are used if present, else the one layer the file holds (a file
    /// with several layers needs `layer`). Missing or mis-shaped tensors are errors that name
    /// the tensor (with its prefix) and the expected shape.
    pub fn from_safetensors(
        st: &SafeTensors,
        cfg: &MlaConfig,
        layer: Option<usize>,
    ) -> Result<Self> {
        let prefix = match layer {
            Some(i) => format!("model.layers.{i}.self_attn."),
            None => find_prefix(st)?,
        };
        let mut w = Self::from_lookup(cfg, |name| {
            let t = st.get(&format!("{prefix}{name}"))?;
            Ok((t.shape.as_slice(), t.data.as_slice()))
        })?;
        // The matrices' common dtype; f32 when they differ (every value is exact in f32).
        let dtypes: Vec<DType> = w
            .named_tensors()
            .iter()
            .filter(|(n, _, _)| is_matrix(n))
            .filter_map(|(n, _, _)| st.optional(&format!("{prefix}{n}")).map(|t| t.dtype()))
            .collect();
        if let Some(&first) = dtypes.first() {
            if dtypes.iter().all(|&d| d == first) {
                w.dtype = first;
            }
        }
        Ok(w)
    }

    /// The tensors as [`HostTensor`]s under `prefix` + name, for [`crate::io::write_safetensors`]:
    /// the projection matrices in [`MlaWeights::dtype`], biases and norm vectors in f32.
    pub fn host_tensors(&self, prefix: &str) -> Result<Vec<(String, HostTensor)>> {
        self.named_tensors()
            .into_iter()
            .map(|(n, shape, data)| {
                let dtype = if is_matrix(&n) {
                    self.dtype
                } else {
                    DType::F32
                };
                Ok((
                    format!("{prefix}{n}"),
                    HostTensor::from_f32_as(&shape, dtype, &data)?,
                ))
            })
            .collect()
    }

    /// The query projection's rows for head h, nope part: W_UK\[h\] is rows
    /// `h·(nope + v) .. h·(nope + v) + nope` of kv_b_proj, each d_c wide.
    pub fn w_uk(&self, cfg: &MlaConfig, head: usize) -> &[f32] {
        let d_c = cfg.kv_lora_rank;
        let start = head * (cfg.qk_nope_head_dim + cfg.v_head_dim) * d_c;
        &self.kv_b_proj[start..start + cfg.qk_nope_head_dim * d_c]
    }

    /// W_UV\[h\]: rows `h·(nope + v) + nope .. (h + 1)·(nope + v)` of kv_b_proj, each d_c wide.
    pub fn w_uv(&self, cfg: &MlaConfig, head: usize) -> &[f32] {
        let d_c = cfg.kv_lora_rank;
        let start = (head * (cfg.qk_nope_head_dim + cfg.v_head_dim) + cfg.qk_nope_head_dim) * d_c;
        &self.kv_b_proj[start..start + cfg.v_head_dim * d_c]
    }
}

/// Whether `name` is a projection matrix (kept in the weights' dtype), not a bias or norm.
fn is_matrix(name: &str) -> bool {
    name.ends_with("proj.weight") || name.ends_with("proj_with_mqa.weight")
}

/// The name prefix of the layer a file holds: "" when `kv_a_proj_with_mqa.weight` is present
/// unprefixed, else the single `model.layers.<i>.self_attn.` found.
fn find_prefix(st: &SafeTensors) -> Result<String> {
    const KEY: &str = "kv_a_proj_with_mqa.weight";
    if st.optional(KEY).is_some() {
        return Ok(String::new());
    }
    let mut layers: Vec<(usize, String)> = st
        .names()
        .into_iter()
        .filter_map(|n| {
            let prefix = n.strip_suffix(KEY)?;
            let i = prefix
                .strip_prefix("model.layers.")?
                .strip_suffix(".self_attn.")?
                .parse()
                .ok()?;
            Some((i, prefix.to_string()))
        })
        .collect();
    layers.sort();
    match layers.len() {
        0 => {
            // The error of the unprefixed lookup names the file.
            st.get(KEY).map(|_| String::new()).map_err(|e| match e {
                Error::MissingTensor { name, context } => Error::MissingTensor {
                    name,
                    context: format!(
                        "{context} (looked for it with and without a model.layers.<i>.self_attn. prefix)"
                    ),
                },
                other => other,
            })
        }
        1 => Ok(layers.remove(0).1),
        _ => Err(Error::invalid(format!(
            "the weights hold {} attention layers ({}); choose one",
            layers.len(),
            layers
                .iter()
                .map(|(i, _)| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
