//! Latent-cache fixtures: a cache whose rows are a mix of N(0, 1) values and NaN (every third
//! slot), latent rows ~ N(0, 1) appended at distinct random slots with every fourth row skipped
//! (an out-of-range slot), so a write to a wrong slot or a missed write changes the whole-cache
//! comparison; the upload and the reference.

use super::permutation;
use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::latent_cache::{LatentCache, LatentCacheAppend};
use crate::reference::latent_cache::append;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu, Tensor};

/// The append only moves data: exact.
pub const TOLERANCE: Tolerance = Tolerance::new(0.0, 0.0);

/// A half cache against the reference on the same rows rounded to the dtype on the host
/// (nearest even): bf16 is rounded the same way in the kernel, so exact; f16 goes through
/// `pack2x16float`, which WGSL lets round to either neighbour, so one f16 ulp
/// (2⁻¹⁰·|x| for normals, 2⁻²⁴ for subnormals).
pub fn half_tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::F16 => Tolerance::new(2f64.powi(-24), 2f64.powi(-10)),
        _ => TOLERANCE,
    }
}

/// One append's host inputs.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Pages in the cache.
    pub num_blocks: usize,
    /// Tokens per page.
    pub block_size: usize,
    /// Width of c.
    pub d_c: usize,
    /// Width of k_rope.
    pub d_r: usize,
    /// The cache before the append (num_blocks, block_size, d_c + d_R).
    pub initial: Vec<f32>,
    /// Rows to append (T, d_c + d_R).
    pub latent: Vec<f32>,
    /// Slot of each row (T); out of range skips the row.
    pub slots: Vec<u32>,
    /// Storage dtype of the cache (f32 unless [`Problem::with_dtype`]).
    pub dtype: DType,
}

impl Problem {
    /// `t` random rows into a random cache. Slots are distinct when `t` ≤ the cache's slots.
    pub fn random(
        rng: &mut Rng,
        num_blocks: usize,
        block_size: usize,
        d_c: usize,
        d_r: usize,
        t: usize,
    ) -> Self {
        let w = d_c + d_r;
        let num_slots = num_blocks * block_size;
        let initial: Vec<f32> = (0..num_slots * w)
            .map(|i| {
                if (i / w) % 3 == 0 {
                    f32::NAN
                } else {
                    rng.normal() as f32
                }
            })
            .collect();
        let all = permutation(rng, num_slots);
        let slots: Vec<u32> = (0..t)
            .map(|k| {
                if k % 4 == 3 {
                    u32::MAX - k as u32
                } else {
                    all[k % num_slots]
                }
            })
            .collect();
        let latent = rng.normal_vec(t * w, 0.0, 1.0);
        Self {
            num_blocks,
            block_size,
            d_c,
            d_r,
            initial,
            latent,
            slots,
            dtype: DType::F32,
        }
    }

    /// This problem with the cache stored as `dtype`: the initial cache is rounded to it on the
    /// host (so the reference sees what the GPU holds); the rows stay f32, the kernel rounds.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        for v in &mut self.initial {
            *v = dtype.round_f32(*v);
        }
        self.dtype = dtype;
        self
    }

    /// Row width W = d_c + d_R.
    pub fn width(&self) -> usize {
        self.d_c + self.d_r
    }

    /// The reference: the whole cache after the append (rows rounded to the cache's dtype).
    pub fn reference(&self) -> Vec<f64> {
        let rows: Vec<f32> = self
            .latent
            .iter()
            .map(|&x| self.dtype.round_f32(x))
            .collect();
        append(&self.initial, self.width(), &rows, &self.slots)
    }

    /// Upload the cache (holding `initial`), the rows and the slots.
    pub fn upload(&self, gpu: &Gpu) -> Result<GpuInputs> {
        let cache = LatentCache::with_dtype(
            gpu,
            self.num_blocks,
            self.block_size,
            self.d_c,
            self.d_r,
            self.dtype,
        )?;
        if self.dtype == DType::F32 {
            gpu.write(&cache.data, &self.initial)?;
        } else {
            let words: Vec<u16> = self
                .initial
                .iter()
                .map(|&x| self.dtype.half_bits(x).expect("a half dtype"))
                .collect();
            gpu.write(&cache.data, &words)?;
        }
        let t = self.slots.len();
        Ok(GpuInputs {
            cache,
            latent: gpu.upload_f32(&[t, self.width()], &self.latent)?,
            slots: gpu.upload_u32(&[t], &self.slots)?,
        })
    }

    /// Upload, append with `op` and read the whole cache back.
    pub async fn run(&self, gpu: &Gpu, op: &LatentCacheAppend) -> Result<Vec<f32>> {
        let t = self.upload(gpu)?;
        let mut batch = gpu.batch();
        op.record(&mut batch, &t.cache, &t.latent, &t.slots)?;
        batch.run()?;
        gpu.read_f32_async(&t.cache.data).await
    }
}

/// A problem's inputs on the GPU.
#[derive(Clone, Debug)]
pub struct GpuInputs {
    /// The cache.
    pub cache: LatentCache,
    /// latent (T, W).
    pub latent: Tensor,
    /// slots (T) u32.
    pub slots: Tensor,
}
