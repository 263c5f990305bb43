//! Causal-convolution fixtures: a prefill [`Problem`] (batched with initial/final states, or
//! packed ragged sequences with a state pool and slots) and a decode-step [`UpdateProblem`],
//! each with x and y placed in a chosen memory [`Layout`] (channel-first, channel-last, a column
//! window of a wider tensor). Every element of x's and y's tensors outside the view is NaN, so a
//! kernel that reads or writes past its view is caught; outputs are NaN-poisoned.

use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::causal_conv1d::{
    Activation, CausalConv1d, CausalConv1dInputs, CausalConv1dUpdate, CausalConv1dUpdateInputs,
    ConvDims, ConvUpdateDims,
};
use crate::reference::causal_conv1d::{
    causal_conv1d, causal_conv1d_update, ConvHost, ConvOutput, ConvUpdateHost, ConvUpdateOutput,
};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu, Tensor, View};

/// GPU against the f64 reference. A W-term f32 sum (plus bias) of terms |w·x| ≲ 3 rounds by at
/// most ~(W + 1)·2^-24·Σ|terms| ≈ 1.5e-6 absolute, which cancellation can leave next to a small
/// |y|: hence the absolute term. SiLU's exp may be off by 3 + 2·|v| ulp in WGSL, ~1e-6 relative
/// for the |v| ≲ 10 seen here, plus the divide's 2.5 ulp: hence rtol 1e-5, about 80 ulp of
/// headroom. States are copies of inputs and must match exactly (they pass any tolerance).
pub const TOLERANCE: Tolerance = Tolerance::new(5e-6, 1e-5);

/// y stored as a half ([`Problem::with_dtype`]) against the f64 reference on the *same* rounded
/// inputs: widening is exact and the math f32, so [`TOLERANCE`] holds before the store, which
/// adds the rounding of y: the unit roundoff 2^-8 relative for bf16 (7 stored bits, nearest
/// even) and one ulp, 2^-10, for f16 (10 stored bits; `pack2x16float` may return either
/// neighbour). States are copies of the (rounded) inputs and stay exact.
pub fn y_tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::BF16 => Tolerance::new(5e-6, 1e-5 + 1.0 / 256.0),
        DType::F16 => Tolerance::new(5e-6, 1e-5 + 1.0 / 1024.0),
        _ => TOLERANCE,
    }
}

/// Where x or y of logical shape (Bt, D, L) (or (Bt, D) for the decode step) sits in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Row-major (Bt, D, L) (or (Bt, D)).
    ChannelFirst,
    /// A (Bt, L, D) tensor seen through `permute(&[0, 2, 1])` (for (Bt, D): a (D, Bt) tensor
    /// seen through `permute(&[1, 0])`).
    ChannelLast,
    /// Columns `before .. before + D` of a (Bt, L, before + D + after) tensor (for (Bt, D): of a
    /// (Bt, before + D + after) tensor), as a packed projection's output holds x.
    Window {
        /// Columns in front of the window.
        before: usize,
        /// Columns after it.
        after: usize,
    },
}

/// A tensor of `dtype` holding `data` (logical row-major of `shape`, rank 2 or 3, channel axis
/// 1; rounded to `dtype`) in `layout`, every other element NaN, and the view of it with the
/// logical shape. `data = None` gives an all-NaN tensor (a poisoned output).
pub fn place(
    gpu: &Gpu,
    layout: Layout,
    shape: &[usize],
    dtype: DType,
    data: Option<&[f32]>,
) -> Result<(Tensor, View)> {
    let n: usize = shape.iter().product();
    let (phys, order): (Vec<usize>, Vec<usize>) = match (layout, shape.len()) {
        (Layout::ChannelFirst, _) => (shape.to_vec(), (0..shape.len()).collect()),
        (Layout::ChannelLast, 3) => (vec![shape[0], shape[2], shape[1]], vec![0, 2, 1]),
        (Layout::ChannelLast, _) => (vec![shape[1], shape[0]], vec![1, 0]),
        (Layout::Window { before, after }, 3) => (
            vec![shape[0], shape[2], before + shape[1] + after],
            vec![0, 2, 1],
        ),
        (Layout::Window { before, after }, _) => {
            (vec![shape[0], before + shape[1] + after], vec![0, 1])
        }
    };
    let mut host = vec![f32::NAN; phys.iter().product()];
    // A placeholder tensor to build the view on; the real one (same shape) is uploaded below.
    let t = gpu.empty(&phys, dtype)?;
    let mut view = t.view();
    if let Layout::Window { before, .. } = layout {
        let last = phys.len() - 1;
        view = view.narrow(last, before, shape[1])?;
    }
    let view = view.permute(&order)?;
    if let Some(data) = data {
        for (i, &v) in data.iter().enumerate().take(n) {
            host[address(&view, i)] = v;
        }
    }
    let t = gpu.upload_f32_as(&phys, dtype, &host)?;
    let view = View::as_strided(&t, view.offset(), view.shape(), view.strides())?;
    Ok((t, view))
}

