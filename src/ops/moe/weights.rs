//! The MoE block's weights on the GPU, uploaded once: the router (f32, as transformers keeps
//! it), the V3 correction bias, the routed experts stacked in expert ranges that each fit one
//! storage binding, and the shared expert.

use crate::error::{Error, Result};
use crate::runtime::{DType, Gpu, Tensor};
use crate::spec::moe::{MoeConfig, MoeHostWeights, SwigluWeights};

/// Routed experts `first .. first + count`, their weights stacked along a leading expert axis.
#[derive(Clone, Debug)]
pub struct ExpertGroup {
    /// The first expert of the range.
    pub first: usize,
    /// Experts in the range.
    pub count: usize,
    /// gate_proj stacked: (count, I, hidden).
    pub gate: Tensor,
    /// up_proj stacked: (count, I, hidden).
    pub up: Tensor,
    /// down_proj stacked: (count, hidden, I).
    pub down: Tensor,
}

/// A dense SwiGLU MLP on the GPU, down(silu(gate·x) ⊙ up·x): the shared experts (intermediate
/// I·n_shared) and DeepSeek's dense layers (intermediate_size) alike.
#[derive(Clone, Debug)]
pub struct SwigluMlp {
    /// gate_proj (I, hidden).
    pub gate: Tensor,
    /// up_proj (I, hidden).
    pub up: Tensor,
    /// down_proj (hidden, I).
    pub down: Tensor,
}

impl SwigluMlp {
    /// Upload `w` (checked to be (I, hidden), (I, hidden), (hidden, I)) stored as `dtype`.
    pub fn upload(
        gpu: &Gpu,
        w: &SwigluWeights,
        hidden: usize,
        intermediate: usize,
        dtype: DType,
    ) -> Result<Self> {
        let (h, i) = (hidden, intermediate);
        for (name, len) in [
            ("gate_proj", w.gate.len()),
            ("up_proj", w.up.len()),
            ("down_proj", w.down.len()),
        ] {
            if len != h * i {
                return Err(Error::invalid(format!(
                    "mlp.{name}: {len} values, expected {i}×{h} (intermediate × hidden)"
                )));
            }
        }
        Ok(Self {
            gate: gpu.upload_f32_as(&[i, h], dtype, &w.gate)?,
            up: gpu.upload_f32_as(&[i, h], dtype, &w.up)?,
            down: gpu.upload_f32_as(&[h, i], dtype, &w.down)?,
        })
    }

    /// The intermediate width I.
    pub fn intermediate(&self) -> usize {
        self.gate.shape()[0]
    }
}

/// Everything [`super::Moe::record`] needs besides the activations.
#[derive(Clone, Debug)]
pub struct MoeWeights {
    /// The block's configuration.
    pub config: MoeConfig,
    /// gate.weight (E, hidden) f32.
    pub router: Tensor,
    /// gate.e_score_correction_bias (E) f32 (V3).
    pub bias: Option<Tensor>,
    /// The routed experts, in expert ranges that each fit one storage binding.
    pub groups: Vec<ExpertGroup>,
    /// shared_experts, when n_shared > 0.
    pub shared: Option<SwigluMlp>,
    /// Storage dtype of the expert weights.
    pub dtype: DType,
}

/// Experts per range so that each stacked tensor fits `max_binding` bytes.
pub fn experts_per_binding(cfg: &MoeConfig, dtype: DType, max_binding: u64) -> Result<usize> {
    let per_expert = (cfg.intermediate * cfg.hidden * dtype.size()) as u64;
    let n = (max_binding / per_expert.max(1)) as usize;
    if n == 0 {
        return Err(Error::Limit {
            what: format!(
                "one expert's {}×{} {dtype} projection ({per_expert} bytes)",
                cfg.intermediate, cfg.hidden
            ),
            detail: format!("max_storage_buffer_binding_size = {max_binding}"),
        });
    }
    Ok(n.min(cfg.experts))
}

fn stack(experts: &[SwigluWeights], part: fn(&SwigluWeights) -> &Vec<f32>) -> Vec<f32> {
    experts
        .iter()
        .flat_map(|w| part(w).iter().copied())
        .collect()
}

impl MoeWeights {
    /// Upload `host` (checked against `cfg`) with the expert weights stored as `dtype` (f32,
    /// f16 or bf16, rounded to nearest even); the router and bias stay f32. The routed experts
    /// are split into ranges whose stacked tensors fit the device's largest storage binding
    /// (DeepSeek-V2-Lite's 64 experts of 1408×2048 bf16 are 369 MB per projection: three ranges
    /// under a 128 MiB binding).
    pub fn upload(gpu: &Gpu, cfg: &MoeConfig, host: &MoeHostWeights, dtype: DType) -> Result<Self> {
        host.check(cfg)?;
        dtype.expect_float("expert weights")?;
        let (h, i) = (cfg.hidden, cfg.intermediate);
        let per = experts_per_binding(cfg, dtype, gpu.max_binding_bytes())?;
        let mut groups = Vec::new();
        for first in (0..cfg.experts).step_by(per) {
            let count = per.min(cfg.experts - first);
            let ex = &host.experts[first..first + count];
            groups.push(ExpertGroup {
                first,
                count,
                gate: gpu.upload_f32_as(&[count, i, h], dtype, &stack(ex, |w| &w.gate))?,
                up: gpu.upload_f32_as(&[count, i, h], dtype, &stack(ex, |w| &w.up))?,
                down: gpu.upload_f32_as(&[count, h, i], dtype, &stack(ex, |w| &w.down))?,
            });
        }
        let shared = host
            .shared
            .as_ref()
            .map(|s| SwigluMlp::upload(gpu, s, h, cfg.shared_intermediate(), dtype))
            .transpose()?;
        Ok(Self {
            config: cfg.clone(),
            router: gpu.upload_f32(&[cfg.experts, h], &host.router)?,
            bias: host
                .bias
                .as_ref()
                .map(|b| gpu.upload_f32(&[cfg.experts], b))
                .transpose()?,
            groups,
            shared,
            dtype,
        })
    }
}
