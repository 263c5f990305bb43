//! The MLA layer on the GPU ([`MlaLayer`]), decoding through a paged latent cache. Its CPU
//! counterpart is [`crate::reference::mla::MlaCpuLayer`].
//!
//! One forward call ([`MlaLayer::record_packed`]) takes packed hidden states (T, hidden) for n
//! sequences of a cache, each bringing its own number of new tokens ([`MlaSeq`]): a prompt, a
//! chunk of a prompt over what earlier chunks cached (chunked prefill), one token (decode), or
//! any mix of these in one step. [`MlaLayer::record`] is the uniform case, (n, S, hidden) with
//! S tokens each. For the T token rows the GPU records, in one submission:
//!
//! ```text
//! q      = q_b_proj(rmsnorm(q_a_proj(h)))  or q_proj(h)        matmul, rmsnorm, matmul (T, H·(nope+d_R))
//! kv     = kv_a_proj_with_mqa(h)                               matmul (T, d_c + d_R)
//! latent = [rmsnorm(kv[:, :d_c]) | rope(kv[:, d_c:], pos)]     rmsnorm, rope   (T, d_c + d_R)
//! q_rope = rope(q[:, h, nope:], pos)                           rope            (T, H, d_R)
//! q_lat  = W_UK[h]ᵀ q_nope[h]  per head                        matmul, G = H   (T, H, d_c)
//! cache[slots] = latent                                        latent_cache append
//! o_lat  = absorbed attention over the cache (packed queries,  bottom-right causal per
//!          sequence)                                                           (T, H, d_c)
//! attn   = W_UV[h] o_lat[h]  per head                          matmul, G = H   (T, H·v)
//! out    = o_proj(attn)   (or out += o_proj(attn))             matmul          (T, hidden)
//! ```
//! The weights are uploaded once; intermediates are GPU tensors kept per T and reused;
//! per call only the small index tensors (positions, slots, block table, lengths, query
//! offsets) are written, in stream order ([`Batch::write`]), into tensors allocated once per
//! shape. Layers of one model run one after another, so they can share these intermediates
//! ([`MlaLayer::share_scratch`]).
//! The cache is paged: [`MlaCache`] hands out pages of `block_size` tokens from a free list as
//! sequences grow.

use crate::error::{Error, Result};
use crate::mla::{MlaConfig, MlaWeights, QueryWeights};
use crate::ops::absorbed_attention::{AbsorbedAttention, AbsorbedAttentionInputs};
use crate::ops::latent_cache::{slots_for, LatentCache, LatentCacheAppend};
use crate::ops::matmul::{Matmul, MatmulDims};
use crate::ops::rmsnorm::{RmsNorm, Rows};
use crate::ops::rope::{Rope, RopeLayout, RopeTables};
use crate::runtime::Batch;
use crate::runtime::Gpu;
use crate::runtime::{DType, Tensor};
use crate::spec::mla::check_packed;
pub use crate::spec::mla::MlaSeq;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A linear layer on the GPU.
#[derive(Clone, Debug)]
struct GpuLinear {
    weight: Tensor,
    bias: Option<Tensor>,
    out_features: usize,
    in_features: usize,
}

impl GpuLinear {
    fn upload(gpu: &Gpu, l: &crate::mla::Linear, dtype: DType) -> Result<Self> {
        Ok(Self {
            weight: gpu.upload_f32_as(&[l.out_features, l.in_features], dtype, &l.weight)?,
            bias: match &l.bias {
                Some(b) => Some(gpu.upload_f32(&[l.out_features], b)?),
                None => None,
            },
            out_features: l.out_features,
            in_features: l.in_features,
        })
    }
}

#[derive(Clone, Debug)]
enum GpuQuery {
    Direct(GpuLinear),
    LowRank {
        a: Box<GpuLinear>,
        norm: Tensor,
        b: Box<GpuLinear>,
    },
}

/// Intermediates of one call of T tokens.
#[derive(Debug)]
struct Scratch {
    q_a: Option<(Tensor, Tensor)>,
    q: Tensor,
    kv: Tensor,
    latent: Tensor,
    q_rope: Tensor,
    q_lat: Tensor,
    o_lat: Tensor,
    attn: Tensor,
}

