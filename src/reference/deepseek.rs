//! The CPU reference of a whole DeepSeek-V2/V3 language model (transformers'
//! `DeepseekV2ForCausalLM` / `DeepseekV3ForCausalLM`), in f64, over a per-sequence latent cache,
//! so one code path serves one-shot runs, chunked prefill and one-token decode.
//!
//! For the S new tokens of a sequence that holds P (h the f64 residual stream, rows (S, hidden)):
//! ```text
//! h = embed_tokens[tokens]
//! per layer i:
//!   h += MLA(rmsnorm(h) · input_layernorm)            positions P..P+S, causal over the cache
//!   h += MLP(rmsnorm(h) · post_attention_layernorm)   dense SwiGLU (i < first_k_dense_replace)
//!                                                     or the MoE (reference::moe::moe)
//! logits = head · (rmsnorm(h) · norm)
//! ```
//! The attention is the absorbed form of [`crate::reference::mla::absorbed_step`], which equals
//! transformers' decompressed one (tests/mla.rs checks the identity); its cache holds, per layer
//! and token, c (d_c) and the rotated k_rope (d_R). Nothing is rounded to f32 between layers.

use crate::deepseek::{DeepseekConfig, DeepseekMlp, DeepseekWeights};
use crate::error::{Error, Result};
use crate::reference::matmul::linear;
use crate::reference::mla::absorbed_step;
use crate::reference::moe::{moe, swiglu};
use crate::reference::rmsnorm::rmsnorm_row;

/// One sequence's cache: per layer, the latent rows (d_c + d_R) of every token fed so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeepseekCpuState {
    /// Per layer, (tokens, d_c + d_R) row-major.
    pub latents: Vec<Vec<f64>>,
    /// Tokens fed so far (the next token's position).
    pub len: usize,
}

/// The reference model over borrowed config and weights.
pub struct DeepseekCpuModel<'a> {
    cfg: &'a DeepseekConfig,
    w: &'a DeepseekWeights,
}

impl<'a> DeepseekCpuModel<'a> {
    /// The model of `cfg` with `weights` (checked by [`DeepseekWeights::from_safetensors`] or
    /// made by [`DeepseekWeights::random`]).
    pub fn new(cfg: &'a DeepseekConfig, weights: &'a DeepseekWeights) -> Self {
        DeepseekCpuModel { cfg, w: weights }
    }

    /// An empty cache (a sequence before its first token).
    pub fn new_state(&self) -> DeepseekCpuState {
        DeepseekCpuState {
            latents: vec![Vec::new(); self.cfg.num_hidden_layers],
            len: 0,
        }
    }

    /// Feed `tokens` after what `state` holds (all at once: a prefill, or a decode step when
    /// there is one); returns the logits of every fed position ((S, vocab) row-major), or with
    /// `last_only` of the last one only.
    pub fn forward(
        &self,
        state: &mut DeepseekCpuState,
        tokens: &[u32],
        last_only: bool,
    ) -> Result<Vec<f64>> {
        let c = self.cfg;
        let (hid, vocab, s) = (c.hidden_size, c.vocab_size, tokens.len());
        if s == 0 {
            return Err(Error::invalid("no tokens to feed"));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::invalid(format!(
                "token id {t} is outside the vocabulary (vocab_size {vocab})"
            )));
        }
        if state.latents.len() != c.num_hidden_layers {
            return Err(Error::invalid(format!(
                "the state holds {} layers, the model {}",
                state.latents.len(),
                c.num_hidden_layers
            )));
        }
        let eps = c.rms_norm_eps;
        let norm_rows = |h: &[f64], w: &[f32]| -> Vec<f64> {
            h.chunks(hid).flat_map(|r| rmsnorm_row(r, w, eps)).collect()
        };
        let mut h: Vec<f64> = tokens
            .iter()
            .flat_map(|&t| &self.w.embed_tokens[t as usize * hid..(t as usize + 1) * hid])
            .map(|&x| x as f64)
            .collect();
        let moe_cfg = c.moe_config();
        for (lw, cache) in self.w.layers.iter().zip(state.latents.iter_mut()) {
            let x = norm_rows(&h, &lw.input_layernorm);
            let attn = absorbed_step(
                &c.attention,
                &lw.attention,
                std::slice::from_mut(cache),
                &x,
                s,
            );
            h.iter_mut().zip(&attn).for_each(|(a, b)| *a += b);
            let x = norm_rows(&h, &lw.post_attention_layernorm);
            let y = match &lw.mlp {
                DeepseekMlp::Dense(w) => x
                    .chunks(hid)
                    .flat_map(|row| swiglu(w, hid, c.intermediate_size, row))
                    .collect(),
                DeepseekMlp::Moe(w) => moe(&moe_cfg, w, &x),
            };
            h.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
        }
        state.len += s;
        let rows = if last_only {
            &h[(s - 1) * hid..]
        } else {
            &h[..]
        };
        let x = norm_rows(rows, &self.w.norm);
        Ok(linear(&x, x.len() / hid, hid, self.w.head(), vocab, None))
    }

    /// Logits (L, vocab) of every position of `tokens` from an empty cache, and the cache
    /// after them, so decoding can go on from it.
    pub fn run(&self, tokens: &[u32]) -> Result<(Vec<f64>, DeepseekCpuState)> {
        let mut state = self.new_state();
        let logits = self.forward(&mut state, tokens, false)?;
        Ok((logits, state))
    }
}
