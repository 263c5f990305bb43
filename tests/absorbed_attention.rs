//! Conformance of `absorbed_attention` (MLA attention on the paged latent cache) against its f64
//! CPU reference: decode (S_q = 1) and bottom-right-causal prefill (S_q > 1), ragged batches,
//! heads that are not powers of two, size-1 contexts, contexts long enough for split-KV, the
//! DeepSeek widths d_c = 512, d_R = 64, and error cases.
//!
//! Every cache slot that no sequence owns (whole spare pages and the tail of each sequence's last
//! page) is NaN, and block-table entries past a sequence's length name NaN pages or invalid ids,
//! so a kernel that reads anything outside the sequences' keys produces NaN and fails.
//!
//! Tolerance: |out − ref| ≤ 2e-5 + 1e-4·|ref|. o_lat is a convex combination of cache rows with
//! entries of order 1, computed with f32 dots of length d_c + d_R ≤ 576 and f32 softmax sums
//! over up to a few thousand keys; observed errors are around 1e-6.

mod common;
use common::*;
use ssm_mla::ops::absorbed_attention::{plan, AbsorbedAttention, AbsorbedAttentionInputs, Dims};
use ssm_mla::ops::latent_cache::LatentCache;
use ssm_mla::testing::absorbed_attention::{
    Problem, Shape, HALF_CACHE_TOLERANCE, TOLERANCE as TOL,
};
use ssm_mla::{DType, Error, Tolerance};

/// A case: sizes with three spare (NaN) pages.
#[allow(clippy::too_many_arguments)]
fn case(
    s_q: usize,
    h: usize,
    d_c: usize,
    d_r: usize,
    block_size: usize,
    lens: Vec<usize>,
    spare_entries: usize,
) -> Shape {
    Shape {
        s_q,
        query_lens: None,
        h,
        d_c,
        d_r,
        block_size,
        lens,
        spare_entries,
        spare_pages: 3,
    }
}

/// Half caches (f16 native and in words, bf16) on both kernels (vec4 widths and odd widths,
/// an odd count of halves per row), split-KV, prefill, size 1; o_lat poisoned by `run`.
#[test]
fn half_caches_match_cpu_on_the_same_rounded_cache() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("absorbed_attention half cache");
        let op = AbsorbedAttention::new(&gpu).unwrap();
        for dtype in [ssm_mla::DType::F16, ssm_mla::DType::BF16] {
            for c in [
                case(1, 16, 512, 64, 64, vec![700, 3], 1),
                case(3, 5, 64, 16, 16, vec![37, 3], 2),
                case(2, 3, 7, 2, 5, vec![9, 2], 1),
                case(1, 1, 1, 0, 1, vec![1], 0),
            ] {
                let p = Problem::random(&mut rng, &c).with_cache_dtype(dtype);
                let (out, n) = pollster::block_on(p.run(&gpu, &op)).unwrap();
                assert_close(
                    &format!(
                        "{name} {dtype} S_q={} H={} d_c={} d_R={} lens={:?} splits={n}",
                        c.s_q, c.h, c.d_c, c.d_r, c.lens
                    ),
                    &out,
                    &p.reference(),
                    HALF_CACHE_TOLERANCE,
                    seed,
                );
            }
        }
    }
}

/// Check one case on both devices; returns the split count used.
fn check(test: &str, c: &Shape) -> usize {
    let mut splits = 0;
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng(test);
        let p = Problem::random(&mut rng, c);
        let op = AbsorbedAttention::new(&gpu).unwrap();
        let (out, n) = pollster::block_on(p.run(&gpu, &op)).unwrap();
        splits = n;
        assert_close(
            &format!(
                "{test} {name} S_q={} H={} d_c={} d_R={} bs={} lens={:?} splits={n}",
                c.s_q, c.h, c.d_c, c.d_r, c.block_size, c.lens
            ),
            &out,
            &p.reference(),
            TOL,
            seed,
        );
    }
    splits
}