/// Per-call index tensors of one (T, n, pages) shape, refilled with [`Batch::write`].
#[derive(Debug)]
struct Indices {
    positions: Tensor,
    slots: Tensor,
    block_table: Tensor,
    seq_lens: Tensor,
    query_starts: Tensor,
}

/// What an intermediate's shapes depend on: T and the config's widths (q_lora rank or 0, query
/// width, latent width, heads, d_c, H·v), so layers of different configs may share one map.
type ScratchKey = (usize, [usize; 6]);

type ScratchMap = Arc<Mutex<HashMap<ScratchKey, Arc<Scratch>>>>;
type IndexMap = Arc<Mutex<HashMap<(usize, usize, usize), Arc<Indices>>>>;

/// A paged latent cache for `num_seqs` sequences on the GPU, with the host-side page allocator.
#[derive(Debug)]
pub struct MlaCache {
    /// The pages.
    pub cache: LatentCache,
    free: Vec<u32>,
    seqs: Vec<SeqPages>,
}

/// A call's pages before it commits: the free list after taking them and each sequence's table.
struct PagePlan {
    free: Vec<u32>,
    tables: Vec<Vec<u32>>,
}

#[derive(Clone, Debug, Default)]
struct SeqPages {
    pages: Vec<u32>,
    len: usize,
}

impl MlaCache {
    /// A cache for `num_seqs` sequences of up to `max_tokens` tokens each, in pages of
    /// `block_size` tokens, for layers of `cfg`, stored as `cache_dtype` (F32, F16 or BF16).
    /// A model keeps one per layer; [`MlaLayer::new_cache_with_dtype`] is the same.
    pub fn new(
        gpu: &Gpu,
        cfg: &MlaConfig,
        num_seqs: usize,
        max_tokens: usize,
        block_size: usize,
        cache_dtype: DType,
    ) -> Result<Self> {
        if num_seqs == 0 || max_tokens == 0 || block_size == 0 {
            return Err(Error::invalid(format!(
                "an MLA cache needs num_seqs, max_tokens and block_size > 0 (got {num_seqs}, {max_tokens}, {block_size})"
            )));
        }
        let num_blocks = num_seqs * max_tokens.div_ceil(block_size);
        let cache = LatentCache::with_dtype(
            gpu,
            num_blocks,
            block_size,
            cfg.kv_lora_rank,
            cfg.qk_rope_head_dim,
            cache_dtype,
        )?;
        Ok(Self {
            cache,
            free: (0..num_blocks as u32).rev().collect(),
            seqs: vec![SeqPages::default(); num_seqs],
        })
    }

    /// Pages not held by any sequence.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Tokens per page.
    pub fn block_size(&self) -> usize {
        self.cache.block_size
    }

    /// Pages that appending `seqs` would take from the free list (beyond the pages the
    /// sequences already hold); ids out of range count nothing.
    pub fn blocks_needed(&self, seqs: &[MlaSeq]) -> usize {
        let bs = self.cache.block_size;
        seqs.iter()
            .filter_map(|q| self.seqs.get(q.seq).map(|p| (p, q.tokens)))
            .map(|(p, n)| (p.len + n).div_ceil(bs).saturating_sub(p.pages.len()))
            .sum()
    }

    /// Tokens held by sequence `seq`.
    pub fn seq_len(&self, seq: usize) -> usize {
        self.seqs.get(seq).map_or(0, |s| s.len)
    }

    /// Number of sequences.
    pub fn num_seqs(&self) -> usize {
        self.seqs.len()
    }

    /// The pages `seqs` (T tokens in all) would hold after appending them, taking new pages
    /// from a copy of the free list; [`Error::CacheFull`] when too few are free.
    fn plan_pages(&self, seqs: &[MlaSeq], t: usize) -> Result<PagePlan> {
        let bs = self.cache.block_size;
        let needed = self.blocks_needed(seqs);
        if needed > self.free.len() {
            return Err(Error::CacheFull {
                what: match seqs {
                    [q] => format!("appending {} tokens to sequence {}", q.tokens, q.seq),
                    _ => format!("appending {t} tokens to {} sequences", seqs.len()),
                },
                needed_blocks: needed,
                free_blocks: self.free.len(),
                num_blocks: self.cache.num_blocks,
                block_size: bs,
            });
        }
        let mut free = self.free.clone();
        let mut tables = Vec::with_capacity(seqs.len());
        for q in seqs {
            let held = &self.seqs[q.seq];
            let mut p = held.pages.clone();
            while p.len() * bs < held.len + q.tokens {
                p.push(free.pop().expect("capacity checked"));
            }
            tables.push(p);
        }
        Ok(PagePlan { free, tables })
    }

