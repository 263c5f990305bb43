//! Shared criterion helpers: the GPU, and GPU timing through `iter_custom` so criterion sees
//! device time (timestamps where offered) rather than host time.
#![allow(dead_code)]

use criterion::{BenchmarkGroup, Throughput};
use ssm_mla::{Gpu, Result, Timing};
use std::sync::Arc;
use std::time::Duration;

/// The default adapter; benches fail with the install hint when there is none.
pub fn gpu() -> Arc<Gpu> {
    match Gpu::new() {
        Ok(g) => Arc::new(g),
        Err(e) => panic!("GPU benches need an adapter: {e}"),
    }
}

/// Bench `run` (one GPU execution returning its [`Timing`]) under `id`, reporting bytes moved
/// as throughput.
pub fn bench_gpu<M: criterion::measurement::Measurement<Value = Duration>>(
    group: &mut BenchmarkGroup<'_, M>,
    id: &str,
    bytes: u64,
    mut run: impl FnMut() -> Result<Timing>,
) {
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += Duration::from_secs_f64(run().expect("GPU run").seconds);
            }
            total
        })
    });
}

/// Whether the large benchmark sizes were asked for (`SSM_MLA_BENCH_FULL=1`).
pub fn full() -> bool {
    std::env::var("SSM_MLA_BENCH_FULL").is_ok_and(|v| v == "1")
}

/// Bench every case of a kernel's suite entry (`bench_cases`): the GPU run through
/// `iter_custom` and the CPU reference where the case has one, both with bytes as throughput.
pub fn bench_suite_cases(
    c: &mut criterion::Criterion,
    group: &str,
    cases: Vec<ssm_mla::suite::BenchCase>,
) {
    let mut group = c.benchmark_group(group);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for mut case in cases {
        (case.gpu)().expect("GPU warm-up run");
        bench_gpu(
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
