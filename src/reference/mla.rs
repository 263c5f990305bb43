//! CPU reference of a whole DeepSeek MLA layer, in f64, in both forms:
//!
//! - naive: k_j = [W_UK c_j ; k_rope_j], v_j = W_UV c_j per head, causal softmax attention,
//!   o_proj — what `DeepseekV3Attention` computes;
//! - absorbed: q_lat = W_UKᵀ q_nope (d_c per head), score_j = q_lat·c_j + q_rope·k_rope_j,
//!   o_lat = Σ_j p_j c_j, o = W_UV o_lat, o_proj — what the GPU layer computes from the latent
//!   cache, one latent row [c | k_rope] (d_c + d_R) per token.
//!
//! Layouts: hidden states (Bt, S, hidden) row-major; q (T, H, nope + d_R); latent (T, d_c + d_R).
//! RoPE rotates (x\[2i\], x[2i+1]) in place when `rope_interleave` (HF's interleaved variant
//! produces the same values in a de-interleaved order, a fixed permutation that leaves every
//! score unchanged).
//!
//! [`MlaCpuLayer`] runs the absorbed form as a layer with a per-sequence latent cache (prefill
//! and decode), the CPU counterpart of the GPU layer.

use crate::error::{Error, Result};
use crate::mla::config::MlaConfig;
use crate::mla::weights::{MlaWeights, QueryWeights};
use crate::reference::matmul::linear;
use crate::reference::rmsnorm::rmsnorm_row;
use crate::reference::rope::rope_vec;
use crate::spec::mla::{check_packed, check_run, check_seqs, run_in_chunks, MlaSeq};

/// The per-token projections of T tokens.
#[derive(Clone, Debug)]
pub struct Projected {
    /// Tokens.
    pub tokens: usize,
    /// (T, H, nope + d_R): q_nope then the rotated q_rope, per head.
    pub q: Vec<f64>,
    /// (T, d_c + d_R): c after kv_a_layernorm, then the rotated k_rope.
    pub latent: Vec<f64>,
}

/// Query and latent projections of `tokens` rows of `hidden` (T, hidden) at `positions`;
/// `hidden` may be f32 or f64 (a whole model's f64 residual stream feeds it unrounded).
pub fn project<T: Copy + Into<f64>>(
    cfg: &MlaConfig,
    w: &MlaWeights,
    hidden: &[T],
    positions: &[usize],
) -> Projected {
    let t = positions.len();
    let hid = cfg.hidden_size;
    let x: Vec<f64> = hidden[..t * hid].iter().map(|&v| v.into()).collect();
    let mut q = match &w.query {
        QueryWeights::Direct { q_proj } => linear(
            &x,
            t,
            hid,
            &q_proj.weight,
            q_proj.out_features,
            q_proj.bias.as_deref(),
        ),
        QueryWeights::LowRank {
            q_a_proj,
            q_a_layernorm,
            q_b_proj,
        } => {
            let r = q_a_proj.out_features;
            let a = linear(&x, t, hid, &q_a_proj.weight, r, q_a_proj.bias.as_deref());
            let normed: Vec<f64> = a
                .chunks(r)
                .flat_map(|row| rmsnorm_row(row, q_a_layernorm, cfg.rms_norm_eps))
                .collect();
            linear(
                &normed,
                t,
                r,
                &q_b_proj.weight,
                q_b_proj.out_features,
                q_b_proj.bias.as_deref(),
            )
        }
    };
    let kv_a = &w.kv_a_proj_with_mqa;
    let mut latent = linear(
        &x,
        t,
        hid,
        &kv_a.weight,
        kv_a.out_features,
        kv_a.bias.as_deref(),
    );
    let inv_freq = cfg.inv_freq();
    let af = cfg.rope_attention_factor();
    let (d_c, d_r, qk) = (cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.qk_head_dim());
    let width = cfg.latent_dim();
    for (i, &pos) in positions.iter().enumerate() {
        let row = &mut latent[i * width..(i + 1) * width];
        let c = rmsnorm_row(&row[..d_c], &w.kv_a_layernorm, cfg.rms_norm_eps);
        row[..d_c].copy_from_slice(&c);
        rope_vec(
            &mut row[d_c..],
            pos as f64,
            &inv_freq,
            cfg.rope_interleave,
            af,
        );
        for h in 0..cfg.num_heads {
            let base = (i * cfg.num_heads + h) * qk + cfg.qk_nope_head_dim;
            rope_vec(
                &mut q[base..base + d_r],
                pos as f64,
                &inv_freq,
                cfg.rope_interleave,
                af,
            );
        }
    }
    Projected {
        tokens: t,
        q,
        latent,
    }
}