    /// Make `plan` (from [`Self::plan_pages`] for `seqs`) the allocation, and the sequences
    /// longer by their tokens: once everything that could fail has been recorded.
    fn commit(&mut self, seqs: &[MlaSeq], plan: PagePlan) {
        let PagePlan { free, mut tables } = plan;
        self.free = free;
        for (b, q) in seqs.iter().enumerate() {
            self.seqs[q.seq].pages = std::mem::take(&mut tables[b]);
            self.seqs[q.seq].len += q.tokens;
        }
    }

    /// Keep only the first `len` tokens of sequence `seq` (its pages stay allocated), e.g. to
    /// rerun a decode step from the same context.
    pub fn truncate(&mut self, seq: usize, len: usize) {
        if let Some(s) = self.seqs.get_mut(seq) {
            s.len = s.len.min(len);
        }
    }

    /// Forget sequence `seq`'s tokens and return its pages to the free list.
    pub fn reset(&mut self, seq: usize) {
        if let Some(s) = self.seqs.get_mut(seq) {
            self.free.extend(s.pages.drain(..).rev());
            s.len = 0;
        }
    }
}

/// One DeepSeek MLA layer with its weights resident on the GPU.
pub struct MlaLayer {
    gpu: Arc<Gpu>,
    cfg: MlaConfig,
    query: GpuQuery,
    kv_a: GpuLinear,
    kv_a_norm: Tensor,
    kv_b: Tensor,
    o_proj: GpuLinear,
    rope_tables: RopeTables,
    matmul: Matmul,
    rmsnorm: RmsNorm,
    rope: Rope,
    append: LatentCacheAppend,
    attention: Arc<AbsorbedAttention>,
    scratch: ScratchMap,
    indices: IndexMap,
}

impl std::fmt::Debug for MlaLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlaLayer").field("cfg", &self.cfg).finish()
    }
}

impl MlaLayer {
    /// Check `weights` against `cfg`, upload them and build the ops' pipelines. The projection
    /// matrices are stored on the GPU in [`MlaWeights::dtype`] (f32, f16 or bf16; matmul widens
    /// them on load); biases and the rmsnorm weights are uploaded as f32 (small vectors; the
    /// bias add and rmsnorm read f32 only).
    pub fn new(gpu: Arc<Gpu>, cfg: &MlaConfig, weights: &MlaWeights) -> Result<Self> {
        cfg.validate()?;
        weights.check(cfg)?;
        let g = &*gpu;
        let wd = weights.dtype;
        let query = match &weights.query {
            QueryWeights::Direct { q_proj } => GpuQuery::Direct(GpuLinear::upload(g, q_proj, wd)?),
            QueryWeights::LowRank {
                q_a_proj,
                q_a_layernorm,
                q_b_proj,
            } => GpuQuery::LowRank {
                a: Box::new(GpuLinear::upload(g, q_a_proj, wd)?),
                norm: g.upload_f32(&[q_a_layernorm.len()], q_a_layernorm)?,
                b: Box::new(GpuLinear::upload(g, q_b_proj, wd)?),
            },
        };
        let d_c = cfg.kv_lora_rank;
        Ok(Self {
            query,
            kv_a: GpuLinear::upload(g, &weights.kv_a_proj_with_mqa, wd)?,
            kv_a_norm: g.upload_f32(&[d_c], &weights.kv_a_layernorm)?,
            kv_b: g.upload_f32_as(
                &[weights.kv_b_proj.len() / d_c, d_c],
                wd,
                &weights.kv_b_proj,
            )?,
            o_proj: GpuLinear::upload(g, &weights.o_proj, wd)?,
            rope_tables: RopeTables::new(
                g,
                &cfg.inv_freq(),
                cfg.rope_interleave,
                cfg.rope_attention_factor(),
            )?,
            matmul: Matmul::new(g)?,
            rmsnorm: RmsNorm::new(g)?,
            rope: Rope::new(g)?,
            append: LatentCacheAppend::new(g)?,
            attention: Arc::new(AbsorbedAttention::new(g)?),
            scratch: Arc::default(),
            indices: Arc::default(),
            cfg: cfg.clone(),
            gpu,
        })
    }

