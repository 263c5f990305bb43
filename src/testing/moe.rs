//! MoE fixtures: a [`Problem`] with x ~ N(0, 1), a router ~ N(0, 1/hidden) (logits O(1)),
//! gate/up ~ N(0, 1/hidden) and down ~ N(0, 1/I) (expert outputs O(1)), a V3 correction bias
//! ~ N(0, 0.1²), its upload, the f64 reference and the GPU run with y poisoned.

use crate::compare::Tolerance;
use crate::error::Result;
use crate::ops::moe::{Moe, MoeWeights, Output, SwigluMlp};
use crate::reference::moe::{moe, route, swiglu, Routing};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::spec::moe::{MoeConfig, MoeHostWeights, Scoring, SwigluWeights};

/// GPU against the f64 reference: |y − ref| ≤ 1e-5 + 2e-4·|ref|. Each output sums k + 1 expert
/// outputs (f32 products over hidden and I of O(1/√K) terms, a silu in between) with weights
/// from f32 exp/sigmoid; the sum may cancel, hence the atol. The same holds for half weights:
/// the reference is fed the same rounded weights and widening is exact.
pub const TOLERANCE: Tolerance = Tolerance::new(1e-5, 2e-4);

/// Routing weights (T, k) against the reference: f32 softmax/sigmoid and normalisation.
pub const WEIGHT_TOLERANCE: Tolerance = Tolerance::new(1e-6, 1e-5);

/// One MoE problem: a config, host weights (rounded to `dtype`) and x.
#[derive(Clone, Debug)]
pub struct Problem {
    /// The block.
    pub config: MoeConfig,
    /// Its weights (expert weights already rounded to `dtype`).
    pub weights: MoeHostWeights,
    /// Tokens T.
    pub tokens: usize,
    /// x (T, hidden).
    pub x: Vec<f32>,
    /// Storage dtype of the expert weights on the GPU.
    pub dtype: DType,
}

fn random_swiglu(rng: &mut Rng, h: usize, i: usize) -> SwigluWeights {
    let sh = 1.0 / (h as f64).sqrt();
    SwigluWeights {
        gate: rng.normal_vec(i * h, 0.0, sh),
        up: rng.normal_vec(i * h, 0.0, sh),
        down: rng.normal_vec(h * i, 0.0, 1.0 / (i as f64).sqrt()),
    }
}

impl Problem {
    /// Random weights and x for `config` (validated) and `tokens` tokens.
    pub fn random(rng: &mut Rng, config: &MoeConfig, tokens: usize) -> Self {
        config.validate().expect("a valid MoE config");
        let (h, i, e) = (config.hidden, config.intermediate, config.experts);
        let weights = MoeHostWeights {
            router: rng.normal_vec(e * h, 0.0, 1.0 / (h as f64).sqrt()),
            bias: (config.scoring == Scoring::Sigmoid).then(|| rng.normal_vec(e, 0.0, 0.1)),
            experts: (0..e).map(|_| random_swiglu(rng, h, i)).collect(),
            shared: (config.n_shared > 0)
                .then(|| random_swiglu(rng, h, config.shared_intermediate())),
        };
        Self {
            config: config.clone(),
            weights,
            tokens,
            x: rng.normal_vec(tokens * h, 0.0, 1.0),
            dtype: DType::F32,
        }
    }

