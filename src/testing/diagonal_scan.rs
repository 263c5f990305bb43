//! Diagonal-scan fixtures: a [`Problem`] of S4D-Lin channels as a model starts from
//! ([`DiagonalSsmHost::random`]) or any given parameters, with an input u ~ N(0, 1), its upload,
//! and the f64 reference on it.

use crate::compare::Tolerance;
use crate::error::Result;
use crate::hippo::Discretisation;
use crate::ops::diagonal_scan::{DiagonalScan, DiagonalSsmHost, DiagonalSsmTensors, Dims};
use crate::rng::Rng;
use crate::runtime::{Gpu, Tensor};

/// GPU against the f64 recurrence: |y − ref| ≤ 2e-4 + 1e-3·|ref|: an f32 state carried over
/// thousands of steps, N complex modes summed per output.
pub const TOLERANCE: Tolerance = Tolerance::new(2e-4, 1e-3);

/// One scan's host inputs: the channels' parameters and u (Bt, H, L).
#[derive(Clone, Debug)]
pub struct Problem {
    /// The per-channel parameters.
    pub ssm: DiagonalSsmHost,
    /// Bt.
    pub batch: usize,
    /// L.
    pub len: usize,
    /// u (Bt, H, L).
    pub u: Vec<f32>,
}

impl Problem {
    /// Random S4D-Lin channels and a random input of `dims`.
    pub fn random(rng: &mut Rng, dims: Dims) -> Self {
        let ssm = DiagonalSsmHost::random(rng, dims.channels, dims.modes);
        Self::with_ssm(rng, ssm, dims.batch, dims.len)
    }

    /// Given parameters and a random input u ~ N(0, 1) of `batch` sequences of `len` steps.
    pub fn with_ssm(rng: &mut Rng, ssm: DiagonalSsmHost, batch: usize, len: usize) -> Self {
        let u = rng.normal_vec(batch * ssm.channels * len, 0.0, 1.0);
        Self { ssm, batch, len, u }
    }

    /// The sizes.
    pub fn dims(&self) -> Dims {
        self.ssm.dims(self.batch, self.len)
    }

    /// The f64 reference: y (Bt, H, L).
    pub fn reference(&self, method: Discretisation) -> Result<Vec<f64>> {
        self.ssm.reference(self.batch, self.len, &self.u, method)
    }

    /// Upload the parameters and u.
    pub fn upload(&self, gpu: &Gpu) -> Result<GpuInputs> {
        Ok(GpuInputs {
            ssm: self.ssm.upload(gpu)?,
            u: gpu.upload_f32(&[self.batch, self.ssm.channels, self.len], &self.u)?,
        })
    }

    /// Upload, run `op` once with `method` (y NaN-poisoned) and read y back.
    pub fn run(&self, gpu: &Gpu, op: &DiagonalScan, method: Discretisation) -> Result<Vec<f32>> {
        let t = self.upload(gpu)?;
        let y = gpu.nan_f32(t.u.shape())?;
        let mut batch = gpu.batch();
        op.record(&mut batch, &t.u, &t.ssm, &y, method)?;
        batch.run()?;
        gpu.read_f32(&y)
    }
}

/// A problem's inputs on the GPU.
#[derive(Clone, Debug)]
pub struct GpuInputs {
    /// The parameters.
    pub ssm: DiagonalSsmTensors,
    /// u (Bt, H, L).
    pub u: Tensor,
}