    /// The config.
    pub fn config(&self) -> &MlaConfig {
        &self.cfg
    }

    /// A cache for `num_seqs` sequences of up to `max_tokens` tokens each, in pages of
    /// `block_size` tokens (pages are shared through one free list, so sequences may differ in
    /// length as long as the total fits). Stored as f32; see [`MlaLayer::new_cache_with_dtype`].
    pub fn new_cache(
        &self,
        num_seqs: usize,
        max_tokens: usize,
        block_size: usize,
    ) -> Result<MlaCache> {
        self.new_cache_with_dtype(num_seqs, max_tokens, block_size, DType::F32)
    }

    /// Like [`MlaLayer::new_cache`], with the cache stored as `cache_dtype` (F32, F16 or BF16,
    /// see [`LatentCache::with_dtype`]): half caches take half the bytes per token; the latent
    /// rows are rounded to nearest even when appended and widened when attention reads them.
    pub fn new_cache_with_dtype(
        &self,
        num_seqs: usize,
        max_tokens: usize,
        block_size: usize,
        cache_dtype: DType,
    ) -> Result<MlaCache> {
        MlaCache::new(
            &self.gpu,
            &self.cfg,
            num_seqs,
            max_tokens,
            block_size,
            cache_dtype,
        )
    }

    /// Make this layer use `other`'s intermediates (activation buffers, per-call index tensors
    /// and the attention op with its split-KV scratch) instead of its own, so a model of many
    /// layers keeps one set: the layers of a model run one after another in a batch, and every
    /// index tensor is rewritten in stream order before the dispatches that read it.
    /// Intermediates are keyed by T and the config's widths, so layers of different shapes may
    /// share safely. Layers on different [`Gpu`]s share nothing (the call changes nothing).
    pub fn share_scratch(&mut self, other: &MlaLayer) {
        if self.gpu.id() != other.gpu.id() {
            return;
        }
        self.scratch = other.scratch.clone();
        self.indices = other.indices.clone();
        self.attention = other.attention.clone();
    }

    fn indices(&self, t: usize, n: usize, pages: usize) -> Result<Arc<Indices>> {
        let mut map = self.indices.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(idx) = map.get(&(t, n, pages)) {
            return Ok(idx.clone());
        }
        let g = &*self.gpu;
        let idx = Arc::new(Indices {
            positions: g.empty(&[t], DType::U32)?,
            slots: g.empty(&[t], DType::U32)?,
            block_table: g.empty(&[n, pages], DType::U32)?,
            seq_lens: g.empty(&[n], DType::U32)?,
            query_starts: g.empty(&[n + 1], DType::U32)?,
        });
        map.insert((t, n, pages), idx.clone());
        Ok(idx)
    }