/// The buffer element of logical (row-major) element `i` of `view`.
pub fn address(view: &View, i: usize) -> usize {
    let mut rest = i;
    let mut at = view.offset();
    for (&n, &s) in view.shape().iter().zip(view.strides()).rev() {
        at += (rest % n) * s;
        rest /= n;
    }
    at
}

/// The view's elements in logical order, read from the whole tensor's contents `full`, and
/// the number of elements outside the view that are not NaN (0 unless something wrote there).
pub fn gather(view: &View, full: &[f32]) -> (Vec<f32>, usize) {
    let mut inside = vec![false; full.len()];
    let got = (0..view.len())
        .map(|i| {
            let a = address(view, i);
            inside[a] = true;
            full[a]
        })
        .collect();
    let stray = full
        .iter()
        .zip(&inside)
        .filter(|(v, &ins)| !ins && !v.is_nan())
        .count();
    (got, stray)
}

/// Optional parts of a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Give a bias.
    pub bias: bool,
    /// Apply SiLU.
    pub silu: bool,
}

fn activation(silu: bool) -> Activation {
    if silu {
        Activation::Silu
    } else {
        Activation::Identity
    }
}

/// One prefill's host inputs (logical layouts of [`crate::reference::causal_conv1d`]).
#[derive(Clone, Debug)]
pub struct Problem {
    /// Sizes.
    pub dims: ConvDims,
    /// x (Bt, D, L).
    pub x: Vec<f32>,
    /// weight (D, W).
    pub weight: Vec<f32>,
    /// bias (D).
    pub bias: Option<Vec<f32>>,
    /// Apply SiLU.
    pub silu: bool,
    /// Batched initial states (Bt, D, W − 1).
    pub initial_states: Option<Vec<f32>>,
    /// Batched: ask for the final states.
    pub final_states: bool,
    /// Batched: final states written over the initial states' tensor (in place).
    pub in_place: bool,
    /// Packed: cu_seqlens (S + 1).
    pub cu_seqlens: Option<Vec<i32>>,
    /// Packed: the state pool (Pool, D, W − 1) before the call.
    pub state_pool: Option<Vec<f32>>,
    /// Packed: pool row per sequence (S).
    pub slots: Option<Vec<i32>>,
    /// Packed: read initial states from the pool.
    pub pool_initial: bool,
    /// Memory layout of x.
    pub x_layout: Layout,
    /// Memory layout of y.
    pub y_layout: Layout,
    /// Dtype of x and y on the GPU (f32 unless [`Problem::with_dtype`]).
    pub dtype: DType,
}

/// Convolution weights (D, W) and an optional bias (D), N(0, 0.5²).
fn weights(rng: &mut Rng, dim: usize, width: usize, bias: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let w = rng.normal_vec(dim * width, 0.0, 0.5);
    (w, bias.then(|| rng.normal_vec(dim, 0.0, 0.5)))
}

