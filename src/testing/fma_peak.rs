//! FMA-peak fixtures: chain seeds ~ U(−1, 1), their upload and the f64 reference.

use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::fma_peak::{FmaPeak, FmaPeakParams};
use crate::reference::fma_peak::fma_peak;
use crate::rng::Rng;
use crate::runtime::{Gpu, Tensor};

/// 32 chains of a contraction per element: f32 rounding stays within a few ulps of each term.
pub const TOLERANCE: Tolerance = Tolerance::new(1e-5, 1e-5);

/// One run's seeds and parameters.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Seeds (n).
    pub seeds: Vec<f32>,
    /// Chain parameters.
    pub params: FmaPeakParams,
}

impl Problem {
    /// `n` random seeds.
    pub fn random(rng: &mut Rng, n: usize, params: FmaPeakParams) -> Self {
        Self {
            seeds: rng.uniform_vec(n, -1.0, 1.0),
            params,
        }
    }

    /// The f64 reference: out (n).
    pub fn reference(&self) -> Vec<f64> {
        fma_peak(&self.seeds, self.params)
    }

    /// Upload the seeds.
    pub fn upload(&self, gpu: &Gpu) -> Result<Tensor> {
        gpu.upload_f32(&[self.seeds.len()], &self.seeds)
    }

    /// Upload, run `op` into a NaN-poisoned out and read it back.
    pub async fn run(&self, gpu: &Gpu, op: &FmaPeak) -> Result<Vec<f32>> {
        let seeds = self.upload(gpu)?;
        let out = gpu.nan_f32(&[self.seeds.len()])?;
        let mut batch = gpu.batch();
        op.record(&mut batch, &seeds, &out, self.params)?;
        batch.run()?;
        gpu.read_f32_async(&out).await
    }
}
