//! Conformance of the latent-cache append kernel against its CPU reference (exact: it only moves
//! data), the `slots_for` helper, and error cases. The cache starts as a mix of random rows and
//! NaN, so a write to a wrong slot or a missed write shows up in the comparison of the whole
//! cache.

mod common;
use common::*;
use ssm_mla::ops::latent_cache::{slots_for, LatentCache, LatentCacheAppend};
use ssm_mla::{reference, DType, Error, Tolerance};

const EXACT: Tolerance = Tolerance::new(0.0, 0.0);

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
        ] {
            let w = d_c + d_r;
            let num_slots = num_blocks * bs;
            let cache = LatentCache::new(&gpu, num_blocks, bs, d_c, d_r).unwrap();
            let initial: Vec<f32> = (0..num_slots * w)
                .map(|i| {
                    if (i / w) % 3 == 0 {
                        f32::NAN
                    } else {
                        rng.normal() as f32
                    }
                })
                .collect();
            gpu.write(&cache.data, &initial).unwrap();
            // Distinct random slots, with every fourth row skipped (slot out of range).
            let mut all: Vec<u32> = (0..num_slots as u32).collect();
            for i in (1..all.len()).rev() {
                all.swap(i, rng.below(i + 1));
            }
            let slots: Vec<u32> = (0..t)
                .map(|k| {
                    if k % 4 == 3 {
                        u32::MAX - k as u32
                    } else {
                        all[k % num_slots]
                    }
                })
                .collect();
            let latent = rng.normal_vec(t * w, 0.0, 1.0);
            let latent_t = gpu.upload_f32(&[t, w], &latent).unwrap();
            let slots_t = gpu.upload_u32(&[t], &slots).unwrap();
            // In-range slots must be distinct (t ≤ num_slots in every case).
            let in_range: Vec<u32> = slots
                .iter()
                .copied()
                .filter(|&s| (s as usize) < num_slots)
                .collect();
            let mut dedup = in_range.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), in_range.len(), "test slots must be distinct");
            let mut batch = gpu.batch();
            op.record(&mut batch, &cache, &latent_t, &slots_t).unwrap();
            batch.run().unwrap();
            let got = gpu.read_f32(&cache.data).unwrap();
            assert_close(
                &format!("{name} blocks={num_blocks} bs={bs} W={w} T={t}"),
                &got,
                &reference::latent_cache::append(&initial, w, &latent, &slots),
                EXACT,
                seed,
            );
        }
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