#[test]
fn decode_matches_cpu() {
    for (h, d_c, d_r, bs, lens) in [
        (1, 8, 4, 4, vec![1]),
        (3, 32, 8, 4, vec![5, 1, 17]),
        (5, 22, 6, 16, vec![33, 2]),
        (16, 64, 16, 8, vec![40, 7, 64]),
        (20, 40, 12, 3, vec![29]),
        (7, 301, 19, 5, vec![13, 3]),
        (2, 13, 1, 7, vec![20, 9]),
    ] {
        check("decode", &case(1, h, d_c, d_r, bs, lens, 2));
    }
}

#[test]
fn prefill_is_bottom_right_causal() {
    for (s_q, h, lens) in [
        (3, 2, vec![3, 10]),
        (7, 3, vec![7, 9, 30]),
        (5, 16, vec![12]),
        (2, 5, vec![2, 2]),
    ] {
        check("prefill", &case(s_q, h, 32, 8, 4, lens, 1));
    }
}

#[test]
fn size_one_contexts() {
    for h in [1, 3, 16] {
        check("size1", &case(1, h, 16, 4, 1, vec![1, 1], 0));
    }
}

#[test]
fn long_contexts_use_several_splits() {
    let splits = check("long", &case(1, 3, 16, 8, 16, vec![4000, 1500, 3], 3));
    assert!(splits > 1, "expected split-KV, got {splits} split");
    // Prefill over a long context with splits too.
    let splits = check("long prefill", &case(6, 2, 12, 4, 32, vec![2100], 0));
    assert!(splits > 1, "expected split-KV, got {splits} split");
    // Widths that are not multiples of 4: the scalar kernels, the scalar combine.
    let splits = check("long unaligned", &case(1, 3, 18, 6, 16, vec![3000, 2], 3));
    assert!(splits > 1, "expected split-KV, got {splits} split");
}

#[test]
fn deepseek_widths() {
    let splits = check("deepseek", &case(1, 16, 512, 64, 64, vec![700, 5], 1));
    assert!(splits > 1, "expected split-KV, got {splits} split");
    check("deepseek prefill", &case(3, 5, 512, 64, 16, vec![40], 0));
}

#[test]
fn batch_equals_each_sequence_alone() {
    let gpu = gpu();
    let (mut rng, seed) = rng("batch vs alone");
    let c = case(1, 5, 32, 8, 8, vec![300, 1, 57, 900], 1);
    let p = Problem::random(&mut rng, &c);
    let op = AbsorbedAttention::new(&gpu).unwrap();
    let (together, _) = pollster::block_on(p.run(&gpu, &op)).unwrap();
    let per_seq = c.s_q * c.h * c.d_c;
    for b in 0..c.lens.len() {
        let mb = p.dims.max_blocks;
        let alone = Problem {
            dims: Dims {
                bt: 1,
                tokens: c.s_q,
                ..p.dims
            },
            query_starts: None,
            q_lat: p.q_lat[b * per_seq..(b + 1) * per_seq].to_vec(),
            q_rope: p.q_rope[b * c.s_q * c.h * c.d_r..(b + 1) * c.s_q * c.h * c.d_r].to_vec(),
            cache: p.cache.clone(),
            num_blocks: p.num_blocks,
            block_table: p.block_table[b * mb..(b + 1) * mb].to_vec(),
            seq_lens: vec![p.seq_lens[b]],
            scale: p.scale,
            cache_dtype: p.cache_dtype,
        };
        let (out, _) = pollster::block_on(alone.run(&gpu, &op)).unwrap();
        let batched: Vec<f64> = together[b * per_seq..(b + 1) * per_seq]
            .iter()
            .map(|&x| x as f64)
            .collect();
        // Split counts differ between the two runs, so equality is up to f32 rounding.
        assert_close(
            &format!("sequence {b} alone vs batched"),
            &out,
            &batched,
            Tolerance::new(1e-6, 1e-5),
            seed,
        );
    }
}

