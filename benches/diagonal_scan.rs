//! Criterion bench of `diagonal_scan` (GPU, timestamps where offered, via `iter_custom`) and its
//! f64 CPU reference, at SSM sizes from DESIGN §7 kept runnable on lavapipe (N = 16 complex
//! modes, ZOH). Bytes and FLOPs per run come from `DiagonalScan::cost` (criterion reports
//! throughput in bytes).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ssm_mla::hippo::Discretisation;
use ssm_mla::ops::diagonal_scan::{DiagonalScan, DiagonalSsmHost};
use ssm_mla::reference::diagonal_scan::Dims;
use ssm_mla::{DType, Gpu, Rng};
use std::time::Duration;

const SIZES: &[(usize, usize, usize)] = &[(1, 256, 256), (1, 256, 2048), (2, 512, 1024)];
const MODES: usize = 16;

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new().expect("benchmarks need a GPU adapter");
    let op = DiagonalScan::new(&gpu).unwrap();
    let mut rng = Rng::new(11);
    let mut group = c.benchmark_group("diagonal_scan");
    group.sample_size(10);
    for &(bt, h, l) in SIZES {
        let host = DiagonalSsmHost::random(&mut rng, h, MODES);
        let ssm = host.upload(&gpu).unwrap();
        let u_host = rng.normal_vec(bt * h * l, 0.0, 1.0);
        let u = gpu.upload_f32(&[bt, h, l], &u_host).unwrap();
        let y = gpu.empty(&[bt, h, l], DType::F32).unwrap();
        let cost = DiagonalScan::cost(Dims {
            batch: bt,
            channels: h,
            len: l,
            modes: MODES,
        });
        group.throughput(Throughput::Bytes(cost.bytes));
        let label = format!("Bt={bt} H={h} L={l} N={MODES}");
        // Warm up (first use JIT-compiles on lavapipe).
        let mut batch = gpu.batch();
        op.record(&mut batch, &u, &ssm, &y, Discretisation::Zoh).unwrap();
        batch.run().unwrap();
        group.bench_function(BenchmarkId::new("gpu", &label), |b| {
            b.iter_custom(|iters| {
                let mut total = 0.0;
                for _ in 0..iters {
                    let mut batch = gpu.batch();
                    op.record(&mut batch, &u, &ssm, &y, Discretisation::Zoh).unwrap();
                    total += batch.run_timed().unwrap().seconds;
                }
                Duration::from_secs_f64(total)
            })
        });
        group.bench_function(BenchmarkId::new("cpu", &label), |b| {
            b.iter(|| {
                std::hint::black_box(
                    host.reference(bt, l, &u_host, Discretisation::Zoh).unwrap(),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
