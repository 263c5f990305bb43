//! RMSNorm fixtures: rows x ~ N(0, 2²) (optionally strided, with values between rows the norm
//! must skip) and weights ~ U(0.5, 1.5), their upload and the f64 reference; [`GatedProblem`]
//! adds the gated, grouped form's z (a column window of a wider NaN-filled buffer).

use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::rmsnorm::{Gate, RmsNorm, Rows};
use crate::reference::rmsnorm::{rmsnorm, rmsnorm_gated, GatedHost};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu, Tensor, View};

/// GPU against the f64 reference: |y − ref| ≤ 1e-5 + 1e-4·|ref| (one f32 square-sum per row,
/// then a scale).
pub const TOLERANCE: Tolerance = Tolerance::new(1e-5, 1e-4);

/// Half rows (x and y in f16 or bf16, [`Problem::with_dtype`]) against the f64 reference on the
/// *same* rounded x and w: widening is exact and the math is f32, so [`TOLERANCE`] holds before
/// the store; rounding y to the half adds at most the unit roundoff relative for bf16 (2^-8:
/// 7 stored bits, nearest even) and up to one ulp for f16 (2^-10: `pack2x16float` may return
/// either neighbour). y is O(1), far above f16's subnormal spacing (2^-24).
pub fn y_tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::BF16 => Tolerance::new(1e-5, 1e-4 + 1.0 / 256.0),
        DType::F16 => Tolerance::new(1e-5, 1e-4 + 1.0 / 1024.0),
        _ => TOLERANCE,
    }
}

/// One call's host inputs: `rows` rows of width d (= len(w)) at `x_rows` of x, written to y
/// (rows, stride) at offset 0 with x's row stride.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Rows.
    pub rows: usize,
    /// Where the rows are in x (and, with offset 0, in y).
    pub x_rows: Rows,
    /// x (offset + rows·stride elements).
    pub x: Vec<f32>,
    /// w (d).
    pub w: Vec<f32>,
    /// eps.
    pub eps: f32,
    /// The dtype of x and y (f32 unless [`Problem::with_dtype`]).
    pub dtype: DType,
    /// The dtype of w (f32, or x's dtype).
    pub w_dtype: DType,
}

impl Problem {
    /// Contiguous rows of width d.
    pub fn random(rng: &mut Rng, rows: usize, d: usize) -> Self {
        Self::strided(rng, rows, d, Rows::contiguous(d))
    }

    /// Rows of width d at `x_rows` (stride ≥ d).
    pub fn strided(rng: &mut Rng, rows: usize, d: usize, x_rows: Rows) -> Self {
        let x = rng.normal_vec(rows * x_rows.stride + x_rows.offset, 0.0, 2.0);
        let w = rng.uniform_vec(d, 0.5, 1.5);
        Self {
            rows,
            x_rows,
            x,
            w,
            eps: 1e-6,
            dtype: DType::F32,
            w_dtype: DType::F32,
        }
    }

    /// This problem with x (and y) stored as `dtype` and w as `w_dtype`: the host values are
    /// rounded to them (nearest even), so the reference sees exactly what the GPU holds.
    pub fn with_dtype(mut self, dtype: DType, w_dtype: DType) -> Self {
        self.x.iter_mut().for_each(|v| *v = dtype.round_f32(*v));
        self.w.iter_mut().for_each(|v| *v = w_dtype.round_f32(*v));
        self.dtype = dtype;
        self.w_dtype = w_dtype;
        self
    }

    /// The tolerance for this problem's y dtype ([`y_tolerance`]).
    pub fn tolerance(&self) -> Tolerance {
        y_tolerance(self.dtype)
    }

    /// Row width d.
    pub fn width(&self) -> usize {
        self.w.len()
    }

    /// y's layout: rows of x's stride from offset 0.
    pub fn y_rows(&self) -> Rows {
        Rows {
            offset: 0,
            stride: self.x_rows.stride,
        }
    }

    /// The f64 reference: (rows, d).
    pub fn reference(&self) -> Vec<f64> {
        let d = self.width();
        let (off, stride) = (self.x_rows.offset, self.x_rows.stride);
        rmsnorm(&self.x, self.rows, d, off, stride, &self.w, self.eps as f64)
    }

    /// Upload x and w in their dtypes.
    pub fn upload(&self, gpu: &Gpu) -> Result<(Tensor, Tensor)> {
        Ok((
            gpu.upload_f32_as(&[self.x.len()], self.dtype, &self.x)?,
            gpu.upload_f32_as(&[self.width()], self.w_dtype, &self.w)?,
        ))
    }

