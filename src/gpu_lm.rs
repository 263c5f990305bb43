//! What every GPU language model shares around its blocks, so each architecture's file holds
//! only its blocks: the packing of a ragged request into token-major rows, forwards split into
//! passes that fit the device's bindings, the slots' fresh flags, the activation buffers kept
//! per call shape, and the two ends of the network (embedding lookup; final RMSNorm and LM head,
//! both tables in binding-sized row chunks).
//!
//! A forward packs the new tokens of every sequence (T in all; sequence s is rows
//! `cu[s] .. cu[s+1]`), runs the blocks over the residual stream h (T, hidden), then takes the
//! last row of each sequence (or every row) through the final norm and the head:
//! ```text
//! h      = embeddings[ids]                      embedding (row chunks)
//! …      blocks (the architecture's own)
//! hl     = h[last rows]                         embedding (as a row gather), only with last_only
//! logits = rmsnorm(hl) · headᵀ                  rmsnorm, matmul per head chunk
//! ```

use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::lm::SeqInput;
use crate::ops::embedding::{split_rows, Embedding};
use crate::ops::matmul::{Matmul, MatmulDims};
use crate::ops::rmsnorm::{RmsNorm, Rows};
use crate::runtime::{Batch, DType, Gpu, Tensor};

/// A ragged request packed into token-major rows.
pub(crate) struct Packing {
    /// Token offsets: sequence s is rows `cu[s] .. cu[s+1]`.
    pub cu: Vec<u32>,
    /// The state slot of each sequence.
    pub slots: Vec<u32>,
    /// Every sequence's new tokens, concatenated.
    pub ids: Vec<u32>,
    /// T, the number of packed tokens.
    pub tokens: usize,
    /// Rows of logits computed: one per sequence with `last_only`, else T.
    pub rows: usize,
    /// Every sequence brings one token: the decode step's kernels apply.
    pub decode: bool,
    last_only: bool,
}

impl Packing {
    /// Pack `seqs` (already checked with `crate::lm::check_request`).
    pub fn new(seqs: &[SeqInput], last_only: bool) -> Self {
        let mut cu = vec![0u32];
        for s in seqs {
            cu.push(cu[cu.len() - 1] + s.tokens.len() as u32);
        }
        let tokens = cu[seqs.len()] as usize;
        Packing {
            slots: seqs.iter().map(|s| s.slot as u32).collect(),
            ids: seqs.iter().flat_map(|s| s.tokens.iter().copied()).collect(),
            rows: if last_only { seqs.len() } else { tokens },
            decode: tokens == seqs.len(),
            cu,
            tokens,
            last_only,
        }
    }

    /// The key of the activation buffers this call needs: (tokens, sequences, rows).
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.tokens, self.slots.len(), self.rows)
    }

    /// Split the read-back logits (rows, vocab) into one block per sequence.
    pub fn split_logits(&self, logits: &[f32], vocab: usize) -> Vec<Vec<f32>> {
        (0..self.slots.len())
            .map(|i| {
                let (r0, r1) = if self.last_only {
                    (i, i + 1)
                } else {
                    (self.cu[i] as usize, self.cu[i + 1] as usize)
                };
                logits[r0 * vocab..r1 * vocab].to_vec()
            })
            .collect()
    }
}

/// A GPU model's one forward over tokens that fit the device's bindings, recorded and
/// submitted: the packing and the logits tensor it fills. The readback is the caller's, so one
/// loop ([`forward_in_passes`]) serves the blocking and the awaited forward alike.
pub(crate) trait RecordPass {
    /// The model's device.
    fn pass_gpu(&self) -> &Gpu;
    /// Vocabulary size (the logits' row width).
    fn pass_vocab(&self) -> usize;
    /// Record and submit one pass over non-empty `seqs`.
    fn record_pass(&mut self, seqs: &[SeqInput], last_only: bool) -> Result<(Packing, Tensor)>;
}

