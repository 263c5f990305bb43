//! Criterion bench of `diagonal_scan` (GPU, timestamps where offered, via `iter_custom`) and its
//! f64 CPU reference, at SSM sizes from DESIGN §7 (N = 16 complex modes, ZOH): small ones by
//! default so lavapipe stays quick, the large ones with `SSM_MLA_BENCH_FULL=1`. Throughput is
//! the bytes of `DiagonalScan::cost`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssm_mla::hippo::Discretisation;
use ssm_mla::ops::diagonal_scan::{DiagonalScan, DiagonalSsmHost};
use ssm_mla::reference::diagonal_scan::Dims;
use ssm_mla::{DType, Rng};

const MODES: usize = 16;

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let op = DiagonalScan::new(&gpu).unwrap();
    let mut rng = Rng::new(11);
    let mut group = c.benchmark_group("diagonal_scan");
    group.sample_size(10);
    let sizes: &[(usize, usize, usize)] = if common::full() {
        &[(1, 256, 4096), (1, 2048, 1024), (8, 256, 16384)]
    } else {
        &[(1, 256, 256), (1, 256, 2048), (2, 512, 1024)]
    };
    for &(bt, h, l) in sizes {
        let host = DiagonalSsmHost::random(&mut rng, h, MODES);
        let ssm = host.upload(&gpu).unwrap();
        let u_host = rng.normal_vec(bt * h * l, 0.0, 1.0);
        let u = gpu.upload_f32(&[bt, h, l], &u_host).unwrap();
        let y = gpu.empty(&[bt, h, l], DType::F32).unwrap();
        let bytes = DiagonalScan::cost(Dims {
            batch: bt,
            channels: h,
            len: l,
            modes: MODES,
        })
        .bytes;
        let label = format!("Bt={bt}_H={h}_L={l}_N={MODES}");
        common::bench_gpu(&mut group, &format!("gpu/{label}"), bytes, || {
            let mut batch = gpu.batch();
            op.record(&mut batch, &u, &ssm, &y, Discretisation::Zoh)?;
            batch.run_timed()
        });
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(format!("cpu/{label}"), |b| {
            b.iter(|| {
                std::hint::black_box(host.reference(bt, l, &u_host, Discretisation::Zoh).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
