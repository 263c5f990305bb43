//! Decode-step fixtures: a [`Problem`] with the selective scan's Mamba ranges (see
//! [`super::selective_scan::random_dt`]), slot indices into a larger state pool with padded
//! requests, its upload, and the f64 reference on it; [`HeadsProblem`] the same for the
//! multi-head (Mamba-2) form.

use super::selective_scan::{random_a, random_dt};
use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::state_update::{
    HeadsDims, StateUpdate, StateUpdateHeadsInputs, StateUpdateInputs, UpdateDims, UpdateOptions,
};
use crate::reference::state_update::{
    state_update, state_update_heads, StateUpdateHeadsHost, StateUpdateHost, UpdateOutput,
};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu, Tensor};

/// GPU against the f64 reference for one step (a reduction over N): |gpu − ref| ≤ 1e-5 +
/// 1e-4·|ref|.
pub const TOLERANCE: Tolerance = Tolerance::new(1e-5, 1e-4);

/// Half activations (x, dt, B, C, z, out in f16 or bf16; [`Problem::with_dtype`]) against the
/// f64 reference on the *same* rounded inputs: widening is exact and the math is f32, so the f32
/// bound holds before the store; rounding out to the half adds at most the unit roundoff relative
/// for bf16 (2^-8: 7 stored bits, rounded to nearest even), and up to one ulp for f16 (2^-10: 10
/// stored bits; `pack2x16float` may return either neighbour). The subnormal f16 spacing (2^-24)
/// is far below the 1e-5 absolute term. The state stays f32 ([`TOLERANCE`]).
pub fn out_tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::BF16 => Tolerance::new(1e-5, 1e-4 + 1.0 / 256.0),
        DType::F16 => Tolerance::new(1e-5, 1e-4 + 1.0 / 1024.0),
        _ => TOLERANCE,
    }
}

/// A half state pool (f16 or bf16, [`Problem::with_state_dtype`]) against the f64 reference on
/// the *same* rounded initial state: widening is exact and the update is f32, so [`TOLERANCE`]
/// holds before the store; storing the state rounds it, adding at most the unit roundoff
/// relative for bf16 (2^-8: nearest even of 8 significant bits) and one ulp for f16 (2^-10:
/// `pack2x16float` may pick either neighbour). The state is O(1), far above f16's subnormal
/// spacing. out is computed from the unrounded f32 state, so its tolerance does not change.
pub fn state_tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::BF16 => Tolerance::new(1e-5, 1e-4 + 1.0 / 256.0),
        DType::F16 => Tolerance::new(1e-5, 1e-4 + 1.0 / 1024.0),
        _ => TOLERANCE,
    }
}

/// Every option on (D, z, dt_bias, softplus).
pub const ALL: UpdateOptions = UpdateOptions {
    d: true,
    z: true,
    dt_bias: true,
    dt_softplus: true,
};

/// Sizes: Bt requests, D channels, N states, B and C groups, and a state pool of `pool` rows
/// addressed by slot indices (`None`: no slots, Pool = Bt).
pub fn dims(
    batch: usize,
    dim: usize,
    n: usize,
    b_groups: usize,
    c_groups: usize,
    pool: Option<usize>,
) -> UpdateDims {
    UpdateDims {
        batch,
        dim,
        n,
        pool: pool.unwrap_or(batch),
        b_groups,
        c_groups,
        slots: pool.is_some(),
    }
}

/// One decode step's host inputs (layouts of [`crate::ops::state_update`]).
#[derive(Clone, Debug)]
pub struct Problem {
    /// Sizes.
    pub dims: UpdateDims,
    /// state (Pool, D, N) before the step.
    pub state: Vec<f32>,
    /// x (Bt, D).
    pub x: Vec<f32>,
    /// dt (Bt, D).
    pub dt: Vec<f32>,
    /// A (D, N).
    pub a: Vec<f32>,
    /// B (Bt, G, N).
    pub b: Vec<f32>,
    /// C (Bt, G, N).
    pub c: Vec<f32>,
    /// D (D).
    pub d: Option<Vec<f32>>,
    /// z (Bt, D).
    pub z: Option<Vec<f32>>,
    /// dt_bias (D).
    pub dt_bias: Option<Vec<f32>>,
    /// State slot per request (Bt), when `dims.slots`.
    pub slots: Option<Vec<i32>>,
    /// Apply softplus to dt + dt_bias.
    pub dt_softplus: bool,
    /// Dtype of the activations x, dt, B, C, z and out on the GPU (f32 unless
    /// [`Problem::with_dtype`]).
    pub dtype: DType,
    /// Dtype of the state pool on the GPU (f32 unless [`Problem::with_state_dtype`]).
    pub state_dtype: DType,
}

