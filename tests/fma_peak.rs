//! Conformance of `fma_peak` (the arithmetic ceiling) against its f64 CPU reference.

mod common;
use common::*;
use ssm_mla::ops::fma_peak::{FmaPeak, FmaPeakParams};
use ssm_mla::testing::fma_peak::{Problem, TOLERANCE};

#[test]
fn matches_cpu_chains() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("fma_peak");
        for (n, iters) in [(1usize, 8u32), (257, 64), (1000, 304)] {
            let params = FmaPeakParams {
                iters,
                m: 0.99,
                c: 0.01,
            };
            let p = Problem::random(&mut rng, n, params);
            let seeds = p.upload(&gpu).unwrap();
            let out = gpu.nan_f32(&[n]).unwrap();
            let op = FmaPeak::new(&gpu).unwrap();
            let mut batch = gpu.batch();
            op.record(&mut batch, &seeds, &out, params).unwrap();
            let timing = batch.run_timed().unwrap();
            assert!(timing.seconds >= 0.0);
            assert_close(
                &format!("{name} n={n} iters={iters}"),
                &gpu.read_f32(&out).unwrap(),
                &p.reference(),
                TOLERANCE,
                seed,
            );
        }
    }
}

#[test]
fn iteration_counts_must_be_multiples_of_eight() {
    let gpu = gpu();
    let seeds = gpu.upload_f32(&[4], &[0.0; 4]).unwrap();
    let out = gpu.nan_f32(&[4]).unwrap();
    let mut batch = gpu.batch();
    let params = FmaPeakParams {
        iters: 12,
        ..Default::default()
    };
    let err = FmaPeak::new(&gpu)
        .unwrap()
        .record(&mut batch, &seeds, &out, params)
        .unwrap_err();
    assert!(err.to_string().contains("multiple of 8"), "{err}");
    assert_eq!(batch.dispatches(), 0);
}
