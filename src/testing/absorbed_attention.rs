//! Absorbed-attention fixtures: a random paged latent cache in which only the sequences' keys
//! hold values (rows ~ N(0, 1)) and everything else is NaN — spare pages, the tail of each
//! sequence's last page, block-table entries past a sequence's pages (NaN pages or invalid ids)
//! — so a kernel that reads outside the sequences produces NaN; queries ~ N(0, 1), S_q per
//! sequence or a ragged count each (the packed form); the upload and the f64 reference.

use super::permutation;
use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::absorbed_attention::{AbsorbedAttention, AbsorbedAttentionInputs, Dims};
use crate::ops::latent_cache::LatentCache;
use crate::reference::absorbed_attention::absorbed_attention_packed;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu, Tensor};

/// GPU against the f64 reference: |out − ref| ≤ 2e-5 + 1e-4·|ref|. o_lat is a convex
/// combination of cache rows of order 1, from f32 dots of length d_c + d_R and f32 softmax sums
/// over up to a few thousand keys.
pub const TOLERANCE: Tolerance = Tolerance::new(2e-5, 1e-4);

/// A half cache (f16, bf16) against the reference on the *same* rounded cache
/// ([`Problem::with_cache_dtype`]): widening a half is exact and the dots, the softmax and the
/// accumulation are f32 as for an f32 cache, so the f32 tolerance holds unchanged.
pub const HALF_CACHE_TOLERANCE: Tolerance = TOLERANCE;

/// The sizes of a random problem.
#[derive(Clone, Debug)]
pub struct Shape {
    /// New query tokens per sequence S_q (ignored with `query_lens`).
    pub s_q: usize,
    /// The packed form: each sequence's own count of new query tokens (≥ 1, one per sequence
    /// of `lens`); `None` for S_q each.
    pub query_lens: Option<Vec<usize>>,
    /// Heads H.
    pub h: usize,
    /// Latent width d_c.
    pub d_c: usize,
    /// Rope width d_R.
    pub d_r: usize,
    /// Tokens per page.
    pub block_size: usize,
    /// Tokens in the cache per sequence (the S_q new ones included).
    pub lens: Vec<usize>,
    /// Block-table entries per sequence beyond what the longest sequence needs.
    pub spare_entries: usize,
    /// Pages no sequence owns (all NaN).
    pub spare_pages: usize,
}

impl Shape {
    /// Decode (S_q = 1) at DeepSeek widths (d_c 512, d_R 64, pages of 64) for `bt` sequences
    /// of `ctx` tokens with `h` heads.
    pub fn decode(bt: usize, h: usize, ctx: usize) -> Self {
        Self {
            s_q: 1,
            query_lens: None,
            h,
            d_c: 512,
            d_r: 64,
            block_size: 64,
            lens: vec![ctx; bt],
            spare_entries: 1,
            spare_pages: 1,
        }
    }
}

/// One call's host inputs.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Sizes.
    pub dims: Dims,
    /// The packed form's (Bt + 1) query offsets; `None` for the uniform form.
    pub query_starts: Option<Vec<u32>>,
    /// q_lat (Bt, S_q, H, d_c), or (T, H, d_c) packed.
    pub q_lat: Vec<f32>,
    /// q_rope (Bt, S_q, H, d_R), or (T, H, d_R) packed.
    pub q_rope: Vec<f32>,
    /// The cache's pages (num_blocks, block_size, d_c + d_R).
    pub cache: Vec<f32>,
    /// Pages in the cache.
    pub num_blocks: usize,
    /// block_table (Bt, max_blocks).
    pub block_table: Vec<u32>,
    /// seq_lens (Bt).
    pub seq_lens: Vec<u32>,
    /// Softmax scale.
    pub scale: f32,
    /// Storage dtype of the cache (f32 unless [`Problem::with_cache_dtype`]).
    pub cache_dtype: DType,
}

