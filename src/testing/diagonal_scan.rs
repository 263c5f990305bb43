//! Diagonal-scan fixtures: a [`Problem`] of S4D-Lin channels as a model starts from
//! ([`DiagonalSsmHost::random`]) or any given parameters, with an input u ~ N(0, 1), its upload,
//! and the f64 reference on it.

use crate::compare::Tolerance;
use crate::error::Result;
use crate::hippo::Discretisation;
use crate::ops::diagonal_scan::{DiagonalScan, DiagonalSsmHost, DiagonalSsmTensors, Dims};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu, Tensor};

/// GPU against the f64 recurrence: |y − ref| ≤ 2e-4 + 1e-3·|ref|: an f32 state carried over
/// thousands of steps, N complex modes summed per output.
pub const TOLERANCE: Tolerance = Tolerance::new(2e-4, 1e-3);

/// Half u and y ([`Problem::with_dtype`]) against the f64 reference on the *same* rounded u:
/// widening is exact and the math is f32, so [`TOLERANCE`] holds up to the store of y, which
/// rounds once to the half and adds its relative error: the unit roundoff 2^-8 for bf16 (7
/// stored bits, nearest even) and up to one ulp, 2^-10, for f16 (10 stored bits;
/// `pack2x16float` may return either neighbour); f16's subnormal spacing (2^-24) is far below
/// the absolute term.
pub fn y_tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::BF16 => Tolerance::new(2e-4, 1e-3 + 1.0 / 256.0),
        DType::F16 => Tolerance::new(2e-4, 1e-3 + 1.0 / 1024.0),
        _ => TOLERANCE,
    }
}

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
    /// Dtype of u and y on the GPU (f32 unless [`Problem::with_dtype`]).
    pub dtype: DType,
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
        Self {
            ssm,
            batch,
            len,
            u,
            dtype: DType::F32,
        }
    }

    /// This problem with u (and y) stored as `dtype`: u is rounded to it (nearest even) on the
    /// host so that the reference sees exactly what the GPU holds.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.u.iter_mut().for_each(|x| *x = dtype.round_f32(*x));
        self.dtype = dtype;
        self
    }

    /// The sizes.
    pub fn dims(&self) -> Dims {
        self.ssm.dims(self.batch, self.len)
    }

    /// The f64 reference: y (Bt, H, L).
    pub fn reference(&self, method: Discretisation) -> Result<Vec<f64>> {
        self.ssm.reference(self.batch, self.len, &self.u, method)
    }

    /// Upload the parameters (f32) and u (of [`Problem::dtype`]).
    pub fn upload(&self, gpu: &Gpu) -> Result<GpuInputs> {
        Ok(GpuInputs {
            ssm: self.ssm.upload(gpu)?,
            u: gpu.upload_f32_as(
                &[self.batch, self.ssm.channels, self.len],
                self.dtype,
                &self.u,
            )?,
        })
    }

    /// Upload, run `op` once with `method` (y NaN-poisoned, of [`Problem::dtype`]) and read y
    /// back, widened.
    pub async fn run(
        &self,
        gpu: &Gpu,
        op: &DiagonalScan,
        method: Discretisation,
    ) -> Result<Vec<f32>> {
        let t = self.upload(gpu)?;
        let y = gpu.nan_as(t.u.shape(), self.dtype)?;
        let mut batch = gpu.batch();
        op.record(&mut batch, &t.u, &t.ssm, &y, method)?;
        batch.run()?;
        gpu.read_f32_async(&y).await
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
