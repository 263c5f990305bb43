//! SSD-scan fixtures: a [`Problem`] with Mamba-2's ranges (x, B, C, D, z, initial states
//! ~ N(0, 1); A = −exp(N(0, 1)); dt of softplus of roughly N(−4, 1), the softplus either applied
//! by the kernel to raw dt plus a bias or done here), its upload, and the f64 references on it.
//! A problem is a list of sequence lengths: the batched form has Bt equal lengths.

use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::ssd_scan::{DLayout, SsdDims, SsdInputs, SsdOptions, SsdScan};
use crate::reference::ssd_scan::{ssd_quadratic, ssd_recurrent, SsdHost, SsdOutput};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu, Tensor};
use crate::testing::selective_scan::{random_a, random_dt};

/// GPU against the f64 reference, for out and final_states: |gpu − ref| ≤ 1e-4 + 1e-3·|ref|.
/// f32 sums of up to N = 256 (C·h, C·Bᵀ) and Q = 256 (Y_diag, chunk states) terms of both signs,
/// and states carried across chunks; `mamba_ssm`'s own f32 test of the chunked scan allows
/// rtol 1e-3 as well.
pub const TOLERANCE: Tolerance = Tolerance::new(1e-4, 1e-3);

/// Mamba-2's options: D per head, z, dt_bias and softplus, no initial states.
pub const MAMBA2: SsdOptions = SsdOptions {
    d: Some(DLayout::PerHead),
    z: true,
    dt_bias: true,
    dt_softplus: true,
    initial_states: false,
};

/// Every option on (D per channel).
pub const ALL: SsdOptions = SsdOptions {
    d: Some(DLayout::PerChannel),
    z: true,
    dt_bias: true,
    dt_softplus: true,
    initial_states: true,
};

/// Batched sizes.
pub fn dims(
    batch: usize,
    len: usize,
    heads: usize,
    head_dim: usize,
    groups: usize,
    n: usize,
) -> SsdDims {
    SsdDims {
        batch,
        len,
        heads,
        head_dim,
        groups,
        n,
    }
}

/// One scan's host inputs, token-major packed (x (T, H, P), dt (T, H), B and C (T, G, N), …).
#[derive(Clone, Debug)]
pub struct Problem {
    /// Sizes: H, P, G, N; `batch` and `len` as the batched form has them (Bt equal lengths),
    /// or 1 and T for ragged lengths.
    pub dims: SsdDims,
    /// Length of each sequence (they sum to T).
    pub lens: Vec<usize>,
    /// x (T, H, P).
    pub x: Vec<f32>,
    /// dt (T, H).
    pub dt: Vec<f32>,
    /// A (H).
    pub a: Vec<f32>,
    /// B (T, G, N).
    pub b: Vec<f32>,
    /// C (T, G, N).
    pub c: Vec<f32>,
    /// D, (H) or (H, P) as `d_layout` says.
    pub d: Option<Vec<f32>>,
    /// Layout of D.
    pub d_layout: Option<DLayout>,
    /// z (T, H, P).
    pub z: Option<Vec<f32>>,
    /// dt_bias (H).
    pub dt_bias: Option<Vec<f32>>,
    /// Initial states (S, H, P, N).
    pub initial_states: Option<Vec<f32>>,
    /// Apply softplus to dt + dt_bias.
    pub dt_softplus: bool,
    /// Clamp range ((0, ∞) for none).
    pub dt_limit: (f32, f32),
    /// Chunk size the GPU runs.
    pub chunk_size: usize,
}

impl Problem {
    /// Batched random inputs of `dims` with the options `opts`, chunk size 64.
    pub fn random(rng: &mut Rng, dims: SsdDims, opts: SsdOptions) -> Self {
        let lens = vec![dims.len; dims.batch];
        Self::random_lengths(rng, dims, &lens, opts)
    }

    /// Random inputs for sequences of `lens` (H, P, G, N from `dims`; `dims.batch` and
    /// `dims.len` are kept as given), chunk size 64.
    pub fn random_lengths(rng: &mut Rng, dims: SsdDims, lens: &[usize], opts: SsdOptions) -> Self {
        let t: usize = lens.iter().sum();
        let (h, p, g, n) = (dims.heads, dims.head_dim, dims.groups, dims.n);
        let x = rng.normal_vec(t * h * p, 0.0, 1.0);
        let (dt, dt_bias) = random_dt(rng, t * h, h, opts.dt_softplus, opts.dt_bias);
        let a = random_a(rng, h);
        let b = rng.normal_vec(t * g * n, 0.0, 1.0);
        let c = rng.normal_vec(t * g * n, 0.0, 1.0);
        let d = opts.d.map(|l| match l {
            DLayout::PerHead => rng.normal_vec(h, 0.0, 1.0),
            DLayout::PerChannel => rng.normal_vec(h * p, 0.0, 1.0),
        });
        let z = opts.z.then(|| rng.normal_vec(t * h * p, 0.0, 1.0));
        let initial_states = opts
            .initial_states
            .then(|| rng.normal_vec(lens.len() * h * p * n, 0.0, 1.0));
        Self {
            dims,
            lens: lens.to_vec(),
            x,
            dt,
            a,
            b,
            c,
            d,
            d_layout: opts.d,
            z,
            dt_bias,
            initial_states,
            dt_softplus: opts.dt_softplus,
            dt_limit: (0.0, f32::INFINITY),
            chunk_size: 64,
        }
    }

