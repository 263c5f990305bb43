//! The Mamba-2 language model on the GPU: weights uploaded once (the projections and the
//! embedding table in the file's dtype, f32 or half; norms, conv, A, D and dt_bias as f32),
//! per-layer state pools (conv (slots, conv_dim, W−1) and SSM (slots, H, P, N), f32) and one
//! batch of dispatches per forward, read back once at the end.
//!
//! A forward over a ragged batch packs the new tokens of every sequence (T in all) and runs,
//! per block (h the f32 residual stream (T, hidden); d_inner = H·P, conv_dim = d_inner + 2·G·N):
//! ```text
//! xn   = rmsnorm(h)                                              rmsnorm
//! proj = xn · in_projᵀ (+ b)     (T, d_inner + conv_dim + H)      matmul: [z | xBC | dt]
//! xbc  = silu(conv1d(proj[:, xBC]))  (T, conv_dim)                causal_conv1d (ragged, pool by
//!                                                                slot), or its update form when
//!                                                                every sequence brings one token
//! y    = ssd(x = xbc[:, :d_inner] as (T, H, P), dt = proj[:, dt], A, B = xbc[:, d_inner:][:G·N],
//!            C = the next G·N columns, D, dt_bias, softplus, time_step_limit)
//!                                                                ssd_scan, packed (pool by slot),
//!                                                                or the multi-head state_update
//!                                                                on the same views when decoding
//! yn   = rmsnorm_groups(y · silu(proj[:, z])) · w                rmsnorm, gated, G groups
//! h   += yn · out_projᵀ (+ b)                                    matmul, accumulating into h
//! ```
//! Every piece reads its inputs where the previous one wrote them (views with row strides): the
//! packed projection is never split by copies. The ends of the network (embedding, final norm,
//! head), the packing and the passes are the shared `gpu_lm` pieces Mamba-1 uses too.

use crate::error::Result;
use crate::gpu_lm::{
    forward_in_passes, max_tokens, IoBuffers, LmEnds, Packing, RecordPass, ShapeCache, SlotTable,
};
use crate::io::HostTensor;
use crate::lm::{check_request, CausalLm, SeqInput};
use crate::mamba2::{Mamba2Config, Mamba2Weights};
use crate::ops::causal_conv1d::{
    Activation, CausalConv1d, CausalConv1dInputs, CausalConv1dUpdate, CausalConv1dUpdateInputs,
};
use crate::ops::matmul::{Matmul, MatmulDims};
use crate::ops::rmsnorm::{Gate, RmsNorm, Rows};
use crate::ops::ssd_scan::{SsdPackedInputs, SsdScan};
use crate::ops::state_update::{StateUpdate, StateUpdateHeadsViews};
use crate::runtime::tensor::blocking;
use crate::runtime::{Batch, DType, Gpu, Tensor, View};
use std::sync::Arc;

struct GpuLayer {
    norm: Tensor,
    in_proj: Tensor,
    in_proj_bias: Option<Tensor>,
    conv: Tensor,
    conv_bias: Option<Tensor>,
    dt_bias: Tensor,
    a: Tensor,
    d: Tensor,
    gated_norm: Tensor,
    out_proj: Tensor,
    out_proj_bias: Option<Tensor>,
    conv_pool: Tensor,
    ssm_pool: Tensor,
}

/// The block's activation buffers for one call shape (the shared ones are in `io`).
struct Acts {
    io: IoBuffers,
    xn: Tensor,
    proj: Tensor,
    xbc: Tensor,
    y: Tensor,
    yn: Tensor,
}

/// The ops a forward records, built once.
struct Ops {
    matmul: Matmul,
    rmsnorm: RmsNorm,
    conv: CausalConv1d,
    conv_update: CausalConv1dUpdate,
    ssd: SsdScan,
    update: StateUpdate,
}

/// A Mamba-2 model on a GPU (see the module docs).
pub struct Mamba2GpuLm {
    gpu: Arc<Gpu>,
    cfg: Mamba2Config,
    layers: Vec<GpuLayer>,
    ends: LmEnds,
    ops: Ops,
    slots: SlotTable,
    acts: ShapeCache<Acts>,
}

fn upload(gpu: &Gpu, t: &HostTensor, dtype: Option<DType>) -> Result<Tensor> {
    match dtype {
        Some(d) => t.upload_as(gpu, d),
        None => t.upload(gpu),
    }
}