impl Problem {
    /// This problem with its activations (x, dt, B, C, z; out follows) stored as `dtype`: the
    /// host values are rounded to it (nearest even) so that the reference sees exactly what the
    /// GPU holds.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        let round = |v: &mut Vec<f32>| v.iter_mut().for_each(|x| *x = dtype.round_f32(*x));
        round(&mut self.x);
        round(&mut self.dt);
        round(&mut self.b);
        round(&mut self.c);
        if let Some(z) = &mut self.z {
            round(z);
        }
        self.dtype = dtype;
        self
    }

    /// This problem with the state pool stored as `dtype`: the initial state is rounded to it on
    /// the host (nearest even), so the reference starts from exactly what the GPU holds.
    pub fn with_state_dtype(mut self, dtype: DType) -> Self {
        self.state.iter_mut().for_each(|v| *v = dtype.round_f32(*v));
        self.state_dtype = dtype;
        self
    }

    /// Random inputs of `dims` with the optional inputs `opts` asks for. With slots, requests
    /// take distinct random rows of the pool and every third request is padding (slot −1).
    pub fn random(rng: &mut Rng, dims: UpdateDims, opts: UpdateOptions) -> Self {
        let (bt, dim, n) = (dims.batch, dims.dim, dims.n);
        let slots = dims.slots.then(|| {
            let mut free: Vec<i32> = (0..dims.pool as i32).collect();
            (0..bt)
                .map(|i| {
                    if i % 3 == 2 || free.is_empty() {
                        -1
                    } else {
                        free.swap_remove(rng.below(free.len()))
                    }
                })
                .collect()
        });
        let (dt, dt_bias) = random_dt(rng, bt * dim, dim, opts.dt_softplus, opts.dt_bias);
        let state = rng.normal_vec(dims.pool * dim * n, 0.0, 1.0);
        let x = rng.normal_vec(bt * dim, 0.0, 1.0);
        let a = random_a(rng, dim * n);
        let b = rng.normal_vec(bt * dims.b_groups * n, 0.0, 1.0);
        let c = rng.normal_vec(bt * dims.c_groups * n, 0.0, 1.0);
        let d = opts.d.then(|| rng.normal_vec(dim, 0.0, 1.0));
        let z = opts.z.then(|| rng.normal_vec(bt * dim, 0.0, 1.0));
        Self {
            dims,
            state,
            x,
            dt,
            a,
            b,
            c,
            d,
            z,
            dt_bias,
            slots,
            dt_softplus: opts.dt_softplus,
            dtype: DType::F32,
            state_dtype: DType::F32,
        }
    }

    /// The optional inputs this problem has.
    pub fn options(&self) -> UpdateOptions {
        UpdateOptions {
            d: self.d.is_some(),
            z: self.z.is_some(),
            dt_bias: self.dt_bias.is_some(),
            dt_softplus: self.dt_softplus,
        }
    }

    /// The reference's view of the inputs.
    pub fn host(&self) -> StateUpdateHost<'_> {
        StateUpdateHost {
            dims: self.dims,
            state: &self.state,
            x: &self.x,
            dt: &self.dt,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: self.d.as_deref(),
            z: self.z.as_deref(),
            dt_bias: self.dt_bias.as_deref(),
            slots: self.slots.as_deref(),
            dt_softplus: self.dt_softplus,
        }
    }

    /// The f64 reference: out and the whole state pool after the step.
    pub fn reference(&self) -> Result<UpdateOutput> {
        state_update(&self.host())
    }

    /// Upload every input (B and C as (Bt, G, N)).
    pub fn upload(&self, gpu: &Gpu) -> Result<GpuInputs> {
        let s = &self.dims;
        let rows = [s.batch, s.dim];
        let opt = |shape: &[usize], v: &Option<Vec<f32>>| {
            v.as_ref().map(|v| gpu.upload_f32(shape, v)).transpose()
        };
        let act = self.dtype;
        Ok(GpuInputs {
            state: gpu.upload_f32_as(&[s.pool, s.dim, s.n], self.state_dtype, &self.state)?,
            x: gpu.upload_f32_as(&rows, act, &self.x)?,
            dt: gpu.upload_f32_as(&rows, act, &self.dt)?,
            a: gpu.upload_f32(&[s.dim, s.n], &self.a)?,
            b: gpu.upload_f32_as(&[s.batch, s.b_groups, s.n], act, &self.b)?,
            c: gpu.upload_f32_as(&[s.batch, s.c_groups, s.n], act, &self.c)?,
            d: opt(&[s.dim], &self.d)?,
            z: self
                .z
                .as_ref()
                .map(|v| gpu.upload_f32_as(&rows, act, v))
                .transpose()?,
            dt_bias: opt(&[s.dim], &self.dt_bias)?,
            slots: self
                .slots
                .as_ref()
                .map(|v| gpu.upload(&[s.batch], DType::I32, v))
                .transpose()?,
            dt_softplus: self.dt_softplus,
        })
    }

    /// Upload, run `op` once (out NaN-poisoned, of [`Problem::dtype`]) and read back (out and
    /// the state pool, widened).
    pub async fn run(&self, gpu: &Gpu, op: &StateUpdate) -> Result<(Vec<f32>, Vec<f32>)> {
        let t = self.upload(gpu)?;
        let out = gpu.nan_as(&[self.dims.batch, self.dims.dim], self.dtype)?;
        let mut batch = gpu.batch();
        op.record(&mut batch, &t.inputs(), &out)?;
        batch.run()?;
        Ok((
            gpu.read_f32_async(&out).await?,
            gpu.read_f32_async(&t.state).await?,
        ))
    }
}

