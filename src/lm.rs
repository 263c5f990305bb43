//! Causal language models behind one interface, whatever the architecture: the CLI's `run lm`
//! and `generate`, and apps, feed token ids and get logits, with each sequence's recurrent
//! state (or cache) kept in a numbered slot between calls.
//!
//! One call feeds any number of sequences, each its own number of new tokens (a ragged batch:
//! no padding is computed); a sequence continues from what its slot holds, so prefill, chunked
//! prefill and one-token decode are the same call. `crate::models::load` reads a Hugging Face
//! directory and builds the model it holds.

use crate::error::{Error, Result};
use crate::runtime::{DType, Gpu};
use std::sync::Arc;

/// Where a model runs.
#[derive(Clone)]
pub enum Device {
    /// On a GPU through the crate's kernels.
    Gpu(Arc<Gpu>),
    /// The f64 CPU reference (slow; for checking and for machines without a GPU).
    Cpu,
}

/// One sequence's part of a [`CausalLm::forward`] call.
#[derive(Clone, Copy, Debug)]
pub struct SeqInput<'a> {
    /// The slot holding the sequence's state (< [`CausalLm::slots`]).
    pub slot: usize,
    /// The new tokens (at least one).
    pub tokens: &'a [u32],
}

/// A causal language model with per-sequence state slots.
pub trait CausalLm {
    /// Vocabulary size: the width of each logits row.
    fn vocab_size(&self) -> usize;
    /// Number of state slots (sequences that can be in flight at once).
    fn slots(&self) -> usize;
    /// The end-of-sequence token, if the config names one.
    fn eos_token_id(&self) -> Option<u32>;
    /// Empty slot `slot` (a new sequence starts there from nothing).
    fn reset(&mut self, slot: usize) -> Result<()>;
    /// Feed each sequence's new tokens after what its slot holds; returns, per sequence, the
    /// logits of each fed position ((tokens, vocab) row-major, f32). With `last_only`, only
    /// the last position's row per sequence is computed and returned (what generation needs).
    fn forward(&mut self, seqs: &[SeqInput], last_only: bool) -> Result<Vec<Vec<f32>>>;
}

/// Options for `crate::models::load`.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// State slots to allocate.
    pub slots: usize,
    /// Store the weights as this dtype on the GPU (None: as the file stores them).
    pub weight_dtype: Option<DType>,
    /// Tokens each slot's attention cache holds (attention models; the Mamba models' state
    /// does not grow). None: the model's default (4096 for DeepSeek).
    pub context: Option<usize>,
    /// Storage dtype of attention caches on the GPU (F32, F16 or BF16).
    pub cache_dtype: DType,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            slots: 8,
            weight_dtype: None,
            context: None,
            cache_dtype: DType::F32,
        }
    }
}

/// Check a [`CausalLm::forward`] request against the model: slots in range and distinct,
/// tokens present and inside the vocabulary.
pub fn check_request(seqs: &[SeqInput], slots: usize, vocab: usize) -> Result<()> {
    let mut seen = vec![false; slots];
    for (i, s) in seqs.iter().enumerate() {
        if s.slot >= slots {
            return Err(Error::invalid(format!(
                "sequence {i}: slot {} is outside the model's {slots} slots",
                s.slot
            )));
        }
        if std::mem::replace(&mut seen[s.slot], true) {
            return Err(Error::invalid(format!(
                "sequence {i}: slot {} is fed twice in one call",
                s.slot
            )));
        }
        if s.tokens.is_empty() {
            return Err(Error::invalid(format!("sequence {i} has no tokens")));
        }
        if let Some(&t) = s.tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::invalid(format!(
                "sequence {i}: token id {t} is outside the vocabulary (vocab_size {vocab})"
            )));
        }
    }
    Ok(())
}

