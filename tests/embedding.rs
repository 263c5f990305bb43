//! `embedding` against its CPU reference: f32, f16 and bf16 tables (widening is exact, so the
//! comparison is exact: atol 0, rtol 0), ragged T, T = 1, NaN-poisoned output, ids outside the
//! vocabulary refused.

mod common;

use ssm_mla::ops::embedding::Embedding;
use ssm_mla::reference::embedding::embedding;
use ssm_mla::{DType, HostTensor, Tolerance};

#[test]
fn gathers_rows_of_every_table_dtype() {
    let (mut rng, seed) = common::rng("embedding");
    for (name, gpu) in common::gpus() {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for (vocab, hidden, t) in [(50, 24, 7), (3, 5, 1), (130, 33, 300)] {
                let vals = rng.normal_vec(vocab * hidden, 0.0, 1.0);
                let table = HostTensor::from_f32_as(&[vocab, hidden], dtype, &vals).unwrap();
                let ids: Vec<u32> = (0..t).map(|_| rng.below(vocab) as u32).collect();
                let want = embedding(&ids, table.to_f32(), hidden).unwrap();
                let ids_gpu = Embedding::upload_ids(&gpu, &ids, vocab).unwrap();
                let table_gpu = table.upload(&gpu).unwrap();
                let out = gpu.nan_f32(&[t, hidden]).unwrap();
                let mut batch = gpu.batch();
                Embedding::record(&mut batch, &ids_gpu, &table_gpu, &out).unwrap();
                batch.run().unwrap();
                let got = gpu.read_f32(&out).unwrap();
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
