//! The DeepSeek-V2/V3 language model on the GPU: weights uploaded once (projections, experts and
//! tables in the file's dtype or the one asked for; norms and the router f32), one paged latent
//! cache per layer (pages of [`BLOCK_SIZE`] tokens, `context` tokens per slot, f32 or half) and
//! one batch of dispatches per forward, read back once at the end.
//!
//! A forward over a ragged batch packs the new tokens of every sequence (T in all; h the f32
//! residual stream (T, hidden)) and runs, per layer:
//! ```text
//! xn  = rmsnorm(h) · input_layernorm                       rmsnorm
//! h  += MLA(xn)   positions len..len+S of each sequence,    MlaLayer::record_packed (accumulating
//!                 bottom-right causal over its own cache    o_proj), the cache appended in place
//! xn  = rmsnorm(h) · post_attention_layernorm              rmsnorm
//! h  += SwiGLU(xn)          (layers < first_k_dense_replace) Moe::record_dense
//!    or MoE(xn)             (routed top-k + shared experts)  Moe::record_accumulate
//! ```
//! Prefill, chunked prefill (a prompt fed over several calls attends to what the earlier calls
//! wrote), decode, and a mix of them in one call are the same forward: each sequence brings its
//! own number of tokens. The ends (embedding, final norm, head), the packing and the passes
//! are the shared `gpu_lm` pieces the Mamba models use. The layers share one set of MLA
//! intermediates: they run one after another in the batch.

use crate::deepseek::{DeepseekConfig, DeepseekMlp, DeepseekWeights};
use crate::error::{Error, Result};
use crate::gpu_lm::{
    forward_in_passes, max_tokens, IoBuffers, LmEnds, Packing, RecordPass, ShapeCache,
};
use crate::io::HostTensor;
use crate::lm::{check_request, CausalLm, SeqInput};
use crate::mla::layer::{MlaCache, MlaLayer, MlaSeq};
use crate::ops::absorbed_attention::scratch_bytes;
use crate::ops::matmul::Matmul;
use crate::ops::moe::{Moe, MoeWeights, SwigluMlp};
use crate::ops::rmsnorm::{RmsNorm, Rows};
use crate::runtime::tensor::blocking;
use crate::runtime::{Batch, DType, Gpu, Tensor};
use std::sync::Arc;

/// Tokens per page of each layer's latent cache.
pub const BLOCK_SIZE: usize = 16;

/// Slot capacity when the caller names none.
pub const DEFAULT_CONTEXT: usize = 4096;

enum GpuMlp {
    Dense(Box<SwigluMlp>),
    Moe(Box<MoeWeights>),
}

struct GpuLayer {
    input_norm: Tensor,
    attention: MlaLayer,
    post_norm: Tensor,
    mlp: GpuMlp,
}

/// The activation buffers of one call shape besides the MLA layers' own.
struct Acts {
    io: IoBuffers,
    xn: Tensor,
}

/// A DeepSeek-V2/V3 model on a GPU (see the module docs).
pub struct DeepseekGpuLm {
    gpu: Arc<Gpu>,
    cfg: DeepseekConfig,
    layers: Vec<GpuLayer>,
    caches: Vec<MlaCache>,
    context: usize,
    ends: LmEnds,
    rmsnorm: RmsNorm,
    moe: Moe,
    matmul: Matmul,
    acts: ShapeCache<Acts>,
}

