//! The Mamba-1 language model on the GPU: weights uploaded once (the projections and the
//! embedding table in the file's dtype, f32 or half; norms, conv, A, D and Δ's bias as f32),
//! per-layer state pools (conv (slots, D_in, W−1) and SSM (slots, D_in, N), f32) and one batch of
//! dispatches per forward, read back once at the end. No host round trip inside a forward.
//!
//! A forward over a ragged batch packs the new tokens of every sequence (T in all) and runs,
//! per block (h the f32 residual stream (T, hidden)):
//! ```text
//! xn  = rmsnorm(h)                                       rmsnorm
//! xz  = xn · in_projᵀ (+ b)          (T, 2·D_in)          matmul
//! xc  = silu(conv1d(xz[:, :D_in]))   (T, D_in)            causal_conv1d (ragged, pool by slot),
//!                                                        or causal_conv1d_update when every
//!                                                        sequence brings one token (decode)
//! xdbl = xc · x_projᵀ                (T, R + 2N)          matmul
//! dt  = xdbl[:, :R] · dt_projᵀ       (T, D_in)            matmul (a strided window, no copy)
//! y   = scan(u = xc, dt + dt_bias, A, B = xdbl[:, R:R+N], C = xdbl[:, R+N:], D, z = xz[:, D_in:])
//!                                                        selective_scan, packed (pool by slot),
//!                                                        or state_update on the same views and
//!                                                        pool rows when decoding
//! h  += y · out_projᵀ (+ b)                              matmul, accumulating into h
//! ```
//! then the last position of each sequence (or every position) through norm_f and the LM head.
//! Each piece reads its inputs where the previous one wrote them (views with row strides), so
//! the packed projections are never split by copies.

use crate::error::Result;
use crate::gpu_lm::{
    forward_in_passes, max_tokens, IoBuffers, LmEnds, Packing, RecordPass, ShapeCache, SlotTable,
};
use crate::io::HostTensor;
use crate::lm::{check_request, CausalLm, SeqInput};
use crate::mamba::{MambaConfig, MambaWeights};
use crate::ops::causal_conv1d::{
    Activation, CausalConv1d, CausalConv1dInputs, CausalConv1dUpdate, CausalConv1dUpdateInputs,
};
use crate::ops::matmul::{Matmul, MatmulDims};
use crate::ops::rmsnorm::{RmsNorm, Rows};
use crate::ops::selective_scan::{PackedScanInputs, SelectiveScan};
use crate::ops::state_update::{StateUpdate, StateUpdateViews};
use crate::runtime::tensor::blocking;
use crate::runtime::{Batch, DType, Gpu, Tensor, View};
use std::sync::Arc;

struct GpuLayer {
    norm: Tensor,
    in_proj: Tensor,
    in_proj_bias: Option<Tensor>,
    conv: Tensor,
    conv_bias: Option<Tensor>,
    x_proj: Tensor,
    dt_proj: Tensor,
    dt_bias: Tensor,
    a: Tensor,
    d: Tensor,
    out_proj: Tensor,
    out_proj_bias: Option<Tensor>,
    conv_pool: Tensor,
    ssm_pool: Tensor,
}

/// The block's activation buffers for one call shape (the shared ones are in `io`).
struct Acts {
    io: IoBuffers,
    xn: Tensor,
    xz: Tensor,
    xc: Tensor,
    xdbl: Tensor,
    dt: Tensor,
    y: Tensor,
}

/// The ops a forward records, built once.
struct Ops {
    matmul: Matmul,
    rmsnorm: RmsNorm,
    conv: CausalConv1d,
    conv_update: CausalConv1dUpdate,
    scan: SelectiveScan,
    update: StateUpdate,
}

