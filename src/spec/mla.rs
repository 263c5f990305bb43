//! Argument checks and the prefill-then-decode loop of the MLA layer, shared by the GPU layer
//! ([`crate::mla::MlaLayer`]) and the CPU one ([`crate::reference::mla::MlaCpuLayer`]).

use crate::error::{Error, Result};

/// One sequence's part of a packed MLA call: its index in the cache and how many new tokens it
/// brings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MlaSeq {
    /// The sequence's index in the cache.
    pub seq: usize,
    /// New tokens (≥ 1): its rows of the packed hidden states, at positions len..len + tokens.
    pub tokens: usize,
}

/// Check a packed call's sequences (at least one, each bringing ≥ 1 token, ids distinct and
/// below `num_seqs`) and return T, the total of their tokens.
pub fn check_packed(seqs: &[MlaSeq], num_seqs: usize) -> Result<usize> {
    if seqs.is_empty() {
        return Err(Error::invalid(
            "a packed MLA call needs at least one sequence",
        ));
    }
    if let Some(s) = seqs.iter().find(|s| s.tokens == 0) {
        return Err(Error::invalid(format!(
            "sequence {} brings no tokens (each listed sequence needs ≥ 1)",
            s.seq
        )));
    }
    let ids: Vec<usize> = seqs.iter().map(|s| s.seq).collect();
    check_seqs(&ids, num_seqs)?;
    Ok(seqs.iter().map(|s| s.tokens).sum())
}

/// Error unless every sequence id in `seqs` is below `num_seqs` and none is listed twice.
pub fn check_seqs(seqs: &[usize], num_seqs: usize) -> Result<()> {
    for (i, &s) in seqs.iter().enumerate() {
        if s >= num_seqs {
            return Err(Error::invalid(format!(
                "sequence {s} is not in the cache (it holds {num_seqs})"
            )));
        }
        if seqs[..i].contains(&s) {
            return Err(Error::invalid(format!("sequence {s} is listed twice")));
        }
    }
    Ok(())
}

/// Error unless `hidden` holds (Bt, S, hidden) = `hidden_len` values with Bt, S ≥ 1, and a
/// prefill length `decode_from` (if any) is within 1..=S.
pub fn check_run(
    hidden_len: usize,
    bt: usize,
    s: usize,
    hid: usize,
    decode_from: Option<usize>,
) -> Result<()> {
    if bt == 0 || s == 0 || hidden_len != bt * s * hid {
        return Err(Error::shape(
            "hidden_states",
            format!("(Bt, S, hidden) with Bt, S ≥ 1 and hidden = {hid}"),
            &[bt, s, hidden_len / (bt * s).max(1)],
        ));
    }
    if let Some(p) = decode_from {
        if p == 0 || p > s {
            return Err(Error::invalid(format!(
                "--decode-from {p} must be between 1 and S = {s}"
            )));
        }
    }
    Ok(())
}

/// Run (Bt, S, hidden) `hidden` through a cached layer as a prefill of the first `decode_from`
/// tokens (all S when `None`) followed by one-token decode steps, and reassemble the outputs
/// into (Bt, S, hidden). `step(part, len)` feeds (Bt, len, hidden) rows and returns the layer's
/// (Bt, len, hidden) output; the GPU and CPU layers both run through [`Chunks`], so their
/// `run_host` results line up token for token.
pub fn run_in_chunks<T: Copy + Into<f64>>(
    hidden: &[f32],
    bt: usize,
    s: usize,
    hid: usize,
    decode_from: Option<usize>,
    mut step: impl FnMut(&[f32], usize) -> Result<Vec<T>>,
) -> Result<Vec<f32>> {
    let mut chunks = Chunks::new(hidden, bt, s, hid, decode_from)?;
    while let Some((part, len)) = chunks.next_part() {
        let y = step(&part, len)?;
        chunks.put(&y);
    }
    Ok(chunks.out)
}

/// The loop of [`run_in_chunks`] turned inside out, for callers that await each step: take a
/// part with [`Chunks::next_part`], put its output back with [`Chunks::put`], and read the
/// reassembled (Bt, S, hidden) from [`Chunks::out`] when no part is left.
pub struct Chunks<'a> {
    hidden: &'a [f32],
    bt: usize,
    s: usize,
    hid: usize,
    ranges: std::vec::IntoIter<(usize, usize)>,
    current: (usize, usize),
    /// The outputs put back so far, (Bt, S, hidden).
    pub out: Vec<f32>,
}

impl<'a> Chunks<'a> {
    /// Validate the run (see [`check_run`]) and plan its chunks: the prefill, then one token each.
    pub fn new(
        hidden: &'a [f32],
        bt: usize,
        s: usize,
        hid: usize,
        decode_from: Option<usize>,
    ) -> Result<Self> {
        check_run(hidden.len(), bt, s, hid, decode_from)?;
        let p = decode_from.unwrap_or(s);
        let mut ranges = vec![(0, p)];
        ranges.extend((p..s).map(|i| (i, i + 1)));
        Ok(Self {
            hidden,
            bt,
            s,
            hid,
            ranges: ranges.into_iter(),
            current: (0, 0),
            out: vec![0.0f32; bt * s * hid],
        })
    }

    /// The next chunk's (Bt, len, hidden) input rows and its length, or None when done.
    pub fn next_part(&mut self) -> Option<(Vec<f32>, usize)> {
        let (a, b) = self.ranges.next()?;
        self.current = (a, b);
        let (s, hid) = (self.s, self.hid);
        let mut part = Vec::with_capacity(self.bt * (b - a) * hid);
        for q in 0..self.bt {
            part.extend_from_slice(&self.hidden[(q * s + a) * hid..(q * s + b) * hid]);
        }
        Some((part, b - a))
    }

    /// Put the last part's (Bt, len, hidden) output `y` in its place.
    pub fn put<T: Copy + Into<f64>>(&mut self, y: &[T]) {
        let ((a, b), s, hid) = (self.current, self.s, self.hid);
        let len = b - a;
        for q in 0..self.bt {
            for (o, &v) in self.out[(q * s + a) * hid..(q * s + b) * hid]
                .iter_mut()
                .zip(&y[q * len * hid..(q + 1) * len * hid])
            {
                *o = v.into() as f32;
            }
        }
    }
}
