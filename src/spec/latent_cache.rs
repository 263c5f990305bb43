//! Shapes of an append to the paged latent cache: the cache (num_blocks, block_size, W) with
//! W = d_c + d_R, latent rows (T, W) and their slots (T). W is read from the cache, T from the
//! latent rows.

use super::named;
use crate::error::Result;

/// The number of rows T of an append of `latent` (T, W) at `slots` (T) into a cache of shape
/// `cache` (num_blocks, block_size, W).
pub fn append_rows(cache: &[usize], latent: &[usize], slots: &[usize]) -> Result<usize> {
    let cache = named("cache", cache).rank(3, "(num_blocks, block_size, d_c + d_R)")?;
    let rows =
        named("latent", latent).rank(2, format!("(T, d_c + d_R) = [T, {}]", cache.shape[2]))?;
    cache.agree(2, rows, 1, "W = d_c + d_R")?;
    let slots = named("slots", slots).rank(1, format!("(T) = [{}] like latent", latent[0]))?;
    rows.agree(0, slots, 0, "T")?;
    Ok(latent[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disagreements_name_both_tensors() {
        assert_eq!(append_rows(&[2, 4, 10], &[3, 10], &[3]).unwrap(), 3);
        assert_eq!(
            append_rows(&[2, 4, 10], &[3, 9], &[3])
                .unwrap_err()
                .to_string(),
            "tensors `cache` (2, 4, 10) and `latent` (3, 9) disagree on W = d_c + d_R: 10 vs 9"
        );
        assert_eq!(
            append_rows(&[2, 4, 10], &[3, 10], &[2])
                .unwrap_err()
                .to_string(),
            "tensors `latent` (3, 10) and `slots` (2) disagree on T: 3 vs 2"
        );
    }
}
