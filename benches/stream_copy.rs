//! Criterion bench of `stream_copy` (the bandwidth ceiling; the CPU side is a host memcpy) on the GPU (device time through `iter_custom`, timestamps where
//! offered) and its CPU reference, at the sizes of `suite::stream_copy::bench_cases`: 4 MiB by default, up to 64 MiB with `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases =
        ssm_mla::suite::stream_copy::bench_cases(&gpu, !common::full()).expect("bench setup");
    common::bench_suite_cases(c, "stream_copy", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
