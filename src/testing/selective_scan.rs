//! Selective-scan fixtures: a [`Problem`] with Mamba's ranges (u, B, C, D, z ~ N(0, 1);
//! A = −exp(N(0, 1)); dt = softplus of roughly N(−4, 1), either applied by the kernel to raw
//! delta plus a bias or done here), its upload, and the f64 reference on it.

use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::selective_scan::{
    BcLayout, ScanDims, ScanOptions, SelectiveScan, SelectiveScanInputs,
};
use crate::reference::selective_scan::{selective_scan, softplus, ScanOutput, SelectiveScanHost};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu, Tensor};

/// GPU against the f64 reference, for out and last_state: |gpu − ref| ≤ 5e-4 + 1e-3·|ref|. An
/// f32 state carried over thousands of steps (products of L decays, reordered by the parallel
/// scan) and sums over N terms of both signs; `mamba_ssm`'s own f32 test allows rtol 6e-4,
/// atol 2e-3.
pub const TOLERANCE: Tolerance = Tolerance::new(5e-4, 1e-3);

/// Half u, delta, z, out (and B, C where [`Problem::with_dtype`] makes them halves) against the
/// f64 reference on the *same* rounded inputs: widening is exact and the math is f32, so
/// [`TOLERANCE`] holds up to the store of out, which rounds once to the half and adds its
/// relative error: the unit roundoff 2^-8 for bf16 (7 stored bits, nearest even) and up to one
/// ulp, 2^-10, for f16 (10 stored bits; `pack2x16float` may return either neighbour). f16's
/// subnormal spacing (2^-24) is far below the absolute term. last_state is f32: [`TOLERANCE`].
/// (`mamba_ssm` tests bf16 at rtol 5e-2, atol 1e-1.)
pub fn out_tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::BF16 => Tolerance::new(5e-4, 1e-3 + 1.0 / 256.0),
        DType::F16 => Tolerance::new(5e-4, 1e-3 + 1.0 / 1024.0),
        _ => TOLERANCE,
    }
}

/// Mamba's options: D, z, delta_bias and softplus, no initial state.
pub const MAMBA: ScanOptions = ScanOptions {
    d: true,
    z: true,
    delta_bias: true,
    delta_softplus: true,
    initial_state: false,
};

/// Every option on.
pub const ALL: ScanOptions = ScanOptions {
    d: true,
    z: true,
    delta_bias: true,
    delta_softplus: true,
    initial_state: true,
};

/// Sizes with the given B and C layouts.
pub fn dims(batch: usize, dim: usize, len: usize, n: usize, b: BcLayout, c: BcLayout) -> ScanDims {
    ScanDims {
        batch,
        dim,
        len,
        n,
        b,
        c,
    }
}

/// A step size and its bias, Mamba-like: with `softplus` the kernel applies softplus to raw
/// delta ~ N(−4, 1) (or N(0, 1) plus a bias ~ U(−6, −2)); without it, dt = softplus(N(−4, 1))
/// is passed as is (a bias ~ U(0, 0.01) keeps it positive). Returns (delta, bias).
pub fn random_dt(
    rng: &mut Rng,
    n: usize,
    channels: usize,
    softplus_in_kernel: bool,
    bias: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let delta = if softplus_in_kernel {
        rng.normal_vec(n, if bias { 0.0 } else { -4.0 }, 1.0)
    } else {
        rng.normal_vec(n, -4.0, 1.0)
            .iter()
            .map(|&v| softplus(v as f64) as f32)
            .collect()
    };
    let bias = bias.then(|| {
        if softplus_in_kernel {
            rng.uniform_vec(channels, -6.0, -2.0)
        } else {
            rng.uniform_vec(channels, 0.0, 0.01)
        }
    });
    (delta, bias)
}

/// A = −exp(N(0, 1)) for `n` values: decays spread over an order of magnitude each way.
pub fn random_a(rng: &mut Rng, n: usize) -> Vec<f32> {
    rng.normal_vec(n, 0.0, 1.0)
        .iter()
        .map(|v| -v.exp())
        .collect()
}