impl Problem {
    /// A random problem of `shape`: page ids shuffled so sequences interleave in memory; the
    /// block-table entries past a sequence's pages alternate between spare (NaN) pages and
    /// `u32::MAX`.
    pub fn random(rng: &mut Rng, shape: &Shape) -> Self {
        let bt = shape.lens.len();
        let (bs, w) = (shape.block_size, shape.d_c + shape.d_r);
        let needed: Vec<usize> = shape.lens.iter().map(|&l| l.div_ceil(bs)).collect();
        let max_blocks = needed.iter().max().copied().unwrap_or(1).max(1) + shape.spare_entries;
        let used: usize = needed.iter().sum();
        let num_blocks = used + shape.spare_pages.max(1);
        let ids = permutation(rng, num_blocks);
        let spare = &ids[used..];
        let mut cache = vec![f32::NAN; num_blocks * bs * w];
        let mut block_table = vec![0u32; bt * max_blocks];
        let mut next = 0;
        for (b, &len) in shape.lens.iter().enumerate() {
            for k in 0..max_blocks {
                block_table[b * max_blocks + k] = if k < needed[b] {
                    next += 1;
                    ids[next - 1]
                } else if k % 2 == 0 {
                    spare[k % spare.len()]
                } else {
                    u32::MAX
                };
            }
            for j in 0..len {
                let slot = block_table[b * max_blocks + j / bs] as usize * bs + j % bs;
                let row = rng.normal_vec(w, 0.0, 1.0);
                cache[slot * w..(slot + 1) * w].copy_from_slice(&row);
            }
        }
        let query_starts = shape.query_lens.as_ref().map(|q| {
            assert_eq!(q.len(), bt, "one query count per sequence");
            std::iter::once(0)
                .chain(q.iter().scan(0, |acc, &n| {
                    *acc += n as u32;
                    Some(*acc)
                }))
                .collect::<Vec<u32>>()
        });
        let (s_q, tokens) = match &shape.query_lens {
            Some(q) => (q.iter().copied().max().unwrap_or(1), q.iter().sum()),
            None => (shape.s_q, bt * shape.s_q),
        };
        let n_q = tokens * shape.h;
        Self {
            dims: Dims {
                bt,
                s_q,
                tokens,
                h: shape.h,
                d_c: shape.d_c,
                d_r: shape.d_r,
                block_size: bs,
                max_blocks,
            },
            query_starts,
            q_lat: rng.normal_vec(n_q * shape.d_c, 0.0, 1.0),
            q_rope: rng.normal_vec(n_q * shape.d_r, 0.0, 1.0),
            cache,
            num_blocks,
            block_table,
            seq_lens: shape.lens.iter().map(|&l| l as u32).collect(),
            scale: 1.5 / (w as f32).sqrt(),
            cache_dtype: DType::F32,
        }
    }

    /// This problem with the cache stored as `dtype`: the host cache is rounded to it (nearest
    /// even; NaN stays NaN) so the reference sees exactly what the GPU holds.
    pub fn with_cache_dtype(mut self, dtype: DType) -> Self {
        for v in &mut self.cache {
            *v = dtype.round_f32(*v);
        }
        self.cache_dtype = dtype;
        self
    }

    /// The longest sequence (the op's `max_seq_len`).
    pub fn max_seq_len(&self) -> usize {
        self.seq_lens.iter().copied().max().unwrap_or(1) as usize
    }

    /// The query tensors' shape: (Bt, S_q, H, width), or (T, H, width) packed.
    pub fn query_shape(&self, width: usize) -> Vec<usize> {
        let d = &self.dims;
        match self.query_starts {
            Some(_) => vec![d.tokens, d.h, width],
            None => vec![d.bt, d.s_q, d.h, width],
        }
    }

    /// The query offsets (Bt + 1): the packed form's, or b·S_q.
    pub fn starts(&self) -> Vec<u32> {
        let d = &self.dims;
        match &self.query_starts {
            Some(q) => q.clone(),
            None => (0..=d.bt).map(|b| (b * d.s_q) as u32).collect(),
        }
    }