/// A problem's inputs on the GPU (`state` is updated in place by each step).
#[derive(Clone, Debug)]
pub struct GpuInputs {
    /// state (Pool, D, N).
    pub state: Tensor,
    /// x.
    pub x: Tensor,
    /// dt.
    pub dt: Tensor,
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
    /// dt_bias.
    pub dt_bias: Option<Tensor>,
    /// state_batch_indices (i32).
    pub slots: Option<Tensor>,
    /// Apply softplus.
    pub dt_softplus: bool,
}

impl GpuInputs {
    /// The op's inputs.
    pub fn inputs(&self) -> StateUpdateInputs<'_> {
        StateUpdateInputs {
            state: &self.state,
            x: &self.x,
            dt: &self.dt,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: self.d.as_ref(),
            z: self.z.as_ref(),
            dt_bias: self.dt_bias.as_ref(),
            state_batch_indices: self.slots.as_ref(),
            dt_softplus: self.dt_softplus,
        }
    }
}

/// Multi-head sizes: Bt requests, H heads of P channels, N states, G groups of B and C, and a
/// state pool of `pool` rows addressed by slot indices (`None`: no slots, Pool = Bt).
pub fn heads_dims(
    batch: usize,
    heads: usize,
    head_dim: usize,
    n: usize,
    groups: usize,
    pool: Option<usize>,
) -> HeadsDims {
    HeadsDims {
        batch,
        heads,
        head_dim,
        n,
        pool: pool.unwrap_or(batch),
        b_groups: groups,
        c_groups: groups,
        slots: pool.is_some(),
    }
}