/// One scan's host inputs (layouts of [`crate::ops::selective_scan`]).
#[derive(Clone, Debug)]
pub struct Problem {
    /// Sizes and B/C layouts.
    pub dims: ScanDims,
    /// u (Bt, D, L).
    pub u: Vec<f32>,
    /// delta (Bt, D, L).
    pub delta: Vec<f32>,
    /// A (D, N).
    pub a: Vec<f32>,
    /// B, as `dims.b` says.
    pub b: Vec<f32>,
    /// C, as `dims.c` says.
    pub c: Vec<f32>,
    /// D (D).
    pub d: Option<Vec<f32>>,
    /// z (Bt, D, L).
    pub z: Option<Vec<f32>>,
    /// delta_bias (D).
    pub delta_bias: Option<Vec<f32>>,
    /// initial_state (Bt, D, N).
    pub initial_state: Option<Vec<f32>>,
    /// Apply softplus to delta + delta_bias.
    pub delta_softplus: bool,
    /// Dtype of u, delta, z and out on the GPU (f32 unless [`Problem::with_dtype`]).
    pub dtype: DType,
    /// Dtype of B and C on the GPU: f32 or [`Problem::dtype`].
    pub bc_dtype: DType,
}

impl Problem {
    /// This problem with u, delta and z (out follows) stored as `dtype`, and B and C too when
    /// `bc_half` (else they stay f32): the host values are rounded to it (nearest even) so that
    /// the reference sees exactly what the GPU holds.
    pub fn with_dtype(mut self, dtype: DType, bc_half: bool) -> Self {
        let round = |v: &mut Vec<f32>| v.iter_mut().for_each(|x| *x = dtype.round_f32(*x));
        round(&mut self.u);
        round(&mut self.delta);
        if let Some(z) = &mut self.z {
            round(z);
        }
        if bc_half {
            round(&mut self.b);
            round(&mut self.c);
            self.bc_dtype = dtype;
        }
        self.dtype = dtype;
        self
    }

    /// Random inputs of `dims` with the optional inputs `opts` asks for.
    pub fn random(rng: &mut Rng, dims: ScanDims, opts: ScanOptions) -> Self {
        let x = dims.batch * dims.dim * dims.len;
        let size = |l: BcLayout| l.shape(&dims).iter().product::<usize>();
        let u = rng.normal_vec(x, 0.0, 1.0);
        let (delta, delta_bias) = random_dt(rng, x, dims.dim, opts.delta_softplus, opts.delta_bias);
        let a = random_a(rng, dims.dim * dims.n);
        let b = rng.normal_vec(size(dims.b), 0.0, 1.0);
        let c = rng.normal_vec(size(dims.c), 0.0, 1.0);
        let d = opts.d.then(|| rng.normal_vec(dims.dim, 0.0, 1.0));
        let z = opts.z.then(|| rng.normal_vec(x, 0.0, 1.0));
        let initial_state = opts
            .initial_state
            .then(|| rng.normal_vec(dims.batch * dims.dim * dims.n, 0.0, 1.0));
        Self {
            dims,
            u,
            delta,
            a,
            b,
            c,
            d,
            z,
            delta_bias,
            initial_state,
            delta_softplus: opts.delta_softplus,
            dtype: DType::F32,
            bc_dtype: DType::F32,
        }
    }

    /// The optional inputs this problem has.
    pub fn options(&self) -> ScanOptions {
        ScanOptions {
            d: self.d.is_some(),
            z: self.z.is_some(),
            delta_bias: self.delta_bias.is_some(),
            delta_softplus: self.delta_softplus,
            initial_state: self.initial_state.is_some(),
        }
    }