#[test]
fn nan_outside_the_sequences_changes_nothing() {
    let gpu = gpu();
    let (mut rng, seed) = rng("nan pages");
    let c = case(2, 3, 24, 8, 8, vec![21, 2, 300], 2);
    let with_nan = Problem::random(&mut rng, &c);
    let mut with_zero = Problem {
        cache: with_nan
            .cache
            .iter()
            .map(|&x| if x.is_nan() { 0.0 } else { x })
            .collect(),
        q_lat: with_nan.q_lat.clone(),
        q_rope: with_nan.q_rope.clone(),
        block_table: with_nan.block_table.clone(),
        seq_lens: with_nan.seq_lens.clone(),
        ..with_nan
    };
    let op = AbsorbedAttention::new(&gpu).unwrap();
    let (a, _) = pollster::block_on(with_zero.run(&gpu, &op)).unwrap();
    with_zero.cache = with_nan.cache.clone();
    let (b, _) = pollster::block_on(with_zero.run(&gpu, &op)).unwrap();
    assert!(a.iter().all(|x| x.is_finite()), "seed {seed}");
    assert_eq!(
        a, b,
        "NaN outside the sequences changed the result (seed {seed})"
    );
}

#[test]
fn plan_splits_long_contexts_for_small_batches() {
    let small = plan(1, 1, 16, 512, 64, 32 * 1024).unwrap();
    assert!(small.n_split >= 16, "{small:?}");
    assert_eq!(small.rows_per_group, 16);
    let big = plan(8, 1, 128, 512, 64, 32 * 1024).unwrap();
    assert!(big.workgroups(8) >= 256, "{big:?}");
    let short = plan(1, 1, 16, 512, 64, 100).unwrap();
    assert_eq!(short.n_split, 1, "{short:?}");
    assert!(plan(1, 1, 1, 4096, 64, 10).is_err());
}

#[test]
fn rejects_bad_inputs_and_records_nothing() {
    let gpu = gpu();
    let op = AbsorbedAttention::new(&gpu).unwrap();
    let (bt, s_q, h, d_c, d_r) = (2, 1, 3, 16, 4);
    let cache = LatentCache::new(&gpu, 4, 8, d_c, d_r).unwrap();
    let q_lat = gpu.nan_f32(&[bt, s_q, h, d_c]).unwrap();
    let q_rope = gpu.nan_f32(&[bt, s_q, h, d_r]).unwrap();
    let table = gpu.upload_u32(&[bt, 2], &[0, 1, 2, 3]).unwrap();
    let lens = gpu.upload_u32(&[bt], &[5, 16]).unwrap();
    let o = gpu.nan_f32(&[bt, s_q, h, d_c]).unwrap();
    let good = AbsorbedAttentionInputs {
        q_lat: &q_lat,
        q_rope: &q_rope,
        cache: &cache,
        block_table: &table,
        seq_lens: &lens,
        scale: 0.1,
        max_seq_len: 16,
        query_starts: None,
        max_query_len: 0,
    };
    let expect_err = |inputs: AbsorbedAttentionInputs, o: &ssm_mla::Tensor, needle: &str| {
        let mut batch = gpu.batch();
        let err = op.record(&mut batch, &inputs, o).unwrap_err();
        assert!(err.to_string().contains(needle), "{needle}: {err}");
        assert_eq!(batch.dispatches(), 0, "nothing may be recorded on error");
        err
    };
    let wrong_rope = gpu.nan_f32(&[bt, s_q, h, d_r + 1]).unwrap();
    expect_err(
        AbsorbedAttentionInputs {
            q_rope: &wrong_rope,
            ..good
        },
        &o,
        "q_rope",
    );
    let wrong_lat = gpu.nan_f32(&[bt, s_q, h, d_c + 1]).unwrap();
    expect_err(
        AbsorbedAttentionInputs {
            q_lat: &wrong_lat,
            ..good
        },
        &o,
        "q_lat",
    );
    let wrong_o = gpu.nan_f32(&[bt, s_q, h + 1, d_c]).unwrap();
    expect_err(good, &wrong_o, "o_lat");
    // Block table too short for max_seq_len (2 blocks of 8 < 17).
    expect_err(
        AbsorbedAttentionInputs {
            max_seq_len: 17,
            ..good
        },
        &o,
        "block_table",
    );
    let table_f32 = gpu.nan_f32(&[bt, 2]).unwrap();
    let err = expect_err(
        AbsorbedAttentionInputs {
            block_table: &table_f32,
            ..good
        },
        &o,
        "block_table",
    );
    assert!(matches!(err, Error::DType { .. }), "{err}");
    let lens_f32 = gpu.upload_f32(&[bt], &[5.0, 16.0]).unwrap();
    let err = expect_err(
        AbsorbedAttentionInputs {
            seq_lens: &lens_f32,
            ..good
        },
        &o,
        "seq_lens",
    );
    assert!(matches!(err, Error::DType { .. }), "{err}");
    let wrong_lens = gpu.upload_u32(&[bt + 1], &[1, 2, 3]).unwrap();
    expect_err(
        AbsorbedAttentionInputs {
            seq_lens: &wrong_lens,
            ..good
        },
        &o,
        "seq_lens",
    );
    let wrong_table = gpu.upload_u32(&[bt + 1, 2], &[0; 6]).unwrap();
    expect_err(
        AbsorbedAttentionInputs {
            block_table: &wrong_table,
            ..good
        },
        &o,
        "block_table",
    );
    expect_err(
        AbsorbedAttentionInputs {
            scale: f32::NAN,
            ..good
        },
        &o,
        "scale",
    );
    expect_err(
        AbsorbedAttentionInputs {
            max_seq_len: 0,
            ..good
        },
        &o,
        "max_seq_len",
    );
    let q_u32 = gpu.empty(&[bt, s_q, h, d_c], DType::U32).unwrap();
    expect_err(
        AbsorbedAttentionInputs {
            q_lat: &q_u32,
            ..good
        },
        &o,
        "q_lat",
    );
    // The good inputs do record.
    let mut batch = gpu.batch();
    op.record(&mut batch, &good, &o).unwrap();
    assert!(batch.dispatches() >= 1);
}

