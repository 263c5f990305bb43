//! Criterion bench of `fma_peak` (the arithmetic ceiling) on the GPU (device time through `iter_custom`, timestamps where
//! offered) and its CPU reference, at the sizes of `suite::fma_peak::bench_cases`: small by default (with the f64 reference), the full size GPU-only with `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases = ssm_mla::suite::fma_peak::bench_cases(&gpu, !common::full()).expect("bench setup");
    common::bench_suite_cases(c, "fma_peak", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