/// A Mamba-1 model on a GPU (see the module docs).
pub struct MambaGpuLm {
    gpu: Arc<Gpu>,
    cfg: MambaConfig,
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

impl MambaGpuLm {
    /// Upload `weights` and allocate `slots` state slots. `weight_dtype` stores the
    /// projections and embeddings as that dtype (None: as the file stores them).
    pub fn new(
        gpu: Arc<Gpu>,
        cfg: MambaConfig,
        weights: &MambaWeights,
        slots: usize,
        weight_dtype: Option<DType>,
    ) -> Result<Self> {
        let slot_table = SlotTable::new(slots)?;
        let (di, n, w) = (cfg.intermediate_size, cfg.state_size, cfg.conv_kernel);
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
                x_proj: upload(&gpu, &l.x_proj, weight_dtype)?,
                dt_proj: upload(&gpu, &l.dt_proj, weight_dtype)?,
                dt_bias: f32_of(&l.dt_proj_bias)?,
                a: gpu.upload_f32(&[di, n], &a)?,
                d: f32_of(&l.d)?,
                out_proj: upload(&gpu, &l.out_proj, weight_dtype)?,
                out_proj_bias: l.out_proj_bias.as_ref().map(f32_of).transpose()?,
                conv_pool: gpu.empty(&[slots, di, w - 1], DType::F32)?,
                ssm_pool: gpu.empty(&[slots, di, n], DType::F32)?,
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
            scan: SelectiveScan::new(&gpu)?,
            update: StateUpdate::new(&gpu)?,
        };
        Ok(MambaGpuLm {
            gpu,
            cfg,
            layers,
            ends,
            ops,
            slots: slot_table,
            acts: ShapeCache::new(),
        })
    }