    fn scratch(&self, t: usize) -> Result<Arc<Scratch>> {
        let c = &self.cfg;
        let key = (
            t,
            [
                c.q_lora_rank.unwrap_or(0),
                c.q_dim(),
                c.latent_dim(),
                c.num_heads,
                c.kv_lora_rank,
                c.num_heads * c.v_head_dim,
            ],
        );
        let mut map = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sc) = map.get(&key) {
            return Ok(sc.clone());
        }
        let g = &*self.gpu;
        let f32_ = DType::F32;
        let sc = Arc::new(Scratch {
            q_a: match c.q_lora_rank {
                Some(r) => Some((g.empty(&[t, r], f32_)?, g.empty(&[t, r], f32_)?)),
                None => None,
            },
            q: g.empty(&[t, c.q_dim()], f32_)?,
            kv: g.empty(&[t, c.latent_dim()], f32_)?,
            latent: g.empty(&[t, c.latent_dim()], f32_)?,
            q_rope: g.empty(&[t, c.num_heads, c.qk_rope_head_dim], f32_)?,
            q_lat: g.empty(&[t, c.num_heads, c.kv_lora_rank], f32_)?,
            o_lat: g.empty(&[t, c.num_heads, c.kv_lora_rank], f32_)?,
            attn: g.empty(&[t, c.num_heads * c.v_head_dim], f32_)?,
        });
        map.insert(key, sc.clone());
        Ok(sc)
    }

    fn linear(
        &self,
        batch: &mut Batch,
        l: &GpuLinear,
        x: &Tensor,
        y: &Tensor,
        t: usize,
    ) -> Result<()> {
        self.matmul.record(
            batch,
            &MatmulDims::linear(t, l.out_features, l.in_features),
            x,
            &l.weight,
            l.bias.as_ref(),
            y,
        )
    }

    /// Record one forward of S new tokens for each sequence in `seqs` (indices into `cache`):
    /// `hidden` and `out` are (n, S, hidden) with n = seqs.len(). The new tokens take positions
    /// len..len + S of their sequence and attend to everything before them. This is
    /// [`MlaLayer::record_packed`] with S tokens for each sequence (and its validation: on any
    /// error the cache's pages and lengths are unchanged).
    pub fn record(
        &self,
        batch: &mut Batch,
        cache: &mut MlaCache,
        seqs: &[usize],
        hidden: &Tensor,
        out: &Tensor,
    ) -> Result<()> {
        let c = &self.cfg;
        let hs = hidden.shape();
        if hs.len() != 3
            || hs[0] != seqs.len()
            || hs[2] != c.hidden_size
            || hs[1] == 0
            || seqs.is_empty()
        {
            return Err(Error::shape(
                "hidden_states",
                format!(
                    "(n, S, hidden) = [{}, S ≥ 1, {}]",
                    seqs.len(),
                    c.hidden_size
                ),
                hs,
            ));
        }
        let (n, s) = (hs[0], hs[1]);
        hidden.expect(
            "hidden_states",
            "(n, S, hidden)",
            &[n, s, c.hidden_size],
            DType::F32,
        )?;
        out.expect(
            "out",
            "(n, S, hidden) like hidden_states",
            &[n, s, c.hidden_size],
            DType::F32,
        )?;
        let packed: Vec<MlaSeq> = seqs.iter().map(|&seq| MlaSeq { seq, tokens: s }).collect();
        let rows = [n * s, c.hidden_size];
        self.record_packed(
            batch,
            cache,
            &packed,
            &hidden.reshaped(&rows)?,
            &out.reshaped(&rows)?,
            false,
        )
    }

    /// Record one forward of packed sequences: `hidden` and `out` are (T, hidden) f32,
    /// T = Σ tokens, sequences packed in the order of `seqs`. Each sequence's new tokens take
    /// positions len..len + tokens and attend to its whole cache (bottom-right causal), so
    /// chunked prefill (a prompt fed in several calls) and decode (one token) are the same
    /// call, and prefilling and decoding sequences mix in one step. With `accumulate`,
    /// out += o_proj(attn) (a residual add; `out` must then not be `hidden`); else
    /// out = o_proj(attn). Shapes, sequence ids (distinct, in range, ≥ 1 token each) and cache
    /// capacity are validated before anything is recorded; on any error the cache's pages and
    /// lengths are unchanged (a device-limit error from an op may leave part of the layer
    /// recorded in `batch`, which should then be dropped).
    pub fn record_packed(
        &self,
        batch: &mut Batch,
        cache: &mut MlaCache,
        seqs: &[MlaSeq],
        hidden: &Tensor,
        out: &Tensor,
        accumulate: bool,
    ) -> Result<()> {
        let c = &self.cfg;
        let t = check_packed(seqs, cache.seqs.len())?;
        let n = seqs.len();
        hidden.expect(
            "hidden_states",
            &format!("(T, hidden) with T = Σ tokens = {t}"),
            &[t, c.hidden_size],
            DType::F32,
        )?;
        out.expect(
            "out",
            "(T, hidden) like hidden_states",
            &[t, c.hidden_size],
            DType::F32,
        )?;
        if accumulate && out.buffer() == hidden.buffer() {
            return Err(Error::invalid(
                "record_packed with accumulate: `out` must not be `hidden_states` (out += \
                 o_proj(attn) reads and writes out)",
            ));
        }
        if cache.cache.d_c != c.kv_lora_rank || cache.cache.d_r != c.qk_rope_head_dim {
            return Err(Error::invalid("the cache was made for another config"));
        }
        let bs = cache.cache.block_size;
        let PagePlan { free, tables } = cache.plan_pages(seqs, t)?;
        let sc = self.scratch(t)?;
        // The block table has room for every page of the cache, so its shape (and the tensor that
        // holds it) stays the same as sequences grow; unused entries are u32::MAX (masked).
        let max_blocks = cache.cache.num_blocks;
        let mut positions = Vec::with_capacity(t);
        let mut slots = Vec::with_capacity(t);
        let mut block_table = vec![u32::MAX; n * max_blocks];
        let mut lens = Vec::with_capacity(n);
        let mut starts = Vec::with_capacity(n + 1);
        starts.push(0u32);
        for (b, q) in seqs.iter().enumerate() {
            let start = cache.seqs[q.seq].len;
            positions.extend((start..start + q.tokens).map(|p| p as u32));
            slots.extend(slots_for(&tables[b], bs, start, q.tokens)?);
            block_table[b * max_blocks..b * max_blocks + tables[b].len()]
                .copy_from_slice(&tables[b]);
            lens.push((start + q.tokens) as u32);
            starts.push(starts[b] + q.tokens as u32);
        }
        let max_len = *lens.iter().max().expect("n ≥ 1") as usize;
        let max_query = seqs.iter().map(|q| q.tokens).max().expect("n ≥ 1");
        // Index tensors are allocated once per (T, n, pages) and refilled in stream order.
        let idx = self.indices(t, n, max_blocks)?;
        batch.write(&idx.positions, 0, &positions)?;
        batch.write(&idx.slots, 0, &slots)?;
        batch.write(&idx.block_table, 0, &block_table)?;
        batch.write(&idx.seq_lens, 0, &lens)?;
        batch.write(&idx.query_starts, 0, &starts)?;
        let (positions, slots, block_table, seq_lens) =
            (&idx.positions, &idx.slots, &idx.block_table, &idx.seq_lens);

        // Every shape was checked above; the ops below can only fail on device limits.
        let (h_n, nope, d_r, v_d, d_c) = (
            c.num_heads,
            c.qk_nope_head_dim,
            c.qk_rope_head_dim,
            c.v_head_dim,
            c.kv_lora_rank,
        );
        let qk = nope + d_r;
        let w = c.latent_dim();
        let eps = c.rms_norm_eps as f32;
        match &self.query {
            GpuQuery::Direct(q_proj) => self.linear(batch, q_proj, hidden, &sc.q, t)?,
            GpuQuery::LowRank { a, norm, b } => {
                let (qa, qa_n) = sc.q_a.as_ref().expect("allocated for q_lora");
                self.linear(batch, a, hidden, qa, t)?;
                let r = a.out_features;
                self.rmsnorm.record(
                    batch,
                    qa,
                    Rows::contiguous(r),
                    norm,
                    qa_n,
                    Rows::contiguous(r),
                    t,
                    eps,
                )?;
                self.linear(batch, b, qa_n, &sc.q, t)?;
            }
        }
        self.linear(batch, &self.kv_a, hidden, &sc.kv, t)?;
        self.rmsnorm.record(
            batch,
            &sc.kv,
            Rows {
                offset: 0,
                stride: w,
            },
            &self.kv_a_norm,
            &sc.latent,
            Rows {
                offset: 0,
                stride: w,
            },
            t,
            eps,
        )?;
        let k_layout = RopeLayout {
            offset: d_c,
            token_stride: w,
            head_stride: 0,
        };
        self.rope.record(
            batch,
            &sc.kv,
            k_layout,
            &sc.latent,
            k_layout,
            positions,
            &self.rope_tables,
            t,
            1,
        )?;
        self.rope.record(
            batch,
            &sc.q,
            RopeLayout {
                offset: nope,
                token_stride: h_n * qk,
                head_stride: qk,
            },
            &sc.q_rope,
            RopeLayout::contiguous(h_n, d_r),
            positions,
            &self.rope_tables,
            t,
            h_n,
        )?;
        // q_lat[t, h, :] = W_UK[h]ᵀ q_nope[t, h, :]: W_UK[h] = kv_b rows h·(nope+v)..+nope, [K=nope, N=d_c].
        let absorb_q = MatmulDims {
            g: h_n,
            m: t,
            n: d_c,
            k: nope,
            x_off: 0,
            x_gs: qk,
            x_rs: h_n * qk,
            w_off: 0,
            w_gs: (nope + v_d) * d_c,
            w_rs: d_c,
            w_trans: false,
            y_off: 0,
            y_gs: d_c,
            y_rs: h_n * d_c,
        };
        self.matmul
            .record(batch, &absorb_q, &sc.q, &self.kv_b, None, &sc.q_lat)?;
        self.append.record(batch, &cache.cache, &sc.latent, slots)?;
        self.attention.record(
            batch,
            &AbsorbedAttentionInputs {
                q_lat: &sc.q_lat,
                q_rope: &sc.q_rope,
                cache: &cache.cache,
                block_table,
                seq_lens,
                scale: c.softmax_scale() as f32,
                max_seq_len: max_len,
                query_starts: Some(&idx.query_starts),
                max_query_len: max_query,
            },
            &sc.o_lat,
        )?;
        // attn[t, h, :] = W_UV[h] o_lat[t, h, :]: W_UV[h] = kv_b rows h·(nope+v)+nope..+v, [N=v, K=d_c].
        let absorb_o = MatmulDims {
            g: h_n,
            m: t,
            n: v_d,
            k: d_c,
            x_off: 0,
            x_gs: d_c,
            x_rs: h_n * d_c,
            w_off: nope * d_c,
            w_gs: (nope + v_d) * d_c,
            w_rs: d_c,
            w_trans: true,
            y_off: 0,
            y_gs: v_d,
            y_rs: h_n * v_d,
        };
        self.matmul
            .record(batch, &absorb_o, &sc.o_lat, &self.kv_b, None, &sc.attn)?;
        if accumulate {
            let o = &self.o_proj;
            self.matmul.record_accumulate(
                batch,
                &MatmulDims::linear(t, o.out_features, o.in_features),
                &sc.attn,
                &o.weight,
                o.bias.as_ref(),
                out,
            )?;
        } else {
            self.linear(batch, &self.o_proj, &sc.attn, out, t)?;
        }

        cache.commit(seqs, PagePlan { free, tables });
        Ok(())
    }

    /// Append latent rows as they are, `latent` (T, d_c + d_R) f32 packed like `seqs` (each
    /// row `[c | k_rope]`, normalised and rotated: what [`MlaLayer::record_packed`] writes for a
    /// token), to the sequences' ends in `cache`: to restore a cache saved elsewhere, or to
    /// give a benchmark a long context without running the attention over it. Errors as
    /// `record_packed` (bad sequences, a full cache) leave the cache as it was.
    pub fn record_append_latent(
        &self,
        batch: &mut Batch,
        cache: &mut MlaCache,
        seqs: &[MlaSeq],
        latent: &Tensor,
    ) -> Result<()> {
        let c = &self.cfg;
        let t = check_packed(seqs, cache.seqs.len())?;
        if cache.cache.d_c != c.kv_lora_rank || cache.cache.d_r != c.qk_rope_head_dim {
            return Err(Error::invalid("the cache was made for another config"));
        }
        latent.expect(
            "latent",
            &format!("(T, d_c + d_R) with T = Σ tokens = {t}"),
            &[t, c.latent_dim()],
            DType::F32,
        )?;
        let plan = cache.plan_pages(seqs, t)?;
        let bs = cache.cache.block_size;
        let mut slots = Vec::with_capacity(t);
        for (b, q) in seqs.iter().enumerate() {
            slots.extend(slots_for(
                &plan.tables[b],
                bs,
                cache.seqs[q.seq].len,
                q.tokens,
            )?);
        }
        let idx = self.indices(t, seqs.len(), cache.cache.num_blocks)?;
        batch.write(&idx.slots, 0, &slots)?;
        self.append
            .record(batch, &cache.cache, latent, &idx.slots)?;
        cache.commit(seqs, plan);
        Ok(())
    }

    /// Run one forward (one submission) and return `out` (n, S, hidden) on the GPU.
    pub fn forward(&self, cache: &mut MlaCache, seqs: &[usize], hidden: &Tensor) -> Result<Tensor> {
        let out = self.gpu.empty(hidden.shape(), DType::F32)?;
        let mut batch = self.gpu.batch();
        self.record(&mut batch, cache, seqs, hidden, &out)?;
        batch.run()?;
        Ok(out)
    }

    /// Run the layer over `hidden` (Bt, S, hidden) from position 0 with a fresh cache, in one
    /// shot, or — with `decode_from` = Some(P), 1 ≤ P ≤ S — prefill P tokens and feed the rest
    /// one at a time. Returns out (Bt, S, hidden) on the host. The cache is f32; see
    /// [`MlaLayer::run_host_with_cache_dtype`].
    pub fn run_host(
        &self,
        hidden: &[f32],
        bt: usize,
        s: usize,
        decode_from: Option<usize>,
    ) -> Result<Vec<f32>> {
        self.run_host_with_cache_dtype(hidden, bt, s, decode_from, DType::F32)
    }

    /// [`MlaLayer::run_host`] with the cache stored as `cache_dtype` (F32, F16 or BF16).
    pub fn run_host_with_cache_dtype(
        &self,
        hidden: &[f32],
        bt: usize,
        s: usize,
        decode_from: Option<usize>,
        cache_dtype: DType,
    ) -> Result<Vec<f32>> {
        let run = self.run_host_with_cache_dtype_async(hidden, bt, s, decode_from, cache_dtype);
        crate::runtime::tensor::blocking(run, "MlaLayer::run_host")
    }

    /// [`MlaLayer::run_host_with_cache_dtype`] awaited (the only way in a browser).
    pub async fn run_host_with_cache_dtype_async(
        &self,
        hidden: &[f32],
        bt: usize,
        s: usize,
        decode_from: Option<usize>,
        cache_dtype: DType,
    ) -> Result<Vec<f32>> {
        let hid = self.cfg.hidden_size;
        let mut chunks = crate::spec::mla::Chunks::new(hidden, bt, s, hid, decode_from)?;
        let mut cache = self.new_cache_with_dtype(bt, s, 16, cache_dtype)?;
        let seqs: Vec<usize> = (0..bt).collect();
        while let Some((part, len)) = chunks.next_part() {
            let x = self.gpu.upload_f32(&[bt, len, hid], &part)?;
            let y = self.forward(&mut cache, &seqs, &x)?;
            chunks.put(&self.gpu.read_f32_async(&y).await?);
        }
        Ok(chunks.out)
    }
}