/// Run `model` over `seqs` in passes of at most `max_tokens` new tokens (so every activation
/// fits one storage binding) and join the results. A sequence split across passes continues
/// from its slot, so the result equals one pass. Awaited: each pass's logits are read back
/// before the next pass reuses the activation buffers.
pub(crate) async fn forward_in_passes<M: RecordPass>(
    model: &mut M,
    seqs: &[SeqInput<'_>],
    max_tokens: usize,
    last_only: bool,
) -> Result<Vec<Vec<f32>>> {
    let lens: Vec<usize> = seqs.iter().map(|s| s.tokens.len()).collect();
    let mut outs = vec![Vec::new(); seqs.len()];
    for pass in split_passes(&lens, max_tokens) {
        let part: Vec<SeqInput> = pass
            .iter()
            .map(|c| SeqInput {
                slot: seqs[c.seq].slot,
                tokens: &seqs[c.seq].tokens[c.start..c.start + c.len],
            })
            .collect();
        let which: Vec<usize> = pass.iter().map(|c| c.seq).collect();
        let (packing, logits) = model.record_pass(&part, last_only)?;
        let logits = model.pass_gpu().read_f32_async(&logits).await?;
        let split = packing.split_logits(&logits, model.pass_vocab());
        for (i, o) in which.into_iter().zip(split) {
            if last_only {
                outs[i] = o;
            } else {
                outs[i].extend(o);
            }
        }
    }
    Ok(outs)
}

/// Tokens `start .. start + len` of sequence `seq`: its share of one pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PassChunk {
    pub seq: usize,
    pub start: usize,
    pub len: usize,
}

/// Split sequences of `lens` tokens into passes of at most `max` tokens (at least one), taking
/// the sequences in order and each one's tokens in order: a sequence cut by a pass's end goes
/// on in the next pass, as a chunked prefill does.
pub(crate) fn split_passes(lens: &[usize], max: usize) -> Vec<Vec<PassChunk>> {
    let mut pos = vec![0usize; lens.len()];
    let mut passes = Vec::new();
    while pos.iter().zip(lens).any(|(p, l)| p < l) {
        let mut budget = max.max(1);
        let mut pass = Vec::new();
        for (seq, &l) in lens.iter().enumerate() {
            if pos[seq] < l && budget > 0 {
                let len = (l - pos[seq]).min(budget);
                pass.push(PassChunk {
                    seq,
                    start: pos[seq],
                    len,
                });
                budget -= len;
                pos[seq] += len;
            }
        }
        passes.push(pass);
    }
    passes
}

/// The largest number of tokens whose widest activation row (`widest` f32 values) fits one
/// storage binding of `gpu`.
pub(crate) fn max_tokens(gpu: &Gpu, widest: usize) -> usize {
    ((gpu.max_binding_bytes() / (4 * widest.max(1) as u64)) as usize).max(1)
}

/// Which slots hold nothing yet: their states must be zeroed before a forward reads them.
pub(crate) struct SlotTable {
    fresh: Vec<bool>,
}

impl SlotTable {
    /// `slots` empty slots; at least one.
    pub fn new(slots: usize) -> Result<Self> {
        if slots == 0 {
            return Err(Error::invalid("a model needs at least one state slot"));
        }
        Ok(SlotTable {
            fresh: vec![true; slots],
        })
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.fresh.len()
    }

    /// Empty `slot`.
    pub fn reset(&mut self, slot: usize) -> Result<()> {
        let n = self.fresh.len();
        *self.fresh.get_mut(slot).ok_or_else(|| {
            Error::invalid(format!("slot {slot} is outside the model's {n} slots"))
        })? = true;
        Ok(())
    }

    /// Record zeros over the rows of every fresh slot among `slots` in each pool: a pool is
    /// (Slots, …) f32, each slot one row of its size (the tensor's elements / Slots).
    pub fn record_zero_fresh(
        &self,
        batch: &mut Batch,
        slots: &[u32],
        pools: &[&Tensor],
    ) -> Result<()> {
        for &s in slots {
            if !self.fresh[s as usize] {
                continue;
            }
            for pool in pools {
                let row = pool.shape().iter().skip(1).product::<usize>();
                batch.write(pool, s as usize * row, &vec![0f32; row])?;
            }
        }
        Ok(())
    }

