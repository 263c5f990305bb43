//! Criterion bench of `moe` on the GPU (device time through `iter_custom`, timestamps where
//! offered) at DeepSeek-V2-Lite's MoE layer (bf16 experts), the sizes of
//! `suite::moe::bench_cases`: T = 1 by default (lavapipe), T = 1, 8, 512 with
//! `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases = ssm_mla::suite::moe::bench_cases(&gpu, !common::full()).expect("bench setup");
    common::bench_suite_cases(c, "moe", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
