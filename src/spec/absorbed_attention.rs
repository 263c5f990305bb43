//! Shapes of absorbed MLA attention on the paged latent cache: q_lat, o_lat (Bt, S_q, H, d_c);
//! q_rope (Bt, S_q, H, d_R); block_table (Bt, max_blocks); seq_lens (Bt); the cache
//! (num_blocks, block_size, d_c + d_R). Bt, S_q and H are read from q_lat, d_c, d_R and the
//! block size from the cache.

use super::named;
use crate::error::{Error, Result};

/// Sizes of one absorbed-attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Sequences.
    pub bt: usize,
    /// New query tokens per sequence.
    pub s_q: usize,
    /// Heads.
    pub h: usize,
    /// Latent width (kv_lora_rank).
    pub d_c: usize,
    /// Rope width (qk_rope_head_dim).
    pub d_r: usize,
    /// Tokens per cache page.
    pub block_size: usize,
    /// Block-table entries per sequence.
    pub max_blocks: usize,
}

/// Shapes of one call's tensors, and the cache's split of its row width.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShapes<'a> {
    /// q_lat (Bt, S_q, H, d_c).
    pub q_lat: &'a [usize],
    /// q_rope (Bt, S_q, H, d_R).
    pub q_rope: &'a [usize],
    /// The cache's pages (num_blocks, block_size, d_c + d_R).
    pub cache: &'a [usize],
    /// d_c of the cache (the rest of its row width is d_R).
    pub d_c: usize,
    /// block_table (Bt, max_blocks).
    pub block_table: &'a [usize],
    /// seq_lens (Bt).
    pub seq_lens: &'a [usize],
    /// o_lat (Bt, S_q, H, d_c).
    pub o_lat: &'a [usize],
}

impl Dims {
    /// Check the shapes against each other and return the sizes.
    pub fn from_shapes(s: &AttentionShapes) -> Result<Self> {
        if s.cache.len() != 3 || s.cache[2] < s.d_c {
            return Err(Error::shape(
                "cache",
                format!("(num_blocks, block_size, d_c + d_R) with d_c = {}", s.d_c),
                s.cache,
            ));
        }
        let (d_c, d_r) = (s.d_c, s.cache[2] - s.d_c);
        let q = s.q_lat;
        if q.len() != 4 || q[..3].contains(&0) {
            return Err(Error::shape(
                "q_lat",
                format!("(Bt, S_q, H, d_c) = [Bt, S_q, H, {d_c}] with Bt, S_q, H > 0"),
                q,
            ));
        }
        if q[3] != d_c {
            return Err(Error::mismatch(
                "cache", s.cache, "q_lat", q, "d_c", d_c, q[3],
            ));
        }
        let q_lat = named("q_lat", q);
        let q_rope = named("q_rope", s.q_rope).rank(4, "(Bt, S_q, H, d_R)")?;
        for (axis, dim) in ["Bt", "S_q", "H"].into_iter().enumerate() {
            q_lat.agree(axis, q_rope, axis, dim)?;
        }
        if s.q_rope[3] != d_r {
            let got = s.q_rope[3];
            return Err(Error::mismatch(
                "cache", s.cache, "q_rope", s.q_rope, "d_R", d_r, got,
            ));
        }
        let table = named("block_table", s.block_table);
        if s.block_table.len() != 2 || s.block_table[1] == 0 {
            return Err(Error::shape(
                "block_table",
                format!("(Bt, max_blocks) = [{}, max_blocks ≥ 1]", q[0]),
                s.block_table,
            ));
        }
        q_lat.agree(0, table, 0, "Bt")?;
        let lens = named("seq_lens", s.seq_lens).rank(1, format!("(Bt) = [{}]", q[0]))?;
        q_lat.agree(0, lens, 0, "Bt")?;
        q_lat.same_shape(
            named("o_lat", s.o_lat),
            "(Bt, S_q, H, d_c)",
            &["Bt", "S_q", "H", "d_c"],
        )?;
        Ok(Self {
            bt: q[0],
            s_q: q[1],
            h: q[2],
            d_c,
            d_r,
            block_size: s.cache[1],
            max_blocks: s.block_table[1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disagreements_name_both_tensors() {
        let good = AttentionShapes {
            q_lat: &[2, 1, 3, 16],
            q_rope: &[2, 1, 3, 4],
            cache: &[4, 8, 20],
            d_c: 16,
            block_table: &[2, 2],
            seq_lens: &[2],
            o_lat: &[2, 1, 3, 16],
        };
        let dims = Dims::from_shapes(&good).unwrap();
        assert_eq!((dims.bt, dims.h, dims.d_r, dims.max_blocks), (2, 3, 4, 2));
        let msg = |s: AttentionShapes| Dims::from_shapes(&s).unwrap_err().to_string();
        assert_eq!(
            msg(AttentionShapes {
                q_rope: &[2, 1, 3, 5],
                ..good
            }),
            "tensors `cache` (4, 8, 20) and `q_rope` (2, 1, 3, 5) disagree on d_R: 4 vs 5"
        );
        assert_eq!(
            msg(AttentionShapes {
                seq_lens: &[3],
                ..good
            }),
            "tensors `q_lat` (2, 1, 3, 16) and `seq_lens` (3) disagree on Bt: 2 vs 3"
        );
    }
}
