//! The model registry: which architectures a Hugging Face directory can hold, and where each
//! runs. It sits above the models and the CPU references (as `shaders.rs` sits above the ops),
//! so neither depends on the other: [`load`] picks the architecture from `config.json`'s
//! `model_type` and builds it on the GPU, or wraps its f64 CPU reference in the same
//! [`CausalLm`] interface for `Device::Cpu`.

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::lm::{check_request, CausalLm, Device, LoadOptions, SeqInput};
use crate::mamba::{MambaConfig, MambaGpuLm, MambaWeights};
use crate::reference::mamba::{MambaCpuModel, MambaCpuState};
use std::path::Path;

/// Model types [`load`] builds.
pub const SUPPORTED: &[&str] = &["mamba"];

/// Read the Hugging Face directory `dir` and build its model on `device`.
pub fn load(dir: &Path, device: &Device, options: &LoadOptions) -> Result<Box<dyn CausalLm>> {
    let ck = Checkpoint::open(dir)?;
    let config_path = dir.join("config.json").display().to_string();
    match ck.model_type()? {
        "mamba" => {
            let cfg = MambaConfig::from_json(&ck.config, &config_path)?;
            let weights = MambaWeights::from_safetensors(&cfg, &ck.tensors)?;
            match device {
                Device::Cpu => Ok(Box::new(MambaCpuLm::new(cfg, weights, options.slots))),
                Device::Gpu(gpu) => Ok(Box::new(MambaGpuLm::new(
                    gpu.clone(),
                    cfg,
                    &weights,
                    options.slots,
                    options.weight_dtype,
                )?)),
            }
        }
        other => Err(Error::Format {
            path: config_path,
            message: format!("model_type {other:?} is not supported (supported: {SUPPORTED:?})"),
        }),
    }
}

/// A Mamba model computed by the f64 CPU reference.
pub struct MambaCpuLm {
    cfg: MambaConfig,
    weights: MambaWeights,
    states: Vec<Option<MambaCpuState>>,
}

impl MambaCpuLm {
    /// The model with `slots` empty state slots.
    pub fn new(cfg: MambaConfig, weights: MambaWeights, slots: usize) -> Self {
        MambaCpuLm {
            cfg,
            weights,
            states: vec![None; slots],
        }
    }
}

impl CausalLm for MambaCpuLm {
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn slots(&self) -> usize {
        self.states.len()
    }

    fn eos_token_id(&self) -> Option<u32> {
        self.cfg.eos_token_id
    }

    fn reset(&mut self, slot: usize) -> Result<()> {
        let n = self.states.len();
        *self.states.get_mut(slot).ok_or_else(|| {
            Error::invalid(format!("slot {slot} is outside the model's {n} slots"))
        })? = None;
        Ok(())
    }

    fn forward(&mut self, seqs: &[SeqInput], last_only: bool) -> Result<Vec<Vec<f32>>> {
        check_request(seqs, self.states.len(), self.cfg.vocab_size)?;
        let model = MambaCpuModel::new(&self.cfg, &self.weights);
        let mut out = Vec::with_capacity(seqs.len());
        for s in seqs {
            let state = self.states[s.slot].get_or_insert_with(|| model.new_state());
            let mut logits = Vec::new();
            for (i, &t) in s.tokens.iter().enumerate() {
                let row = model.step(state, t)?;
                if !last_only || i + 1 == s.tokens.len() {
                    logits.extend(row.iter().map(|&x| x as f32));
                }
            }
            out.push(logits);
        }
        Ok(out)
    }
}
