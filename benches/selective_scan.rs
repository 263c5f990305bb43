//! Criterion bench of the selective scan (Mamba options: variable B and C, D, z, delta_bias, softplus) on the GPU (device time through `iter_custom`, timestamps where
//! offered) and its CPU reference, at the sizes of `suite::selective_scan::bench_cases`: small ones by default (lavapipe), Bt up to 2, D up to 2048, L up to 16384 with `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases =
        ssm_mla::suite::selective_scan::bench_cases(&gpu, !common::full()).expect("bench setup");
    common::bench_suite_cases(c, "selective_scan", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