impl Problem {
    /// Batched sequences: x (Bt, D, L) N(0, 1); random initial states when `initial`; final
    /// states asked for when `final_states`.
    #[allow(clippy::too_many_arguments)]
    pub fn batched(
        rng: &mut Rng,
        batch: usize,
        dim: usize,
        len: usize,
        width: usize,
        opts: Options,
        initial: bool,
        final_states: bool,
    ) -> Self {
        let (weight, bias) = weights(rng, dim, width, opts.bias);
        Self {
            dims: ConvDims {
                batch,
                dim,
                len,
                width,
                seqs: None,
                pool: None,
            },
            x: rng.normal_vec(batch * dim * len, 0.0, 1.0),
            weight,
            bias,
            silu: opts.silu,
            initial_states: initial.then(|| rng.normal_vec(batch * dim * (width - 1), 0.0, 1.0)),
            final_states,
            in_place: false,
            cu_seqlens: None,
            state_pool: None,
            slots: None,
            pool_initial: false,
            x_layout: Layout::ChannelFirst,
            y_layout: Layout::ChannelFirst,
            dtype: DType::F32,
        }
    }

    /// Packed sequences of lengths `lens` in one (1, D, T) row; with `pool` rows, distinct
    /// random pool rows as slots (sequence indices in `skip` get slot −1) and the pool N(0, 1).
    #[allow(clippy::too_many_arguments)]
    pub fn packed(
        rng: &mut Rng,
        dim: usize,
        lens: &[usize],
        width: usize,
        opts: Options,
        pool: Option<usize>,
        skip: &[usize],
        pool_initial: bool,
    ) -> Self {
        let total: usize = lens.iter().sum();
        let mut cu = vec![0i32];
        for &l in lens {
            cu.push(cu[cu.len() - 1] + l as i32);
        }
        let (weight, bias) = weights(rng, dim, width, opts.bias);
        let slots = pool.map(|p| {
            let rows = super::permutation(rng, p);
            (0..lens.len())
                .map(|s| {
                    if skip.contains(&s) {
                        -1
                    } else {
                        rows[s % p] as i32
                    }
                })
                .collect()
        });
        Self {
            dims: ConvDims {
                batch: 1,
                dim,
                len: total,
                width,
                seqs: Some(lens.len()),
                pool,
            },
            x: rng.normal_vec(dim * total, 0.0, 1.0),
            weight,
            bias,
            silu: opts.silu,
            initial_states: None,
            final_states: false,
            in_place: false,
            cu_seqlens: Some(cu),
            state_pool: pool.map(|p| rng.normal_vec(p * dim * (width - 1), 0.0, 1.0)),
            slots,
            pool_initial,
            x_layout: Layout::ChannelFirst,
            y_layout: Layout::ChannelFirst,
            dtype: DType::F32,
        }
    }

    /// This problem with x and y in the given layouts.
    pub fn with_layouts(mut self, x: Layout, y: Layout) -> Self {
        self.x_layout = x;
        self.y_layout = y;
        self
    }

