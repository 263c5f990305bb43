//! CPU reference of `embedding`: `out[t, :] = table[ids[t], :]`, the table's values as stored
//! (widened to f64).

use crate::error::{Error, Result};

/// Rows `ids` of `table` (vocab, hidden) row-major; an id outside the vocabulary is an error.
pub fn embedding(ids: &[u32], table: &[f32], hidden: usize) -> Result<Vec<f64>> {
    let vocab = table.len() / hidden.max(1);
    let mut out = Vec::with_capacity(ids.len() * hidden);
    for &t in ids {
        let t = t as usize;
        if t >= vocab {
            return Err(Error::invalid(format!(
                "token id {t} is outside the vocabulary (vocab_size {vocab})"
            )));
        }
        out.extend(
            table[t * hidden..(t + 1) * hidden]
                .iter()
                .map(|&x| x as f64),
        );
    }
    Ok(out)
}
