//! Criterion bench of `diagonal_scan` (N = 16 complex modes, ZOH) on the GPU (device time through `iter_custom`, timestamps where
//! offered) and its CPU reference, at the sizes of `suite::diagonal_scan::bench_cases`: the smallest size with both strategies by default, longer and wider ones with `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases =
        ssm_mla::suite::diagonal_scan::bench_cases(&gpu, !common::full()).expect("bench setup");
    common::bench_suite_cases(c, "diagonal_scan", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
