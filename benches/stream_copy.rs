//! Criterion bench of `stream_copy` (the bandwidth ceiling), GPU and CPU.

mod common;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssm_mla::ops::stream_copy::StreamCopy;
use ssm_mla::{reference, DType};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group("stream_copy");
    group.sample_size(10);
    let sizes: &[usize] = if common::full() {
        &[1 << 20, 1 << 24, 1 << 25]
    } else {
        &[1 << 18, 1 << 22]
    };
    for &n in sizes {
        let op = StreamCopy::new(&gpu).unwrap();
        let host: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let src = gpu.upload_f32(&[n], &host).unwrap();
        let dst = gpu.empty(&[n], DType::F32).unwrap();
        let bytes = StreamCopy::cost(n).bytes;
        common::bench_gpu(
            &mut group,
            &format!("gpu/{}KiB", n * 4 / 1024),
            bytes,
            || {
                let mut batch = gpu.batch();
                op.record(&mut batch, &src, &dst)?;
                batch.run_timed()
            },
        );
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(format!("cpu/{}KiB", n * 4 / 1024), |b| {
            b.iter(|| reference::stream_copy::stream_copy(&host))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
