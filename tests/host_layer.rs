//! The shared host layer: pipeline caching, staging reuse, error capture instead of panics,
//! dispatch splitting, timing sources, adopting an app's device, and use from several threads.

mod common;
use common::*;
use ssm_mla::ops::fma_peak::{FmaPeak, FmaPeakParams};
use ssm_mla::ops::stream_copy::StreamCopy;
use ssm_mla::{reference, Error, Gpu, GpuOptions, Shader, TimingSource, Tolerance};
use std::sync::Arc;

#[test]
fn gpu_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Gpu>();
    assert_send_sync::<ssm_mla::Tensor>();
}

#[test]
fn pipelines_are_built_once_per_specialisation() {
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let a = StreamCopy::new(&gpu).unwrap();
    let n = gpu.cached_pipelines();
    for _ in 0..5 {
        let _ = StreamCopy::new(&gpu).unwrap();
    }
    assert_eq!(
        gpu.cached_pipelines(),
        n,
        "same constants must hit the cache"
    );
    let _ = StreamCopy::with_shape(&gpu, 64, 2).unwrap();
    assert_eq!(
        gpu.cached_pipelines(),
        n + 1,
        "new constants build one pipeline"
    );
    drop(a);
}

#[test]
fn readback_reuses_staging_buffers() {
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let t = gpu.upload_f32(&[1000], &vec![2.0; 1000]).unwrap();
    for _ in 0..10 {
        assert_eq!(gpu.read_f32(&t).unwrap()[999], 2.0);
    }
    assert_eq!(
        gpu.pooled_staging_buffers(),
        1,
        "ten reads of one size share one staging buffer"
    );
}

