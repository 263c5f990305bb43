//! Criterion bench of the MLA layer's decode step (`mla_layer`) on the GPU (device time through `iter_custom`, timestamps where
//! offered) and its CPU reference, at the sizes of `ssm_mla::mla::layer::bench_cases`: one token per
//! sequence after a prefilled context, small dims by default (lavapipe), DeepSeek-V2-Lite's
//! attention dims (hidden 2048, H 16, d_c 512, contexts 1K/4K; GPU only) with
//! `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases = ssm_mla::mla::layer::bench_cases(&gpu, !common::full()).expect("bench setup");
    let mut group = c.benchmark_group("mla");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for mut case in cases {
        (case.gpu)().expect("GPU warm-up run");
        common::bench_gpu(
            &mut group,
            &format!("gpu/{}", case.size),
            case.cost.bytes,
            &mut case.gpu,
        );
        if let Some(cpu) = case.cpu.as_mut() {
            group.throughput(Throughput::Bytes(case.cost.bytes));
            group.bench_function(format!("cpu/{}", case.size), |b| b.iter(&mut *cpu));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
