//! The weights of a Mamba-2 language model under transformers' names, each tensor in the dtype
//! its file stores (f32, f16 or bf16): read from a checkpoint with every shape checked against
//! the config, or made at random for tests and benchmarks, and written back as a Hugging Face
//! directory.
//!
//! ```text
//! backbone.embeddings.weight            (vocab, hidden)     (mamba_ssm's `embedding` accepted)
//! backbone.layers.{i}.norm.weight       (hidden)
//! backbone.layers.{i}.mixer.in_proj     (d_inner + conv_dim + H, hidden) [+ bias]   z | xBC | dt
//! backbone.layers.{i}.mixer.conv1d      (conv_dim, 1, W) [+ bias (conv_dim)]
//! backbone.layers.{i}.mixer.dt_bias     (H)
//! backbone.layers.{i}.mixer.A_log       (H)                 A = −exp(A_log), one per head
//! backbone.layers.{i}.mixer.D           (H)
//! backbone.layers.{i}.mixer.norm.weight (d_inner)           the gated RMSNorm
//! backbone.layers.{i}.mixer.out_proj    (hidden, d_inner) [+ bias]
//! backbone.norm_f.weight                (hidden)
//! lm_head.weight                        (vocab, hidden), absent when tied to the embeddings
//! ```

use crate::error::{Error, Result};
use crate::io::{HostTensor, SafeTensors};
use crate::mamba2::config::Mamba2Config;
use crate::rng::Rng;
use crate::runtime::DType;
use std::path::Path;

/// One block's weights (shapes as in the module docs; conv1d's is kept as (conv_dim, W)).
#[derive(Clone, Debug, PartialEq)]
pub struct Mamba2LayerWeights {
    /// The block's RMSNorm weight (hidden).
    pub norm: HostTensor,
    /// in_proj weight (d_inner + conv_dim + H, hidden); [`Mamba2Config::in_proj_split`] gives
    /// its row ranges.
    pub in_proj: HostTensor,
    /// in_proj bias (d_inner + conv_dim + H) when `use_bias`.
    pub in_proj_bias: Option<HostTensor>,
    /// Depthwise conv weight (conv_dim, W).
    pub conv1d: HostTensor,
    /// Conv bias (conv_dim) when `use_conv_bias`.
    pub conv1d_bias: Option<HostTensor>,
    /// dt_bias (H), added to dt before softplus.
    pub dt_bias: HostTensor,
    /// A_log (H).
    pub a_log: HostTensor,
    /// D (H): the skip y += D·x, one value per head.
    pub d: HostTensor,
    /// The gated RMSNorm's weight (d_inner).
    pub gated_norm: HostTensor,
    /// out_proj weight (hidden, d_inner).
    pub out_proj: HostTensor,
    /// out_proj bias (hidden) when `use_bias`.
    pub out_proj_bias: Option<HostTensor>,
}

/// A whole model's weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Mamba2Weights {
    /// Token embeddings (vocab, hidden).
    pub embeddings: HostTensor,
    /// The blocks, first to last.
    pub layers: Vec<Mamba2LayerWeights>,
    /// Final RMSNorm weight (hidden).
    pub norm_f: HostTensor,
    /// LM head (vocab, hidden); None when tied to the embeddings.
    pub lm_head: Option<HostTensor>,
}

fn layer_name(i: usize, what: &str) -> String {
    format!("backbone.layers.{i}.{what}")
}

fn take(file: &SafeTensors, name: &str, spelled: &str, shape: &[usize]) -> Result<HostTensor> {
    let t = file.get(name)?;
    t.expect(name, spelled, shape)?;
    Ok(t.clone())
}

fn take_opt(
    file: &SafeTensors,
    wanted: bool,
    name: &str,
    spelled: &str,
    shape: &[usize],
) -> Result<Option<HostTensor>> {
    match (wanted, file.optional(name)) {
        (true, _) => take(file, name, spelled, shape).map(Some),
        (false, None) => Ok(None),
        (false, Some(_)) => Err(Error::invalid(format!(
            "tensor `{name}` is present but the config says there is none (use_bias / \
             use_conv_bias is false)"
        ))),
    }
}