    /// The f64 reference: o_lat (Bt, S_q, H, d_c), or (T, H, d_c) packed.
    pub fn reference(&self) -> Vec<f64> {
        absorbed_attention_packed(
            self.dims,
            &self.starts(),
            &self.q_lat,
            &self.q_rope,
            &self.cache,
            &self.block_table,
            &self.seq_lens,
            self.scale,
        )
    }

    /// Upload the cache and the query and index tensors.
    pub fn upload(&self, gpu: &Gpu) -> Result<GpuInputs> {
        let d = &self.dims;
        let cache = LatentCache::with_dtype(
            gpu,
            self.num_blocks,
            d.block_size,
            d.d_c,
            d.d_r,
            self.cache_dtype,
        )?;
        if self.cache_dtype == DType::F32 {
            gpu.write(&cache.data, &self.cache)?;
        } else {
            let words: Vec<u16> = self
                .cache
                .iter()
                .map(|&x| self.cache_dtype.half_bits(x).expect("a half dtype"))
                .collect();
            gpu.write(&cache.data, &words)?;
        }
        let query_starts = match &self.query_starts {
            Some(q) => Some(gpu.upload_u32(&[d.bt + 1], q)?),
            None => None,
        };
        Ok(GpuInputs {
            q_lat: gpu.upload_f32(&self.query_shape(d.d_c), &self.q_lat)?,
            q_rope: gpu.upload_f32(&self.query_shape(d.d_r), &self.q_rope)?,
            query_starts,
            max_query_len: d.s_q,
            cache,
            block_table: gpu.upload_u32(&[d.bt, d.max_blocks], &self.block_table)?,
            seq_lens: gpu.upload_u32(&[d.bt], &self.seq_lens)?,
            scale: self.scale,
            max_seq_len: self.max_seq_len(),
        })
    }

    /// A NaN-poisoned o_lat.
    pub fn poisoned_output(&self, gpu: &Gpu) -> Result<Tensor> {
        gpu.nan_f32(&self.query_shape(self.dims.d_c))
    }

    /// Upload, run `op` once into a poisoned o_lat and read it back, with the split-KV count
    /// the op used.
    pub async fn run(&self, gpu: &Gpu, op: &AbsorbedAttention) -> Result<(Vec<f32>, usize)> {
        let t = self.upload(gpu)?;
        let o_lat = self.poisoned_output(gpu)?;
        let splits = op.plan_for(&t.inputs(), &o_lat)?.n_split;
        let mut batch = gpu.batch();
        op.record(&mut batch, &t.inputs(), &o_lat)?;
        batch.run()?;
        Ok((gpu.read_f32_async(&o_lat).await?, splits))
    }
}

/// A problem's inputs on the GPU.
#[derive(Clone, Debug)]
pub struct GpuInputs {
    /// q_lat.
    pub q_lat: Tensor,
    /// q_rope.
    pub q_rope: Tensor,
    /// The packed form's query offsets (u32).
    pub query_starts: Option<Tensor>,
    /// The longest sequence's query tokens.
    pub max_query_len: usize,
    /// The paged cache.
    pub cache: LatentCache,
    /// block_table (u32).
    pub block_table: Tensor,
    /// seq_lens (u32).
    pub seq_lens: Tensor,
    /// Softmax scale.
    pub scale: f32,
    /// The longest sequence.
    pub max_seq_len: usize,
}

impl GpuInputs {
    /// The op's inputs.
    pub fn inputs(&self) -> AbsorbedAttentionInputs<'_> {
        AbsorbedAttentionInputs {
            q_lat: &self.q_lat,
            q_rope: &self.q_rope,
            cache: &self.cache,
            block_table: &self.block_table,
            seq_lens: &self.seq_lens,
            scale: self.scale,
            max_seq_len: self.max_seq_len,
            query_starts: self.query_starts.as_ref(),
            max_query_len: self.max_query_len,
        }
    }
}
