//! The weights of a Mamba-1 language model under transformers' names, each tensor in the dtype
//! its file stores (f32, f16 or bf16): read from a checkpoint with every shape checked against
//! the config, or made at random for tests and benchmarks, and written back as a Hugging Face
//! directory.
//!
//! ```text
//! backbone.embeddings.weight            (vocab, hidden)
//! backbone.layers.{i}.norm.weight       (hidden)
//! backbone.layers.{i}.mixer.in_proj     (2·D_in, hidden) [+ bias]   x = rows 0..D_in, z = the rest
//! backbone.layers.{i}.mixer.conv1d      (D_in, 1, W) [+ bias (D_in)]
//! backbone.layers.{i}.mixer.x_proj      (R + 2N, D_in)              Δ_low = rows 0..R, B, C
//! backbone.layers.{i}.mixer.dt_proj     (D_in, R) + bias (D_in)
//! backbone.layers.{i}.mixer.A_log       (D_in, N)                   A = −exp(A_log)
//! backbone.layers.{i}.mixer.D           (D_in)
//! backbone.layers.{i}.mixer.out_proj    (hidden, D_in) [+ bias]
//! backbone.norm_f.weight                (hidden)
//! lm_head.weight                        (vocab, hidden), absent when tied to the embeddings
//! ```

use crate::error::{Error, Result};
use crate::io::{HostTensor, SafeTensors};
use crate::mamba::config::MambaConfig;
use crate::rng::Rng;
use crate::runtime::DType;
use std::path::Path;

/// One block's weights (shapes as in the module docs; conv1d's is kept as (D_in, W)).
#[derive(Clone, Debug, PartialEq)]
pub struct MambaLayerWeights {
    /// RMSNorm weight (hidden).
    pub norm: HostTensor,
    /// in_proj weight (2·D_in, hidden).
    pub in_proj: HostTensor,
    /// in_proj bias (2·D_in) when `use_bias`.
    pub in_proj_bias: Option<HostTensor>,
    /// Depthwise conv weight (D_in, W).
    pub conv1d: HostTensor,
    /// Conv bias (D_in) when `use_conv_bias`.
    pub conv1d_bias: Option<HostTensor>,
    /// x_proj weight (R + 2N, D_in).
    pub x_proj: HostTensor,
    /// dt_proj weight (D_in, R).
    pub dt_proj: HostTensor,
    /// dt_proj bias (D_in): the scan's delta_bias.
    pub dt_proj_bias: HostTensor,
    /// A_log (D_in, N).
    pub a_log: HostTensor,
    /// D (D_in).
    pub d: HostTensor,
    /// out_proj weight (hidden, D_in).
    pub out_proj: HostTensor,
    /// out_proj bias (hidden) when `use_bias`.
    pub out_proj_bias: Option<HostTensor>,
}