/// Next-token choice from a logits row: greedy at temperature 0, else softmax(logits / T)
/// restricted to the smallest set of most likely tokens whose probability reaches `top_p`
/// (nucleus sampling), drawn with a seeded generator.
#[derive(Clone, Debug)]
pub struct Sampler {
    /// Softmax temperature; 0 picks the most likely token.
    pub temperature: f64,
    /// Nucleus mass in (0, 1]; 1 keeps every token.
    pub top_p: f64,
    rng: crate::rng::Rng,
}

impl Sampler {
    /// A sampler; errors unless `temperature ≥ 0` and `0 < top_p ≤ 1`.
    pub fn new(temperature: f64, top_p: f64, seed: u64) -> Result<Self> {
        if temperature.is_nan() || temperature < 0.0 {
            return Err(Error::invalid(format!(
                "temperature must be ≥ 0, got {temperature}"
            )));
        }
        if top_p.is_nan() || top_p <= 0.0 || top_p > 1.0 {
            return Err(Error::invalid(format!(
                "top_p must be in (0, 1], got {top_p}"
            )));
        }
        Ok(Self {
            temperature,
            top_p,
            rng: crate::rng::Rng::new(seed),
        })
    }

    /// The next token for `logits` (one row, vocab wide); NaN logits are an error.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if logits.is_empty() || logits.iter().any(|x| x.is_nan()) {
            return Err(Error::invalid(
                "the model produced an empty or NaN logits row",
            ));
        }
        let argmax = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .expect("non-empty");
        if self.temperature == 0.0 {
            return Ok(argmax as u32);
        }
        let max = logits[argmax] as f64;
        let mut probs: Vec<(usize, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &x)| (i, ((x as f64 - max) / self.temperature).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut kept = 0;
        let mut mass = 0.0;
        for p in &probs {
            kept += 1;
            mass += p.1 / total;
            if mass >= self.top_p {
                break;
            }
        }
        let kept_total: f64 = probs[..kept].iter().map(|p| p.1).sum();
        let mut u = self.rng.uniform() * kept_total;
        for p in &probs[..kept] {
            u -= p.1;
            if u <= 0.0 {
                return Ok(p.0 as u32);
            }
        }
        Ok(probs[kept - 1].0 as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_nucleus_sampling() {
        let logits = [0.0f32, 3.0, 1.0, 2.9];
        let mut greedy = Sampler::new(0.0, 1.0, 1).unwrap();
        assert_eq!(greedy.sample(&logits).unwrap(), 1);
        // top_p small enough that only the most likely token is kept.
        let mut narrow = Sampler::new(1.0, 0.1, 7).unwrap();
        for _ in 0..20 {
            assert_eq!(narrow.sample(&logits).unwrap(), 1);
        }
        // Full nucleus at T = 1: the two near-equal tokens both appear, the rare ones seldom.
        let mut full = Sampler::new(1.0, 1.0, 3).unwrap();
        let mut counts = [0usize; 4];
        for _ in 0..2000 {
            counts[full.sample(&logits).unwrap() as usize] += 1;
        }
        assert!(counts[1] > 600 && counts[3] > 600, "{counts:?}");
        assert!(counts[0] < 200, "{counts:?}");
        assert!(Sampler::new(-1.0, 1.0, 0).is_err());
        assert!(Sampler::new(1.0, 0.0, 0).is_err());
        assert!(greedy.sample(&[f32::NAN, 1.0]).is_err());
    }

    #[test]
    fn requests_are_checked() {
        let t = [1u32, 2];
        let ok = [SeqInput {
            slot: 0,
            tokens: &t,
        }];
        assert!(check_request(&ok, 2, 10).is_ok());
        let twice = [ok[0], ok[0]];
        assert!(check_request(&twice, 2, 10).is_err());
        assert!(check_request(
            &[SeqInput {
                slot: 2,
                tokens: &t
            }],
            2,
            10
        )
        .is_err());
        assert!(check_request(
            &[SeqInput {
                slot: 0,
                tokens: &[]
            }],
            2,
            10
        )
        .is_err());
        assert!(check_request(&ok, 2, 2).is_err());
    }
}