    /// Tokens T.
    pub fn tokens(&self) -> usize {
        self.lens.iter().sum()
    }

    /// Token offsets of the sequences (S + 1 values).
    pub fn cu_seqlens(&self) -> Vec<usize> {
        let mut cu = vec![0];
        for l in &self.lens {
            cu.push(cu.last().unwrap() + l);
        }
        cu
    }

    /// The references' view of the inputs (`cu` from [`Problem::cu_seqlens`]).
    pub fn host<'a>(&'a self, cu: &'a [usize]) -> SsdHost<'a> {
        SsdHost {
            dims: SsdDims {
                batch: 1,
                len: self.tokens(),
                ..self.dims
            },
            x: &self.x,
            dt: &self.dt,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: self.d.as_deref(),
            z: self.z.as_deref(),
            dt_bias: self.dt_bias.as_deref(),
            dt_softplus: self.dt_softplus,
            dt_limit: self.dt_limit,
            cu_seqlens: cu,
            initial_states: self.initial_states.as_deref(),
        }
    }

    /// The f64 recurrence: out (T, H, P) and final_states (S, H, P, N).
    pub fn reference(&self) -> Result<SsdOutput> {
        let cu = self.cu_seqlens();
        ssd_recurrent(&self.host(&cu))
    }

    /// The f64 chunked dual form with chunks of `chunk`.
    pub fn reference_quadratic(&self, chunk: usize) -> Result<SsdOutput> {
        let cu = self.cu_seqlens();
        ssd_quadratic(&self.host(&cu), chunk)
    }

    /// The options this problem uses.
    pub fn options(&self) -> SsdOptions {
        SsdOptions {
            d: self.d_layout,
            z: self.z.is_some(),
            dt_bias: self.dt_bias.is_some(),
            dt_softplus: self.dt_softplus,
            initial_states: self.initial_states.is_some(),
        }
    }

    /// Upload the batched form's inputs (`dims.batch · dims.len` must be T).
    pub fn upload(&self, gpu: &Gpu) -> Result<GpuInputs> {
        let SsdDims {
            batch: bt,
            len: l,
            heads: h,
            head_dim: p,
            groups: g,
            n,
        } = self.dims;
        let opt = |shape: &[usize], v: &Option<Vec<f32>>| {
            v.as_ref().map(|v| gpu.upload_f32(shape, v)).transpose()
        };
        let d_shape = match self.d_layout {
            Some(DLayout::PerChannel) => vec![h, p],
            _ => vec![h],
        };
        Ok(GpuInputs {
            x: gpu.upload_f32(&[bt, l, h, p], &self.x)?,
            dt: gpu.upload_f32(&[bt, l, h], &self.dt)?,
            a: gpu.upload_f32(&[h], &self.a)?,
            b: gpu.upload_f32(&[bt, l, g, n], &self.b)?,
            c: gpu.upload_f32(&[bt, l, g, n], &self.c)?,
            d: opt(&d_shape, &self.d)?,
            z: opt(&[bt, l, h, p], &self.z)?,
            dt_bias: opt(&[h], &self.dt_bias)?,
            initial_states: opt(&[bt, h, p, n], &self.initial_states)?,
            dt_softplus: self.dt_softplus,
            dt_limit: self.dt_limit,
            chunk_size: self.chunk_size,
        })
    }

    /// NaN-poisoned batched outputs: out (Bt, L, H, P), final_states (Bt, H, P, N).
    pub fn poisoned_outputs(&self, gpu: &Gpu) -> Result<(Tensor, Tensor)> {
        let d = &self.dims;
        Ok((
            gpu.nan_as(&[d.batch, d.len, d.heads, d.head_dim], DType::F32)?,
            gpu.nan_f32(&[d.batch, d.heads, d.head_dim, d.n])?,
        ))
    }

    /// Upload, run the batched `op` once into poisoned outputs and read back (out, final_states).
    pub async fn run(&self, gpu: &Gpu, op: &SsdScan) -> Result<(Vec<f32>, Vec<f32>)> {
        let t = self.upload(gpu)?;
        let (out, finals) = self.poisoned_outputs(gpu)?;
        let mut batch = gpu.batch();
        op.record(&mut batch, &t.inputs(), &out, &finals)?;
        batch.run()?;
        Ok((
            gpu.read_f32_async(&out).await?,
            gpu.read_f32_async(&finals).await?,
        ))
    }
}

/// A batched problem's inputs on the GPU.
#[derive(Clone, Debug)]
pub struct GpuInputs {
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
    /// initial_states.
    pub initial_states: Option<Tensor>,
    /// Apply softplus.
    pub dt_softplus: bool,
    /// Clamp range.
    pub dt_limit: (f32, f32),
    /// Chunk size.
    pub chunk_size: usize,
}

impl GpuInputs {
    /// The op's inputs.
    pub fn inputs(&self) -> SsdInputs<'_> {
        SsdInputs {
            x: &self.x,
            dt: &self.dt,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: self.d.as_ref(),
            z: self.z.as_ref(),
            dt_bias: self.dt_bias.as_ref(),
            initial_states: self.initial_states.as_ref(),
            dt_softplus: self.dt_softplus,
            dt_limit: self.dt_limit,
            chunk_size: self.chunk_size,
        }
    }
}