    /// This problem with the expert weights stored as `dtype`, rounded on the host (nearest
    /// even) so that the reference sees what the GPU holds; the router stays f32.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        let round = |v: &mut Vec<f32>| v.iter_mut().for_each(|x| *x = dtype.round_f32(*x));
        let all = self
            .weights
            .experts
            .iter_mut()
            .chain(self.weights.shared.as_mut());
        for w in all {
            round(&mut w.gate);
            round(&mut w.up);
            round(&mut w.down);
        }
        self.dtype = dtype;
        self
    }

    /// The reference output y (T, hidden).
    pub fn reference(&self) -> Vec<f64> {
        moe(&self.config, &self.weights, &self.x)
    }

    /// The reference routing.
    pub fn routing(&self) -> Routing {
        route(&self.config, &self.weights, &self.x)
    }

    /// Distinct experts the reference routes to (for the bench's byte count).
    pub fn experts_hit(&self) -> usize {
        let mut hit = vec![false; self.config.experts];
        self.routing().experts.iter().for_each(|&e| hit[e] = true);
        hit.iter().filter(|&&h| h).count()
    }

    /// Upload the weights.
    pub fn upload(&self, gpu: &Gpu) -> Result<MoeWeights> {
        MoeWeights::upload(gpu, &self.config, &self.weights, self.dtype)
    }

    /// Run the op into a NaN-poisoned y: (y, chosen ids (T, k), their weights (T, k)).
    pub async fn run(&self, gpu: &Gpu, op: &Moe) -> Result<(Vec<f32>, Vec<u32>, Vec<f32>)> {
        let w = self.upload(gpu)?;
        let shape = [self.tokens, self.config.hidden];
        let x = gpu.upload_f32(&shape, &self.x)?;
        let y = gpu.nan_f32(&shape)?;
        let mut batch = gpu.batch();
        let s = op.record_with_scratch(&mut batch, &x, &w, &y, Output::Write)?;
        batch.run()?;
        Ok((
            gpu.read_f32_async(&y).await?,
            gpu.read_u32_async(&s.ids).await?,
            gpu.read_f32_async(&s.weights).await?,
        ))
    }

    /// Run the op adding into y = `y0` (T, hidden) ([`Output::Accumulate`]); returns y.
    pub fn run_accumulate(&self, gpu: &Gpu, op: &Moe, y0: &[f32]) -> Result<Vec<f32>> {
        let w = self.upload(gpu)?;
        let shape = [self.tokens, self.config.hidden];
        let x = gpu.upload_f32(&shape, &self.x)?;
        let y = gpu.upload_f32(&shape, y0)?;
        let mut batch = gpu.batch();
        op.record_accumulate(&mut batch, &x, &w, &y)?;
        batch.run()?;
        gpu.read_f32(&y)
    }
}

/// A dense SwiGLU MLP problem (DeepSeek's dense layers): x (T, hidden), y0 (T, hidden) that the
/// op adds into, weights rounded to the storage dtype on the host.
#[derive(Clone, Debug)]
pub struct DenseProblem {
    /// Hidden width.
    pub hidden: usize,
    /// Intermediate width.
    pub intermediate: usize,
    /// Tokens T.
    pub tokens: usize,
    /// The weights as the GPU holds them (rounded to `dtype`).
    pub weights: SwigluWeights,
    /// x (T, hidden).
    pub x: Vec<f32>,
    /// y before the op (T, hidden).
    pub y0: Vec<f32>,
    /// Storage dtype of the weights.
    pub dtype: DType,
}

impl DenseProblem {
    /// Random weights (variance-preserving scale), x and y0 ~ N(0, 1).
    pub fn random(
        rng: &mut Rng,
        hidden: usize,
        intermediate: usize,
        tokens: usize,
        dtype: DType,
    ) -> Self {
        let round = |v: Vec<f32>| v.into_iter().map(|x| dtype.round_f32(x)).collect();
        let w = random_swiglu(rng, hidden, intermediate);
        let weights = SwigluWeights {
            gate: round(w.gate),
            up: round(w.up),
            down: round(w.down),
        };
        DenseProblem {
            hidden,
            intermediate,
            tokens,
            weights,
            x: rng.normal_vec(tokens * hidden, 0.0, 1.0),
            y0: rng.normal_vec(tokens * hidden, 0.0, 1.0),
            dtype,
        }
    }

    /// The reference y0 + mlp(x), (T, hidden).
    pub fn reference(&self) -> Vec<f64> {
        let h = self.hidden;
        (0..self.tokens)
            .flat_map(|t| {
                let y = swiglu(
                    &self.weights,
                    h,
                    self.intermediate,
                    &self.x[t * h..(t + 1) * h],
                );
                let y0 = &self.y0[t * h..(t + 1) * h];
                y.into_iter()
                    .zip(y0)
                    .map(|(a, &b)| a + b as f64)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Run [`Moe::record_dense`] adding into y0; returns y.
    pub fn run(&self, gpu: &Gpu, op: &Moe) -> Result<Vec<f32>> {
        let mlp = SwigluMlp::upload(
            gpu,
            &self.weights,
            self.hidden,
            self.intermediate,
            self.dtype,
        )?;
        let shape = [self.tokens, self.hidden];
        let x = gpu.upload_f32(&shape, &self.x)?;
        let y = gpu.upload_f32(&shape, &self.y0)?;
        let mut batch = gpu.batch();
        op.record_dense(&mut batch, &x, &mlp, &y)?;
        batch.run()?;
        gpu.read_f32(&y)
    }
}
