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
use ssm_mla::ops::absorbed_attention::{plan, AbsorbedAttention, AbsorbedAttentionInputs};
use ssm_mla::ops::latent_cache::LatentCache;
use ssm_mla::reference::absorbed_attention::{absorbed_attention, Dims};
use ssm_mla::{DType, Error, Gpu, Rng, Tolerance};

const TOL: Tolerance = Tolerance::new(2e-5, 1e-4);

/// A random paged cache holding `lens[b]` tokens for each sequence, pages shuffled across
/// sequences, NaN everywhere else.
struct Case {
    s_q: usize,
    h: usize,
    d_c: usize,
    d_r: usize,
    block_size: usize,
    lens: Vec<usize>,
    /// Extra block-table entries per sequence beyond what its length needs.
    spare_entries: usize,
}

struct Prepared {
    dims: Dims,
    q_lat: Vec<f32>,
    q_rope: Vec<f32>,
    cache: Vec<f32>,
    num_blocks: usize,
    block_table: Vec<u32>,
    seq_lens: Vec<u32>,
    scale: f32,
}

fn prepare(rng: &mut Rng, c: &Case) -> Prepared {
    let bt = c.lens.len();
    let w = c.d_c + c.d_r;
    let bs = c.block_size;
    let needed: Vec<usize> = c.lens.iter().map(|&l| l.div_ceil(bs)).collect();
    let max_blocks = needed.iter().max().copied().unwrap_or(1).max(1) + c.spare_entries;
    let used: usize = needed.iter().sum();
    let spare_pages = 3;
    let num_blocks = used + spare_pages;
    // Shuffle page ids so sequences interleave in memory.
    let mut ids: Vec<u32> = (0..num_blocks as u32).collect();
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i + 1));
    }
    let spare: Vec<u32> = ids[used..].to_vec();
    let mut cache = vec![f32::NAN; num_blocks * bs * w];
    let mut block_table = vec![0u32; bt * max_blocks];
    let mut next = 0;
    for b in 0..bt {
        for k in 0..max_blocks {
            block_table[b * max_blocks + k] = if k < needed[b] {
                next += 1;
                ids[next - 1]
            } else if k % 2 == 0 {
                spare[k % spare.len()]
            } else {
                u32::MAX
            };
        }
        for j in 0..c.lens[b] {
            let slot = block_table[b * max_blocks + j / bs] as usize * bs + j % bs;
            let row = rng.normal_vec(w, 0.0, 1.0);
            cache[slot * w..(slot + 1) * w].copy_from_slice(&row);
        }
    }
    let n_q = bt * c.s_q * c.h;
    Prepared {
        dims: Dims {
            bt,
            s_q: c.s_q,
            h: c.h,
            d_c: c.d_c,
            d_r: c.d_r,
            block_size: bs,
            max_blocks,
        },
        q_lat: rng.normal_vec(n_q * c.d_c, 0.0, 1.0),
        q_rope: rng.normal_vec(n_q * c.d_r, 0.0, 1.0),
        cache,
        num_blocks,
        block_table,
        seq_lens: c.lens.iter().map(|&l| l as u32).collect(),
        scale: 1.5 / (w as f32).sqrt(),
    }
}

/// Run the GPU op on prepared inputs (output poisoned first).
fn run_gpu(gpu: &Gpu, op: &AbsorbedAttention, p: &Prepared) -> (Vec<f32>, usize) {
    let d = p.dims;
    let cache = LatentCache::new(gpu, p.num_blocks, d.block_size, d.d_c, d.d_r).unwrap();
    gpu.write(&cache.data, &p.cache).unwrap();
    let q_lat = gpu
        .upload_f32(&[d.bt, d.s_q, d.h, d.d_c], &p.q_lat)
        .unwrap();
    let q_rope = gpu
        .upload_f32(&[d.bt, d.s_q, d.h, d.d_r], &p.q_rope)
        .unwrap();
    let block_table = gpu
        .upload_u32(&[d.bt, d.max_blocks], &p.block_table)
        .unwrap();
    let seq_lens = gpu.upload_u32(&[d.bt], &p.seq_lens).unwrap();
    let o_lat = gpu.nan_f32(&[d.bt, d.s_q, d.h, d.d_c]).unwrap();
    let inputs = AbsorbedAttentionInputs {
        q_lat: &q_lat,
        q_rope: &q_rope,
        cache: &cache,
        block_table: &block_table,
        seq_lens: &seq_lens,
        scale: p.scale,
        max_seq_len: p.seq_lens.iter().copied().max().unwrap_or(1) as usize,
    };
    let splits = op.plan_for(&inputs, &o_lat).unwrap().n_split;
    let mut batch = gpu.batch();
    op.record(&mut batch, &inputs, &o_lat).unwrap();
    batch.run().unwrap();
    (gpu.read_f32(&o_lat).unwrap(), splits)
}