/// Bt, S_q and H read from q_lat, d_c and d_R from the cache: a disagreement names both tensors,
/// their shapes and the dimension.
#[test]
fn disagreeing_inputs_are_named_together() {
    let gpu = gpu();
    let op = AbsorbedAttention::new(&gpu).unwrap();
    let (bt, s_q, h, d_c, d_r) = (2, 1, 3, 16, 4);
    let cache = LatentCache::new(&gpu, 4, 8, d_c, d_r).unwrap();
    let q_lat = gpu.nan_f32(&[bt, s_q, h, d_c]).unwrap();
    let q_rope = gpu.nan_f32(&[bt, s_q, h, d_r]).unwrap();
    let table = gpu.upload_u32(&[bt, 2], &[0, 1, 2, 3]).unwrap();
    let lens = gpu.upload_u32(&[bt], &[5, 16]).unwrap();
    let o = gpu.nan_f32(&[bt, s_q, h, d_c]).unwrap();
    let good = AbsorbedAttentionInputs {
        q_lat: &q_lat,
        q_rope: &q_rope,
        cache: &cache,
        block_table: &table,
        seq_lens: &lens,
        scale: 0.1,
        max_seq_len: 16,
        query_starts: None,
        max_query_len: 0,
    };
    let message = |inputs: AbsorbedAttentionInputs, o: &ssm_mla::Tensor| {
        let mut batch = gpu.batch();
        let err = op.record(&mut batch, &inputs, o).unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
        assert_eq!(batch.dispatches(), 0);
        err.to_string()
    };
    let lat17 = gpu.nan_f32(&[bt, s_q, h, 17]).unwrap();
    assert_eq!(
        message(
            AbsorbedAttentionInputs {
                q_lat: &lat17,
                ..good
            },
            &o
        ),
        "tensors `cache` (4, 8, 20) and `q_lat` (2, 1, 3, 17) disagree on d_c: 16 vs 17"
    );
    let rope_h4 = gpu.nan_f32(&[bt, s_q, 4, d_r]).unwrap();
    assert_eq!(
        message(
            AbsorbedAttentionInputs {
                q_rope: &rope_h4,
                ..good
            },
            &o
        ),
        "tensors `q_lat` (2, 1, 3, 16) and `q_rope` (2, 1, 4, 4) disagree on H: 3 vs 4"
    );
    let table3 = gpu.upload_u32(&[3, 2], &[0; 6]).unwrap();
    assert_eq!(
        message(
            AbsorbedAttentionInputs {
                block_table: &table3,
                ..good
            },
            &o
        ),
        "tensors `q_lat` (2, 1, 3, 16) and `block_table` (3, 2) disagree on Bt: 2 vs 3"
    );
    assert_eq!(
        message(good, &gpu.nan_f32(&[bt, 2, h, d_c]).unwrap()),
        "tensors `q_lat` (2, 1, 3, 16) and `o_lat` (2, 2, 3, 16) disagree on S_q: 1 vs 2"
    );
}