impl Mamba2Weights {
    /// Read every tensor the config calls for from `file` (a checkpoint's tensors), checking
    /// names and shapes; errors name the tensor and the shape it should have.
    pub fn from_safetensors(cfg: &Mamba2Config, file: &SafeTensors) -> Result<Self> {
        let (h, di, cd, nh, w) = (
            cfg.hidden_size,
            cfg.d_inner(),
            cfg.conv_dim(),
            cfg.num_heads,
            cfg.conv_kernel,
        );
        let width = cfg.in_proj_split().width;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let m = |what: &str| layer_name(i, &format!("mixer.{what}"));
            let proj = "(d_inner + conv_dim + H, hidden)";
            let conv = take(file, &m("conv1d.weight"), "(conv_dim, 1, W)", &[cd, 1, w])?;
            layers.push(Mamba2LayerWeights {
                norm: take(file, &layer_name(i, "norm.weight"), "(hidden)", &[h])?,
                in_proj: take(file, &m("in_proj.weight"), proj, &[width, h])?,
                in_proj_bias: take_opt(
                    file,
                    cfg.use_bias,
                    &m("in_proj.bias"),
                    "(d_inner + conv_dim + H)",
                    &[width],
                )?,
                conv1d: conv.reshaped(&[cd, w])?,
                conv1d_bias: take_opt(
                    file,
                    cfg.use_conv_bias,
                    &m("conv1d.bias"),
                    "(conv_dim)",
                    &[cd],
                )?,
                dt_bias: take(file, &m("dt_bias"), "(H)", &[nh])?,
                a_log: take(file, &m("A_log"), "(H)", &[nh])?,
                d: take(file, &m("D"), "(H)", &[nh])?,
                gated_norm: take(file, &m("norm.weight"), "(d_inner)", &[di])?,
                out_proj: take(file, &m("out_proj.weight"), "(hidden, d_inner)", &[h, di])?,
                out_proj_bias: take_opt(file, cfg.use_bias, &m("out_proj.bias"), "(hidden)", &[h])?,
            });
        }
        let vh = [cfg.vocab_size, h];
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(take(file, "lm_head.weight", "(vocab, hidden)", &vh)?)
        };
        // Checkpoints converted from mamba_ssm spell it `embedding`; transformers renames it on
        // load the same way.
        let emb_name = match (
            file.optional("backbone.embeddings.weight"),
            file.optional("backbone.embedding.weight"),
        ) {
            (None, Some(_)) => "backbone.embedding.weight",
            _ => "backbone.embeddings.weight",
        };
        Ok(Mamba2Weights {
            embeddings: take(file, emb_name, "(vocab, hidden)", &vh)?,
            layers,
            norm_f: take(file, "backbone.norm_f.weight", "(hidden)", &[h])?,
            lm_head,
        })
    }

    /// Random weights of the config's shapes stored as `dtype` (F32, F16 or BF16): projections
    /// N(0, 1/in), norms near 1, mamba_ssm's initialisation for A (A_log = ln of a uniform draw
    /// in [1, 16] per head), D near 1 and dt_bias (softplus⁻¹ of a dt log-uniform in
    /// [1e-3, 1e-1]).
    pub fn random(cfg: &Mamba2Config, rng: &mut Rng, dtype: DType) -> Result<Self> {
        let (h, di, cd, nh, w) = (
            cfg.hidden_size,
            cfg.d_inner(),
            cfg.conv_dim(),
            cfg.num_heads,
            cfg.conv_kernel,
        );
        let width = cfg.in_proj_split().width;
        let t = |shape: &[usize], vals: Vec<f32>| HostTensor::from_f32_as(shape, dtype, &vals);
        let lin = |rng: &mut Rng, out: usize, inp: usize| {
            rng.normal_vec(out * inp, 0.0, 1.0 / (inp as f64).sqrt())
        };
        let bias = |rng: &mut Rng, wanted: bool, n: usize| {
            wanted
                .then(|| t(&[n], rng.normal_vec(n, 0.0, 0.1)))
                .transpose()
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for _ in 0..cfg.num_hidden_layers {
            let dt_bias: Vec<f32> = (0..nh)
                .map(|_| {
                    let dt = (rng.range(1e-3f64.ln(), 1e-1f64.ln())).exp();
                    (dt + (-(-dt).exp_m1()).ln()) as f32 // softplus⁻¹(dt) = dt + ln(1 − e^−dt)
                })
                .collect();
            let a_log = (0..nh).map(|_| rng.range(1.0, 16.0).ln() as f32).collect();
            layers.push(Mamba2LayerWeights {
                norm: t(&[h], rng.normal_vec(h, 1.0, 0.1))?,
                in_proj: t(&[width, h], lin(rng, width, h))?,
                in_proj_bias: bias(rng, cfg.use_bias, width)?,
                conv1d: t(&[cd, w], rng.uniform_vec(cd * w, -0.5, 0.5))?,
                conv1d_bias: bias(rng, cfg.use_conv_bias, cd)?,
                dt_bias: t(&[nh], dt_bias)?,
                a_log: t(&[nh], a_log)?,
                d: t(&[nh], rng.normal_vec(nh, 1.0, 0.1))?,
                gated_norm: t(&[di], rng.normal_vec(di, 1.0, 0.1))?,
                out_proj: t(&[h, di], lin(rng, h, di))?,
                out_proj_bias: bias(rng, cfg.use_bias, h)?,
            });
        }
        let v = cfg.vocab_size;
        Ok(Mamba2Weights {
            embeddings: t(&[v, h], rng.normal_vec(v * h, 0.0, 1.0))?,
            layers,
            norm_f: t(&[h], rng.normal_vec(h, 1.0, 0.1))?,
            lm_head: (!cfg.tie_word_embeddings)
                .then(|| t(&[v, h], rng.normal_vec(v * h, 0.0, 1.0 / (h as f64).sqrt())))
                .transpose()?,
        })
    }

    /// The LM head matrix (vocab, hidden): lm_head, or the embeddings when tied.
    pub fn head(&self) -> &HostTensor {
        self.lm_head.as_ref().unwrap_or(&self.embeddings)
    }

    /// Every tensor under its transformers name (conv1d back in (conv_dim, 1, W)).
    pub fn named_tensors(&self) -> Vec<(String, HostTensor)> {
        let mut out = vec![(
            "backbone.embeddings.weight".to_string(),
            self.embeddings.clone(),
        )];
        for (i, l) in self.layers.iter().enumerate() {
            let m = |what: &str| layer_name(i, &format!("mixer.{what}"));
            let conv = l
                .conv1d
                .reshaped(&[l.conv1d.shape[0], 1, l.conv1d.shape[1]])
                .expect("same element count");
            out.push((layer_name(i, "norm.weight"), l.norm.clone()));
            out.push((m("in_proj.weight"), l.in_proj.clone()));
            if let Some(b) = &l.in_proj_bias {
                out.push((m("in_proj.bias"), b.clone()));
            }
            out.push((m("conv1d.weight"), conv));
            if let Some(b) = &l.conv1d_bias {
                out.push((m("conv1d.bias"), b.clone()));
            }
            out.push((m("dt_bias"), l.dt_bias.clone()));
            out.push((m("A_log"), l.a_log.clone()));
            out.push((m("D"), l.d.clone()));
            out.push((m("norm.weight"), l.gated_norm.clone()));
            out.push((m("out_proj.weight"), l.out_proj.clone()));
            if let Some(b) = &l.out_proj_bias {
                out.push((m("out_proj.bias"), b.clone()));
            }
        }
        out.push(("backbone.norm_f.weight".to_string(), self.norm_f.clone()));
        if let Some(head) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), head.clone()));
        }
        out
    }

    /// Write a Hugging Face directory: `config.json` (from `cfg`) and `model.safetensors`.
    pub fn write_dir(&self, cfg: &Mamba2Config, dir: &Path) -> Result<()> {
        crate::checkpoint::write_dir(dir, &cfg.to_json(), &self.named_tensors())
    }
}
