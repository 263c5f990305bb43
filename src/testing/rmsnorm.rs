//! RMSNorm fixtures: rows x ~ N(0, 2²) (optionally strided, with values between rows the norm
//! must skip) and weights ~ U(0.5, 1.5), their upload and the f64 reference.

use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::rmsnorm::{RmsNorm, Rows};
use crate::reference::rmsnorm::rmsnorm;
use crate::rng::Rng;
use crate::runtime::{Gpu, Tensor};

/// GPU against the f64 reference: |y − ref| ≤ 1e-5 + 1e-4·|ref| (one f32 square-sum per row,
/// then a scale).
pub const TOLERANCE: Tolerance = Tolerance::new(1e-5, 1e-4);

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
        }
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

    /// Upload x and w.
    pub fn upload(&self, gpu: &Gpu) -> Result<(Tensor, Tensor)> {
        Ok((
            gpu.upload_f32(&[self.x.len()], &self.x)?,
            gpu.upload_f32(&[self.width()], &self.w)?,
        ))
    }

    /// Upload, run `op` into a NaN-poisoned y (rows, stride) and read all of y back.
    pub fn run(&self, gpu: &Gpu, op: &RmsNorm) -> Result<Vec<f32>> {
        let (x, w) = self.upload(gpu)?;
        let y = gpu.nan_f32(&[self.rows, self.x_rows.stride])?;
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
        gpu.read_f32(&y)
    }

    /// The (rows, d) values of a y read back by [`Problem::run`].
    pub fn rows_of(&self, y: &[f32]) -> Vec<f32> {
        let (d, stride) = (self.width(), self.x_rows.stride);
        (0..self.rows)
            .flat_map(|r| y[r * stride..r * stride + d].to_vec())
            .collect()
    }
}