impl DeepseekGpuLm {
    /// Upload `weights` and allocate `slots` sequences of up to `context` tokens each (None:
    /// [`DEFAULT_CONTEXT`]) in every layer's latent cache, stored as `cache_dtype` (F32, F16 or
    /// BF16). `weight_dtype` stores the projections, experts and tables as that dtype (None: as
    /// the file stores them).
    pub fn new(
        gpu: Arc<Gpu>,
        cfg: DeepseekConfig,
        weights: &DeepseekWeights,
        slots: usize,
        context: Option<usize>,
        weight_dtype: Option<DType>,
        cache_dtype: DType,
    ) -> Result<Self> {
        cfg.check()?;
        // Each piece checks its own tensors as it uploads them (a whole-model check would
        // copy every weight once more).
        if weights.layers.len() != cfg.num_hidden_layers {
            return Err(Error::invalid(format!(
                "{} layers of weights for num_hidden_layers {}",
                weights.layers.len(),
                cfg.num_hidden_layers
            )));
        }
        for (i, l) in weights.layers.iter().enumerate() {
            if matches!(l.mlp, DeepseekMlp::Moe(_)) != cfg.is_moe_layer(i) {
                return Err(Error::invalid(format!(
                    "model.layers.{i}.mlp: the config calls for a {} MLP",
                    if cfg.is_moe_layer(i) { "MoE" } else { "dense" }
                )));
            }
        }
        if slots == 0 {
            return Err(Error::invalid("a model needs at least one state slot"));
        }
        let context = context.unwrap_or(DEFAULT_CONTEXT);
        let (h, v) = (cfg.hidden_size, cfg.vocab_size);
        let file_dtype = weights
            .layers
            .first()
            .map_or(DType::F32, |l| l.attention.dtype);
        let wd = weight_dtype.unwrap_or(file_dtype);
        let moe_cfg = cfg.moe_config();
        let mut layers: Vec<GpuLayer> = Vec::with_capacity(weights.layers.len());
        for l in &weights.layers {
            let attention =
                MlaLayer::new(gpu.clone(), &cfg.attention, &l.attention.rounded_to(wd)?)?;
            let mlp = match &l.mlp {
                DeepseekMlp::Dense(w) => GpuMlp::Dense(Box::new(SwigluMlp::upload(
                    &gpu,
                    w,
                    h,
                    cfg.intermediate_size,
                    wd,
                )?)),
                DeepseekMlp::Moe(w) => {
                    GpuMlp::Moe(Box::new(MoeWeights::upload(&gpu, &moe_cfg, w, wd)?))
                }
            };
            layers.push(GpuLayer {
                input_norm: gpu.upload_f32(&[h], &l.input_layernorm)?,
                attention,
                post_norm: gpu.upload_f32(&[h], &l.post_attention_layernorm)?,
                mlp,
            });
        }
        // One set of MLA intermediates for every layer.
        if let Some((first, rest)) = layers.split_first_mut() {
            for l in rest {
                l.attention.share_scratch(&first.attention);
            }
        }
        let caches = layers
            .iter()
            .map(|l| {
                l.attention
                    .new_cache_with_dtype(slots, context, BLOCK_SIZE, cache_dtype)
            })
            .collect::<Result<Vec<_>>>()?;
        let embeddings = HostTensor::new(&[v, h], weights.embed_tokens.clone())?;
        let head = weights
            .lm_head
            .as_ref()
            .map(|w| HostTensor::new(&[v, h], w.clone()))
            .transpose()?;
        let ends = LmEnds::new(
            &gpu,
            &embeddings,
            head.as_ref(),
            &HostTensor::new(&[h], weights.norm.clone())?,
            Some(wd),
            cfg.rms_norm_eps as f32,
        )?;
        Ok(DeepseekGpuLm {
            rmsnorm: RmsNorm::new(&gpu)?,
            moe: Moe::new(&gpu)?,
            matmul: Matmul::new(&gpu)?,
            gpu,
            cfg,
            layers,
            caches,
            context,
            ends,
            acts: ShapeCache::new(),
        })
    }

    /// The config.
    pub fn config(&self) -> &DeepseekConfig {
        &self.cfg
    }

    /// Tokens slot `slot` holds.
    pub fn slot_len(&self, slot: usize) -> usize {
        self.caches.first().map_or(0, |c| c.seq_len(slot))
    }

    /// Record one layer over the packed tokens.
    fn record_layer(
        &self,
        batch: &mut Batch,
        layer: &GpuLayer,
        cache: &mut MlaCache,
        seqs: &[MlaSeq],
        a: &Acts,
        t: usize,
    ) -> Result<()> {
        let hidden = self.cfg.hidden_size;
        let eps = self.cfg.rms_norm_eps as f32;
        let rows = Rows::contiguous(hidden);
        self.rmsnorm
            .record(batch, &a.io.h, rows, &layer.input_norm, &a.xn, rows, t, eps)?;
        layer
            .attention
            .record_packed(batch, cache, seqs, &a.xn, &a.io.h, true)?;
        self.rmsnorm
            .record(batch, &a.io.h, rows, &layer.post_norm, &a.xn, rows, t, eps)?;
        match &layer.mlp {
            GpuMlp::Dense(w) => self.moe.record_dense(batch, &a.xn, w, &a.io.h),
            GpuMlp::Moe(w) => self.moe.record_accumulate(batch, &a.xn, w, &a.io.h),
        }
    }

    /// Record and submit one forward over tokens that fit the device's bindings (see
    /// [`CausalLm::forward`]); returns the packing and the logits tensor it fills.
    fn forward_pass(&mut self, seqs: &[SeqInput], last_only: bool) -> Result<(Packing, Tensor)> {
        for s in seqs {
            let have = self.slot_len(s.slot);
            if have + s.tokens.len() > self.context {
                return Err(Error::invalid(format!(
                    "slot {}: {have} tokens held + {} new exceed the model's context of {} \
                     tokens per slot (load it with a larger context)",
                    s.slot,
                    s.tokens.len(),
                    self.context
                )));
            }
        }
        let p = Packing::new(seqs, last_only);
        let gpu = self.gpu.clone();
        let (hidden, vocab) = (self.cfg.hidden_size, self.cfg.vocab_size);
        let t = p.tokens;
        let ai = self.acts.get(p.shape(), || {
            Ok(Acts {
                io: IoBuffers::new(&gpu, p.shape(), hidden, vocab)?,
                xn: gpu.empty(&[t, hidden], DType::F32)?,
            })
        })?;
        let mla_seqs: Vec<MlaSeq> = seqs
            .iter()
            .map(|s| MlaSeq {
                seq: s.slot,
                tokens: s.tokens.len(),
            })
            .collect();
        // Each layer's cache advances as its layer is recorded; on any failure they all go
        // back to the lengths they had (their pages stay allocated for reuse).
        let before: Vec<usize> = seqs.iter().map(|s| self.slot_len(s.slot)).collect();
        let mut caches = std::mem::take(&mut self.caches);
        let result = self.record_and_run(&mut caches, &p, ai, &mla_seqs);
        if result.is_err() {
            for cache in &mut caches {
                for (s, &len) in seqs.iter().zip(&before) {
                    cache.truncate(s.slot, len);
                }
            }
        }
        self.caches = caches;
        result?;
        let logits = self.acts.at(ai).io.logits.clone();
        Ok((p, logits))
    }