/// A packed (ragged) case: sequence b brings `q_lens[b]` query tokens and then holds `lens[b]`
/// tokens; three spare (NaN) pages.
fn packed(h: usize, d_c: usize, d_r: usize, bs: usize, q_lens: &[usize], lens: &[usize]) -> Shape {
    Shape {
        query_lens: Some(q_lens.to_vec()),
        ..case(1, h, d_c, d_r, bs, lens.to_vec(), 1)
    }
}

/// Ragged query counts packed in one call, with contexts longer than the queries (chunked
/// prefill next to decode), on both kernels (vec4 widths, DeepSeek's with split-KV, and odd
/// widths) and both devices; o_lat NaN-poisoned.
#[test]
fn packed_ragged_queries_match_cpu() {
    for c in [
        packed(3, 32, 8, 16, &[1, 37, 5, 130], &[50, 60, 5, 300]),
        packed(2, 12, 4, 32, &[3, 1, 6], &[2100, 700, 6]),
        packed(16, 512, 64, 64, &[1, 9, 3], &[700, 40, 3]),
        packed(5, 7, 2, 5, &[4, 1, 2], &[9, 13, 2]),
    ] {
        for (name, gpu) in gpus() {
            let (mut rng, seed) = rng("absorbed_attention packed");
            let p = Problem::random(&mut rng, &c);
            let op = AbsorbedAttention::new(&gpu).unwrap();
            let (out, n) = pollster::block_on(p.run(&gpu, &op)).unwrap();
            assert_close(
                &format!(
                    "packed {name} H={} d_c={} d_R={} q_lens={:?} lens={:?} splits={n}",
                    c.h, c.d_c, c.d_r, c.query_lens, c.lens
                ),
                &out,
                &p.reference(),
                TOL,
                seed,
            );
        }
    }
}

/// The uniform form is the packed form with query_starts[b] = b·S_q: the same plan and the
/// same bits.
#[test]
fn uniform_equals_packed_with_even_starts() {
    let gpu = gpu();
    let (mut rng, _) = rng("absorbed_attention uniform vs packed");
    let op = AbsorbedAttention::new(&gpu).unwrap();
    for c in [
        case(4, 3, 32, 8, 8, vec![4, 30, 600], 1),
        case(1, 16, 512, 64, 64, vec![300, 2], 1),
    ] {
        let uniform = Problem::random(&mut rng, &c);
        let starts = uniform.starts();
        let as_packed = Problem {
            query_starts: Some(starts),
            q_lat: uniform.q_lat.clone(),
            q_rope: uniform.q_rope.clone(),
            cache: uniform.cache.clone(),
            block_table: uniform.block_table.clone(),
            seq_lens: uniform.seq_lens.clone(),
            ..uniform
        };
        let (a, _) = pollster::block_on(uniform.run(&gpu, &op)).unwrap();
        let (b, _) = pollster::block_on(as_packed.run(&gpu, &op)).unwrap();
        assert_eq!(a, b, "S_q={} H={} lens={:?}", c.s_q, c.h, c.lens);
    }
}

