//! Criterion bench of the causal convolution (W = 4, bias and SiLU, channel-last x and y as a
//! model's in_proj produces them, with initial and final states) and its decode step, on the GPU
//! (device time through `iter_custom`, timestamps where offered) and its CPU reference, at the
//! sizes of `suite::causal_conv1d::bench_cases`: Bt = 1, D = 1536, L = 256 and one decode step
//! by default; up to Bt = 4, D = 2048, L = 2048 with `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases =
        ssm_mla::suite::causal_conv1d::bench_cases(&gpu, !common::full()).expect("bench setup");
    common::bench_suite_cases(c, "causal_conv1d", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
