//! Conformance of `stream_copy` against its CPU reference, including ragged lengths, length 1,
//! a length past one workgroup's block, and a tensor split across several bindings.

mod common;
use common::*;
use ssm_mla::ops::stream_copy::{stream_copy, StreamCopy};
use ssm_mla::testing::stream_copy::{Problem, TOLERANCE as EXACT};
use ssm_mla::{Gpu, GpuOptions};

#[test]
fn copies_every_length_exactly() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("stream_copy");
        for n in [1usize, 3, 4, 5, 255, 1023, 1024 * 4 + 7, 300_001] {
            let p = Problem::random(&mut rng, n);
            let op = StreamCopy::new(&gpu).unwrap();
            assert_close(
                &format!("{name} n={n}"),
                &pollster::block_on(p.run(&gpu, &op)).unwrap(),
                &p.reference(),
                EXACT,
                seed,
            );
        }
    }
}

#[test]
fn splits_tensors_larger_than_one_binding() {
    // Lower the binding limit so a 1 MiB tensor needs several dispatches over byte ranges.
    let gpu = Gpu::with_options(&GpuOptions {
        max_storage_binding: Some(64 * 1024),
        ..Default::default()
    })
    .expect("GPU tests need an adapter");
    let (mut rng, seed) = rng("stream_copy split");
    let n = 256 * 1024 + 3;
    let p = Problem::random(&mut rng, n);
    let dst = stream_copy(&gpu, &p.upload(&gpu).unwrap()).unwrap();
    assert_close(
        "split copy",
        &gpu.read_f32(&dst).unwrap(),
        &p.reference(),
        EXACT,
        seed,
    );
}

#[test]
fn rejects_mismatched_lengths() {
    let gpu = gpu();
    let src = gpu.upload_f32(&[4], &[1.0; 4]).unwrap();
    let dst = gpu.nan_f32(&[5]).unwrap();
    let op = StreamCopy::new(&gpu).unwrap();
    let mut batch = gpu.batch();
    let err = op.record(&mut batch, &src, &dst).unwrap_err();
    assert!(err.to_string().contains("dst"), "{err}");
    assert_eq!(batch.dispatches(), 0, "nothing may be recorded on error");
}