impl Mamba2GpuLm {
    /// Upload `weights` and allocate `slots` state slots. `weight_dtype` stores the
    /// projections and embeddings as that dtype (None: as the file stores them).
    pub fn new(
        gpu: Arc<Gpu>,
        cfg: Mamba2Config,
        weights: &Mamba2Weights,
        slots: usize,
        weight_dtype: Option<DType>,
    ) -> Result<Self> {
        let slot_table = SlotTable::new(slots)?;
        let (heads, p, n, w) = (cfg.num_heads, cfg.head_dim, cfg.state_size, cfg.conv_kernel);
        let conv_dim = cfg.conv_dim();
        let f32_of = |t: &HostTensor| t.upload_as(&gpu, DType::F32);
        let mut layers = Vec::with_capacity(weights.layers.len());
        for l in &weights.layers {
            let a: Vec<f32> = l.a_log.to_f32().iter().map(|&x| -(x.exp())).collect();
            layers.push(GpuLayer {
                norm: f32_of(&l.norm)?,
                in_proj: upload(&gpu, &l.in_proj, weight_dtype)?,
                in_proj_bias: l.in_proj_bias.as_ref().map(f32_of).transpose()?,
                conv: f32_of(&l.conv1d)?,
                conv_bias: l.conv1d_bias.as_ref().map(f32_of).transpose()?,
                dt_bias: f32_of(&l.dt_bias)?,
                a: gpu.upload_f32(&[heads], &a)?,
                d: f32_of(&l.d)?,
                gated_norm: f32_of(&l.gated_norm)?,
                out_proj: upload(&gpu, &l.out_proj, weight_dtype)?,
                out_proj_bias: l.out_proj_bias.as_ref().map(f32_of).transpose()?,
                conv_pool: gpu.empty(&[slots, conv_dim, w - 1], DType::F32)?,
                ssm_pool: gpu.empty(&[slots, heads, p, n], DType::F32)?,
            });
        }
        let ends = LmEnds::new(
            &gpu,
            &weights.embeddings,
            weights.lm_head.as_ref(),
            &weights.norm_f,
            weight_dtype,
            cfg.layer_norm_epsilon as f32,
        )?;
        let ops = Ops {
            matmul: Matmul::new(&gpu)?,
            rmsnorm: RmsNorm::new(&gpu)?,
            conv: CausalConv1d::new(&gpu)?,
            conv_update: CausalConv1dUpdate::new(&gpu)?,
            ssd: SsdScan::new(&gpu)?,
            update: StateUpdate::new(&gpu)?,
        };
        Ok(Mamba2GpuLm {
            gpu,
            cfg,
            layers,
            ends,
            ops,
            slots: slot_table,
            acts: ShapeCache::new(),
        })
    }

    /// Record one block over the packed tokens of `p`.
    fn record_block(
        &self,
        batch: &mut Batch,
        layer: &GpuLayer,
        a: &Acts,
        p: &Packing,
    ) -> Result<()> {
        let c = &self.cfg;
        let t = p.tokens;
        let split = c.in_proj_split();
        let (hidden, di, conv_dim, pw) = (c.hidden_size, c.d_inner(), c.conv_dim(), split.width);
        let (heads, hd, g, n) = (c.num_heads, c.head_dim, c.n_groups, c.state_size);
        let eps = c.layer_norm_epsilon as f32;
        self.ops.rmsnorm.record(
            batch,
            &a.io.h,
            Rows::contiguous(hidden),
            &layer.norm,
            &a.xn,
            Rows::contiguous(hidden),
            t,
            eps,
        )?;
        self.ops.matmul.record(
            batch,
            &MatmulDims::linear(t, pw, hidden),
            &a.xn,
            &layer.in_proj,
            layer.in_proj_bias.as_ref(),
            &a.proj,
        )?;
        let xbc_in = a.proj.view().narrow(1, split.xbc, conv_dim)?;
        if p.decode {
            self.ops.conv_update.record(
                batch,
                &CausalConv1dUpdateInputs {
                    x: &xbc_in,
                    conv_state: &layer.conv_pool,
                    weight: &layer.conv,
                    bias: layer.conv_bias.as_ref(),
                    activation: Activation::Silu,
                    slots: Some(&a.io.slots),
                },
                &a.xbc.view(),
            )?;
        } else {
            let x_cf = xbc_in.unsqueeze(0)?.permute(&[0, 2, 1])?;
            let y_cf = a.xbc.view().unsqueeze(0)?.permute(&[0, 2, 1])?;
            self.ops.conv.record(
                batch,
                &CausalConv1dInputs {
                    bias: layer.conv_bias.as_ref(),
                    activation: Activation::Silu,
                    cu_seqlens: Some(&a.io.cu),
                    state_pool: Some(&layer.conv_pool),
                    slots: Some(&a.io.slots),
                    pool_initial: true,
                    ..CausalConv1dInputs::new(&x_cf, &layer.conv)
                },
                &y_cf,
            )?;
        }
        let x = View::as_strided(&a.xbc, 0, &[t, heads, hd], &[conv_dim, hd, 1])?;
        let b = View::as_strided(&a.xbc, split.b, &[t, g, n], &[conv_dim, n, 1])?;
        let cm = View::as_strided(&a.xbc, split.c, &[t, g, n], &[conv_dim, n, 1])?;
        let dt = View::as_strided(&a.proj, split.dt, &[t, heads], &[pw, 1])?;
        let limit = (c.time_step_limit.0 as f32, c.time_step_limit.1 as f32);
        if p.decode {
            // One token per sequence: the decode step continues from the pool rows the
            // prefill scan left, through the same slots.
            let y = View::as_strided(&a.y, 0, &[t, heads, hd], &[di, hd, 1])?;
            self.ops.update.record_heads(
                batch,
                &StateUpdateHeadsViews {
                    state: &layer.ssm_pool,
                    x: &x,
                    dt: &dt,
                    a: &layer.a,
                    b: &b,
                    c: &cm,
                    d: Some(&layer.d),
                    z: None,
                    dt_bias: Some(&layer.dt_bias),
                    state_batch_indices: Some(&a.io.slots),
                    dt_softplus: true,
                    dt_limit: limit,
                },
                &y,
            )?;
        } else {
            let y = View::as_strided(&a.y, 0, &[t, heads, hd], &[di, hd, 1])?;
            self.ops.ssd.record_packed(
                batch,
                &SsdPackedInputs {
                    x: &x,
                    dt: &dt,
                    a: &layer.a,
                    b: &b,
                    c: &cm,
                    d: Some(&layer.d),
                    z: None,
                    dt_bias: Some(&layer.dt_bias),
                    dt_softplus: true,
                    dt_limit: limit,
                    chunk_size: c.chunk_size,
                    cu_seqlens: &p.cu,
                    slots: &p.slots,
                },
                &y,
                &layer.ssm_pool,
            )?;
        }
        let z = a.proj.view().narrow(1, split.z, di)?;
        self.ops.rmsnorm.record_gated(
            batch,
            &a.y,
            Rows::contiguous(di),
            &Gate {
                z: &z,
                norm_before_gate: false,
            },
            &layer.gated_norm,
            c.norm_group_size(),
            &a.yn,
            Rows::contiguous(di),
            t,
            eps,
        )?;
        self.ops.matmul.record_accumulate(
            batch,
            &MatmulDims::linear(t, hidden, di),
            &a.yn,
            &layer.out_proj,
            layer.out_proj_bias.as_ref(),
            &a.io.h,
        )
    }
}

