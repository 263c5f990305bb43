//! Criterion bench of `embedding` on the GPU (device time through `iter_custom`, timestamps
//! where offered) and its CPU reference, at the sizes of `suite::embedding::bench_cases`: small by
//! default (lavapipe), the large sizes with `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases = ssm_mla::suite::embedding::bench_cases(&gpu, !common::full()).expect("bench setup");
    common::bench_suite_cases(c, "embedding", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