/// One multi-head (Mamba-2) decode step's host inputs (layouts of
/// [`crate::ops::state_update::StateUpdateHeadsViews`]); dt and A in Mamba-2's ranges
/// ([`random_dt`], [`random_a`], per head), D per head or per channel.
#[derive(Clone, Debug)]
pub struct HeadsProblem {
    /// Sizes.
    pub dims: HeadsDims,
    /// state (Pool, H, P, N) before the step.
    pub state: Vec<f32>,
    /// x (Bt, H, P).
    pub x: Vec<f32>,
    /// dt (Bt, H).
    pub dt: Vec<f32>,
    /// A (H).
    pub a: Vec<f32>,
    /// B (Bt, G, N).
    pub b: Vec<f32>,
    /// C (Bt, G, N).
    pub c: Vec<f32>,
    /// D (H) or (H, P).
    pub d: Option<Vec<f32>>,
    /// z (Bt, H, P).
    pub z: Option<Vec<f32>>,
    /// dt_bias (H).
    pub dt_bias: Option<Vec<f32>>,
    /// State slot per request (Bt), when `dims.slots`.
    pub slots: Option<Vec<i32>>,
    /// Apply softplus to dt + dt_bias.
    pub dt_softplus: bool,
    /// dt clamp after softplus ((0, +inf): none).
    pub dt_limit: (f32, f32),
    /// Dtype of the activations on the GPU (f32 unless [`HeadsProblem::with_dtype`]).
    pub dtype: DType,
    /// Dtype of the state pool on the GPU (f32 unless [`HeadsProblem::with_state_dtype`]).
    pub state_dtype: DType,
}

impl HeadsProblem {
    /// Random inputs of `dims` with the optional inputs `opts` asks for, D of shape (H, P) when
    /// `d_per_channel` (else (H)), no dt clamp. With slots, requests take distinct random rows
    /// of the pool and every third request is padding (slot −1).
    pub fn random(
        rng: &mut Rng,
        dims: HeadsDims,
        opts: UpdateOptions,
        d_per_channel: bool,
    ) -> Self {
        let (bt, h, p, n) = (dims.batch, dims.heads, dims.head_dim, dims.n);
        let slots = dims.slots.then(|| {
            let mut free: Vec<i32> = (0..dims.pool as i32).collect();
            (0..bt)
                .map(|i| {
                    if i % 3 == 2 || free.is_empty() {
                        -1
                    } else {
                        free.swap_remove(rng.below(free.len()))
                    }
                })
                .collect()
        });
        let (dt, dt_bias) = random_dt(rng, bt * h, h, opts.dt_softplus, opts.dt_bias);
        let state = rng.normal_vec(dims.pool * h * p * n, 0.0, 1.0);
        let x = rng.normal_vec(bt * h * p, 0.0, 1.0);
        let a = random_a(rng, h);
        let b = rng.normal_vec(bt * dims.b_groups * n, 0.0, 1.0);
        let c = rng.normal_vec(bt * dims.c_groups * n, 0.0, 1.0);
        let d_len = if d_per_channel { h * p } else { h };
        let d = opts.d.then(|| rng.normal_vec(d_len, 0.0, 1.0));
        let z = opts.z.then(|| rng.normal_vec(bt * h * p, 0.0, 1.0));
        Self {
            dims,
            state,
            x,
            dt,
            a,
            b,
            c,
            d,
            z,
            dt_bias,
            slots,
            dt_softplus: opts.dt_softplus,
            dt_limit: (0.0, f32::INFINITY),
            dtype: DType::F32,
            state_dtype: DType::F32,
        }
    }