    /// This problem with x (and so y) stored as `dtype`: x is rounded to it (nearest even) so
    /// that the reference sees exactly what the GPU holds.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.x.iter_mut().for_each(|v| *v = dtype.round_f32(*v));
        self.dtype = dtype;
        self
    }

    /// The reference's view of the inputs.
    pub fn host(&self) -> ConvHost<'_> {
        ConvHost {
            dims: self.dims,
            x: &self.x,
            weight: &self.weight,
            bias: self.bias.as_deref(),
            silu: self.silu,
            initial_states: self.initial_states.as_deref(),
            cu_seqlens: self.cu_seqlens.as_deref(),
            state_pool: self.state_pool.as_deref(),
            slots: self.slots.as_deref(),
            pool_initial: self.pool_initial,
        }
    }

    /// The f64 reference: y and the final states (batched) or the pool after the call.
    pub fn reference(&self) -> Result<ConvOutput> {
        causal_conv1d(&self.host())
    }

    /// Upload every input (x in its layout).
    pub fn upload(&self, gpu: &Gpu) -> Result<GpuInputs> {
        let d = &self.dims;
        let state_shape = [d.batch, d.dim, d.width - 1];
        let initial_states = self
            .initial_states
            .as_ref()
            .map(|v| gpu.upload_f32(&state_shape, v))
            .transpose()?;
        let final_states = match (self.final_states, self.in_place, &initial_states) {
            (true, true, Some(t)) => Some(t.clone()),
            (true, _, _) => Some(gpu.nan_f32(&state_shape)?),
            _ => None,
        };
        let (_, x) = place(
            gpu,
            self.x_layout,
            &[d.batch, d.dim, d.len],
            self.dtype,
            Some(&self.x),
        )?;
        Ok(GpuInputs {
            x,
            weight: gpu.upload_f32(&[d.dim, d.width], &self.weight)?,
            bias: self
                .bias
                .as_ref()
                .map(|v| gpu.upload_f32(&[d.dim], v))
                .transpose()?,
            silu: self.silu,
            initial_states,
            final_states,
            cu_seqlens: self
                .cu_seqlens
                .as_ref()
                .map(|v| gpu.upload_i32(&[v.len()], v))
                .transpose()?,
            state_pool: match (&self.state_pool, d.pool) {
                (Some(v), Some(p)) => Some(gpu.upload_f32(&[p, d.dim, d.width - 1], v)?),
                _ => None,
            },
            slots: self
                .slots
                .as_ref()
                .map(|v| gpu.upload_i32(&[v.len()], v))
                .transpose()?,
            pool_initial: self.pool_initial,
        })
    }

    /// Upload, run `op` once with y poisoned in its layout, read back.
    pub async fn run(&self, gpu: &Gpu, op: &CausalConv1d) -> Result<Outputs> {
        let t = self.upload(gpu)?;
        let d = &self.dims;
        let (y_t, y) = place(
            gpu,
            self.y_layout,
            &[d.batch, d.dim, d.len],
            self.dtype,
            None,
        )?;
        let mut batch = gpu.batch();
        op.record(&mut batch, &t.inputs(), &y)?;
        batch.run()?;
        let (y_got, stray) = gather(&y, &gpu.read_f32_async(&y_t).await?);
        let states = match t.final_states.as_ref().or(t.state_pool.as_ref()) {
            Some(s) => gpu.read_f32_async(s).await?,
            None => Vec::new(),
        };
        Ok(Outputs {
            y: y_got,
            states,
            stray,
        })
    }
}

/// What a GPU run produced.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// y in logical order.
    pub y: Vec<f32>,
    /// The final states (batched), the pool after the call (packed), or empty.
    pub states: Vec<f32>,
    /// Elements of y's tensor outside its view that are no longer NaN (must be 0).
    pub stray: usize,
}

/// A prefill problem's inputs on the GPU.
#[derive(Clone, Debug)]
pub struct GpuInputs {
    /// x in its layout.
    pub x: View,
    /// weight.
    pub weight: Tensor,
    /// bias.
    pub bias: Option<Tensor>,
    /// Apply SiLU.
    pub silu: bool,
    /// Batched initial states.
    pub initial_states: Option<Tensor>,
    /// Batched final states (NaN-poisoned, or the initial states' tensor in place).
    pub final_states: Option<Tensor>,
    /// cu_seqlens.
    pub cu_seqlens: Option<Tensor>,
    /// The state pool.
    pub state_pool: Option<Tensor>,
    /// slots.
    pub slots: Option<Tensor>,
    /// Read initial states from the pool.
    pub pool_initial: bool,
}

impl GpuInputs {
    /// The op's inputs.
    pub fn inputs(&self) -> CausalConv1dInputs<'_> {
        CausalConv1dInputs {
            x: &self.x,
            weight: &self.weight,
            bias: self.bias.as_ref(),
            activation: activation(self.silu),
            initial_states: self.initial_states.as_ref(),
            final_states: self.final_states.as_ref(),
            cu_seqlens: self.cu_seqlens.as_ref(),
            state_pool: self.state_pool.as_ref(),
            slots: self.slots.as_ref(),
            pool_initial: self.pool_initial,
        }
    }
}

