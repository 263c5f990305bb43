//! Shapes of absorbed MLA attention on the paged latent cache, in two forms:
//!
//! - uniform: every sequence brings S_q query tokens; q_lat, o_lat (Bt, S_q, H, d_c), q_rope
//!   (Bt, S_q, H, d_R); Bt, S_q and H are read from q_lat;
//! - packed (ragged): sequence b brings its own number of query tokens, packed in order as rows
//!   query_starts\[b\] .. query_starts\[b + 1\] of q_lat, o_lat (T, H, d_c) and q_rope (T, H, d_R),
//!   T = the total; query_starts is (Bt + 1) u32, Bt is read from the block table and T, H from
//!   q_lat.
//!
//! Both: block_table (Bt, max_blocks); seq_lens (Bt); the cache (num_blocks, block_size,
//! d_c + d_R), whose shape gives d_c, d_R and the block size.

use super::named;
use crate::error::{Error, Result};

/// Sizes of one absorbed-attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Sequences.
    pub bt: usize,
    /// New query tokens per sequence in the uniform form; in the packed form the bound on any
    /// sequence's count (the call's `max_query_len`).
    pub s_q: usize,
    /// Query tokens in all: Bt·S_q in the uniform form, T in the packed form.
    pub tokens: usize,
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
    /// q_lat: (Bt, S_q, H, d_c), or (T, H, d_c) in the packed form.
    pub q_lat: &'a [usize],
    /// q_rope: (Bt, S_q, H, d_R), or (T, H, d_R) in the packed form.
    pub q_rope: &'a [usize],
    /// The cache's pages (num_blocks, block_size, d_c + d_R).
    pub cache: &'a [usize],
    /// d_c of the cache (the rest of its row width is d_R).
    pub d_c: usize,
    /// block_table (Bt, max_blocks).
    pub block_table: &'a [usize],
    /// seq_lens (Bt).
    pub seq_lens: &'a [usize],
    /// o_lat, shaped like q_lat.
    pub o_lat: &'a [usize],
    /// query_starts (Bt + 1) in the packed form, `None` in the uniform form.
    pub query_starts: Option<&'a [usize]>,
    /// The packed form's bound on any sequence's query tokens (1 ≤ it ≤ T); ignored in the
    /// uniform form.
    pub max_query_len: usize,
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
        match s.query_starts {
            None => Self::uniform(s),
            Some(starts) => Self::packed(s, starts),
        }
    }

    fn uniform(s: &AttentionShapes) -> Result<Self> {
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
            tokens: q[0] * q[1],
            h: q[2],
            d_c,
            d_r,
            block_size: s.cache[1],
            max_blocks: s.block_table[1],
        })
    }

    fn packed(s: &AttentionShapes, starts: &[usize]) -> Result<Self> {
        let (d_c, d_r) = (s.d_c, s.cache[2] - s.d_c);
        if s.block_table.len() != 2 || s.block_table[..].contains(&0) {
            return Err(Error::shape(
                "block_table",
                "(Bt, max_blocks) with Bt, max_blocks ≥ 1",
                s.block_table,
            ));
        }
        let bt = s.block_table[0];
        let table = named("block_table", s.block_table);
        if starts.len() != 1 || starts[0] != bt + 1 {
            return Err(Error::shape(
                "query_starts",
                format!("(Bt + 1) = [{}] (Bt from block_table)", bt + 1),
                starts,
            ));
        }
        let lens = named("seq_lens", s.seq_lens).rank(1, format!("(Bt) = [{bt}]"))?;
        table.agree(0, lens, 0, "Bt")?;
        let q = s.q_lat;
        if q.len() != 3 || q[..2].contains(&0) {
            return Err(Error::shape(
                "q_lat",
                format!("(T, H, d_c) = [T, H, {d_c}] with T, H > 0 (packed by query_starts)"),
                q,
            ));
        }
        if q[2] != d_c {
            return Err(Error::mismatch(
                "cache", s.cache, "q_lat", q, "d_c", d_c, q[2],
            ));
        }
        let q_lat = named("q_lat", q);
        let q_rope = named("q_rope", s.q_rope).rank(3, "(T, H, d_R)")?;
        for (axis, dim) in ["T", "H"].into_iter().enumerate() {
            q_lat.agree(axis, q_rope, axis, dim)?;
        }
        if s.q_rope[2] != d_r {
            let got = s.q_rope[2];
            return Err(Error::mismatch(
                "cache", s.cache, "q_rope", s.q_rope, "d_R", d_r, got,
            ));
        }
        q_lat.same_shape(named("o_lat", s.o_lat), "(T, H, d_c)", &["T", "H", "d_c"])?;
        let tokens = q[0];
        if s.max_query_len == 0 || s.max_query_len > tokens {
            return Err(Error::invalid(format!(
                "max_query_len = {} must be between 1 and T = {tokens} (the packed query tokens)",
                s.max_query_len
            )));
        }
        Ok(Self {
            bt,
            s_q: s.max_query_len,
            tokens,
            h: q[1],
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
            query_starts: None,
            max_query_len: 0,
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

    #[test]
    fn packed_shapes_name_the_tensor_and_expected_shape() {
        let good = AttentionShapes {
            q_lat: &[7, 3, 16],
            q_rope: &[7, 3, 4],
            cache: &[4, 8, 20],
            d_c: 16,
            block_table: &[2, 2],
            seq_lens: &[2],
            o_lat: &[7, 3, 16],
            query_starts: Some(&[3]),
            max_query_len: 5,
        };
        let dims = Dims::from_shapes(&good).unwrap();
        assert_eq!(
            (dims.bt, dims.s_q, dims.tokens, dims.h, dims.d_r),
            (2, 5, 7, 3, 4)
        );
        let msg = |s: AttentionShapes| Dims::from_shapes(&s).unwrap_err().to_string();
        let m = msg(AttentionShapes {
            query_starts: Some(&[2]),
            ..good
        });
        assert!(
            m.contains("query_starts") && m.contains("(Bt + 1) = [3]"),
            "{m}"
        );
        assert_eq!(
            msg(AttentionShapes {
                o_lat: &[6, 3, 16],
                ..good
            }),
            "tensors `q_lat` (7, 3, 16) and `o_lat` (6, 3, 16) disagree on T: 7 vs 6"
        );
        assert_eq!(
            msg(AttentionShapes {
                q_rope: &[8, 3, 4],
                ..good
            }),
            "tensors `q_lat` (7, 3, 16) and `q_rope` (8, 3, 4) disagree on T: 7 vs 8"
        );
        let m = msg(AttentionShapes {
            q_lat: &[1, 7, 3, 16],
            ..good
        });
        assert!(m.contains("q_lat") && m.contains("(T, H, d_c)"), "{m}");
        let m = msg(AttentionShapes {
            max_query_len: 8,
            ..good
        });
        assert!(m.contains("max_query_len"), "{m}");
        let m = msg(AttentionShapes {
            seq_lens: &[3],
            ..good
        });
        assert!(m.contains("seq_lens") && m.contains("block_table"), "{m}");
    }
}
