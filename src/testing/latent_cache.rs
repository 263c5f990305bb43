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
use crate::runtime::{Gpu, Tensor};

/// The append only moves data: exact.
pub const TOLERANCE: Tolerance = Tolerance::new(0.0, 0.0);

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
        }
    }

    /// Row width W = d_c + d_R.
    pub fn width(&self) -> usize {
        self.d_c + self.d_r
    }

    /// The reference: the whole cache after the append.
    pub fn reference(&self) -> Vec<f64> {
        append(&self.initial, self.width(), &self.latent, &self.slots)
    }

    /// Upload the cache (holding `initial`), the rows and the slots.
    pub fn upload(&self, gpu: &Gpu) -> Result<GpuInputs> {
        let cache = LatentCache::new(gpu, self.num_blocks, self.block_size, self.d_c, self.d_r)?;
        gpu.write(&cache.data, &self.initial)?;
        let t = self.slots.len();
        Ok(GpuInputs {
            cache,
            latent: gpu.upload_f32(&[t, self.width()], &self.latent)?,
            slots: gpu.upload_u32(&[t], &self.slots)?,
        })
    }

    /// Upload, append with `op` and read the whole cache back.
    pub fn run(&self, gpu: &Gpu, op: &LatentCacheAppend) -> Result<Vec<f32>> {
        let t = self.upload(gpu)?;
        let mut batch = gpu.batch();
        op.record(&mut batch, &t.cache, &t.latent, &t.slots)?;
        batch.run()?;
        gpu.read_f32(&t.cache.data)
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
