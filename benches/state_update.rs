//! Criterion bench of the decode step (D, z, dt_bias, softplus) on the GPU (device time through `iter_custom`, timestamps where
//! offered) and its CPU reference, at the sizes of `suite::state_update::bench_cases`: Bt = 1, D = 2048 by default, up to Bt = 8, D = 4096, N = 128 and a slot pool with `SSM_MLA_BENCH_FULL=1`; the multi-head form at Mamba-2-130m's decode shape (H = 24, P = 64, N = 128; Bt = 1, and 8 with the full set).

mod common;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases =
        ssm_mla::suite::state_update::bench_cases(&gpu, !common::full()).expect("bench setup");
    common::bench_suite_cases(c, "state_update", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