    /// Mark the slots of a finished forward as holding state.
    pub fn mark_used(&mut self, slots: &[u32]) {
        for &s in slots {
            self.fresh[s as usize] = false;
        }
    }
}

/// Activation buffers kept per call shape: the last two shapes (a generation alternates
/// between its prefill's and its decode step's).
pub(crate) struct ShapeCache<T> {
    entries: Vec<((usize, usize, usize), T)>,
}

impl<T> ShapeCache<T> {
    /// An empty cache.
    pub fn new() -> Self {
        ShapeCache {
            entries: Vec::new(),
        }
    }

    /// The index of the buffers for `key` (see [`ShapeCache::at`]), made by `make` on a miss.
    pub fn get(
        &mut self,
        key: (usize, usize, usize),
        make: impl FnOnce() -> Result<T>,
    ) -> Result<usize> {
        if let Some(i) = self.entries.iter().position(|e| e.0 == key) {
            return Ok(i);
        }
        let made = make()?;
        if self.entries.len() == 2 {
            self.entries.remove(0);
        }
        self.entries.push((key, made));
        Ok(self.entries.len() - 1)
    }

    /// The buffers at index `i` from [`ShapeCache::get`].
    pub fn at(&self, i: usize) -> &T {
        &self.entries[i].1
    }
}

/// The buffers every architecture's forward uses around its blocks.
pub(crate) struct IoBuffers {
    /// Packed token ids (T) u32.
    pub ids: Tensor,
    /// Last row of each sequence (S) u32.
    pub last: Tensor,
    /// Token offsets (S + 1) i32, for kernels that read them on the GPU.
    pub cu: Tensor,
    /// Slot per sequence (S) i32.
    pub slots: Tensor,
    /// The residual stream (T, hidden) f32.
    pub h: Tensor,
    hl: Tensor,
    hn: Tensor,
    /// Logits (rows, vocab) f32.
    pub logits: Tensor,
}

impl IoBuffers {
    /// Buffers for `shape` = (tokens, sequences, rows).
    pub fn new(
        gpu: &Gpu,
        (tokens, seqs, rows): (usize, usize, usize),
        hidden: usize,
        vocab: usize,
    ) -> Result<Self> {
        let f = |shape: &[usize]| gpu.empty(shape, DType::F32);
        Ok(IoBuffers {
            ids: gpu.empty(&[tokens], DType::U32)?,
            last: gpu.empty(&[seqs], DType::U32)?,
            cu: gpu.empty(&[seqs + 1], DType::I32)?,
            slots: gpu.empty(&[seqs], DType::I32)?,
            h: f(&[tokens, hidden])?,
            hl: f(&[rows, hidden])?,
            hn: f(&[rows, hidden])?,
            logits: f(&[rows, vocab])?,
        })
    }

    /// Record the uploads of `p`'s ids, offsets and slots.
    pub fn write(&self, batch: &mut Batch, p: &Packing) -> Result<()> {
        batch.write(&self.ids, 0, &p.ids)?;
        let cu: Vec<i32> = p.cu.iter().map(|&x| x as i32).collect();
        batch.write(&self.cu, 0, &cu)?;
        let slots: Vec<i32> = p.slots.iter().map(|&x| x as i32).collect();
        batch.write(&self.slots, 0, &slots)
    }
}

/// The two ends of the network: the embedding table, the final norm and the LM head (the
/// embedding table's chunks again when tied).
pub(crate) struct LmEnds {
    embeddings: Vec<(usize, Tensor)>,
    norm_f: Tensor,
    head: Vec<(usize, Tensor)>,
    eps: f32,
    hidden: usize,
    vocab: usize,
}