impl CausalLm for Mamba2GpuLm {
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn slots(&self) -> usize {
        self.slots.len()
    }

    fn eos_token_id(&self) -> Option<u32> {
        self.cfg.eos_token_id
    }

    fn reset(&mut self, slot: usize) -> Result<()> {
        self.slots.reset(slot)
    }

    fn forward(&mut self, seqs: &[SeqInput], last_only: bool) -> Result<Vec<Vec<f32>>> {
        blocking(self.forward_async(seqs, last_only), "CausalLm::forward")
    }
}

impl Mamba2GpuLm {
    /// [`CausalLm::forward`] awaited: the forward every target shares (the trait's blocking
    /// `forward` wraps it), and the only one in a browser.
    pub async fn forward_async(
        &mut self,
        seqs: &[SeqInput<'_>],
        last_only: bool,
    ) -> Result<Vec<Vec<f32>>> {
        check_request(seqs, self.slots.len(), self.cfg.vocab_size)?;
        let c = &self.cfg;
        let widest = c
            .in_proj_split()
            .width
            .max(if last_only { 0 } else { c.vocab_size });
        let max = max_tokens(&self.gpu, widest);
        forward_in_passes(self, seqs, max, last_only).await
    }
}

impl RecordPass for Mamba2GpuLm {
    fn pass_gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn pass_vocab(&self) -> usize {
        self.cfg.vocab_size
    }

    fn record_pass(&mut self, seqs: &[SeqInput], last_only: bool) -> Result<(Packing, Tensor)> {
        let p = Packing::new(seqs, last_only);
        let (gpu, c) = (self.gpu.clone(), &self.cfg);
        let (hidden, di) = (c.hidden_size, c.d_inner());
        let t = p.tokens;
        let ai = self.acts.get(p.shape(), || {
            let f = |shape: &[usize]| gpu.empty(shape, DType::F32);
            Ok(Acts {
                io: IoBuffers::new(&gpu, p.shape(), hidden, c.vocab_size)?,
                xn: f(&[t, hidden])?,
                proj: f(&[t, c.in_proj_split().width])?,
                xbc: f(&[t, c.conv_dim()])?,
                y: f(&[t, di])?,
                yn: f(&[t, di])?,
            })
        })?;
        let a = self.acts.at(ai);
        let mut batch = gpu.batch();
        // Fresh slots start from zero states.
        let pools: Vec<&Tensor> = self
            .layers
            .iter()
            .flat_map(|l| [&l.conv_pool, &l.ssm_pool])
            .collect();
        self.slots.record_zero_fresh(&mut batch, &p.slots, &pools)?;
        a.io.write(&mut batch, &p)?;
        self.ends.record_embed(&mut batch, &a.io)?;
        for layer in &self.layers {
            self.record_block(&mut batch, layer, a, &p)?;
        }
        self.ends
            .record_head(&mut batch, &self.ops.matmul, &self.ops.rmsnorm, &p, &a.io)?;
        batch.run()?;
        self.slots.mark_used(&p.slots);
        Ok((p, a.io.logits.clone()))
    }
}
