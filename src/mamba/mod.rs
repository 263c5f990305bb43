//! Mamba-1 language models (transformers' `MambaForCausalLM`): config, weights from a Hugging
//! Face directory, and the model on the GPU.

pub mod config;

pub use config::MambaConfig;
pub mod weights;

pub use model::MambaGpuLm;
pub use weights::{MambaLayerWeights, MambaWeights};
pub mod cpu;
pub mod model;

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::lm::{CausalLm, Device, LoadOptions};

/// Build a Mamba model from a checkpoint whose `model_type` is "mamba".
pub fn load(ck: &Checkpoint, device: &Device, options: &LoadOptions) -> Result<Box<dyn CausalLm>> {
    let cfg = MambaConfig::from_json(
        &ck.config,
        &ck.dir.join("config.json").display().to_string(),
    )?;
    let weights = MambaWeights::from_safetensors(&cfg, &ck.tensors)?;
    match device {
        Device::Cpu => Ok(Box::new(cpu::MambaCpuLm::new(cfg, weights, options.slots))),
        Device::Gpu(gpu) => Ok(Box::new(model::MambaGpuLm::new(
            gpu.clone(),
            cfg,
            &weights,
            options.slots,
            options.weight_dtype,
        )?)),
    }
}
