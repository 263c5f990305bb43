//! `embedding` against its CPU reference: f32, f16 and bf16 tables (widening is exact, so the
//! comparison is exact: atol 0, rtol 0), widths a multiple of 4 (the vec4 kernel; a row of one
//! and of several workgroups) and not, ragged T, T = 1, more tokens than one grid dimension
//! holds, tables split into row chunks, NaN-poisoned output, ids outside the vocabulary refused.

mod common;

use ssm_mla::io::HostTensor;
use ssm_mla::ops::embedding::Embedding;
use ssm_mla::testing::embedding::Problem;
use ssm_mla::{DType, Tolerance};

#[test]
fn gathers_rows_of_every_table_dtype() {
    let (mut rng, seed) = common::rng("embedding");
    for (name, gpu) in common::gpus() {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for (vocab, hidden, t) in [
                (50, 24, 7),
                (3, 5, 1),
                (130, 33, 300),
                (7, 4, 1),
                (130, 36, 300),
                (40, 300, 9),
                (5, 4, 66_000),
            ] {
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

/// A table kept as row chunks (as `split_rows` makes them past one storage binding): each
/// dispatch writes only its chunk's tokens, and together they write every element.
#[test]
fn gathers_from_row_chunks() {
    let (mut rng, seed) = common::rng("embedding chunks");
    for (name, gpu) in common::gpus() {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for hidden in [24, 33] {
                let (vocab, t) = (50, 40);
                let p = Problem::random(&mut rng, vocab, hidden, t, dtype);
                let vals = p.table.to_f32();
                let mut chunks = Vec::new();
                for (r0, r1) in [(0, 20), (20, 46), (46, 50)] {
                    let part = HostTensor::from_f32_as(
                        &[r1 - r0, hidden],
                        dtype,
                        &vals[r0 * hidden..r1 * hidden],
                    )
                    .unwrap();
                    chunks.push((r0, part.upload(&gpu).unwrap()));
                }
                let (ids, _, out) = p.upload(&gpu).unwrap();
                let chunks: Vec<_> = chunks.iter().map(|(r0, c)| (*r0, c)).collect();
                let mut batch = gpu.batch();
                Embedding::record_chunks(&mut batch, &ids, &chunks, &out).unwrap();
                assert_eq!(batch.dispatches(), 3);
                batch.run().unwrap();
                common::assert_close(
                    &format!("{name} {dtype} H={hidden} in 3 chunks"),
                    &gpu.read_f32(&out).unwrap(),
                    &p.reference(),
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
