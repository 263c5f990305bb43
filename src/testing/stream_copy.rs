//! Stream-copy fixtures: values ~ N(0, 1), their upload, and the reference (the values).

use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::stream_copy::StreamCopy;
use crate::reference::stream_copy::stream_copy;
use crate::rng::Rng;
use crate::runtime::Gpu;

/// A copy is exact.
pub const TOLERANCE: Tolerance = Tolerance::new(0.0, 0.0);

/// One copy's source values.
#[derive(Clone, Debug)]
pub struct Problem {
    /// src (n).
    pub data: Vec<f32>,
}

impl Problem {
    /// `n` random values.
    pub fn random(rng: &mut Rng, n: usize) -> Self {
        Self {
            data: rng.normal_vec(n, 0.0, 1.0),
        }
    }

    /// The reference: the values.
    pub fn reference(&self) -> Vec<f64> {
        stream_copy(&self.data)
    }

    /// Upload src (n).
    pub fn upload(&self, gpu: &Gpu) -> Result<crate::runtime::Tensor> {
        gpu.upload_f32(&[self.data.len()], &self.data)
    }

    /// Upload, copy with `op` into a NaN-poisoned dst and read it back.
    pub async fn run(&self, gpu: &Gpu, op: &StreamCopy) -> Result<Vec<f32>> {
        let src = self.upload(gpu)?;
        let dst = gpu.nan_f32(&[self.data.len()])?;
        let mut batch = gpu.batch();
        op.record(&mut batch, &src, &dst)?;
        batch.run()?;
        gpu.read_f32_async(&dst).await
    }
}
