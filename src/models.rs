//! The model registry: which architectures a Hugging Face directory can hold, and where each
//! runs. It sits above the models and the CPU references (as `shaders.rs` sits above the ops),
//! so neither depends on the other: [`load`] picks the architecture from `config.json`'s
//! `model_type` and builds it on the GPU, or wraps its f64 CPU reference in the same
//! [`CausalLm`] interface for `Device::Cpu` ([`CpuLm`], one piece of slot bookkeeping for every
//! architecture).

use crate::checkpoint::Checkpoint;
use crate::deepseek::{DeepseekConfig, DeepseekGpuLm, DeepseekWeights};
use crate::error::{Error, Result};
use crate::lm::{check_request, CausalLm, Device, LoadOptions, SeqInput};
use crate::mamba::{MambaConfig, MambaGpuLm, MambaWeights};
use crate::mamba2::{Mamba2Config, Mamba2GpuLm, Mamba2Weights};
use crate::reference::deepseek::{DeepseekCpuModel, DeepseekCpuState};
use crate::reference::mamba::{MambaCpuModel, MambaCpuState};
use crate::reference::mamba2::{Mamba2CpuModel, Mamba2CpuState};
use std::path::Path;

/// Model types [`load`] builds.
pub const SUPPORTED: &[&str] = &["mamba", "mamba2", "deepseek_v2", "deepseek_v3"];

/// Read the Hugging Face directory `dir` and build its model on `device`.
pub fn load(dir: &Path, device: &Device, options: &LoadOptions) -> Result<Box<dyn CausalLm>> {
    let ck = Checkpoint::open(dir)?;
    let config_path = dir.join("config.json").display().to_string();
    match ck.model_type()? {
        "mamba" => {
            let cfg = MambaConfig::from_json(&ck.config, &config_path)?;
            let weights = MambaWeights::from_safetensors(&cfg, &ck.tensors)?;
            match device {
                Device::Cpu => Ok(Box::new(CpuLm::new(
                    MambaCpu { cfg, weights },
                    options.slots,
                ))),
                Device::Gpu(gpu) => Ok(Box::new(MambaGpuLm::new(
                    gpu.clone(),
                    cfg,
                    &weights,
                    options.slots,
                    options.weight_dtype,
                )?)),
            }
        }
        "mamba2" => {
            let cfg = Mamba2Config::from_json(&ck.config, &config_path)?;
            let weights = Mamba2Weights::from_safetensors(&cfg, &ck.tensors)?;
            match device {
                Device::Cpu => Ok(Box::new(CpuLm::new(
                    Mamba2Cpu { cfg, weights },
                    options.slots,
                ))),
                Device::Gpu(gpu) => Ok(Box::new(Mamba2GpuLm::new(
                    gpu.clone(),
                    cfg,
                    &weights,
                    options.slots,
                    options.weight_dtype,
                )?)),
            }
        }
        "deepseek_v2" | "deepseek_v3" => {
            let cfg = DeepseekConfig::from_json(&ck.config, &config_path)?;
            let weights = DeepseekWeights::from_safetensors(&cfg, &ck.tensors)?;
            match device {
                Device::Cpu => Ok(Box::new(CpuLm::new(
                    DeepseekCpu { cfg, weights },
                    options.slots,
                ))),
                Device::Gpu(gpu) => Ok(Box::new(DeepseekGpuLm::new(
                    gpu.clone(),
                    cfg,
                    &weights,
                    options.slots,
                    options.context,
                    options.weight_dtype,
                    options.cache_dtype,
                )?)),
            }
        }
        other => Err(Error::Format {
            path: config_path,
            message: format!("model_type {other:?} is not supported (supported: {SUPPORTED:?})"),
        }),
    }
}

/// A CPU reference model with one state per sequence, fed token by token or a block at a time:
/// what [`CpuLm`] needs of an architecture.
pub trait CpuStepModel {
    /// One sequence's recurrent state.
    type State;
    /// Vocabulary size: the width of each logits row.
    fn vocab_size(&self) -> usize;
    /// The end-of-sequence token, if the config names one.
    fn eos_token_id(&self) -> Option<u32>;
    /// A fresh state (a sequence before its first token).
    fn new_state(&self) -> Self::State;
    /// Feed one token after `state`; returns the logits (vocab) of the next one.
    fn step(&self, state: &mut Self::State, token: u32) -> Result<Vec<f64>>;
    /// Feed `tokens` after `state`; returns the logits of every position ((tokens, vocab)
    /// row-major), or with `last_only` of the last one. One [`Self::step`] per token unless
    /// the architecture can do better (attention takes a prompt as one block).
    fn feed(&self, state: &mut Self::State, tokens: &[u32], last_only: bool) -> Result<Vec<f64>> {
        let mut logits = Vec::new();
        for (i, &t) in tokens.iter().enumerate() {
            let row = self.step(state, t)?;
            if !last_only || i + 1 == tokens.len() {
                logits.extend(row);
            }
        }
        Ok(logits)
    }
}