#[test]
fn invalid_shader_is_an_error_not_a_panic() {
    let gpu = gpu();
    let bad = Shader::external("test/not_wgsl", "this is not WGSL");
    match gpu.kernel(&bad, &[]) {
        Err(Error::Gpu { context, .. }) => assert!(context.contains("test/not_wgsl"), "{context}"),
        other => panic!("expected a GPU validation error, got {other:?}"),
    }
    // The context stays usable.
    let op = StreamCopy::new(&gpu).unwrap();
    let src = gpu.upload_f32(&[3], &[1.0, 2.0, 3.0]).unwrap();
    let dst = gpu.nan_f32(&[3]).unwrap();
    let mut batch = gpu.batch();
    op.record(&mut batch, &src, &dst).unwrap();
    batch.run().unwrap();
    assert_eq!(gpu.read_f32(&dst).unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn unknown_override_is_an_error() {
    let gpu = gpu();
    let err = gpu
        .kernel(
            &ssm_mla::ops::stream_copy::SHADER,
            &[("NO_SUCH_CONSTANT", 1.0)],
        )
        .unwrap_err();
    assert!(matches!(err, Error::Gpu { .. }), "{err}");
}

#[test]
fn wrong_sized_write_is_refused() {
    let gpu = gpu();
    let t = gpu.nan_f32(&[4]).unwrap();
    assert!(gpu.write(&t, &[1.0f32; 3]).is_err());
}

#[test]
fn dispatches_past_the_per_dimension_limit_are_split() {
    // 300 workgroups with a limit of 64 per dimension: a 2-D grid the shaders flatten.
    let gpu = Gpu::with_options(&GpuOptions {
        max_workgroups_per_dimension: Some(64),
        ..Default::default()
    })
    .expect("GPU tests need an adapter");
    assert_eq!(gpu.grid(300).unwrap(), [60, 5, 1]);
    assert!(gpu.grid(64 * 64 + 1).is_err());
    let (mut rng, seed) = rng("split dispatch");
    let n = 300 * 256 - 17;
    let data = rng.uniform_vec(n, -1.0, 1.0);
    let params = FmaPeakParams {
        iters: 8,
        m: 0.5,
        c: 0.25,
    };
    let seeds = gpu.upload_f32(&[n], &data).unwrap();
    let out = gpu.nan_f32(&[n]).unwrap();
    let mut batch = gpu.batch();
    FmaPeak::new(&gpu)
        .unwrap()
        .record(&mut batch, &seeds, &out, params)
        .unwrap();
    batch.run().unwrap();
    assert_close(
        "2-D grid",
        &gpu.read_f32(&out).unwrap(),
        &reference::fma_peak::fma_peak(&data, params),
        Tolerance::new(1e-5, 1e-5),
        seed,
    );
}

#[test]
fn timing_uses_timestamps_when_offered_and_wall_clock_otherwise() {
    let run = |gpu: &Gpu| {
        let src = gpu.upload_f32(&[4096], &vec![1.0; 4096]).unwrap();
        let dst = gpu.nan_f32(&[4096]).unwrap();
        let mut batch = gpu.batch();
        StreamCopy::new(gpu)
            .unwrap()
            .record(&mut batch, &src, &dst)
            .unwrap();
        batch.run_timed().unwrap()
    };
    let with = gpu();
    let t = run(&with);
    let expected = if with.has_timestamps() {
        TimingSource::GpuTimestamps
    } else {
        TimingSource::WallClock
    };
    assert_eq!(t.source, expected);
    assert!(t.seconds > 0.0 && t.seconds < 10.0, "{t:?}");
    let without = gpu_without_optional_features();
    let t = run(&without);
    assert_eq!(t.source, TimingSource::WallClock);
    assert!(t.seconds > 0.0, "{t:?}");
}

#[test]
fn several_ops_in_one_submission() {
    let gpu = gpu();
    let copy = StreamCopy::new(&gpu).unwrap();
    let a = gpu.upload_f32(&[5], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let b = gpu.nan_f32(&[5]).unwrap();
    let c = gpu.nan_f32(&[5]).unwrap();
    let mut batch = gpu.batch();
    copy.record(&mut batch, &a, &b).unwrap();
    copy.record(&mut batch, &b, &c).unwrap(); // reads what the first dispatch wrote
    assert_eq!(batch.dispatches(), 2);
    batch.run().unwrap();
    assert_eq!(gpu.read_f32(&c).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn adopts_an_app_owned_device() {
    let adapter = ssm_mla::runtime::adapter_from_env().expect("GPU tests need an adapter");
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))
            .expect("device");
    let gpu = Gpu::from_device(device, queue);
    assert!(
        !gpu.has_subgroups(),
        "features are the app's, not requested anew"
    );
    let t = gpu.upload_f32(&[2], &[3.0, 4.0]).unwrap();
    let u = ssm_mla::ops::stream_copy::stream_copy(&gpu, &t).unwrap();
    assert_eq!(gpu.read_f32(&u).unwrap(), vec![3.0, 4.0]);
}

#[test]
fn one_context_serves_several_threads() {
    let gpu = gpu();
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let gpu = Arc::clone(&gpu);
            std::thread::spawn(move || {
                for round in 0..5 {
                    let n = 1000 + 37 * k + round;
                    let data: Vec<f32> = (0..n).map(|i| (i * (k + 1)) as f32).collect();
                    if k % 2 == 0 {
                        let src = gpu.upload_f32(&[n], &data).unwrap();
                        let dst = ssm_mla::ops::stream_copy::stream_copy(&gpu, &src).unwrap();
                        assert_eq!(gpu.read_f32(&dst).unwrap(), data);
                    } else {
                        let params = FmaPeakParams {
                            iters: 8,
                            m: 0.5,
                            c: 0.5,
                        };
                        let small: Vec<f32> = data.iter().map(|x| x / n as f32).collect();
                        let seeds = gpu.upload_f32(&[n], &small).unwrap();
                        let out = gpu.nan_f32(&[n]).unwrap();
                        let mut batch = gpu.batch();
                        FmaPeak::new(&gpu)
                            .unwrap()
                            .record(&mut batch, &seeds, &out, params)
                            .unwrap();
                        batch.run().unwrap();
                        let c = ssm_mla::compare(
                            &gpu.read_f32(&out).unwrap(),
                            &reference::fma_peak::fma_peak(&small, params),
                            Tolerance::new(1e-5, 1e-5),
                        );
                        assert!(c.passed(), "thread {k}: {c}");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
}

#[test]
fn steady_state_loops_create_no_gpu_objects_per_step() {
    // A private context so other tests' work does not move the counters.
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let op = StreamCopy::new(&gpu).unwrap();
    let a = gpu.upload_f32(&[4096], &vec![1.0; 4096]).unwrap();
    let b = gpu.nan_f32(&[4096]).unwrap();
    let step = |gpu: &Gpu| {
        let mut batch = gpu.batch();
        op.record(&mut batch, &a, &b).unwrap();
        op.record(&mut batch, &b, &a).unwrap();
        batch.run().unwrap();
    };
    step(&gpu);
    step(&gpu);
    let warm = gpu.resource_counters();
    let pipelines = gpu.cached_pipelines();
    for _ in 0..50 {
        step(&gpu);
    }
    assert_eq!(
        gpu.resource_counters(),
        warm,
        "no bind group or uniform buffer per step"
    );
    assert_eq!(gpu.cached_pipelines(), pipelines);
    assert_eq!(gpu.read_f32(&a).unwrap(), vec![1.0; 4096]);
}

#[test]
fn batch_writes_land_in_stream_order() {
    let gpu = gpu();
    let op = StreamCopy::new(&gpu).unwrap();
    let src = gpu.nan_f32(&[3]).unwrap();
    let first = gpu.nan_f32(&[3]).unwrap();
    let second = gpu.nan_f32(&[3]).unwrap();
    let mut batch = gpu.batch();
    batch.write(&src, 0, &[1.0f32, 2.0, 3.0]).unwrap();
    op.record(&mut batch, &src, &first).unwrap();
    batch.write(&src, 1, &[20.0f32]).unwrap(); // after the first copy, before the second
    op.record(&mut batch, &src, &second).unwrap();
    assert!(
        batch.write(&src, 2, &[1.0f32, 2.0]).is_err(),
        "past the end"
    );
    assert!(
        matches!(batch.write(&src, 0, &[1u32]), Err(Error::DType { .. })),
        "wrong element type"
    );
    batch.run().unwrap();
    assert_eq!(gpu.read_f32(&first).unwrap(), vec![1.0, 2.0, 3.0]);
    assert_eq!(gpu.read_f32(&second).unwrap(), vec![1.0, 20.0, 3.0]);
}

#[test]
fn the_quotient_fragment_divides_exactly() {
    // `common/divide`'s f32 division with one correction, which kernels use for run-time
    // divisors, against integer division: every n below 2^12 by divisors 1..64 and ranging
    // divisors, and samples up to its bound of 2^21 (quotients next to integers included).
    // Where division is correctly rounded (lavapipe) the correction never fires; it covers
    // GPUs, whose f32 division WGSL allows 2.5 ulp.
    const SOURCE: &str = "#include \"common/divide\"
struct Params { count: u32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> pairs: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * groups.x) * 64u + lid;
    if (i < params.count) {
        out[i] = quotient(pairs[i].x, pairs[i].y);
    }
}
";
    let gpu = gpu();
    let kernel = gpu
        .kernel(&Shader::external("test/quotient", SOURCE), &[])
        .unwrap();
    let (mut rng, seed) = rng("quotient");
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for d in (1..=64).chain([100, 255, 256, 1000, 4095, 4096]) {
        pairs.extend((0..1 << 12).map(|n| (n, d)));
    }
    for _ in 0..20_000 {
        let d = 1 + rng.below(1 << 12) as u32;
        let q = rng.below((1 << 21) / d as usize) as u32;
        for n in [q * d, (q * d).saturating_sub(1), q * d + d - 1] {
            if n < 1 << 21 {
                pairs.push((n, d));
            }
        }
        pairs.push((rng.below(1 << 21) as u32, 1 + rng.below(1 << 21) as u32));
    }
    let flat: Vec<u32> = pairs.iter().flat_map(|&(n, d)| [n, d]).collect();
    let input = gpu
        .upload(&[pairs.len(), 2], ssm_mla::DType::U32, &flat)
        .unwrap();
    let out = gpu
        .upload(
            &[pairs.len()],
            ssm_mla::DType::U32,
            &vec![u32::MAX; pairs.len()],
        )
        .unwrap();
    let mut batch = gpu.batch();
    batch
        .dispatch(
            &kernel,
            &[pairs.len() as u32, 0, 0, 0],
            &[(&input).into(), (&out).into()],
            pairs.len().div_ceil(64) as u32,
        )
        .unwrap();
    batch.run().unwrap();
    let got: Vec<u32> = gpu.read(&out).unwrap();
    for (&(n, d), &q) in pairs.iter().zip(&got) {
        assert_eq!(q, n / d, "quotient({n}, {d}) (seed {seed})");
    }
}