    /// Record one block over the packed tokens of `a`.
    #[allow(clippy::too_many_arguments)]
    fn record_block(
        &self,
        batch: &mut Batch,
        layer: &GpuLayer,
        a: &Acts,
        tokens: usize,
        cu: &[u32],
        slots: &[u32],
        decode: bool,
    ) -> Result<()> {
        let c = &self.cfg;
        let (h, di, n, r) = (
            c.hidden_size,
            c.intermediate_size,
            c.state_size,
            c.time_step_rank,
        );
        let xw = c.x_proj_width();
        let eps = c.layer_norm_epsilon as f32;
        self.ops.rmsnorm.record(
            batch,
            &a.io.h,
            Rows::contiguous(h),
            &layer.norm,
            &a.xn,
            Rows::contiguous(h),
            tokens,
            eps,
        )?;
        self.ops.matmul.record(
            batch,
            &MatmulDims::linear(tokens, 2 * di, h),
            &a.xn,
            &layer.in_proj,
            layer.in_proj_bias.as_ref(),
            &a.xz,
        )?;
        let x_in = a.xz.view().narrow(1, 0, di)?;
        if decode {
            self.ops.conv_update.record(
                batch,
                &CausalConv1dUpdateInputs {
                    x: &x_in,
                    conv_state: &layer.conv_pool,
                    weight: &layer.conv,
                    bias: layer.conv_bias.as_ref(),
                    activation: Activation::Silu,
                    slots: Some(&a.io.slots),
                },
                &a.xc.view(),
            )?;
        } else {
            let x_cf = x_in.unsqueeze(0)?.permute(&[0, 2, 1])?;
            let y_cf = a.xc.view().unsqueeze(0)?.permute(&[0, 2, 1])?;
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
        self.ops.matmul.record(
            batch,
            &MatmulDims::linear(tokens, xw, di),
            &a.xc,
            &layer.x_proj,
            None,
            &a.xdbl,
        )?;
        let dt_dims = MatmulDims {
            x_rs: xw,
            x_gs: tokens * xw,
            ..MatmulDims::linear(tokens, di, r)
        };
        self.ops
            .matmul
            .record(batch, &dt_dims, &a.xdbl, &layer.dt_proj, None, &a.dt)?;
        let b = View::as_strided(&a.xdbl, r, &[tokens, 1, n], &[xw, n, 1])?;
        let cm = View::as_strided(&a.xdbl, r + n, &[tokens, 1, n], &[xw, n, 1])?;
        let z = a.xz.view().narrow(1, di, di)?;
        if decode {
            // One token per sequence, so tokens = sequences and a.slots holds one slot per
            // token: the decode step continues from the pool rows the prefill scan left.
            self.ops.update.record_views(
                batch,
                &StateUpdateViews {
                    state: &layer.ssm_pool,
                    x: &a.xc.view(),
                    dt: &a.dt.view(),
                    a: &layer.a,
                    b: &b,
                    c: &cm,
                    d: Some(&layer.d),
                    z: Some(&z),
                    dt_bias: Some(&layer.dt_bias),
                    state_batch_indices: Some(&a.io.slots),
                    dt_softplus: true,
                },
                &a.y.view(),
            )?;
        } else {
            self.ops.scan.record_packed(
                batch,
                &PackedScanInputs {
                    u: &a.xc.view(),
                    delta: &a.dt.view(),
                    a: &layer.a,
                    b: &b,
                    c: &cm,
                    d: Some(&layer.d),
                    z: Some(&z),
                    delta_bias: Some(&layer.dt_bias),
                    delta_softplus: true,
                    cu_seqlens: cu,
                    slots,
                },
                &a.y.view(),
                &layer.ssm_pool,
            )?;
        }
        self.ops.matmul.record_accumulate(
            batch,
            &MatmulDims::linear(tokens, h, di),
            &a.y,
            &layer.out_proj,
            layer.out_proj_bias.as_ref(),
            &a.io.h,
        )
    }
}

impl CausalLm for MambaGpuLm {
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

impl MambaGpuLm {
    /// [`CausalLm::forward`] awaited: the forward every target shares (the trait's blocking
    /// `forward` wraps it), and the only one in a browser.
    pub async fn forward_async(
        &mut self,
        seqs: &[SeqInput<'_>],
        last_only: bool,
    ) -> Result<Vec<Vec<f32>>> {
        check_request(seqs, self.slots.len(), self.cfg.vocab_size)?;
        let c = &self.cfg;
        let widest = (2 * c.intermediate_size)
            .max(c.x_proj_width())
            .max(if last_only { 0 } else { c.vocab_size });
        let max = max_tokens(&self.gpu, widest);
        forward_in_passes(self, seqs, max, last_only).await
    }
}

impl RecordPass for MambaGpuLm {
    fn pass_gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn pass_vocab(&self) -> usize {
        self.cfg.vocab_size
    }

    fn record_pass(&mut self, seqs: &[SeqInput], last_only: bool) -> Result<(Packing, Tensor)> {
        let p = Packing::new(seqs, last_only);
        let (gpu, c) = (self.gpu.clone(), &self.cfg);
        let (hidden, di, x_w) = (c.hidden_size, c.intermediate_size, c.x_proj_width());
        let tokens = p.tokens;
        let ai = self.acts.get(p.shape(), || {
            let f = |shape: &[usize]| gpu.empty(shape, DType::F32);
            Ok(Acts {
                io: IoBuffers::new(&gpu, p.shape(), hidden, c.vocab_size)?,
                xn: f(&[tokens, hidden])?,
                xz: f(&[tokens, 2 * di])?,
                xc: f(&[tokens, di])?,
                xdbl: f(&[tokens, x_w])?,
                dt: f(&[tokens, di])?,
                y: f(&[tokens, di])?,
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
            self.record_block(&mut batch, layer, a, tokens, &p.cu, &p.slots, p.decode)?;
        }
        self.ends
            .record_head(&mut batch, &self.ops.matmul, &self.ops.rmsnorm, &p, &a.io)?;
        batch.run()?;
        self.slots.mark_used(&p.slots);
        Ok((p, a.io.logits.clone()))
    }
}