/// Size 1 (one sequence, one token, one key) and half caches, packed.
#[test]
fn packed_size_one_and_half_caches() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("absorbed_attention packed half");
        let op = AbsorbedAttention::new(&gpu).unwrap();
        let one = Problem::random(&mut rng, &packed(1, 16, 4, 1, &[1], &[1]));
        let (out, _) = pollster::block_on(one.run(&gpu, &op)).unwrap();
        assert_close(&format!("{name} size 1"), &out, &one.reference(), TOL, seed);
        for dtype in [DType::F16, DType::BF16] {
            for c in [
                packed(16, 512, 64, 64, &[2, 1], &[300, 3]),
                packed(3, 7, 2, 5, &[1, 5], &[9, 5]),
            ] {
                let p = Problem::random(&mut rng, &c).with_cache_dtype(dtype);
                let (out, _) = pollster::block_on(p.run(&gpu, &op)).unwrap();
                assert_close(
                    &format!(
                        "{name} {dtype} packed d_c={} q_lens={:?}",
                        c.d_c, c.query_lens
                    ),
                    &out,
                    &p.reference(),
                    HALF_CACHE_TOLERANCE,
                    seed,
                );
            }
        }
    }
}

#[test]
fn packed_rejects_bad_inputs_and_records_nothing() {
    let gpu = gpu();
    let op = AbsorbedAttention::new(&gpu).unwrap();
    let (bt, t, h, d_c, d_r) = (2, 5, 3, 16, 4);
    let cache = LatentCache::new(&gpu, 4, 8, d_c, d_r).unwrap();
    let q_lat = gpu.nan_f32(&[t, h, d_c]).unwrap();
    let q_rope = gpu.nan_f32(&[t, h, d_r]).unwrap();
    let table = gpu.upload_u32(&[bt, 2], &[0, 1, 2, 3]).unwrap();
    let lens = gpu.upload_u32(&[bt], &[5, 16]).unwrap();
    let starts = gpu.upload_u32(&[bt + 1], &[0, 1, 5]).unwrap();
    let o = gpu.nan_f32(&[t, h, d_c]).unwrap();
    let good = AbsorbedAttentionInputs {
        q_lat: &q_lat,
        q_rope: &q_rope,
        cache: &cache,
        block_table: &table,
        seq_lens: &lens,
        scale: 0.1,
        max_seq_len: 16,
        query_starts: Some(&starts),
        max_query_len: 4,
    };
    let expect_err = |inputs: AbsorbedAttentionInputs, o: &ssm_mla::Tensor, needle: &str| {
        let mut batch = gpu.batch();
        let err = op.record(&mut batch, &inputs, o).unwrap_err();
        assert!(err.to_string().contains(needle), "{needle}: {err}");
        assert_eq!(batch.dispatches(), 0, "nothing may be recorded on error");
        err
    };
    let short = gpu.upload_u32(&[bt], &[0, 5]).unwrap();
    let e = expect_err(
        AbsorbedAttentionInputs {
            query_starts: Some(&short),
            ..good
        },
        &o,
        "query_starts",
    );
    assert!(e.to_string().contains("(Bt + 1) = [3]"), "{e}");
    let starts_f32 = gpu.upload_f32(&[bt + 1], &[0.0, 1.0, 5.0]).unwrap();
    let e = expect_err(
        AbsorbedAttentionInputs {
            query_starts: Some(&starts_f32),
            ..good
        },
        &o,
        "query_starts",
    );
    assert!(matches!(e, Error::DType { .. }), "{e}");
    // T disagrees between q_lat and o_lat, and between q_lat and q_rope.
    expect_err(good, &gpu.nan_f32(&[t + 1, h, d_c]).unwrap(), "o_lat");
    let rope6 = gpu.nan_f32(&[t + 1, h, d_r]).unwrap();
    expect_err(
        AbsorbedAttentionInputs {
            q_rope: &rope6,
            ..good
        },
        &o,
        "q_rope",
    );
    // The uniform layout with query_starts.
    let q4 = gpu.nan_f32(&[bt, 1, h, d_c]).unwrap();
    let e = expect_err(AbsorbedAttentionInputs { q_lat: &q4, ..good }, &o, "q_lat");
    assert!(e.to_string().contains("(T, H, d_c)"), "{e}");
    for bad in [0, t + 1] {
        expect_err(
            AbsorbedAttentionInputs {
                max_query_len: bad,
                ..good
            },
            &o,
            "max_query_len",
        );
    }
    expect_err(
        AbsorbedAttentionInputs {
            max_seq_len: 3,
            ..good
        },
        &o,
        "max_query_len",
    );
    let lens3 = gpu.upload_u32(&[bt + 1], &[1, 2, 3]).unwrap();
    expect_err(
        AbsorbedAttentionInputs {
            seq_lens: &lens3,
            ..good
        },
        &o,
        "seq_lens",
    );
    let mut batch = gpu.batch();
    op.record(&mut batch, &good, &o).unwrap();
    assert!(batch.dispatches() >= 1);
}

