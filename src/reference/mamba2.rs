//! The CPU reference of a whole Mamba-2 language model (transformers' `Mamba2ForCausalLM`), in
//! f64, one token at a time: the recurrent form, which the chunked SSD scan must equal, so the
//! same code serves one-shot runs, decode and `--device cpu`.
//!
//! Per token and block (h the f64 residual stream, every weight widened from its stored dtype;
//! H heads of P channels, G groups of N states, head k reading group k / (H/G)):
//! ```text
//! z, xBC, dt = split(in_proj · rmsnorm(h) (+ b))                (d_inner, conv_dim, H)
//! xBC    = silu(conv1d over the last W inputs of xBC (+ b))      conv state: the last W−1 inputs
//! x, B, C = split(xBC)                                           (d_inner, G·N, G·N)
//! dt[k]  = clamp(softplus(dt[k] + dt_bias[k]), time_step_limit)  A[k] = −exp(A_log[k])
//! s[k,p,n] = exp(dt[k]·A[k])·s[k,p,n] + dt[k]·x[k,p]·B[g,n]
//! y[k,p] = Σ_n C[g,n]·s[k,p,n] + D[k]·x[k,p]
//! y      = rmsnorm per group of d_inner/G channels (y·silu(z)) · norm.weight   (gate first)
//! h      = h + out_proj · y (+ b)
//! ```
//! then logits = head · rmsnorm_f(h). The clamp of dt is applied on every token: transformers
//! (and mamba_ssm) skip it in their one-token decode step but apply it in the chunked scan, so
//! with a finite `time_step_limit` their decode disagrees with their own prefill; this model
//! keeps the one-shot semantics for both.

use crate::error::{Error, Result};
use crate::mamba2::{Mamba2Config, Mamba2Weights};
use crate::reference::mamba::{linear, rmsnorm, wide};
use crate::reference::selective_scan::{silu, softplus};

/// One sequence's recurrent state: per block, the conv state and the SSM state.
#[derive(Clone, Debug, PartialEq)]
pub struct Mamba2CpuState {
    /// Per block, the last W−1 inputs of the conv, (conv_dim, W−1) row-major, oldest first
    /// (transformers' conv state without its newest column, which it only keeps to shift).
    pub conv: Vec<Vec<f64>>,
    /// Per block, the SSM state (H, P, N) row-major (transformers' recurrent state).
    pub ssm: Vec<Vec<f64>>,
}

/// The reference model over borrowed config and weights.
pub struct Mamba2CpuModel<'a> {
    cfg: &'a Mamba2Config,
    w: &'a Mamba2Weights,
}

/// Mamba2RMSNormGated: y·silu(z), then RMS over each group of `group` channels, times `weight`.
fn gated_rmsnorm(y: &mut [f64], z: &[f64], weight: &[f64], group: usize, eps: f64) {
    for (v, &g) in y.iter_mut().zip(z) {
        *v *= silu(g);
    }
    for (ys, ws) in y.chunks_mut(group).zip(weight.chunks(group)) {
        let ms = ys.iter().map(|v| v * v).sum::<f64>() / group as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        for (v, &g) in ys.iter_mut().zip(ws) {
            *v *= inv * g;
        }
    }
}

impl<'a> Mamba2CpuModel<'a> {
    /// The model of `cfg` with `weights` (checked by [`Mamba2Weights::from_safetensors`] or
    /// made by [`Mamba2Weights::random`]).
    pub fn new(cfg: &'a Mamba2Config, weights: &'a Mamba2Weights) -> Self {
        Mamba2CpuModel { cfg, w: weights }
    }

    /// A fresh (zero) state.
    pub fn new_state(&self) -> Mamba2CpuState {
        let c = self.cfg;
        let layers = c.num_hidden_layers;
        Mamba2CpuState {
            conv: vec![vec![0.0; c.conv_dim() * (c.conv_kernel - 1)]; layers],
            ssm: vec![vec![0.0; c.d_inner() * c.state_size]; layers],
        }
    }

    /// Feed one token: updates `state`, returns the logits (vocab) of the next token.
    pub fn step(&self, state: &mut Mamba2CpuState, token: u32) -> Result<Vec<f64>> {
        let c = self.cfg;
        let (h_dim, di, cd, wk) = (c.hidden_size, c.d_inner(), c.conv_dim(), c.conv_kernel);
        let (nh, p, n) = (c.num_heads, c.head_dim, c.state_size);
        let heads_per_group = nh / c.n_groups;
        let split = c.in_proj_split();
        let (lo, hi) = c.time_step_limit;
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
            let proj = linear(&lw.in_proj, lw.in_proj_bias.as_ref(), &normed);
            let z = &proj[split.z..split.z + di];
            let xbc_in = &proj[split.xbc..split.xbc + cd];
            let dt_in = &proj[split.dt..split.dt + nh];
            // Causal depthwise conv over (state, input): the window's last tap is this token's.
            let conv_w = wide(&lw.conv1d);
            let conv_b = lw.conv1d_bias.as_ref().map(wide);
            let conv = &mut state.conv[l];
            let mut xbc = vec![0.0; cd];
            for ch in 0..cd {
                let past = &mut conv[ch * (wk - 1)..(ch + 1) * (wk - 1)];
                let mut acc = conv_b.as_ref().map_or(0.0, |b| b[ch]);
                for k in 0..wk - 1 {
                    acc += conv_w[ch * wk + k] * past[k];
                }
                acc += conv_w[ch * wk + wk - 1] * xbc_in[ch];
                past.rotate_left(1);
                past[wk - 2] = xbc_in[ch];
                xbc[ch] = silu(acc);
            }
            let x = &xbc[..di];
            let bv = &xbc[split.b..split.b + c.n_groups * n];
            let cv = &xbc[split.c..split.c + c.n_groups * n];
            let (dt_bias, a_log, dskip) = (wide(&lw.dt_bias), wide(&lw.a_log), wide(&lw.d));
            let s = &mut state.ssm[l];
            let mut y = vec![0.0; di];
            for k in 0..nh {
                let g = k / heads_per_group;
                let dt = softplus(dt_in[k] + dt_bias[k]).clamp(lo, hi);
                let decay = (dt * -a_log[k].exp()).exp();
                let (bg, cg) = (&bv[g * n..(g + 1) * n], &cv[g * n..(g + 1) * n]);
                for q in 0..p {
                    let xv = x[k * p + q];
                    let row = &mut s[(k * p + q) * n..(k * p + q + 1) * n];
                    let mut acc = 0.0;
                    for ((sv, &b), &cc) in row.iter_mut().zip(bg).zip(cg) {
                        *sv = decay * *sv + dt * xv * b;
                        acc += cc * *sv;
                    }
                    y[k * p + q] = acc + dskip[k] * xv;
                }
            }
            let weight = wide(&lw.gated_norm);
            gated_rmsnorm(
                &mut y,
                z,
                &weight,
                c.norm_group_size(),
                c.layer_norm_epsilon,
            );
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
    pub fn forward(&self, tokens: &[u32]) -> Result<(Vec<f64>, Mamba2CpuState)> {
        let mut state = self.new_state();
        let mut logits = Vec::with_capacity(tokens.len() * self.cfg.vocab_size);
        for &t in tokens {
            logits.extend(self.step(&mut state, t)?);
        }
        Ok((logits, state))
    }
}