/// One decode step's host inputs.
#[derive(Clone, Debug)]
pub struct UpdateProblem {
    /// Sizes.
    pub dims: ConvUpdateDims,
    /// x (Bt, D).
    pub x: Vec<f32>,
    /// conv_state (Pool, D, W − 1) before the step.
    pub conv_state: Vec<f32>,
    /// weight (D, W).
    pub weight: Vec<f32>,
    /// bias (D).
    pub bias: Option<Vec<f32>>,
    /// Apply SiLU.
    pub silu: bool,
    /// Pool row per request (Bt).
    pub slots: Option<Vec<i32>>,
    /// Memory layout of x.
    pub x_layout: Layout,
    /// Memory layout of y.
    pub y_layout: Layout,
    /// Dtype of x and y on the GPU (f32 unless [`UpdateProblem::with_dtype`]).
    pub dtype: DType,
}

impl UpdateProblem {
    /// Random inputs; with `pool` rows, requests take distinct random rows and those in `skip`
    /// get slot −1.
    pub fn random(
        rng: &mut Rng,
        batch: usize,
        dim: usize,
        width: usize,
        opts: Options,
        pool: Option<usize>,
        skip: &[usize],
    ) -> Self {
        let (weight, bias) = weights(rng, dim, width, opts.bias);
        let rows = pool.unwrap_or(batch);
        let slots = pool.map(|p| {
            let perm = super::permutation(rng, p);
            (0..batch)
                .map(|b| {
                    if skip.contains(&b) {
                        -1
                    } else {
                        perm[b % p] as i32
                    }
                })
                .collect()
        });
        Self {
            dims: ConvUpdateDims {
                batch,
                dim,
                width,
                pool: rows,
                slots: pool.is_some(),
            },
            x: rng.normal_vec(batch * dim, 0.0, 1.0),
            conv_state: rng.normal_vec(rows * dim * (width - 1), 0.0, 1.0),
            weight,
            bias,
            silu: opts.silu,
            slots,
            x_layout: Layout::ChannelFirst,
            y_layout: Layout::ChannelFirst,
            dtype: DType::F32,
        }
    }

    /// This problem with x and y in the given layouts.
    pub fn with_layouts(mut self, x: Layout, y: Layout) -> Self {
        self.x_layout = x;
        self.y_layout = y;
        self
    }

    /// This problem with x (and so y) stored as `dtype`, x rounded to it.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.x.iter_mut().for_each(|v| *v = dtype.round_f32(*v));
        self.dtype = dtype;
        self
    }

    /// The f64 reference: y and the pool after the step.
    pub fn reference(&self) -> Result<ConvUpdateOutput> {
        causal_conv1d_update(&ConvUpdateHost {
            dims: self.dims,
            x: &self.x,
            conv_state: &self.conv_state,
            weight: &self.weight,
            bias: self.bias.as_deref(),
            silu: self.silu,
            slots: self.slots.as_deref(),
        })
    }

    /// Upload, run `op` once with y poisoned in its layout, read back y and the pool.
    pub async fn run(&self, gpu: &Gpu, op: &CausalConv1dUpdate) -> Result<Outputs> {
        let d = &self.dims;
        let (_, x) = place(
            gpu,
            self.x_layout,
            &[d.batch, d.dim],
            self.dtype,
            Some(&self.x),
        )?;
        let state = gpu.upload_f32(&[d.pool, d.dim, d.width - 1], &self.conv_state)?;
        let weight = gpu.upload_f32(&[d.dim, d.width], &self.weight)?;
        let bias = self
            .bias
            .as_ref()
            .map(|v| gpu.upload_f32(&[d.dim], v))
            .transpose()?;
        let slots = self
            .slots
            .as_ref()
            .map(|v| gpu.upload_i32(&[v.len()], v))
            .transpose()?;
        let (y_t, y) = place(gpu, self.y_layout, &[d.batch, d.dim], self.dtype, None)?;
        let mut batch = gpu.batch();
        op.record(
            &mut batch,
            &CausalConv1dUpdateInputs {
                x: &x,
                conv_state: &state,
                weight: &weight,
                bias: bias.as_ref(),
                activation: activation(self.silu),
                slots: slots.as_ref(),
            },
            &y,
        )?;
        batch.run()?;
        let (y_got, stray) = gather(&y, &gpu.read_f32_async(&y_t).await?);
        Ok(Outputs {
            y: y_got,
            states: gpu.read_f32_async(&state).await?,
            stray,
        })
    }
}
