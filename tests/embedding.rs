//! `embedding` against its CPU reference: f32, f16 and bf16 tables (widening is exact, so the
//! comparison is exact: atol 0, rtol 0), ragged T, T = 1, NaN-poisoned output, ids outside the
//! vocabulary refused.

mod common;

use ssm_mla::ops::embedding::Embedding;
use ssm_mla::testing::embedding::Problem;
use ssm_mla::{DType, Tolerance};

#[test]
fn gathers_rows_of_every_table_dtype() {
    let (mut rng, seed) = common::rng("embedding");
    for (name, gpu) in common::gpus() {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for (vocab, hidden, t) in [(50, 24, 7), (3, 5, 1), (130, 33, 300)] {
                let p = Problem::random(&mut rng, vocab, hidden, t, dtype);
                let want = p.reference();
                let got = pollster::block_on(p.run(&gpu)).unwrap();
                common::assert_close(
                    &format!("{name} {dtype} vocab={vocab} H={hidden} T={t}"),
                    &got,
                    &want,
                    Tolerance::new(0.0, 0.0),
                    seed,
                );
            }
        }
    }
}

#[test]
fn bad_ids_and_shapes_are_errors() {
    let gpu = common::gpu();
    let err = Embedding::upload_ids(&gpu, &[1, 9], 9)
        .unwrap_err()
        .to_string();
    assert!(err.contains("token id 9"), "{err}");
    let ids = Embedding::upload_ids(&gpu, &[1, 2], 9).unwrap();
    let table = gpu.upload_f32(&[9, 4], &[0.5; 36]).unwrap();
    let wrong = gpu.nan_f32(&[2, 5]).unwrap();
    let mut batch = gpu.batch();
    let err = Embedding::record(&mut batch, &ids, &table, &wrong)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`out`") && err.contains("(T, H)"), "{err}");
}