fn softmax_in_place(s: &mut [f64]) {
    let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in s.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in s.iter_mut() {
        *v /= sum;
    }
}

/// o_proj of the concatenated head outputs `attn` (T, H·v).
fn out_proj(w: &MlaWeights, attn: &[f64], t: usize) -> Vec<f64> {
    let o = &w.o_proj;
    linear(
        attn,
        t,
        o.in_features,
        &o.weight,
        o.out_features,
        o.bias.as_deref(),
    )
}

/// The naive layer over `hidden` (Bt, S, hidden): each sequence attends causally over its S
/// tokens at positions 0..S. Returns (Bt, S, hidden).
pub fn naive(cfg: &MlaConfig, w: &MlaWeights, hidden: &[f32], bt: usize, s: usize) -> Vec<f64> {
    let (h_n, nope, d_r, v_d, d_c) = (
        cfg.num_heads,
        cfg.qk_nope_head_dim,
        cfg.qk_rope_head_dim,
        cfg.v_head_dim,
        cfg.kv_lora_rank,
    );
    let qk = nope + d_r;
    let width = cfg.latent_dim();
    let scale = cfg.softmax_scale();
    let positions: Vec<usize> = (0..s).collect();
    let mut out = Vec::with_capacity(bt * s * cfg.hidden_size);
    for b in 0..bt {
        let p = project(cfg, w, &hidden[b * s * cfg.hidden_size..], &positions);
        // Decompress keys and values: k (S, H, nope + d_R), v (S, H, v).
        let mut k = vec![0.0; s * h_n * qk];
        let mut v = vec![0.0; s * h_n * v_d];
        for j in 0..s {
            let lat = &p.latent[j * width..(j + 1) * width];
            for h in 0..h_n {
                let uk = w.w_uk(cfg, h);
                let uv = w.w_uv(cfg, h);
                for n in 0..nope {
                    k[(j * h_n + h) * qk + n] =
                        (0..d_c).map(|c| uk[n * d_c + c] as f64 * lat[c]).sum();
                }
                k[(j * h_n + h) * qk + nope..(j * h_n + h + 1) * qk].copy_from_slice(&lat[d_c..]);
                for e in 0..v_d {
                    v[(j * h_n + h) * v_d + e] =
                        (0..d_c).map(|c| uv[e * d_c + c] as f64 * lat[c]).sum();
                }
            }
        }
        let mut attn = vec![0.0; s * h_n * v_d];
        for i in 0..s {
            for h in 0..h_n {
                let qv = &p.q[(i * h_n + h) * qk..(i * h_n + h + 1) * qk];
                let mut scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        let kv = &k[(j * h_n + h) * qk..(j * h_n + h + 1) * qk];
                        scale * qv.iter().zip(kv).map(|(a, b)| a * b).sum::<f64>()
                    })
                    .collect();
                softmax_in_place(&mut scores);
                for (j, pj) in scores.iter().enumerate() {
                    for e in 0..v_d {
                        attn[(i * h_n + h) * v_d + e] += pj * v[(j * h_n + h) * v_d + e];
                    }
                }
            }
        }
        out.extend(out_proj(w, &attn, s));
    }
    out
}