    /// The reference's view of the inputs.
    pub fn host(&self) -> SelectiveScanHost<'_> {
        SelectiveScanHost {
            dims: self.dims,
            u: &self.u,
            delta: &self.delta,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: self.d.as_deref(),
            z: self.z.as_deref(),
            delta_bias: self.delta_bias.as_deref(),
            initial_state: self.initial_state.as_deref(),
            delta_softplus: self.delta_softplus,
        }
    }

    /// The f64 reference: out and last_state.
    pub fn reference(&self) -> Result<ScanOutput> {
        selective_scan(&self.host())
    }

    /// Steps `range` of this problem (u, delta, z and per-step B and C cut to those columns;
    /// constant B or C, A, D, the bias and the initial state kept).
    pub fn steps(&self, range: std::ops::Range<usize>) -> Self {
        let l = self.dims.len;
        let cols = |v: &[f32]| -> Vec<f32> {
            v.chunks(l)
                .flat_map(|row| row[range.clone()].to_vec())
                .collect()
        };
        let per_step = |layout: BcLayout, v: &Vec<f32>| match layout {
            BcLayout::Constant => v.clone(),
            BcLayout::Grouped(_) => cols(v),
        };
        Self {
            dims: ScanDims {
                len: range.len(),
                ..self.dims
            },
            u: cols(&self.u),
            delta: cols(&self.delta),
            b: per_step(self.dims.b, &self.b),
            c: per_step(self.dims.c, &self.c),
            z: self.z.as_deref().map(cols),
            ..self.clone()
        }
    }

    /// Upload every input (u, delta, z of [`Problem::dtype`], B and C of
    /// [`Problem::bc_dtype`], the rest f32).
    pub fn upload(&self, gpu: &Gpu) -> Result<GpuInputs> {
        let s = &self.dims;
        let x = [s.batch, s.dim, s.len];
        let opt = |shape: &[usize], v: &Option<Vec<f32>>| {
            v.as_ref().map(|v| gpu.upload_f32(shape, v)).transpose()
        };
        let (act, bc) = (self.dtype, self.bc_dtype);
        Ok(GpuInputs {
            u: gpu.upload_f32_as(&x, act, &self.u)?,
            delta: gpu.upload_f32_as(&x, act, &self.delta)?,
            a: gpu.upload_f32(&[s.dim, s.n], &self.a)?,
            b: gpu.upload_f32_as(&s.b.shape(s), bc, &self.b)?,
            c: gpu.upload_f32_as(&s.c.shape(s), bc, &self.c)?,
            d: opt(&[s.dim], &self.d)?,
            z: self
                .z
                .as_ref()
                .map(|v| gpu.upload_f32_as(&x, act, v))
                .transpose()?,
            delta_bias: opt(&[s.dim], &self.delta_bias)?,
            initial_state: opt(&[s.batch, s.dim, s.n], &self.initial_state)?,
            delta_softplus: self.delta_softplus,
        })
    }

    /// NaN-poisoned outputs (out (Bt, D, L) of [`Problem::dtype`], last_state (Bt, D, N)).
    pub fn poisoned_outputs(&self, gpu: &Gpu) -> Result<(Tensor, Tensor)> {
        let s = &self.dims;
        Ok((
            gpu.nan_as(&[s.batch, s.dim, s.len], self.dtype)?,
            gpu.nan_f32(&[s.batch, s.dim, s.n])?,
        ))
    }

    /// Upload, run `op` once into poisoned outputs and read back (out widened, last_state).
    pub async fn run(&self, gpu: &Gpu, op: &SelectiveScan) -> Result<(Vec<f32>, Vec<f32>)> {
        let t = self.upload(gpu)?;
        let (out, last) = self.poisoned_outputs(gpu)?;
        let mut batch = gpu.batch();
        op.record(&mut batch, &t.inputs(), &out, &last)?;
        batch.run()?;
        Ok((
            gpu.read_f32_async(&out).await?,
            gpu.read_f32_async(&last).await?,
        ))
    }
}

/// A problem's inputs on the GPU.
#[derive(Clone, Debug)]
pub struct GpuInputs {
    /// u.
    pub u: Tensor,
    /// delta.
    pub delta: Tensor,
    /// A.
    pub a: Tensor,
    /// B.
    pub b: Tensor,
    /// C.
    pub c: Tensor,
    /// D.
    pub d: Option<Tensor>,
    /// z.
    pub z: Option<Tensor>,
    /// delta_bias.
    pub delta_bias: Option<Tensor>,
    /// initial_state.
    pub initial_state: Option<Tensor>,
    /// Apply softplus.
    pub delta_softplus: bool,
}

impl GpuInputs {
    /// The op's inputs.
    pub fn inputs(&self) -> SelectiveScanInputs<'_> {
        SelectiveScanInputs {
            u: &self.u,
            delta: &self.delta,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: self.d.as_ref(),
            z: self.z.as_ref(),
            delta_bias: self.delta_bias.as_ref(),
            initial_state: self.initial_state.as_ref(),
            delta_softplus: self.delta_softplus,
        }
    }
}
