//! Criterion bench of `matmul` on the GPU (device time through `iter_custom`, timestamps where
//! offered) and its CPU reference, at the sizes of the op's `bench_cases`: small by default
//! (lavapipe), DESIGN §7 sizes with `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases = ssm_mla::ops::matmul::bench_cases(&gpu, !common::full()).expect("bench setup");
    let mut group = c.benchmark_group("matmul");
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
