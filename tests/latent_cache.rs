//! Conformance of the latent-cache append kernel against its CPU reference (exact: it only moves
//! data), the `slots_for` helper, and error cases. The cache starts as a mix of random rows and
//! NaN, so a write to a wrong slot or a missed write shows up in the comparison of the whole
//! cache.
//! Half caches (f16, bf16): f32 rows rounded on store. Tolerance per dtype
//! (`testing::latent_cache::half_tolerance`): bf16 exact against rows rounded to nearest even on
//! the host (the kernel rounds the same way); f16 within one f16 ulp (rtol 2⁻¹⁰, atol 2⁻²⁴),
//! because WGSL's `pack2x16float` may round to either neighbour.

mod common;
use common::*;
use ssm_mla::ops::latent_cache::{slots_for, LatentCache, LatentCacheAppend};
use ssm_mla::testing::latent_cache::{half_tolerance, Problem, TOLERANCE as EXACT};
use ssm_mla::{DType, Error};

#[test]
fn append_matches_cpu() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("latent_cache append");
        let op = LatentCacheAppend::new(&gpu).unwrap();
        for (num_blocks, bs, d_c, d_r, t) in [
            (1usize, 1usize, 4usize, 2usize, 1usize),
            (3, 4, 7, 3, 5),
            (4, 16, 512, 64, 37),
            (9, 5, 20, 0, 45),
            // W % 4 = 0 (the vec4 kernel): size 1, a row of several workgroup strides, and
            // more rows than one grid dimension holds.
            (1, 1, 4, 0, 1),
            (2, 8, 256, 44, 9),
            (1100, 64, 2, 2, 66_000),
        ] {
            let p = Problem::random(&mut rng, num_blocks, bs, d_c, d_r, t);
            // In-range slots must be distinct (t ≤ num_slots in every case).
            let num_slots = num_blocks * bs;
            let in_range: Vec<u32> = p
                .slots
                .iter()
                .copied()
                .filter(|&s| (s as usize) < num_slots)
                .collect();
            let mut dedup = in_range.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), in_range.len(), "test slots must be distinct");
            assert_close(
                &format!("{name} blocks={num_blocks} bs={bs} W={} T={t}", p.width()),
                &pollster::block_on(p.run(&gpu, &op)).unwrap(),
                &p.reference(),
                EXACT,
                seed,
            );
        }
    }
}

/// Half caches, odd widths (rows start mid-word, two rows share a word), size 1, and widths a
/// multiple of 4 (whole words per invocation).
#[test]
fn append_into_a_half_cache_matches_cpu() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("latent_cache append half");
        let op = LatentCacheAppend::new(&gpu).unwrap();
        for dtype in [DType::F16, DType::BF16] {
            for (num_blocks, bs, d_c, d_r, t) in [
                (1usize, 1usize, 1usize, 0usize, 1usize),
                (5, 3, 5, 2, 11),
                (3, 4, 7, 3, 5),
                (4, 16, 512, 64, 37),
                (2, 7, 3, 0, 13),
                (3, 4, 6, 2, 7),
            ] {
                let p = Problem::random(&mut rng, num_blocks, bs, d_c, d_r, t).with_dtype(dtype);
                let w = p.width();
                assert_close(
                    &format!("{name} {dtype} blocks={num_blocks} bs={bs} W={w} T={t}"),
                    &pollster::block_on(p.run(&gpu, &op)).unwrap(),
                    &p.reference(),
                    half_tolerance(dtype),
                    seed,
                );
            }
        }
        let c = LatentCache::with_dtype(&gpu, 1, 1, 512, 64, DType::BF16).unwrap();
        assert_eq!(c.bytes_per_token(), 1152, "{name}");
    }
}

#[test]
fn slots_follow_the_block_table() {
    let row = [7u32, 2, 5];
    assert_eq!(slots_for(&row, 4, 0, 1).unwrap(), vec![28]);
    assert_eq!(
        slots_for(&row, 4, 2, 7).unwrap(),
        vec![30, 31, 8, 9, 10, 11, 20]
    );
    assert_eq!(slots_for(&row, 4, 12, 0).unwrap(), Vec::<u32>::new());
    let err = slots_for(&row, 4, 10, 3).unwrap_err();
    assert!(err.to_string().contains("block_table"), "{err}");
    assert!(slots_for(&row, 0, 0, 1).is_err());
}

#[test]
fn rejects_bad_inputs_and_records_nothing() {
    let gpu = gpu();
    let op = LatentCacheAppend::new(&gpu).unwrap();
    let cache = LatentCache::new(&gpu, 2, 4, 8, 2).unwrap();
    let check = |latent: &ssm_mla::Tensor, slots: &ssm_mla::Tensor, needle: &str| {
        let mut batch = gpu.batch();
        let err = op.record(&mut batch, &cache, latent, slots).unwrap_err();
        assert!(err.to_string().contains(needle), "{needle}: {err}");
        assert_eq!(batch.dispatches(), 0, "nothing may be recorded on error");
        err
    };
    let good_latent = gpu.nan_f32(&[3, 10]).unwrap();
    let good_slots = gpu.upload_u32(&[3], &[0, 1, 2]).unwrap();
    check(&gpu.nan_f32(&[3, 9]).unwrap(), &good_slots, "latent");
    check(&gpu.nan_f32(&[30]).unwrap(), &good_slots, "latent");
    check(
        &good_latent,
        &gpu.upload_u32(&[2], &[0, 1]).unwrap(),
        "slots",
    );
    let err = check(&good_latent, &gpu.nan_f32(&[3]).unwrap(), "slots");
    assert!(matches!(err, Error::DType { .. }), "{err}");
    let err = check(
        &gpu.empty(&[3, 10], DType::U32).unwrap(),
        &good_slots,
        "latent",
    );
    assert!(matches!(err, Error::DType { .. }), "{err}");
    assert!(LatentCache::new(&gpu, 0, 4, 8, 2).is_err());
    assert!(LatentCache::new(&gpu, 2, 0, 8, 2).is_err());
    // Zero rows: nothing to do, nothing recorded.
    let mut batch = gpu.batch();
    op.record(
        &mut batch,
        &cache,
        &gpu.empty(&[0, 10], DType::F32).unwrap(),
        &gpu.empty(&[0], DType::U32).unwrap(),
    )
    .unwrap();
    assert_eq!(batch.dispatches(), 0);
}

/// W read from the cache, T from the latent rows: a disagreement names both tensors, their
/// shapes and the dimension.
#[test]
fn disagreeing_inputs_are_named_together() {
    let gpu = gpu();
    let op = LatentCacheAppend::new(&gpu).unwrap();
    let cache = LatentCache::new(&gpu, 2, 4, 8, 2).unwrap();
    let message = |latent: &ssm_mla::Tensor, slots: &ssm_mla::Tensor| {
        let mut batch = gpu.batch();
        let err = op.record(&mut batch, &cache, latent, slots).unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
        assert_eq!(batch.dispatches(), 0);
        err.to_string()
    };
    let slots = gpu.upload_u32(&[3], &[0, 1, 2]).unwrap();
    assert_eq!(
        message(&gpu.nan_f32(&[3, 9]).unwrap(), &slots),
        "tensors `cache` (2, 4, 10) and `latent` (3, 9) disagree on W = d_c + d_R: 10 vs 9"
    );
    assert_eq!(
        message(&gpu.nan_f32(&[4, 10]).unwrap(), &slots),
        "tensors `latent` (4, 10) and `slots` (3) disagree on T: 4 vs 3"
    );
}