#[test]
fn packed_cost_sums_the_sequences() {
    use ssm_mla::ops::absorbed_attention::{cost, cost_packed};
    let one = cost(1, 4, 16, 100, 512, 64, 64, DType::F32);
    let two = cost_packed(&[(4, 100), (4, 100)], 16, 512, 64, 64, DType::F32);
    let even = cost(2, 4, 16, 100, 512, 64, 64, DType::F32);
    assert_eq!(two.flops, 2 * one.flops);
    assert_eq!(two.flops, even.flops);
    // The same bytes as the uniform form plus the Bt + 1 offsets.
    assert_eq!(two.bytes, even.bytes + 4 * 3);
    let ragged = cost_packed(&[(1, 1024), (128, 1024)], 16, 512, 64, 64, DType::F32);
    let parts = cost(1, 1, 16, 1024, 512, 64, 64, DType::F32).flops
        + cost(1, 128, 16, 1024, 512, 64, 64, DType::F32).flops;
    assert_eq!(ragged.flops, parts);
}

/// A ragged call's scratch grows with its tokens, not with (sequences × the longest prompt): one
/// 1000-token prompt beside seven one-token steps needs about what the prompt alone needs.
#[test]
fn ragged_scratch_follows_the_tokens() {
    use ssm_mla::ops::absorbed_attention::scratch_bytes;
    let alone = scratch_bytes(1, 1000, 1000, 16, 512, 64, 2048).unwrap();
    let mixed = scratch_bytes(8, 1007, 1000, 16, 512, 64, 2048).unwrap();
    assert!(mixed < alone + alone / 50, "{mixed} vs {alone}");
    assert!(alone < 100 << 20, "{alone}");
}

/// Whether `gpu` runs the SUBGROUP kernel where it applies: a CPU device offering subgroups of
/// one fixed size, 8 (lavapipe); the device with optional features withheld never does.
fn runs_subgroup_kernel(gpu: &ssm_mla::Gpu) -> bool {
    let info = gpu.adapter_info();
    gpu.has_subgroups()
        && info.device_type == wgpu::DeviceType::Cpu
        && info.subgroup_min_size == 8
        && info.subgroup_max_size == 8
}

