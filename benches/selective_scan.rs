//! Criterion bench of the selective scan, GPU and CPU reference, Mamba options (variable B/C,
//! D, z, delta_bias, softplus). Default sizes run on lavapipe in seconds; DESIGN §7's larger ones
//! with `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssm_mla::ops::selective_scan::{
    BcLayout, ScanDims, ScanOptions, SelectiveScan, SelectiveScanInputs,
};
use ssm_mla::reference::selective_scan::{selective_scan, SelectiveScanHost};
use ssm_mla::{DType, Rng};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group("selective_scan");
    group.sample_size(10);
    // (Bt, D, L), N = 16.
    let sizes: &[(usize, usize, usize)] = if common::full() {
        &[
            (1, 256, 256),
            (1, 1024, 2048),
            (4, 1024, 4096),
            (8, 2048, 16384),
        ]
    } else {
        &[(1, 256, 256), (1, 256, 1024)]
    };
    let n = 16;
    let v = BcLayout::Grouped(1);
    let opts = ScanOptions {
        d: true,
        z: true,
        delta_bias: true,
        delta_softplus: true,
        initial_state: false,
    };
    let mut rng = Rng::new(7);
    for &(bt, dim, l) in sizes {
        let dims = ScanDims {
            batch: bt,
            dim,
            len: l,
            n,
            b: v,
            c: v,
        };
        let x = bt * dim * l;
        let u = rng.normal_vec(x, 0.0, 1.0);
        let delta = rng.normal_vec(x, 0.0, 1.0);
        let a: Vec<f32> = rng
            .normal_vec(dim * n, 0.0, 1.0)
            .iter()
            .map(|v| -v.exp())
            .collect();
        let b = rng.normal_vec(bt * n * l, 0.0, 1.0);
        let cm = rng.normal_vec(bt * n * l, 0.0, 1.0);
        let d = rng.normal_vec(dim, 0.0, 1.0);
        let z = rng.normal_vec(x, 0.0, 1.0);
        let bias = rng.uniform_vec(dim, -6.0, -2.0);
        let t = |shape: &[usize], v: &[f32]| gpu.upload_f32(shape, v).unwrap();
        let (u_t, delta_t, a_t) = (
            t(&[bt, dim, l], &u),
            t(&[bt, dim, l], &delta),
            t(&[dim, n], &a),
        );
        let (b_t, c_t) = (t(&[bt, n, l], &b), t(&[bt, n, l], &cm));
        let (d_t, z_t, bias_t) = (t(&[dim], &d), t(&[bt, dim, l], &z), t(&[dim], &bias));
        let out = gpu.empty(&[bt, dim, l], DType::F32).unwrap();
        let last = gpu.empty(&[bt, dim, n], DType::F32).unwrap();
        let op = SelectiveScan::new(&gpu).unwrap();
        let cost = SelectiveScan::cost(&dims, opts);
        let label = format!("Bt{bt}_D{dim}_N{n}_L{l}");
        common::bench_gpu(&mut group, &format!("gpu/{label}"), cost.bytes, || {
            let mut batch = gpu.batch();
            op.record(
                &mut batch,
                &SelectiveScanInputs {
                    u: &u_t,
                    delta: &delta_t,
                    a: &a_t,
                    b: &b_t,
                    c: &c_t,
                    d: Some(&d_t),
                    z: Some(&z_t),
                    delta_bias: Some(&bias_t),
                    initial_state: None,
                    delta_softplus: true,
                },
                &out,
                &last,
            )?;
            batch.run_timed()
        });
        // The f64 reference is slow at the largest sizes; bench it up to 2^24 state updates.
        if x * n <= 1 << 24 {
            group.throughput(Throughput::Bytes(cost.bytes));
            group.bench_function(format!("cpu/{label}"), |bench| {
                bench.iter(|| {
                    selective_scan(&SelectiveScanHost {
                        dims,
                        u: &u,
                        delta: &delta,
                        a: &a,
                        b: &b,
                        c: &cm,
                        d: Some(&d),
                        z: Some(&z),
                        delta_bias: Some(&bias),
                        initial_state: None,
                        delta_softplus: true,
                    })
                    .unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
