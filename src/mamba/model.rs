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

use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::lm::{check_request, CausalLm, SeqInput};
use crate::mamba::{MambaConfig, MambaWeights};
use crate::ops::causal_conv1d::{
    Activation, CausalConv1d, CausalConv1dInputs, CausalConv1dUpdate, CausalConv1dUpdateInputs,
};
use crate::ops::embedding::{split_rows, Embedding};
use crate::ops::matmul::{Matmul, MatmulDims};
use crate::ops::rmsnorm::{RmsNorm, Rows};
use crate::ops::selective_scan::{PackedScanInputs, SelectiveScan};
use crate::ops::state_update::{StateUpdate, StateUpdateViews};
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

/// Activation buffers for one (tokens, sequences, rows of logits) shape, reused across calls of
/// that shape (decode steps all have one).
struct Acts {
    key: (usize, usize, usize),
    ids: Tensor,
    last: Tensor,
    cu: Tensor,
    slots: Tensor,
    h: Tensor,
    xn: Tensor,
    xz: Tensor,
    xc: Tensor,
    xdbl: Tensor,
    dt: Tensor,
    y: Tensor,
    hl: Tensor,
    hn: Tensor,
    logits: Tensor,
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
    /// Embedding table and LM head as row chunks that each fit one storage binding (the same
    /// chunks when tied).
    embeddings: Vec<(usize, Tensor)>,
    norm_f: Tensor,
    head: Vec<(usize, Tensor)>,
    ops: Ops,
    fresh: Vec<bool>,
    acts: Vec<Acts>,
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
        if slots == 0 {
            return Err(Error::invalid("a model needs at least one state slot"));
        }
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
        let table_dtype = weight_dtype.unwrap_or(weights.embeddings.dtype());
        let embeddings = split_rows(&gpu, &weights.embeddings, table_dtype)?;
        let head = match &weights.lm_head {
            Some(h) => split_rows(&gpu, h, weight_dtype.unwrap_or(h.dtype()))?,
            None => embeddings.clone(),
        };
        let ops = Ops {
            matmul: Matmul::new(&gpu)?,
            rmsnorm: RmsNorm::new(&gpu)?,
            conv: CausalConv1d::new(&gpu)?,
            conv_update: CausalConv1dUpdate::new(&gpu)?,
            scan: SelectiveScan::new(&gpu)?,
            update: StateUpdate::new(&gpu)?,
        };
        Ok(MambaGpuLm {
            norm_f: f32_of(&weights.norm_f)?,
            gpu,
            cfg,
            layers,
            embeddings,
            head,
            ops,
            fresh: vec![true; slots],
            acts: Vec::new(),
        })
    }

    /// The activation buffers for this shape, made on first use (two shapes are kept: the
    /// prefill's and the decode step's).
    fn acts(&mut self, tokens: usize, seqs: usize, rows: usize) -> Result<usize> {
        let key = (tokens, seqs, rows);
        if let Some(i) = self.acts.iter().position(|a| a.key == key) {
            return Ok(i);
        }
        let c = &self.cfg;
        let g = &self.gpu;
        let (h, di) = (c.hidden_size, c.intermediate_size);
        let f = |shape: &[usize]| g.empty(shape, DType::F32);
        let acts = Acts {
            key,
            ids: g.empty(&[tokens], DType::U32)?,
            last: g.empty(&[seqs], DType::U32)?,
            cu: g.empty(&[seqs + 1], DType::I32)?,
            slots: g.empty(&[seqs], DType::I32)?,
            h: f(&[tokens, h])?,
            xn: f(&[tokens, h])?,
            xz: f(&[tokens, 2 * di])?,
            xc: f(&[tokens, di])?,
            xdbl: f(&[tokens, c.x_proj_width()])?,
            dt: f(&[tokens, di])?,
            y: f(&[tokens, di])?,
            hl: f(&[rows, h])?,
            hn: f(&[rows, h])?,
            logits: f(&[rows, c.vocab_size])?,
        };
        if self.acts.len() == 2 {
            self.acts.remove(0);
        }
        self.acts.push(acts);
        Ok(self.acts.len() - 1)
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
            &a.h,
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
                    slots: Some(&a.slots),
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
                    cu_seqlens: Some(&a.cu),
                    state_pool: Some(&layer.conv_pool),
                    slots: Some(&a.slots),
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
                    state_batch_indices: Some(&a.slots),
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
            &a.h,
        )
    }
}

impl CausalLm for MambaGpuLm {
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn slots(&self) -> usize {
        self.fresh.len()
    }

    fn eos_token_id(&self) -> Option<u32> {
        self.cfg.eos_token_id
    }

    fn reset(&mut self, slot: usize) -> Result<()> {
        let n = self.fresh.len();
        *self.fresh.get_mut(slot).ok_or_else(|| {
            Error::invalid(format!("slot {slot} is outside the model's {n} slots"))
        })? = true;
        Ok(())
    }