/// A whole model's weights.
#[derive(Clone, Debug, PartialEq)]
pub struct MambaWeights {
    /// Token embeddings (vocab, hidden).
    pub embeddings: HostTensor,
    /// The blocks, first to last.
    pub layers: Vec<MambaLayerWeights>,
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

impl MambaWeights {
    /// Read every tensor the config calls for from `file` (a checkpoint's tensors), checking
    /// names and shapes; errors name the tensor and the shape it should have.
    pub fn from_safetensors(cfg: &MambaConfig, file: &SafeTensors) -> Result<Self> {
        let (h, di, n, r, w) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.state_size,
            cfg.time_step_rank,
            cfg.conv_kernel,
        );
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let m = |what: &str| layer_name(i, &format!("mixer.{what}"));
            let conv = take(file, &m("conv1d.weight"), "(D_in, 1, W)", &[di, 1, w])?;
            layers.push(MambaLayerWeights {
                norm: take(file, &layer_name(i, "norm.weight"), "(hidden)", &[h])?,
                in_proj: take(file, &m("in_proj.weight"), "(2·D_in, hidden)", &[2 * di, h])?,
                in_proj_bias: take_opt(
                    file,
                    cfg.use_bias,
                    &m("in_proj.bias"),
                    "(2·D_in)",
                    &[2 * di],
                )?,
                conv1d: conv.reshaped(&[di, w])?,
                conv1d_bias: take_opt(file, cfg.use_conv_bias, &m("conv1d.bias"), "(D_in)", &[di])?,
                x_proj: take(
                    file,
                    &m("x_proj.weight"),
                    "(R + 2N, D_in)",
                    &[r + 2 * n, di],
                )?,
                dt_proj: take(file, &m("dt_proj.weight"), "(D_in, R)", &[di, r])?,
                dt_proj_bias: take(file, &m("dt_proj.bias"), "(D_in)", &[di])?,
                a_log: take(file, &m("A_log"), "(D_in, N)", &[di, n])?,
                d: take(file, &m("D"), "(D_in)", &[di])?,
                out_proj: take(file, &m("out_proj.weight"), "(hidden, D_in)", &[h, di])?,
                out_proj_bias: take_opt(file, cfg.use_bias, &m("out_proj.bias"), "(hidden)", &[h])?,
            });
        }
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(take(
                file,
                "lm_head.weight",
                "(vocab, hidden)",
                &[cfg.vocab_size, h],
            )?)
        };
        Ok(MambaWeights {
            embeddings: take(
                file,
                "backbone.embeddings.weight",
                "(vocab, hidden)",
                &[cfg.vocab_size, h],
            )?,
            layers,
            norm_f: take(file, "backbone.norm_f.weight", "(hidden)", &[h])?,
            lm_head,
        })
    }

    /// Random weights of the config's shapes stored as `dtype` (F32, F16 or BF16): projections
    /// N(0, 1/in), norms near 1, Mamba's own initialisation for A (S4D-real: A_log[d, n] =
    /// ln(n + 1)), D = 1 and Δ's bias (softplus⁻¹ of a Δ log-uniform in [1e-3, 1e-1]).
    pub fn random(cfg: &MambaConfig, rng: &mut Rng, dtype: DType) -> Result<Self> {
        let (h, di, n, r, w) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.state_size,
            cfg.time_step_rank,
            cfg.conv_kernel,
        );
        let t = |shape: &[usize], vals: Vec<f32>| HostTensor::from_f32_as(shape, dtype, &vals);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for _ in 0..cfg.num_hidden_layers {
            let lin = |rng: &mut Rng, out: usize, inp: usize| {
                rng.normal_vec(out * inp, 0.0, 1.0 / (inp as f64).sqrt())
            };
            let dt_bias: Vec<f32> = (0..di)
                .map(|_| {
                    let dt = (rng.range(1e-3f64.ln(), 1e-1f64.ln())).exp();
                    (dt + (-(-dt).exp_m1()).ln()) as f32 // softplus⁻¹(dt) = dt + ln(1 − e^−dt)
                })
                .collect();
            let a_log = (0..di * n).map(|i| ((i % n) as f32 + 1.0).ln()).collect();
            layers.push(MambaLayerWeights {
                norm: t(&[h], rng.normal_vec(h, 1.0, 0.1))?,
                in_proj: t(&[2 * di, h], lin(rng, 2 * di, h))?,
                in_proj_bias: cfg
                    .use_bias
                    .then(|| t(&[2 * di], rng.normal_vec(2 * di, 0.0, 0.1)))
                    .transpose()?,
                conv1d: t(&[di, w], rng.uniform_vec(di * w, -0.5, 0.5))?,
                conv1d_bias: cfg
                    .use_conv_bias
                    .then(|| t(&[di], rng.normal_vec(di, 0.0, 0.1)))
                    .transpose()?,
                x_proj: t(&[r + 2 * n, di], lin(rng, r + 2 * n, di))?,
                dt_proj: t(&[di, r], lin(rng, di, r))?,
                dt_proj_bias: t(&[di], dt_bias)?,
                a_log: t(&[di, n], a_log)?,
                d: t(&[di], vec![1.0; di])?,
                out_proj: t(&[h, di], lin(rng, h, di))?,
                out_proj_bias: cfg
                    .use_bias
                    .then(|| t(&[h], rng.normal_vec(h, 0.0, 0.1)))
                    .transpose()?,
            });
        }
        let v = cfg.vocab_size;
        Ok(MambaWeights {
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

    /// Every tensor under its transformers name (conv1d back in (D_in, 1, W)).
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
            out.push((m("x_proj.weight"), l.x_proj.clone()));
            out.push((m("dt_proj.weight"), l.dt_proj.clone()));
            out.push((m("dt_proj.bias"), l.dt_proj_bias.clone()));
            out.push((m("A_log"), l.a_log.clone()));
            out.push((m("D"), l.d.clone()));
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
    pub fn write_dir(&self, cfg: &MambaConfig, dir: &Path) -> Result<()> {
        crate::checkpoint::write_dir(dir, &cfg.to_json(), &self.named_tensors())
    }
}