/// One absorbed-form forward of `s` new tokens for each of the sequences whose latent caches are
/// `caches` (one Vec of rows of d_c + d_R per sequence; the new latents are appended).
/// `hidden` is (caches.len(), S, hidden); the new tokens sit at positions len..len + S and see
/// every cached token plus the new ones up to themselves (bottom-right causal). Returns
/// (caches.len(), S, hidden). `hidden` may be f32 or f64.
pub fn absorbed_step<T: Copy + Into<f64>>(
    cfg: &MlaConfig,
    w: &MlaWeights,
    caches: &mut [Vec<f64>],
    hidden: &[T],
    s: usize,
) -> Vec<f64> {
    let (h_n, nope, d_r, v_d, d_c) = (
        cfg.num_heads,
        cfg.qk_nope_head_dim,
        cfg.qk_rope_head_dim,
        cfg.v_head_dim,
        cfg.kv_lora_rank,
    );
    let qk = nope + d_r;
    let width = cfg.latent_dim();
    let scale = cfg.softmax_scale();
    let mut out = Vec::with_capacity(caches.len() * s * cfg.hidden_size);
    for (b, cache) in caches.iter_mut().enumerate() {
        let start = cache.len() / width;
        let positions: Vec<usize> = (start..start + s).collect();
        let p = project(cfg, w, &hidden[b * s * cfg.hidden_size..], &positions);
        cache.extend_from_slice(&p.latent);
        let mut attn = vec![0.0; s * h_n * v_d];
        for i in 0..s {
            let visible = start + i + 1;
            for h in 0..h_n {
                let q = &p.q[(i * h_n + h) * qk..(i * h_n + h + 1) * qk];
                let uk = w.w_uk(cfg, h);
                // q_lat[c] = Σ_n q_nope[n] · W_UK[n, c]
                let mut q_lat = vec![0.0; d_c];
                for n in 0..nope {
                    for (c, ql) in q_lat.iter_mut().enumerate() {
                        *ql += q[n] * uk[n * d_c + c] as f64;
                    }
                }
                let mut scores: Vec<f64> = (0..visible)
                    .map(|j| {
                        let lat = &cache[j * width..(j + 1) * width];
                        let nope_part: f64 =
                            q_lat.iter().zip(&lat[..d_c]).map(|(a, b)| a * b).sum();
                        let rope_part: f64 =
                            q[nope..].iter().zip(&lat[d_c..]).map(|(a, b)| a * b).sum();
                        scale * (nope_part + rope_part)
                    })
                    .collect();
                softmax_in_place(&mut scores);
                let mut o_lat = vec![0.0; d_c];
                for (j, pj) in scores.iter().enumerate() {
                    for (c, o) in o_lat.iter_mut().enumerate() {
                        *o += pj * cache[j * width + c];
                    }
                }
                let uv = w.w_uv(cfg, h);
                for e in 0..v_d {
                    attn[(i * h_n + h) * v_d + e] =
                        (0..d_c).map(|c| uv[e * d_c + c] as f64 * o_lat[c]).sum();
                }
            }
        }
        out.extend(out_proj(w, &attn, s));
    }
    out
}

/// The absorbed layer over `hidden` (Bt, S, hidden) from empty caches (positions 0..S).
pub fn absorbed(cfg: &MlaConfig, w: &MlaWeights, hidden: &[f32], bt: usize, s: usize) -> Vec<f64> {
    let mut caches = vec![Vec::new(); bt];
    absorbed_step(cfg, w, &mut caches, hidden, s)
}

/// The MLA layer on the CPU (f64, absorbed form: [`absorbed_step`]) with a per-sequence latent
/// cache: the counterpart of the GPU layer [`crate::mla::MlaLayer`].
#[derive(Clone, Debug)]
pub struct MlaCpuLayer {
    cfg: MlaConfig,
    weights: MlaWeights,
    caches: Vec<Vec<f64>>,
}