    /// Upload, run `op` into a NaN-poisoned y (rows, stride) of x's dtype and read all of y back
    /// (widened to f32).
    pub async fn run(&self, gpu: &Gpu, op: &RmsNorm) -> Result<Vec<f32>> {
        let (x, w) = self.upload(gpu)?;
        let y = gpu.nan_as(&[self.rows, self.x_rows.stride], self.dtype)?;
        let mut batch = gpu.batch();
        op.record(
            &mut batch,
            &x,
            self.x_rows,
            &w,
            &y,
            self.y_rows(),
            self.rows,
            self.eps,
        )?;
        batch.run()?;
        gpu.read_f32_async(&y).await
    }

    /// The (rows, d) values of a y read back by [`Problem::run`].
    pub fn rows_of(&self, y: &[f32]) -> Vec<f32> {
        let (d, stride) = (self.width(), self.x_rows.stride);
        (0..self.rows)
            .flat_map(|r| y[r * stride..r * stride + d].to_vec())
            .collect()
    }
}

/// One gated, grouped norm's host inputs (Mamba-2's `MambaRMSNormGated`): x rows at `x_rows`
/// (as [`Problem`]), z a (rows, d) column window at `z_offset` of rows of `z_stride` elements
/// (in_proj's output in Mamba-2; the other columns NaN, so a read outside the window shows),
/// x ~ N(0, 2²), z ~ N(0, 2²), w ~ U(0.5, 1.5).
#[derive(Clone, Debug)]
pub struct GatedProblem {
    /// x, w, rows, eps and dtypes as for the plain norm.
    pub base: Problem,
    /// The z buffer (z_offset + rows·z_stride elements).
    pub z: Vec<f32>,
    /// Element offset of z's row 0.
    pub z_offset: usize,
    /// Elements between z's rows.
    pub z_stride: usize,
    /// Elements per group (dividing d).
    pub group_size: usize,
    /// Normalise, then gate.
    pub norm_before_gate: bool,
}

impl GatedProblem {
    /// Random inputs: rows of width d at `x_rows`, z at column `z_offset` of rows of `z_stride`
    /// (≥ z_offset + d), `n_groups` groups per row.
    #[allow(clippy::too_many_arguments)]
    pub fn random(
        rng: &mut Rng,
        rows: usize,
        d: usize,
        x_rows: Rows,
        z_offset: usize,
        z_stride: usize,
        n_groups: usize,
        norm_before_gate: bool,
    ) -> Self {
        let base = Problem::strided(rng, rows, d, x_rows);
        let vals = rng.normal_vec(rows * d, 0.0, 2.0);
        let mut z = vec![f32::NAN; z_offset + rows.max(1) * z_stride];
        for r in 0..rows {
            z[z_offset + r * z_stride..][..d].copy_from_slice(&vals[r * d..][..d]);
        }
        Self {
            base,
            z,
            z_offset,
            z_stride,
            group_size: d / n_groups,
            norm_before_gate,
        }
    }

    /// This problem with x, z (and y) stored as `dtype` and w as `w_dtype`, host values rounded.
    pub fn with_dtype(mut self, dtype: DType, w_dtype: DType) -> Self {
        self.base = self.base.with_dtype(dtype, w_dtype);
        self.z.iter_mut().for_each(|v| *v = dtype.round_f32(*v));
        self
    }

    /// The f64 reference: (rows, d).
    pub fn reference(&self) -> Vec<f64> {
        let b = &self.base;
        rmsnorm_gated(&GatedHost {
            x: &b.x,
            x_rows: (b.x_rows.offset, b.x_rows.stride),
            z: &self.z,
            z_rows: (self.z_offset, self.z_stride),
            w: &b.w,
            rows: b.rows,
            group_size: self.group_size,
            norm_before_gate: self.norm_before_gate,
            eps: b.eps as f64,
        })
    }

    /// Upload, run `op` into a NaN-poisoned y (rows, x's stride) and read all of y back.
    pub async fn run(&self, gpu: &Gpu, op: &RmsNorm) -> Result<Vec<f32>> {
        let b = &self.base;
        let (x, w) = b.upload(gpu)?;
        let z_t = gpu.upload_f32_as(&[self.z.len()], b.dtype, &self.z)?;
        let z = View::as_strided(
            &z_t,
            self.z_offset,
            &[b.rows, b.width()],
            &[self.z_stride, 1],
        )?;
        let y = gpu.nan_as(&[b.rows, b.x_rows.stride], b.dtype)?;
        let mut batch = gpu.batch();
        op.record_gated(
            &mut batch,
            &x,
            b.x_rows,
            &Gate {
                z: &z,
                norm_before_gate: self.norm_before_gate,
            },
            &w,
            self.group_size,
            &y,
            b.y_rows(),
            b.rows,
            b.eps,
        )?;
        batch.run()?;
        gpu.read_f32_async(&y).await
    }
}
