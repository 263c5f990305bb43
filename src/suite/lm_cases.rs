//! Benchmark cases of a whole language model, whatever its architecture (Mamba-1, Mamba-2):
//! the suite entries `mamba_model` and `mamba2_model` build a model and hand it here.
//!
//! Each benchmark run is one [`CausalLm::forward`] call as an application makes it: the host
//! records the whole batch, submits it, waits, and reads back the logits of each sequence's last
//! position. Its time is the wall clock of that call (host time: recording, submission, device
//! work and readback), because the model runs its batch untimed and a forward has far more passes
//! than the timestamp slots hold; device time alone is not separated here. The model load (weight
//! generation and upload) and the short prefill before the decode cases happen while the cases
//! are prepared, outside the timed region.
//!
//! Cases per model: prefill (one sequence of L new tokens from an empty state, slot 0) and decode
//! (one new token for each of Bt sequences, each after a prefill of [`DECODE_CONTEXT`] tokens; its
//! time is the per-token latency of every sequence in the step). The decode cases keep stepping
//! through repeats; an SSM step costs the same at any position, so no rollback is needed.

use super::{BenchCase, GpuRun};
use crate::error::{Error, Result};
use crate::lm::{CausalLm, SeqInput};
use crate::ops::Cost;
use crate::rng::Rng;
use crate::runtime::{Timing, TimingSource};
use std::sync::{Arc, Mutex, MutexGuard};

/// Tokens each decode case's sequences are prefilled with before stepping.
pub const DECODE_CONTEXT: usize = 16;

/// A model shared by the cases of one entry.
type Shared = Arc<Mutex<Box<dyn CausalLm + Send>>>;

/// The shared benchmark model, or an error if a run panicked while holding it.
fn lock(m: &Shared) -> Result<MutexGuard<'_, Box<dyn CausalLm + Send>>> {
    m.lock()
        .map_err(|_| Error::invalid("the benchmark model's lock was poisoned"))
}

/// One sequence of `len` random tokens.
pub fn random_tokens(rng: &mut Rng, vocab: usize, len: usize) -> Vec<u32> {
    (0..len).map(|_| rng.below(vocab) as u32).collect()
}

/// Time one forward of `seqs` (last rows only) by the wall clock.
fn timed_forward(model: &Shared, seqs: &[SeqInput]) -> Result<Timing> {
    let mut model = lock(model)?;
    let start = crate::clock::Instant::now();
    let logits = model.forward(seqs, true)?;
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(logits);
    Ok(Timing {
        seconds,
        source: TimingSource::WallClock,
    })
}

/// The cases of one loaded `model` (with at least 1 + Σ `decode` slots): a prefill of each
/// length in `prefill` and a decode step of each batch size in `decode`, labelled
/// `{prefix}prefill Bt=1 L=…{suffix}` and `{prefix}decode Bt=… after 16{suffix}` under `kernel`;
/// `cost(seqs, tokens, rows)` is a forward's bytes and FLOPs.
#[allow(clippy::too_many_arguments)]
pub fn model_cases(
    kernel: &'static str,
    prefix: &str,
    model: Box<dyn CausalLm + Send>,
    suffix: &str,
    prefill: &[usize],
    decode: &[usize],
    rng: &mut Rng,
    cost: impl Fn(usize, usize, usize) -> Cost,
) -> Result<Vec<BenchCase>> {
    let needed = 1 + decode.iter().sum::<usize>();
    if model.slots() < needed {
        return Err(Error::invalid(format!(
            "the benchmark model has {} slots, its cases need {needed}",
            model.slots()
        )));
    }
    let v = model.vocab_size();
    let model: Shared = Arc::new(Mutex::new(model));
    let mut cases = Vec::new();
    for &len in prefill {
        let m = model.clone();
        let prompt = random_tokens(rng, v, len);
        let run: GpuRun = Box::new(move || {
            lock(&m)?.reset(0)?;
            timed_forward(
                &m,
                &[SeqInput {
                    slot: 0,
                    tokens: &prompt,
                }],
            )
        });
        cases.push(BenchCase {
            kernel,
            size: format!("{prefix}prefill Bt=1 L={len}{suffix}"),
            cost: cost(1, len, 1),
            tokens: Some(len as u64),
            gpu: run,
            cpu: None,
        });
    }
    let mut first_slot = 1;
    for &bt in decode {
        let slots: Vec<usize> = (first_slot..first_slot + bt).collect();
        first_slot += bt;
        let contexts: Vec<Vec<u32>> = slots
            .iter()
            .map(|_| random_tokens(rng, v, DECODE_CONTEXT))
            .collect();
        let seqs: Vec<SeqInput> = slots
            .iter()
            .zip(&contexts)
            .map(|(&slot, tokens)| SeqInput { slot, tokens })
            .collect();
        lock(&model)?.forward(&seqs, true)?;
        let m = model.clone();
        let steps: Vec<[u32; 1]> = slots.iter().map(|_| [rng.below(v) as u32]).collect();
        let run: GpuRun = Box::new(move || {
            let seqs: Vec<SeqInput> = slots
                .iter()
                .zip(&steps)
                .map(|(&slot, tokens)| SeqInput { slot, tokens })
                .collect();
            timed_forward(&m, &seqs)
        });
        cases.push(BenchCase {
            kernel,
            size: format!("{prefix}decode Bt={bt} after {DECODE_CONTEXT}{suffix}"),
            cost: cost(bt, bt, bt),
            tokens: Some(bt as u64),
            gpu: run,
            cpu: None,
        });
    }
    Ok(cases)
}
