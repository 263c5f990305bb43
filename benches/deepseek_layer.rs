//! Criterion bench of one DeepSeek decoder layer on the GPU (rmsnorm, MLA over the paged cache,
//! rmsnorm, MoE; device time through `iter_custom`) at DeepSeek-V2-Lite dims with bf16 weights
//! and cache, the sizes of `suite::deepseek_layer::bench_cases`: a decode step after 128 tokens
//! and a 16-token prefill by default (lavapipe), the full set with `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases =
        ssm_mla::suite::deepseek_layer::bench_cases(&gpu, !common::full()).expect("bench setup");
    common::bench_suite_cases(c, "deepseek_layer", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
