//! Matmul fixtures: a [`Problem`] with x ~ N(0, 1) and weights ~ N(0, 1/K) (so outputs are
//! O(1) whatever K), an optional bias ~ N(0, 0.25), in a plain `Linear` layout or any strided
//! one, its upload, and the f64 reference on it.

use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::matmul::{Matmul, MatmulDims};
use crate::reference::matmul::matmul;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu, Tensor};

/// GPU against the f64 reference: |y − ref| ≤ 1e-5 + 1e-4·|ref| (f32 accumulation over K of
/// O(1/√K) terms).
pub const TOLERANCE: Tolerance = Tolerance::new(1e-5, 1e-4);

/// Half weights (f16 or bf16) against the f64 reference on the *same* rounded weights
/// ([`Problem::with_w_dtype`]): widening a half is exact and x, y and the accumulation are f32,
/// so the f32 tolerance holds unchanged whatever the weights' 8 (bf16) or 11 (f16) bits.
pub const HALF_W_TOLERANCE: Tolerance = TOLERANCE;

/// Half activations (x and y in f16 or bf16, [`Problem::with_x_dtype`]) against the f64
/// reference on the *same* rounded x (and w): widening is exact and the accumulation is f32, so
/// [`TOLERANCE`] holds before the store; rounding y adds at most the unit roundoff relative for
/// bf16 (2^-8: nearest even of 8 significant bits) and one ulp for f16 (2^-10:
/// `pack2x16float` may pick either neighbour). y is O(1) (weights ~ N(0, 1/K)), far above f16's
/// subnormal spacing, so atol stays 1e-5 (it covers outputs near 0 from cancellation).
pub fn y_tolerance(act: DType) -> Tolerance {
    match act {
        DType::BF16 => Tolerance::new(1e-5, 1e-4 + 1.0 / 256.0),
        DType::F16 => Tolerance::new(1e-5, 1e-4 + 1.0 / 1024.0),
        _ => TOLERANCE,
    }
}

/// One product's host inputs and the shapes of its tensors.
#[derive(Clone, Debug)]
pub struct Problem {
    /// The layout.
    pub dims: MatmulDims,
    /// Shape of x.
    pub x_shape: Vec<usize>,
    /// x.
    pub x: Vec<f32>,
    /// Shape of w.
    pub w_shape: Vec<usize>,
    /// w.
    pub w: Vec<f32>,
    /// bias (N).
    pub bias: Option<Vec<f32>>,
    /// Storage dtype of w on the GPU (f32 unless [`Problem::with_w_dtype`]).
    pub w_dtype: DType,
    /// Storage dtype of x and y on the GPU (f32 unless [`Problem::with_x_dtype`]).
    pub x_dtype: DType,
    /// Shape of y.
    pub y_shape: Vec<usize>,
}

impl Problem {
    /// A PyTorch `Linear`: y (M, N) = x (M, K) · Wᵀ (+ bias) with W [N, K].
    pub fn linear(rng: &mut Rng, m: usize, n: usize, k: usize, bias: bool) -> Self {
        Self::strided(
            rng,
            MatmulDims::linear(m, n, k),
            &[m, k],
            &[n, k],
            &[m, n],
            bias,
        )
    }

    /// Any layout over tensors of the given shapes (each large enough for `dims`).
    pub fn strided(
        rng: &mut Rng,
        dims: MatmulDims,
        x_shape: &[usize],
        w_shape: &[usize],
        y_shape: &[usize],
        bias: bool,
    ) -> Self {
        let x = rng.normal_vec(x_shape.iter().product(), 0.0, 1.0);
        let w = rng.normal_vec(
            w_shape.iter().product(),
            0.0,
            1.0 / (dims.k.max(1) as f64).sqrt(),
        );
        let bias = bias.then(|| rng.normal_vec(dims.n, 0.0, 0.5));
        Self {
            dims,
            x_shape: x_shape.to_vec(),
            x,
            w_shape: w_shape.to_vec(),
            w,
            bias,
            w_dtype: DType::F32,
            x_dtype: DType::F32,
            y_shape: y_shape.to_vec(),
        }
    }

    /// This problem with w stored as `dtype`: the host weights are rounded to it (nearest
    /// even) so that the reference sees exactly what the GPU holds.
    pub fn with_w_dtype(mut self, dtype: DType) -> Self {
        for v in &mut self.w {
            *v = dtype.round_f32(*v);
        }
        self.w_dtype = dtype;
        self
    }

    /// This problem with x (and y) stored as `dtype`: x is rounded to it on the host (nearest
    /// even), so the reference sees exactly what the GPU holds.
    pub fn with_x_dtype(mut self, dtype: DType) -> Self {
        for v in &mut self.x {
            *v = dtype.round_f32(*v);
        }
        self.x_dtype = dtype;
        self
    }

    /// The tolerance for this problem's activation dtype ([`y_tolerance`]).
    pub fn tolerance(&self) -> Tolerance {
        y_tolerance(self.x_dtype)
    }

    /// The f64 reference: y with NaN where the product writes nothing.
    pub fn reference(&self) -> Vec<f64> {
        matmul(
            &self.dims,
            &self.x,
            &self.w,
            self.bias.as_deref(),
            self.y_shape.iter().product(),
        )
    }

    /// Upload x, w and the bias.
    pub fn upload(&self, gpu: &Gpu) -> Result<GpuInputs> {
        Ok(GpuInputs {
            x: gpu.upload_f32_as(&self.x_shape, self.x_dtype, &self.x)?,
            w: gpu.upload_f32_as(&self.w_shape, self.w_dtype, &self.w)?,
            bias: self
                .bias
                .as_ref()
                .map(|b| gpu.upload_f32(&[self.dims.n], b))
                .transpose()?,
        })
    }

    /// Upload, record the product with `dims` into a NaN-poisoned y (of x's dtype) and read it
    /// back (widened).
    pub async fn run(&self, gpu: &Gpu, op: &Matmul) -> Result<Vec<f32>> {
        let t = self.upload(gpu)?;
        let y = gpu.nan_as(&self.y_shape, self.x_dtype)?;
        let mut batch = gpu.batch();
        op.record(&mut batch, &self.dims, &t.x, &t.w, t.bias.as_ref(), &y)?;
        batch.run()?;
        gpu.read_f32_async(&y).await
    }
}

/// A problem's inputs on the GPU.
#[derive(Clone, Debug)]
pub struct GpuInputs {
    /// x.
    pub x: Tensor,
    /// w.
    pub w: Tensor,
    /// bias.
    pub bias: Option<Tensor>,
}