/// A [`CpuStepModel`] behind [`CausalLm`]: numbered slots, each holding a sequence's state
/// (created on its first token, dropped by `reset`).
pub struct CpuLm<M: CpuStepModel> {
    model: M,
    states: Vec<Option<M::State>>,
}

impl<M: CpuStepModel> CpuLm<M> {
    /// The model with `slots` empty state slots.
    pub fn new(model: M, slots: usize) -> Self {
        CpuLm {
            model,
            states: (0..slots).map(|_| None).collect(),
        }
    }

    /// The model inside.
    pub fn model(&self) -> &M {
        &self.model
    }
}

impl<M: CpuStepModel> CausalLm for CpuLm<M> {
    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn slots(&self) -> usize {
        self.states.len()
    }

    fn eos_token_id(&self) -> Option<u32> {
        self.model.eos_token_id()
    }

    fn reset(&mut self, slot: usize) -> Result<()> {
        let n = self.states.len();
        *self.states.get_mut(slot).ok_or_else(|| {
            Error::invalid(format!("slot {slot} is outside the model's {n} slots"))
        })? = None;
        Ok(())
    }

    fn forward(&mut self, seqs: &[SeqInput], last_only: bool) -> Result<Vec<Vec<f32>>> {
        check_request(seqs, self.states.len(), self.model.vocab_size())?;
        let mut out = Vec::with_capacity(seqs.len());
        for s in seqs {
            let model = &self.model;
            let state = self.states[s.slot].get_or_insert_with(|| model.new_state());
            let logits = model.feed(state, s.tokens, last_only)?;
            out.push(logits.iter().map(|&x| x as f32).collect());
        }
        Ok(out)
    }
}

/// A Mamba-1 model (config and weights) for the CPU reference.
pub struct MambaCpu {
    /// The config.
    pub cfg: MambaConfig,
    /// The weights.
    pub weights: MambaWeights,
}

impl CpuStepModel for MambaCpu {
    type State = MambaCpuState;
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
    fn eos_token_id(&self) -> Option<u32> {
        self.cfg.eos_token_id
    }
    fn new_state(&self) -> MambaCpuState {
        MambaCpuModel::new(&self.cfg, &self.weights).new_state()
    }
    fn step(&self, state: &mut MambaCpuState, token: u32) -> Result<Vec<f64>> {
        MambaCpuModel::new(&self.cfg, &self.weights).step(state, token)
    }
}

/// A Mamba-2 model (config and weights) for the CPU reference.
pub struct Mamba2Cpu {
    /// The config.
    pub cfg: Mamba2Config,
    /// The weights.
    pub weights: Mamba2Weights,
}

impl CpuStepModel for Mamba2Cpu {
    type State = Mamba2CpuState;
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
    fn eos_token_id(&self) -> Option<u32> {
        self.cfg.eos_token_id
    }
    fn new_state(&self) -> Mamba2CpuState {
        Mamba2CpuModel::new(&self.cfg, &self.weights).new_state()
    }
    fn step(&self, state: &mut Mamba2CpuState, token: u32) -> Result<Vec<f64>> {
        Mamba2CpuModel::new(&self.cfg, &self.weights).step(state, token)
    }
}

/// A DeepSeek-V2/V3 model (config and weights) for the CPU reference: a prompt is fed as one
/// block through each layer's latent cache.
pub struct DeepseekCpu {
    /// The config.
    pub cfg: DeepseekConfig,
    /// The weights.
    pub weights: DeepseekWeights,
}

impl CpuStepModel for DeepseekCpu {
    type State = DeepseekCpuState;
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
    fn eos_token_id(&self) -> Option<u32> {
        self.cfg.eos_token_id
    }
    fn new_state(&self) -> DeepseekCpuState {
        DeepseekCpuModel::new(&self.cfg, &self.weights).new_state()
    }
    fn step(&self, state: &mut DeepseekCpuState, token: u32) -> Result<Vec<f64>> {
        self.feed(state, &[token], false)
    }
    fn feed(
        &self,
        state: &mut DeepseekCpuState,
        tokens: &[u32],
        last_only: bool,
    ) -> Result<Vec<f64>> {
        DeepseekCpuModel::new(&self.cfg, &self.weights).forward(state, tokens, last_only)
    }
}

/// A Mamba-1 model computed by the f64 CPU reference.
pub type MambaCpuLm = CpuLm<MambaCpu>;

/// A Mamba-2 model computed by the f64 CPU reference.
pub type Mamba2CpuLm = CpuLm<Mamba2Cpu>;

/// A DeepSeek-V2/V3 model computed by the f64 CPU reference.
pub type DeepseekCpuLm = CpuLm<DeepseekCpu>;
