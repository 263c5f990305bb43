//! The CPU reference of a whole Mamba-1 language model (transformers' `MambaForCausalLM`), in
//! f64, one token at a time: the recurrent form, which is what the model's math is (the GPU's
//! prefill scan must equal it), so the same code serves one-shot runs, decode and `--device cpu`.
//!
//! Per token t and block (h the f64 residual stream, every weight widened from its stored dtype):
//! ```text
//! x, z   = split(in_proj · rmsnorm(h) (+ b))                       (D_in each)
//! x      = silu(conv1d over the last W inputs of x (+ b))           conv state: the last W−1 inputs
//! Δ_low, B, C = split(x_proj · x)                                   (R, N, N)
//! Δ      = softplus(dt_proj · Δ_low + dt_bias)
//! s[d,n] = exp(Δ[d]·A[d,n])·s[d,n] + Δ[d]·B[n]·x[d]                A = −exp(A_log)
//! y[d]   = (Σ_n s[d,n]·C[n] + D[d]·x[d]) · silu(z[d])
//! h      = h + out_proj · y (+ b)
//! ```
//! then logits = head · rmsnorm_f(h). RMSNorm: x / sqrt(mean(x²) + eps) · w.

use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::mamba::{MambaConfig, MambaWeights};
use crate::reference::selective_scan::{silu, softplus};

/// One sequence's recurrent state: per block, the conv state (D_in, W−1) and the SSM state
/// (D_in, N).
#[derive(Clone, Debug, PartialEq)]
pub struct MambaCpuState {
    /// Per block, the last W−1 conv inputs, (D_in, W−1) row-major, oldest first.
    pub conv: Vec<Vec<f64>>,
    /// Per block, the SSM state (D_in, N).
    pub ssm: Vec<Vec<f64>>,
}

/// The reference model over borrowed config and weights.
pub struct MambaCpuModel<'a> {
    cfg: &'a MambaConfig,
    w: &'a MambaWeights,
}

/// A stored tensor widened to f64.
pub(crate) fn wide(t: &HostTensor) -> Vec<f64> {
    t.to_f32().iter().map(|&x| x as f64).collect()
}

/// y = W·x (+ b), W (out, in) row-major.
pub(crate) fn linear(w: &HostTensor, b: Option<&HostTensor>, x: &[f64]) -> Vec<f64> {
    let (out, inp) = (w.shape[0], w.shape[1]);
    let wv = w.to_f32();
    (0..out)
        .map(|o| {
            let row = &wv[o * inp..(o + 1) * inp];
            let dot: f64 = row.iter().zip(x).map(|(&a, &b)| a as f64 * b).sum();
            dot + b.map_or(0.0, |b| b.to_f32()[o] as f64)
        })
        .collect()
}

/// x / sqrt(mean(x²) + eps) · w.
pub(crate) fn rmsnorm(x: &[f64], w: &HostTensor, eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps).sqrt();
    x.iter()
        .zip(w.to_f32())
        .map(|(&v, &g)| v * inv * g as f64)
        .collect()
}

impl<'a> MambaCpuModel<'a> {
    /// The model of `cfg` with `weights` (checked by [`MambaWeights::from_safetensors`] or made
    /// by [`MambaWeights::random`]).
    pub fn new(cfg: &'a MambaConfig, weights: &'a MambaWeights) -> Self {
        MambaCpuModel { cfg, w: weights }
    }

    /// A fresh (zero) state.
    pub fn new_state(&self) -> MambaCpuState {
        let c = self.cfg;
        let layers = c.num_hidden_layers;
        MambaCpuState {
            conv: vec![vec![0.0; c.intermediate_size * (c.conv_kernel - 1)]; layers],
            ssm: vec![vec![0.0; c.intermediate_size * c.state_size]; layers],
        }
    }

    /// Feed one token: updates `state`, returns the logits (vocab) of the next token.
    pub fn step(&self, state: &mut MambaCpuState, token: u32) -> Result<Vec<f64>> {
        let c = self.cfg;
        let (h_dim, di, n, r, wk) = (
            c.hidden_size,
            c.intermediate_size,
            c.state_size,
            c.time_step_rank,
            c.conv_kernel,
        );
        let tok = token as usize;
        if tok >= c.vocab_size {
            return Err(Error::invalid(format!(
                "token id {token} is outside the vocabulary (vocab_size {})",
                c.vocab_size
            )));
        }
        let emb = self.w.embeddings.to_f32();
        let mut h: Vec<f64> = emb[tok * h_dim..(tok + 1) * h_dim]
            .iter()
            .map(|&x| x as f64)
            .collect();
        for (l, lw) in self.w.layers.iter().enumerate() {
            let normed = rmsnorm(&h, &lw.norm, c.layer_norm_epsilon);
            let xz = linear(&lw.in_proj, lw.in_proj_bias.as_ref(), &normed);
            let (x_in, z) = xz.split_at(di);
            // Causal conv over (state, x): the window's last element is this token's input.
            let conv_w = wide(&lw.conv1d);
            let conv = &mut state.conv[l];
            let mut x = vec![0.0; di];
            for d in 0..di {
                let past = &mut conv[d * (wk - 1)..(d + 1) * (wk - 1)];
                let mut acc = lw
                    .conv1d_bias
                    .as_ref()
                    .map_or(0.0, |b| b.to_f32()[d] as f64);
                for k in 0..wk - 1 {
                    acc += conv_w[d * wk + k] * past[k];
                }
                acc += conv_w[d * wk + wk - 1] * x_in[d];
                past.rotate_left(1);
                past[wk - 2] = x_in[d];
                x[d] = silu(acc);
            }
            let xdbl = linear(&lw.x_proj, None, &x);
            let (dt_low, bc) = xdbl.split_at(r);
            let (bv, cv) = bc.split_at(n);
            let dt_lin = linear(&lw.dt_proj, Some(&lw.dt_proj_bias), dt_low);
            let a_log = lw.a_log.to_f32();
            let dskip = lw.d.to_f32();
            let s = &mut state.ssm[l];
            let mut y = vec![0.0; di];
            for d in 0..di {
                let dt = softplus(dt_lin[d]);
                let mut acc = 0.0;
                for j in 0..n {
                    let a = -(a_log[d * n + j] as f64).exp();
                    let sv = &mut s[d * n + j];
                    *sv = (dt * a).exp() * *sv + dt * bv[j] * x[d];
                    acc += *sv * cv[j];
                }
                y[d] = (acc + dskip[d] as f64 * x[d]) * silu(z[d]);
            }
            let out = linear(&lw.out_proj, lw.out_proj_bias.as_ref(), &y);
            for (hv, o) in h.iter_mut().zip(out) {
                *hv += o;
            }
        }
        let hf = rmsnorm(&h, &self.w.norm_f, c.layer_norm_epsilon);
        Ok(linear(self.w.head(), None, &hf))
    }

    /// Logits (L, vocab) of every position of `tokens`, from a fresh state; the final state is
    /// returned too, so decoding can go on from it.
    pub fn forward(&self, tokens: &[u32]) -> Result<(Vec<f64>, MambaCpuState)> {
        let mut state = self.new_state();
        let mut logits = Vec::with_capacity(tokens.len() * self.cfg.vocab_size);
        for &t in tokens {
            logits.extend(self.step(&mut state, t)?);
        }
        Ok((logits, state))
    }
}
