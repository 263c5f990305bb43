//! Criterion bench of `fma_peak` (the arithmetic ceiling), GPU and CPU.

mod common;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssm_mla::ops::fma_peak::{FmaPeak, FmaPeakParams};
use ssm_mla::{reference, DType};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group("fma_peak");
    group.sample_size(10);
    let (n, iters) = if common::full() {
        (1 << 16, 2048)
    } else {
        (1 << 12, 256)
    };
    let params = FmaPeakParams {
        iters,
        ..Default::default()
    };
    let op = FmaPeak::new(&gpu).unwrap();
    let host: Vec<f32> = (0..n).map(|i| (i % 89) as f32 / 89.0).collect();
    let seed = gpu.upload_f32(&[n], &host).unwrap();
    let out = gpu.empty(&[n], DType::F32).unwrap();
    let cost = FmaPeak::cost(n, params);
    common::bench_gpu(&mut group, &format!("gpu/n{n}x{iters}"), cost.bytes, || {
        let mut batch = gpu.batch();
        op.record(&mut batch, &seed, &out, params)?;
        batch.run_timed()
    });
    // The f64 reference is slow: bench a sixteenth of the elements, with matching throughput.
    let cpu_n = n / 16;
    group.throughput(Throughput::Elements(FmaPeak::cost(cpu_n, params).flops));
    group.bench_function(format!("cpu/n{cpu_n}x{iters}"), |b| {
        b.iter(|| reference::fma_peak::fma_peak(&host[..cpu_n], params))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