fn reference(p: &Prepared) -> Vec<f64> {
    absorbed_attention(
        p.dims,
        &p.q_lat,
        &p.q_rope,
        &p.cache,
        &p.block_table,
        &p.seq_lens,
        p.scale,
    )
}

/// Check one case on both devices; returns the split count used.
fn check(test: &str, c: &Case) -> usize {
    let mut splits = 0;
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng(test);
        let p = prepare(&mut rng, c);
        let op = AbsorbedAttention::new(&gpu).unwrap();
        let (out, n) = run_gpu(&gpu, &op, &p);
        splits = n;
        assert_close(
            &format!(
                "{test} {name} S_q={} H={} d_c={} d_R={} bs={} lens={:?} splits={n}",
                c.s_q, c.h, c.d_c, c.d_r, c.block_size, c.lens
            ),
            &out,
            &reference(&p),
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
        check(
            "decode",
            &Case {
                s_q: 1,
                h,
                d_c,
                d_r,
                block_size: bs,
                lens,
                spare_entries: 2,
            },
        );
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
        check(
            "prefill",
            &Case {
                s_q,
                h,
                d_c: 32,
                d_r: 8,
                block_size: 4,
                lens,
                spare_entries: 1,
            },
        );
    }
}

#[test]
fn size_one_contexts() {
    for h in [1, 3, 16] {
        check(
            "size1",
            &Case {
                s_q: 1,
                h,
                d_c: 16,
                d_r: 4,
                block_size: 1,
                lens: vec![1, 1],
                spare_entries: 0,
            },
        );
    }
}

#[test]
fn long_contexts_use_several_splits() {
    let splits = check(
        "long",
        &Case {
            s_q: 1,
            h: 3,
            d_c: 16,
            d_r: 8,
            block_size: 16,
            lens: vec![4000, 1500, 3],
            spare_entries: 3,
        },
    );
    assert!(splits > 1, "expected split-KV, got {splits} split");
    // Prefill over a long context with splits too.
    let splits = check(
        "long prefill",
        &Case {
            s_q: 6,
            h: 2,
            d_c: 12,
            d_r: 4,
            block_size: 32,
            lens: vec![2100],
            spare_entries: 0,
        },
    );
    assert!(splits > 1, "expected split-KV, got {splits} split");
}

#[test]
fn deepseek_widths() {
    let splits = check(
        "deepseek",
        &Case {
            s_q: 1,
            h: 16,
            d_c: 512,
            d_r: 64,
            block_size: 64,
            lens: vec![700, 5],
            spare_entries: 1,
        },
    );
    assert!(splits > 1, "expected split-KV, got {splits} split");
    check(
        "deepseek prefill",
        &Case {
            s_q: 3,
            h: 5,
            d_c: 512,
            d_r: 64,
            block_size: 16,
            lens: vec![40],
            spare_entries: 0,
        },
    );
}

#[test]
fn batch_equals_each_sequence_alone() {
    let gpu = gpu();
    let (mut rng, seed) = rng("batch vs alone");
    let c = Case {
        s_q: 1,
        h: 5,
        d_c: 32,
        d_r: 8,
        block_size: 8,
        lens: vec![300, 1, 57, 900],
        spare_entries: 1,
    };
    let p = prepare(&mut rng, &c);
    let op = AbsorbedAttention::new(&gpu).unwrap();
    let (together, _) = run_gpu(&gpu, &op, &p);
    let per_seq = c.s_q * c.h * c.d_c;
    for b in 0..c.lens.len() {
        let mb = p.dims.max_blocks;
        let alone = Prepared {
            dims: Dims { bt: 1, ..p.dims },
            q_lat: p.q_lat[b * per_seq..(b + 1) * per_seq].to_vec(),
            q_rope: p.q_rope[b * c.s_q * c.h * c.d_r..(b + 1) * c.s_q * c.h * c.d_r].to_vec(),
            cache: p.cache.clone(),
            num_blocks: p.num_blocks,
            block_table: p.block_table[b * mb..(b + 1) * mb].to_vec(),
            seq_lens: vec![p.seq_lens[b]],
            scale: p.scale,
        };
        let (out, _) = run_gpu(&gpu, &op, &alone);
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
    let c = Case {
        s_q: 2,
        h: 3,
        d_c: 24,
        d_r: 8,
        block_size: 8,
        lens: vec![21, 2, 300],
        spare_entries: 2,
    };
    let with_nan = prepare(&mut rng, &c);
    let mut with_zero = Prepared {
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
    let (a, _) = run_gpu(&gpu, &op, &with_zero);
    with_zero.cache = with_nan.cache.clone();
    let (b, _) = run_gpu(&gpu, &op, &with_zero);
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
