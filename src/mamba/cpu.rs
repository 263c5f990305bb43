//! The Mamba model on the CPU reference ([`crate::reference::mamba`]) behind [`CausalLm`]:
//! slots hold f64 states; a forward feeds each sequence's tokens one at a time.

use crate::error::{Error, Result};
use crate::lm::{check_request, CausalLm, SeqInput};
use crate::mamba::{MambaConfig, MambaWeights};
use crate::reference::mamba::{MambaCpuModel, MambaCpuState};

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