/// The SUBGROUP kernel (lanes owning cache columns, every row of a group sharing each key row
/// load) against the reference on both devices, and the plan each device takes: ragged context
/// lengths that are multiples of no split, context 1, several paged sequences, H = 1 and
/// H > 8 (a partial row group), prefill, packed queries, DeepSeek widths, narrower widths (lanes
/// with no columns), f32 and half caches (each shape with f32 and f16 or bf16); o_lat poisoned
/// by `run`. On the device without
/// subgroups the same cases run the tiled fallback.
#[test]
fn subgroup_kernel_matches_cpu_and_is_used_on_cpu_devices() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("absorbed_attention subgroup");
        let op = AbsorbedAttention::new(&gpu).unwrap();
        let expect = runs_subgroup_kernel(&gpu);
        let shapes = [
            case(1, 16, 512, 64, 64, vec![1000, 3, 129], 1),
            case(1, 16, 512, 64, 64, vec![1], 0),
            case(1, 1, 512, 64, 16, vec![77, 1, 300], 2),
            case(1, 20, 64, 16, 8, vec![45, 200], 1),
            case(1, 128, 32, 8, 4, vec![19], 0),
            case(3, 5, 512, 64, 16, vec![40, 3], 0),
            case(2, 3, 12, 4, 5, vec![9, 2], 1),
            packed(16, 512, 64, 64, &[1, 9, 3], &[700, 40, 3]),
        ];
        for (i, c) in shapes.iter().enumerate() {
            // Every shape with an f32 cache and one half cache, f16 and bf16 in turn.
            let half = if i % 2 == 0 { DType::F16 } else { DType::BF16 };
            for dtype in [DType::F32, half] {
                let p = Problem::random(&mut rng, c).with_cache_dtype(dtype);
                let t = p.upload(&gpu).unwrap();
                let o = p.poisoned_output(&gpu).unwrap();
                let plan = op.plan_for(&t.inputs(), &o).unwrap();
                assert_eq!(plan.subgroup, expect, "{name} {c:?}: {plan:?}");
                let (out, n) = pollster::block_on(p.run(&gpu, &op)).unwrap();
                let tol = if dtype == DType::F32 {
                    TOL
                } else {
                    HALF_CACHE_TOLERANCE
                };
                assert_close(
                    &format!(
                        "subgroup {name} {dtype} S_q={} q_lens={:?} H={} d_c={} d_R={} lens={:?} \
                         splits={n}",
                        c.s_q, c.query_lens, c.h, c.d_c, c.d_r, c.lens
                    ),
                    &out,
                    &p.reference(),
                    tol,
                    seed,
                );
            }
        }
    }
}

/// Contexts past the SUBGROUP kernel's most keys per workgroup (4096, well under llvmpipe's
/// 65535 iterations of a loop) are split however few workgroups the call has, and the widths
/// it does not hold (d_c > 512, d_R > 64, not multiples of 4) take the tiled kernels.
#[test]
fn subgroup_plan_bounds_keys_per_workgroup_and_falls_back() {
    use ssm_mla::ops::absorbed_attention::plan_subgroup;
    let p = plan_subgroup(1, 1, 16, 512, 64, 32 * 1024, 1)
        .unwrap()
        .unwrap();
    assert!(p.subgroup && p.split_len <= 4096, "{p:?}");
    assert!(p.n_split * p.split_len >= 32 * 1024, "{p:?}");
    // The grid is padded so each of the device's threads takes a whole chunk of it.
    assert!(p.interleave >= 1, "{p:?}");
    assert_eq!(p.workgroups(1) % p.interleave, 0, "{p:?}");
    assert!(p.workgroups(1) >= p.groups * p.n_split, "{p:?}");
    let wide = plan_subgroup(8, 1, 128, 512, 64, 32 * 1024, 8)
        .unwrap()
        .unwrap();
    assert!(
        wide.split_len <= 4096 && wide.rows_per_group == 16,
        "{wide:?}"
    );
    let short = plan_subgroup(1, 1, 1, 64, 16, 1, 1).unwrap().unwrap();
    assert_eq!((short.n_split, short.rows_per_group), (1, 1), "{short:?}");
    for (d_c, d_r) in [(1024, 64), (512, 128), (510, 64), (512, 62)] {
        assert!(plan_subgroup(1, 1, 16, d_c, d_r, 1000, 1)
            .unwrap()
            .is_none());
    }
    // A long context on the device: more than 4096 keys in one sequence, narrow widths.
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("absorbed_attention subgroup long");
        let op = AbsorbedAttention::new(&gpu).unwrap();
        let c = case(1, 3, 16, 8, 32, vec![9001, 5], 1);
        let p = Problem::random(&mut rng, &c);
        let (out, n) = pollster::block_on(p.run(&gpu, &op)).unwrap();
        if runs_subgroup_kernel(&gpu) {
            assert!(n >= 3, "{name}: {n} splits for 9001 keys");
        }
        assert_close(
            &format!("subgroup long {name} splits={n}"),
            &out,
            &p.reference(),
            TOL,
            seed,
        );
    }
}
