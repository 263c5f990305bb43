//! Argument checks of the MLA layer's forward calls, shared by the GPU layer
//! ([`crate::mla::MlaLayer`]) and the CPU one ([`crate::reference::mla::MlaCpuLayer`]).

use crate::error::{Error, Result};

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
