//! Criterion bench of the decode step, GPU and CPU reference, with D, z, dt_bias, softplus.
//! Default sizes run on lavapipe in seconds; larger ones with `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssm_mla::ops::state_update::{StateUpdate, StateUpdateInputs, UpdateDims, UpdateOptions};
use ssm_mla::reference::state_update::{state_update, StateUpdateHost};
use ssm_mla::{DType, Rng};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let mut group = c.benchmark_group("state_update");
    group.sample_size(10);
    // (Bt, D, N).
    let sizes: &[(usize, usize, usize)] = if common::full() {
        &[(1, 2048, 16), (8, 2048, 16), (8, 4096, 16), (8, 2048, 128)]
    } else {
        &[(1, 2048, 16), (8, 2048, 16)]
    };
    let opts = UpdateOptions {
        d: true,
        z: true,
        dt_bias: true,
        dt_softplus: true,
    };
    let mut rng = Rng::new(11);
    for &(bt, dim, n) in sizes {
        let dims = UpdateDims {
            batch: bt,
            dim,
            n,
            pool: bt,
            b_groups: 1,
            c_groups: 1,
            slots: false,
        };
        let state = rng.normal_vec(bt * dim * n, 0.0, 1.0);
        let x = rng.normal_vec(bt * dim, 0.0, 1.0);
        let dt = rng.normal_vec(bt * dim, 0.0, 1.0);
        let a: Vec<f32> = rng
            .normal_vec(dim * n, 0.0, 1.0)
            .iter()
            .map(|v| -v.exp())
            .collect();
        let b = rng.normal_vec(bt * n, 0.0, 1.0);
        let cm = rng.normal_vec(bt * n, 0.0, 1.0);
        let d = rng.normal_vec(dim, 0.0, 1.0);
        let z = rng.normal_vec(bt * dim, 0.0, 1.0);
        let bias = rng.uniform_vec(dim, -6.0, -2.0);
        let t = |shape: &[usize], v: &[f32]| gpu.upload_f32(shape, v).unwrap();
        let (s_t, x_t, dt_t, a_t) = (
            t(&[bt, dim, n], &state),
            t(&[bt, dim], &x),
            t(&[bt, dim], &dt),
            t(&[dim, n], &a),
        );
        let (b_t, c_t) = (t(&[bt, n], &b), t(&[bt, n], &cm));
        let (d_t, z_t, bias_t) = (t(&[dim], &d), t(&[bt, dim], &z), t(&[dim], &bias));
        let out = gpu.empty(&[bt, dim], DType::F32).unwrap();
        let op = StateUpdate::new(&gpu).unwrap();
        let cost = StateUpdate::cost(&dims, opts);
        let label = format!("Bt{bt}_D{dim}_N{n}");
        common::bench_gpu(&mut group, &format!("gpu/{label}"), cost.bytes, || {
            let mut batch = gpu.batch();
            op.record(
                &mut batch,
                &StateUpdateInputs {
                    state: &s_t,
                    x: &x_t,
                    dt: &dt_t,
                    a: &a_t,
                    b: &b_t,
                    c: &c_t,
                    d: Some(&d_t),
                    z: Some(&z_t),
                    dt_bias: Some(&bias_t),
                    state_batch_indices: None,
                    dt_softplus: true,
                },
                &out,
            )?;
            batch.run_timed()
        });
        group.throughput(Throughput::Bytes(cost.bytes));
        group.bench_function(format!("cpu/{label}"), |bench| {
            bench.iter(|| {
                state_update(&StateUpdateHost {
                    dims,
                    state: &state,
                    x: &x,
                    dt: &dt,
                    a: &a,
                    b: &b,
                    c: &cm,
                    d: Some(&d),
                    z: Some(&z),
                    dt_bias: Some(&bias),
                    slots: None,
                    dt_softplus: true,
                })
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