/// Bytes and FLOPs of one forward of S new tokens for each of Bt sequences whose caches then
/// hold `ctx` tokens (the new ones included), with the projection weights stored as
/// `weight_dtype` and the cache as `cache_dtype`. Bytes (each at its real width): every weight
/// read once, hidden states in and out, the cache rows read once and the new rows written.
/// FLOPs: 2 per multiply-add of the projections and absorb products, plus the attention of
/// [`crate::ops::absorbed_attention::cost`].
pub fn forward_cost(
    cfg: &MlaConfig,
    bt: usize,
    s: usize,
    ctx: usize,
    weight_dtype: DType,
    cache_dtype: DType,
) -> crate::ops::Cost {
    let (hid, h, nope, d_r, v, d_c) = (
        cfg.hidden_size as u64,
        cfg.num_heads as u64,
        cfg.qk_nope_head_dim as u64,
        cfg.qk_rope_head_dim as u64,
        cfg.v_head_dim as u64,
        cfg.kv_lora_rank as u64,
    );
    let t = (bt * s) as u64;
    let q_params = match cfg.q_lora_rank {
        Some(r) => r as u64 * hid + h * (nope + d_r) * r as u64,
        None => h * (nope + d_r) * hid,
    };
    let params = q_params + (d_c + d_r) * hid + h * (nope + v) * d_c + hid * h * v;
    let proj_macs =
        t * (q_params + (d_c + d_r) * hid + hid * h * v) + t * h * (nope * d_c + v * d_c);
    let attn = crate::ops::absorbed_attention::cost(
        bt,
        s,
        cfg.num_heads,
        ctx,
        cfg.kv_lora_rank,
        cfg.qk_rope_head_dim,
        64,
        cache_dtype,
    );
    let (w_size, c_size) = (weight_dtype.size() as u64, cache_dtype.size() as u64);
    crate::ops::Cost {
        bytes: w_size * params + 4 * 2 * t * hid + c_size * t * (d_c + d_r) + attn.bytes,
        flops: 2 * proj_macs + attn.flops,
    }
}
