//! RoPE fixtures: vectors ~ N(0, 1) at random positions, contiguous or inside wider rows (q_rope
//! after q_nope in q), with plain or configured frequencies; the upload and the f64 reference.

use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::rope::{Rope, RopeLayout, RopeTables};
use crate::reference::rope::rope;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu, Tensor};

/// GPU against the f64 reference: |y − ref| ≤ 1e-5 + 1e-4·|ref| (angles reduced exactly modulo
/// 2π, then f32 cos and sin).
pub const TOLERANCE: Tolerance = Tolerance::new(1e-5, 1e-4);

/// Half x and y (f16 or bf16, [`Problem::with_dtype`]) against the f64 reference on the *same*
/// rounded x: widening is exact and the rotation is f32, so [`TOLERANCE`] holds before the
/// store; rounding y adds at most the unit roundoff relative for bf16 (2^-8: nearest even of 8
/// significant bits) and one ulp for f16 (2^-10: `pack2x16float` may pick either neighbour).
/// A rotated component can be small next to its pair (a·c − b·s cancels), where the f32 error
/// of ~1e-7·(|a| + |b|) is absolute, so atol stays 1e-5 as in f32 (|x| ~ N(0, 1)).
pub fn y_tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::BF16 => Tolerance::new(1e-5, 1e-4 + 1.0 / 256.0),
        DType::F16 => Tolerance::new(1e-5, 1e-4 + 1.0 / 1024.0),
        _ => TOLERANCE,
    }
}

/// The frequencies of one rotary embedding.
#[derive(Clone, Debug)]
pub struct Frequencies {
    /// inv_freq (d_R/2).
    pub inv_freq: Vec<f64>,
    /// Rotate adjacent pairs (true) or halves.
    pub interleave: bool,
    /// Scale of cos and sin.
    pub attn_factor: f64,
}

impl Frequencies {
    /// θ = 10000: `inv_freq[i] = θ^(−2i/d)`, no scale.
    pub fn plain(d: usize, interleave: bool) -> Self {
        Self {
            inv_freq: (0..d / 2)
                .map(|i| 10000f64.powf(-((2 * i) as f64) / d as f64))
                .collect(),
            interleave,
            attn_factor: 1.0,
        }
    }

    /// Rotary width d_R.
    pub fn width(&self) -> usize {
        2 * self.inv_freq.len()
    }

    /// The op's tables.
    pub fn upload(&self, gpu: &Gpu) -> Result<RopeTables> {
        RopeTables::new(gpu, &self.inv_freq, self.interleave, self.attn_factor)
    }
}

/// One call's host inputs: `tokens` × `heads` vectors at `x_layout` of x, token t at
/// `positions[t]`; y is contiguous (T, heads, d_R).
#[derive(Clone, Debug)]
pub struct Problem {
    /// Tokens T.
    pub tokens: usize,
    /// Heads.
    pub heads: usize,
    /// Frequencies.
    pub freqs: Frequencies,
    /// Where the vectors are in x.
    pub x_layout: RopeLayout,
    /// x.
    pub x: Vec<f32>,
    /// Positions (T).
    pub positions: Vec<u32>,
    /// The dtype of x and y (f32 unless [`Problem::with_dtype`]).
    pub dtype: DType,
}

impl Problem {
    /// Vectors inside rows of `heads` × (`nope` + d_R) values (q_rope after `nope` values of
    /// q_nope per head; `nope = 0` is contiguous), positions uniform below `max_position`.
    pub fn random(
        rng: &mut Rng,
        tokens: usize,
        heads: usize,
        nope: usize,
        freqs: Frequencies,
        max_position: usize,
    ) -> Self {
        let d = freqs.width();
        let row = heads * (nope + d);
        let x = rng.normal_vec(tokens * row, 0.0, 1.0);
        let positions = (0..tokens)
            .map(|_| rng.below(max_position) as u32)
            .collect();
        Self {
            tokens,
            heads,
            freqs,
            x_layout: RopeLayout {
                offset: nope,
                token_stride: row,
                head_stride: nope + d,
            },
            x,
            positions,
            dtype: DType::F32,
        }
    }

    /// This problem with x (and y) stored as `dtype`: x is rounded to it on the host (nearest
    /// even), so the reference sees exactly what the GPU holds.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.x.iter_mut().for_each(|v| *v = dtype.round_f32(*v));
        self.dtype = dtype;
        self
    }

    /// The tolerance for this problem's dtype ([`y_tolerance`]).
    pub fn tolerance(&self) -> Tolerance {
        y_tolerance(self.dtype)
    }

    /// The f64 reference: (T, heads, d_R).
    pub fn reference(&self) -> Vec<f64> {
        let l = self.x_layout;
        rope(
            &self.x,
            self.tokens,
            self.heads,
            self.freqs.width(),
            l.offset,
            l.token_stride,
            l.head_stride,
            &self.positions,
            &self.freqs.inv_freq,
            self.freqs.interleave,
            self.freqs.attn_factor,
        )
    }

    /// Upload x (T, row), the positions and the tables.
    pub fn upload(&self, gpu: &Gpu) -> Result<GpuInputs> {
        Ok(GpuInputs {
            x: gpu.upload_f32_as(
                &[self.tokens, self.x_layout.token_stride],
                self.dtype,
                &self.x,
            )?,
            positions: gpu.upload_u32(&[self.tokens], &self.positions)?,
            tables: self.freqs.upload(gpu)?,
        })
    }

    /// Upload, run `op` into a NaN-poisoned contiguous y of x's dtype and read it back (widened).
    pub async fn run(&self, gpu: &Gpu, op: &Rope) -> Result<Vec<f32>> {
        let t = self.upload(gpu)?;
        let d = self.freqs.width();
        let y = gpu.nan_as(&[self.tokens, self.heads, d], self.dtype)?;
        let mut batch = gpu.batch();
        op.record(
            &mut batch,
            &t.x,
            self.x_layout,
            &y,
            RopeLayout::contiguous(self.heads, d),
            &t.positions,
            &t.tables,
            self.tokens,
            self.heads,
        )?;
        batch.run()?;
        gpu.read_f32_async(&y).await
    }
}

/// A problem's inputs on the GPU.
#[derive(Clone, Debug)]
pub struct GpuInputs {
    /// x.
    pub x: Tensor,
    /// positions (u32).
    pub positions: Tensor,
    /// The frequency tables.
    pub tables: RopeTables,
}