impl LmEnds {
    /// Upload the tables (in `weight_dtype`, or as stored) and the final norm (f32).
    pub fn new(
        gpu: &Gpu,
        embeddings: &HostTensor,
        lm_head: Option<&HostTensor>,
        norm_f: &HostTensor,
        weight_dtype: Option<DType>,
        eps: f32,
    ) -> Result<Self> {
        let [vocab, hidden] = embeddings.shape[..] else {
            return Err(Error::shape(
                "embeddings",
                "(vocab, hidden)",
                &embeddings.shape,
            ));
        };
        let emb = split_rows(gpu, embeddings, weight_dtype.unwrap_or(embeddings.dtype()))?;
        let head = match lm_head {
            Some(h) => split_rows(gpu, h, weight_dtype.unwrap_or(h.dtype()))?,
            None => emb.clone(),
        };
        Ok(LmEnds {
            embeddings: emb,
            norm_f: norm_f.upload_as(gpu, DType::F32)?,
            head,
            eps,
            hidden,
            vocab,
        })
    }

    /// Record h ← embeddings\[ids\].
    pub fn record_embed(&self, batch: &mut Batch, io: &IoBuffers) -> Result<()> {
        let table: Vec<(usize, &Tensor)> = self.embeddings.iter().map(|(r, t)| (*r, t)).collect();
        Embedding::record_chunks(batch, &io.ids, &table, &io.h)
    }

    /// Record logits ← head · rmsnorm_f(h\[rows\]) for the rows `p` asks for.
    pub fn record_head(
        &self,
        batch: &mut Batch,
        matmul: &Matmul,
        rmsnorm: &RmsNorm,
        p: &Packing,
        io: &IoBuffers,
    ) -> Result<()> {
        let rows = p.rows;
        let final_rows = if p.last_only {
            let last: Vec<u32> = p.cu[1..].iter().map(|&e| e - 1).collect();
            batch.write(&io.last, 0, &last)?;
            Embedding::record(batch, &io.last, &io.h, &io.hl)?;
            &io.hl
        } else {
            &io.h
        };
        rmsnorm.record(
            batch,
            final_rows,
            Rows::contiguous(self.hidden),
            &self.norm_f,
            &io.hn,
            Rows::contiguous(self.hidden),
            rows,
            self.eps,
        )?;
        for (n0, chunk) in &self.head {
            let dims = MatmulDims {
                y_off: *n0,
                y_rs: self.vocab,
                y_gs: rows * self.vocab,
                ..MatmulDims::linear(rows, chunk.shape()[0], self.hidden)
            };
            matmul.record(batch, &dims, &io.hn, chunk, None, &io.logits)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{split_passes, PassChunk};

    fn chunk(seq: usize, start: usize, len: usize) -> PassChunk {
        PassChunk { seq, start, len }
    }

    #[test]
    fn passes_cut_sequences_in_order_and_go_on_where_they_stopped() {
        assert_eq!(
            split_passes(&[5, 0, 3, 1], 4),
            vec![
                vec![chunk(0, 0, 4)],
                vec![chunk(0, 4, 1), chunk(2, 0, 3)],
                vec![chunk(3, 0, 1)],
            ]
        );
        assert_eq!(split_passes(&[7], 3).len(), 3);
        assert_eq!(
            split_passes(&[2, 2], 0),
            vec![
                vec![chunk(0, 0, 1)],
                vec![chunk(0, 1, 1)],
                vec![chunk(1, 0, 1)],
                vec![chunk(1, 1, 1)]
            ]
        );
        assert!(split_passes(&[0, 0], 4).is_empty());
    }

    #[test]
    fn every_token_lands_in_exactly_one_pass_of_at_most_max() {
        let lens = [13, 1, 0, 29, 4, 8];
        for max in 1..40 {
            let passes = split_passes(&lens, max);
            let mut next = vec![0; lens.len()];
            for pass in &passes {
                assert!(pass.iter().map(|c| c.len).sum::<usize>() <= max);
                for c in pass {
                    assert!(c.len > 0);
                    assert_eq!(c.start, next[c.seq], "sequence {} out of order", c.seq);
                    next[c.seq] += c.len;
                }
            }
            assert_eq!(next, lens);
        }
    }
}