    /// This problem with its activations (x, dt, B, C, z; out follows) stored as `dtype`, the
    /// host values rounded to it so that the reference sees exactly what the GPU holds.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        let round = |v: &mut Vec<f32>| v.iter_mut().for_each(|x| *x = dtype.round_f32(*x));
        round(&mut self.x);
        round(&mut self.dt);
        round(&mut self.b);
        round(&mut self.c);
        if let Some(z) = &mut self.z {
            round(z);
        }
        self.dtype = dtype;
        self
    }

    /// This problem with the state pool stored as `dtype` (the initial state rounded to it).
    pub fn with_state_dtype(mut self, dtype: DType) -> Self {
        self.state.iter_mut().for_each(|v| *v = dtype.round_f32(*v));
        self.state_dtype = dtype;
        self
    }

    /// The shape of D: (H, P) or (H).
    pub fn d_shape(&self) -> Vec<usize> {
        let (h, p) = (self.dims.heads, self.dims.head_dim);
        match &self.d {
            Some(d) if d.len() != h => vec![h, p],
            _ => vec![h],
        }
    }

    /// The reference's view of the inputs.
    pub fn host(&self) -> StateUpdateHeadsHost<'_> {
        StateUpdateHeadsHost {
            dims: self.dims,
            state: &self.state,
            x: &self.x,
            dt: &self.dt,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: self.d.as_deref(),
            z: self.z.as_deref(),
            dt_bias: self.dt_bias.as_deref(),
            slots: self.slots.as_deref(),
            dt_softplus: self.dt_softplus,
            dt_limit: self.dt_limit,
        }
    }

    /// The f64 reference: out (Bt, H, P) and the whole state pool after the step.
    pub fn reference(&self) -> Result<UpdateOutput> {
        state_update_heads(&self.host())
    }

    /// Upload every input as a whole tensor of its own.
    pub fn upload(&self, gpu: &Gpu) -> Result<HeadsGpuInputs> {
        let s = &self.dims;
        let (bt, h, p, n) = (s.batch, s.heads, s.head_dim, s.n);
        let act = self.dtype;
        let opt = |shape: &[usize], v: &Option<Vec<f32>>| {
            v.as_ref().map(|v| gpu.upload_f32(shape, v)).transpose()
        };
        Ok(HeadsGpuInputs {
            state: gpu.upload_f32_as(&[s.pool, h, p, n], self.state_dtype, &self.state)?,
            x: gpu.upload_f32_as(&[bt, h, p], act, &self.x)?,
            dt: gpu.upload_f32_as(&[bt, h], act, &self.dt)?,
            a: gpu.upload_f32(&[h], &self.a)?,
            b: gpu.upload_f32_as(&[bt, s.b_groups, n], act, &self.b)?,
            c: gpu.upload_f32_as(&[bt, s.c_groups, n], act, &self.c)?,
            d: opt(&self.d_shape(), &self.d)?,
            z: self
                .z
                .as_ref()
                .map(|v| gpu.upload_f32_as(&[bt, h, p], act, v))
                .transpose()?,
            dt_bias: opt(&[h], &self.dt_bias)?,
            slots: self
                .slots
                .as_ref()
                .map(|v| gpu.upload(&[bt], DType::I32, v))
                .transpose()?,
            dt_softplus: self.dt_softplus,
            dt_limit: self.dt_limit,
        })
    }

    /// Upload, run `op` once on whole tensors (out NaN-poisoned, of [`HeadsProblem::dtype`])
    /// and read back out (Bt, H, P) and the state pool, widened.
    pub async fn run(&self, gpu: &Gpu, op: &StateUpdate) -> Result<(Vec<f32>, Vec<f32>)> {
        let t = self.upload(gpu)?;
        let s = &self.dims;
        let out = gpu.nan_as(&[s.batch, s.heads, s.head_dim], self.dtype)?;
        let mut batch = gpu.batch();
        op.record_heads_tensors(&mut batch, &t.inputs(), &out)?;
        batch.run()?;
        Ok((
            gpu.read_f32_async(&out).await?,
            gpu.read_f32_async(&t.state).await?,
        ))
    }
}

/// A multi-head problem's inputs on the GPU (`state` is updated in place by each step).
#[derive(Clone, Debug)]
pub struct HeadsGpuInputs {
    /// state (Pool, H, P, N).
    pub state: Tensor,
    /// x (Bt, H, P).
    pub x: Tensor,
    /// dt (Bt, H).
    pub dt: Tensor,
    /// A (H).
    pub a: Tensor,
    /// B (Bt, G, N).
    pub b: Tensor,
    /// C (Bt, G, N).
    pub c: Tensor,
    /// D (H) or (H, P).
    pub d: Option<Tensor>,
    /// z (Bt, H, P).
    pub z: Option<Tensor>,
    /// dt_bias (H).
    pub dt_bias: Option<Tensor>,
    /// state_batch_indices (i32).
    pub slots: Option<Tensor>,
    /// Apply softplus.
    pub dt_softplus: bool,
    /// dt clamp.
    pub dt_limit: (f32, f32),
}

impl HeadsGpuInputs {
    /// The op's whole-tensor inputs.
    pub fn inputs(&self) -> StateUpdateHeadsInputs<'_> {
        StateUpdateHeadsInputs {
            state: &self.state,
            x: &self.x,
            dt: &self.dt,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: self.d.as_ref(),
            z: self.z.as_ref(),
            dt_bias: self.dt_bias.as_ref(),
            state_batch_indices: self.slots.as_ref(),
            dt_softplus: self.dt_softplus,
            dt_limit: self.dt_limit,
        }
    }
}