    fn forward(&mut self, seqs: &[SeqInput], last_only: bool) -> Result<Vec<Vec<f32>>> {
        check_request(seqs, self.fresh.len(), self.cfg.vocab_size)?;
        // Passes of at most `max_tokens` tokens keep every activation (and the logits) within
        // one storage binding; a sequence split across passes continues from its slot, so the
        // result is the same as one pass.
        let c = &self.cfg;
        let widest = (2 * c.intermediate_size)
            .max(c.x_proj_width())
            .max(if last_only { 0 } else { c.vocab_size });
        let max_tokens = ((self.gpu.max_binding_bytes() / (4 * widest as u64)) as usize).max(1);
        let total: usize = seqs.iter().map(|s| s.tokens.len()).sum();
        if total <= max_tokens {
            return self.forward_pass(seqs, last_only);
        }
        let mut pos = vec![0usize; seqs.len()];
        let mut outs = vec![Vec::new(); seqs.len()];
        while pos.iter().zip(seqs).any(|(p, s)| *p < s.tokens.len()) {
            let mut budget = max_tokens;
            let mut pass = Vec::new();
            let mut which = Vec::new();
            for (i, s) in seqs.iter().enumerate() {
                if pos[i] < s.tokens.len() && budget > 0 {
                    let take = (s.tokens.len() - pos[i]).min(budget);
                    pass.push(SeqInput {
                        slot: s.slot,
                        tokens: &s.tokens[pos[i]..pos[i] + take],
                    });
                    which.push(i);
                    budget -= take;
                    pos[i] += take;
                }
            }
            for (i, o) in which.into_iter().zip(self.forward_pass(&pass, last_only)?) {
                if last_only {
                    outs[i] = o;
                } else {
                    outs[i].extend(o);
                }
            }
        }
        Ok(outs)
    }
}

impl MambaGpuLm {
    /// One forward over tokens that fit the device's bindings (see [`CausalLm::forward`]).
    fn forward_pass(&mut self, seqs: &[SeqInput], last_only: bool) -> Result<Vec<Vec<f32>>> {
        let c = self.cfg.clone();
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut cu = vec![0u32];
        for s in seqs {
            cu.push(cu[cu.len() - 1] + s.tokens.len() as u32);
        }
        let tokens = cu[seqs.len()] as usize;
        let slots: Vec<u32> = seqs.iter().map(|s| s.slot as u32).collect();
        let rows = if last_only { seqs.len() } else { tokens };
        let decode = tokens == seqs.len();
        let ai = self.acts(tokens, seqs.len(), rows)?;
        let gpu = self.gpu.clone();
        let mut batch = gpu.batch();
        let a = &self.acts[ai];
        // Fresh slots start from zero states.
        let (di, w, n) = (c.intermediate_size, c.conv_kernel, c.state_size);
        for s in seqs {
            if self.fresh[s.slot] {
                for l in &self.layers {
                    batch.write(
                        &l.conv_pool,
                        s.slot * di * (w - 1),
                        &vec![0f32; di * (w - 1)],
                    )?;
                    batch.write(&l.ssm_pool, s.slot * di * n, &vec![0f32; di * n])?;
                }
            }
        }
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.tokens.iter().copied()).collect();
        batch.write(&a.ids, 0, &ids)?;
        batch.write(&a.cu, 0, &cu.iter().map(|&x| x as i32).collect::<Vec<_>>())?;
        batch.write(
            &a.slots,
            0,
            &slots.iter().map(|&x| x as i32).collect::<Vec<_>>(),
        )?;
        let table: Vec<(usize, &Tensor)> = self.embeddings.iter().map(|(r, t)| (*r, t)).collect();
        Embedding::record_chunks(&mut batch, &a.ids, &table, &a.h)?;
        for layer in &self.layers {
            self.record_block(&mut batch, layer, a, tokens, &cu, &slots, decode)?;
        }
        let hidden = c.hidden_size;
        let final_rows = if last_only {
            let last: Vec<u32> = cu[1..].iter().map(|&e| e - 1).collect();
            batch.write(&a.last, 0, &last)?;
            Embedding::record(&mut batch, &a.last, &a.h, &a.hl)?;
            &a.hl
        } else {
            &a.h
        };
        self.ops.rmsnorm.record(
            &mut batch,
            final_rows,
            Rows::contiguous(hidden),
            &self.norm_f,
            &a.hn,
            Rows::contiguous(hidden),
            rows,
            c.layer_norm_epsilon as f32,
        )?;
        for (n0, chunk) in &self.head {
            let n = chunk.shape()[0];
            let dims = MatmulDims {
                y_off: *n0,
                y_rs: c.vocab_size,
                y_gs: rows * c.vocab_size,
                ..MatmulDims::linear(rows, n, hidden)
            };
            self.ops
                .matmul
                .record(&mut batch, &dims, &a.hn, chunk, None, &a.logits)?;
        }
        batch.run()?;
        for s in seqs {
            self.fresh[s.slot] = false;
        }
        let logits = gpu.read_f32(&self.acts[ai].logits)?;
        let v = c.vocab_size;
        let mut out = Vec::with_capacity(seqs.len());
        for (i, s) in seqs.iter().enumerate() {
            let (r0, r1) = if last_only {
                (i, i + 1)
            } else {
                (cu[i] as usize, cu[i] as usize + s.tokens.len())
            };
            out.push(logits[r0 * v..r1 * v].to_vec());
        }
        Ok(out)
    }
}