impl MlaCpuLayer {
    /// A layer with empty caches for `num_seqs` sequences.
    pub fn new(cfg: &MlaConfig, weights: &MlaWeights, num_seqs: usize) -> Result<Self> {
        cfg.validate()?;
        weights.check(cfg)?;
        Ok(Self {
            cfg: cfg.clone(),
            weights: weights.clone(),
            caches: vec![Vec::new(); num_seqs],
        })
    }

    /// Tokens held by sequence `seq`.
    pub fn seq_len(&self, seq: usize) -> usize {
        self.caches
            .get(seq)
            .map_or(0, |c| c.len() / self.cfg.latent_dim())
    }

    /// Keep only the first `len` tokens of sequence `seq`.
    pub fn truncate(&mut self, seq: usize, len: usize) {
        let w = self.cfg.latent_dim();
        if let Some(c) = self.caches.get_mut(seq) {
            c.truncate(len * w);
        }
    }

    /// One forward of S new tokens for each of `seqs`; `hidden` is (n, S, hidden) row-major.
    pub fn forward(&mut self, seqs: &[usize], hidden: &[f32], s: usize) -> Result<Vec<f64>> {
        check_seqs(seqs, self.caches.len())?;
        let hid = self.cfg.hidden_size;
        if s == 0 || seqs.is_empty() || hidden.len() != seqs.len() * s * hid {
            return Err(Error::shape(
                "hidden_states",
                format!("(n, S, hidden) = [{}, {s}, {hid}]", seqs.len()),
                &[hidden.len()],
            ));
        }
        let packed: Vec<MlaSeq> = seqs.iter().map(|&seq| MlaSeq { seq, tokens: s }).collect();
        self.forward_packed(&packed, hidden)
    }

    /// One forward of packed sequences, the counterpart of
    /// [`crate::mla::MlaLayer::record_packed`]: `hidden` is (T, hidden) row-major with
    /// T = Σ tokens, sequences in the order of `seqs`; each sequence's tokens are appended at
    /// positions len..len + tokens and see its whole cache (bottom-right causal). Returns
    /// (T, hidden). Sequences are independent, so this is [`absorbed_step`] once per sequence.
    pub fn forward_packed(&mut self, seqs: &[MlaSeq], hidden: &[f32]) -> Result<Vec<f64>> {
        let t = check_packed(seqs, self.caches.len())?;
        let hid = self.cfg.hidden_size;
        if hidden.len() != t * hid {
            return Err(Error::shape(
                "hidden_states",
                format!("(T, hidden) = [{t}, {hid}] with T = Σ tokens"),
                &[hidden.len()],
            ));
        }
        let mut out = Vec::with_capacity(t * hid);
        let mut row = 0;
        for q in seqs {
            let part = &hidden[row * hid..(row + q.tokens) * hid];
            let cache = std::slice::from_mut(&mut self.caches[q.seq]);
            out.extend(absorbed_step(
                &self.cfg,
                &self.weights,
                cache,
                part,
                q.tokens,
            ));
            row += q.tokens;
        }
        Ok(out)
    }

    /// Like [`crate::mla::MlaLayer::run_host`] on the CPU (fresh caches).
    pub fn run_host(
        cfg: &MlaConfig,
        weights: &MlaWeights,
        hidden: &[f32],
        bt: usize,
        s: usize,
        decode_from: Option<usize>,
    ) -> Result<Vec<f32>> {
        let hid = cfg.hidden_size;
        check_run(hidden.len(), bt, s, hid, decode_from)?;
        let mut layer = Self::new(cfg, weights, bt)?;
        let seqs: Vec<usize> = (0..bt).collect();
        run_in_chunks(hidden, bt, s, hid, decode_from, |part, len| {
            layer.forward(&seqs, part, len)
        })
    }
}