    /// Record every layer (advancing `caches`) and submit.
    fn record_and_run(
        &self,
        caches: &mut [MlaCache],
        p: &Packing,
        ai: usize,
        seqs: &[MlaSeq],
    ) -> Result<()> {
        let a = self.acts.at(ai);
        let mut batch = self.gpu.batch();
        a.io.write(&mut batch, p)?;
        self.ends.record_embed(&mut batch, &a.io)?;
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            self.record_layer(&mut batch, layer, cache, seqs, a, p.tokens)?;
        }
        self.ends
            .record_head(&mut batch, &self.matmul, &self.rmsnorm, p, &a.io)?;
        batch.run()
    }
}

impl CausalLm for DeepseekGpuLm {
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn slots(&self) -> usize {
        self.caches.first().map_or(0, |c| c.num_seqs())
    }

    fn eos_token_id(&self) -> Option<u32> {
        self.cfg.eos_token_id
    }

    fn reset(&mut self, slot: usize) -> Result<()> {
        let n = self.slots();
        if slot >= n {
            return Err(Error::invalid(format!(
                "slot {slot} is outside the model's {n} slots"
            )));
        }
        for cache in &mut self.caches {
            cache.reset(slot);
        }
        Ok(())
    }

    fn forward(&mut self, seqs: &[SeqInput], last_only: bool) -> Result<Vec<Vec<f32>>> {
        blocking(self.forward_async(seqs, last_only), "CausalLm::forward")
    }
}

impl DeepseekGpuLm {
    /// [`CausalLm::forward`] awaited: the forward every target shares (the trait's blocking
    /// `forward` wraps it), and the only one in a browser.
    pub async fn forward_async(
        &mut self,
        seqs: &[SeqInput<'_>],
        last_only: bool,
    ) -> Result<Vec<Vec<f32>>> {
        check_request(seqs, self.slots(), self.cfg.vocab_size)?;
        let max = pass_tokens(&self.gpu, &self.cfg, self.context, seqs.len(), last_only)?;
        forward_in_passes(self, seqs, max, last_only).await
    }
}

/// The widest activation row per packed token (f32 values), which bounds the tokens of one
/// pass: the queries, the latent queries and outputs, the attention output, the MoE's gathered
/// rows, the hidden state and, unless `last_only`, a logits row.
fn widest(cfg: &DeepseekConfig, last_only: bool) -> usize {
    let a = &cfg.attention;
    let moe = cfg.moe_config();
    [
        a.q_dim(),
        a.latent_dim(),
        a.num_heads * a.kv_lora_rank,
        a.num_heads * a.v_head_dim,
        moe.top_k * moe.hidden.max(moe.intermediate),
        cfg.intermediate_size,
        moe.shared_intermediate(),
        cfg.hidden_size,
        if last_only { 0 } else { cfg.vocab_size },
    ]
    .into_iter()
    .max()
    .unwrap_or(1)
}

/// Tokens one pass over `n` sequences with contexts up to `context` may take on `gpu`: its
/// widest activation and the attention's scratch (a work area per row group) must each fit one
/// storage binding. The scratch is checked at both ends of how the tokens may be spread over
/// the sequences: evenly, and one long prompt beside one-token steps.
pub(crate) fn pass_tokens(
    gpu: &Gpu,
    cfg: &DeepseekConfig,
    context: usize,
    n: usize,
    last_only: bool,
) -> Result<usize> {
    let a = &cfg.attention;
    let limit = gpu.max_binding_bytes();
    let scratch = |t: usize| -> Result<u64> {
        let bt = n.min(t).max(1);
        let (h, d_c, d_r) = (a.num_heads, a.kv_lora_rank, a.qk_rope_head_dim);
        let even = scratch_bytes(bt, t, t.div_ceil(bt), h, d_c, d_r, context)?;
        let skewed = scratch_bytes(bt, t, t + 1 - bt, h, d_c, d_r, context)?;
        Ok(even.max(skewed))
    };
    let mut t = max_tokens(gpu, widest(cfg, last_only));
    while t > 1 && scratch(t)? > limit {
        t = t * 3 / 4;
    }
    Ok(t)
}

impl RecordPass for DeepseekGpuLm {
    fn pass_gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn pass_vocab(&self) -> usize {
        self.cfg.vocab_size
    }

    fn record_pass(&mut self, seqs: &[SeqInput], last_only: bool) -> Result<(Packing, Tensor)> {
        self.forward_pass(seqs, last_only)
    }
}
