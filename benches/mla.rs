//! Criterion bench of the MLA layer's decode step (`mla_layer`) on the GPU (device time through `iter_custom`, timestamps where
//! offered) and its CPU reference, at the sizes of `ssm_mla::suite::mla_layer::bench_cases`: one token per
//! sequence after a prefilled context, small dims by default (lavapipe), DeepSeek-V2-Lite's
//! attention dims (hidden 2048, H 16, d_c 512, contexts 1K/4K; GPU only) with
//! `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases = ssm_mla::suite::mla_layer::bench_cases(&gpu, !common::full()).expect("bench setup");
    common::bench_suite_cases(c, "mla_layer", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
