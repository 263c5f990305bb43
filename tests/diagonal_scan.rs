//! Conformance of `diagonal_scan` (the S4D / S5 diagonal complex LTI scan) against its f64
//! sequential CPU reference on both devices (subgroup and shared-memory scans), with both
//! strategies (row-sequential and chunked parallel-in-time) forced, and Auto's choice: random S4D
//! parameters, ragged lengths, L = 1, L several workgroup chunks long, every discretisation,
//! poisoned outputs, error cases; and the end-to-end HiPPO path: a LegS-initialised diagonal SSM
//! on the GPU reproduces the dense CPU LegS (normal part) system on a smooth signal.
//!
//! Tolerance: |y − ref| ≤ 2e-4 + 1e-3·|ref| (`testing::diagonal_scan::TOLERANCE`): f32 state
//! carried over up to thousands of steps, N complex modes summed per output.
//!
//! Half u and y (f16 or bf16; parameters f32): the reference is fed the same rounded u, widened,
//! so the f32 bound holds up to the store of y, which rounds once: y within 2e-4 + (1e-3 +
//! 2^-8)·|ref| for bf16 (unit roundoff of 7 stored bits, nearest even), 2e-4 + (1e-3 +
//! 2^-10)·|ref| for f16 (one ulp of 10 stored bits: `pack2x16float` may return either
//! neighbour) (`y_tolerance`).

mod common;
use common::*;
use ssm_mla::hippo::diagonal::legs_nplr;
use ssm_mla::hippo::{discretise, simulate, Discretisation, C64};
use ssm_mla::ops::diagonal_scan::{
    diagonal_scan, DiagonalScan, DiagonalSsmHost, Dims, MAX_MODES, T, WG,
};
use ssm_mla::ops::selective_scan::ScanStrategy;
use ssm_mla::testing::diagonal_scan::{y_tolerance, Problem, TOLERANCE};
use ssm_mla::{DType, Tolerance};

const STRATEGIES: [ScanStrategy; 2] = [ScanStrategy::RowSequential, ScanStrategy::ChunkedParallel];

fn dims(batch: usize, channels: usize, len: usize, modes: usize) -> Dims {
    Dims {
        batch,
        channels,
        len,
        modes,
    }
}

/// y of `p` on the GPU with `strategy` (checked to be the one recorded), y poisoned.
fn run_case(
    gpu: &ssm_mla::Gpu,
    p: &Problem,
    method: Discretisation,
    strategy: ScanStrategy,
) -> Vec<f32> {
    let op = DiagonalScan::with_strategy(gpu, strategy).unwrap();
    if strategy != ScanStrategy::Auto {
        assert_eq!(op.strategy_for(p.dims()), strategy);
    }
    pollster::block_on(p.run(gpu, &op, method)).unwrap()
}

#[test]
fn matches_the_sequential_recurrence() {
    let chunk = (WG * T) as usize;
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("diagonal_scan");
        let op = DiagonalScan::new(&gpu).unwrap();
        eprintln!(
            "{name}: subgroup scan = {}, rows 4 steps per access = {}",
            op.uses_subgroups(),
            op.rows_read_vec4(8)
        );
        let cpu = gpu.adapter_info().device_type == wgpu::DeviceType::Cpu;
        assert_eq!(
            op.rows_read_vec4(8),
            cpu,
            "{name}: VEC4 rows on CPU devices"
        );
        assert!(!op.rows_read_vec4(6), "{name}: VEC4 rows need L % 4 = 0");
        for (bt, h, l, n, method) in [
            (1usize, 1usize, 1usize, 1usize, Discretisation::Zoh),
            (1, 1, 1, 5, Discretisation::Bilinear),
            (2, 3, 7, 4, Discretisation::Zoh),
            (1, 2, 129, 16, Discretisation::Bilinear),
            (3, 2, chunk - 1, 3, Discretisation::Zoh),
            (1, 1, chunk, 2, Discretisation::Bilinear),
            (2, 1, chunk + 1, 6, Discretisation::Zoh),
            (1, 2, 3 * chunk + 101, 16, Discretisation::Zoh),
            (1, 2, 2 * chunk + 5, 8, Discretisation::Bilinear),
            (1, 1, 300, 7, Discretisation::ForwardEuler),
            (1, 1, 300, 7, Discretisation::BackwardEuler),
            (2, 3, 50, 17, Discretisation::Bilinear),
            (1, 2, 90, 40, Discretisation::Zoh),
            // L % 4 = 0: CPU devices read these rows 4 steps per access, over one, two and
            // three passes of modes.
            (1, 1, 8, 1, Discretisation::Zoh),
            (2, 3, 52, 17, Discretisation::Bilinear),
            (1, 2, 4, 40, Discretisation::Zoh),
        ] {
            let mut p = Problem::random(&mut rng, dims(bt, h, l, n));
            if method == Discretisation::ForwardEuler {
                // Forward Euler is only stable for Δ < 1/|λ|² (here |λ| ≤ 6π): keep it there.
                p.ssm.dt = vec![1e-3; h];
            }
            let reference = p.reference(method).unwrap();
            for strategy in STRATEGIES {
                let out = run_case(&gpu, &p, method, strategy);
                assert_close(
                    &format!(
                        "{name} {} Bt={bt} H={h} L={l} N={n} {method}",
                        strategy.name()
                    ),
                    &out,
                    &reference,
                    TOLERANCE,
                    seed,
                );
            }
        }
    }
}

#[test]
fn s4d_inv_and_large_mode_counts() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("diagonal_scan s4d-inv");
        let (bt, h, l, n) = (1usize, 2usize, 700usize, MAX_MODES);
        let c: Vec<Vec<C64>> = (0..h)
            .map(|_| {
                (0..n)
                    .map(|_| C64::new(rng.normal() * 0.1, rng.normal() * 0.1))
                    .collect()
            })
            .collect();
        let host = DiagonalSsmHost::s4d(true, n, &c, &[0.01, 0.003], &[0.5, -1.0]).unwrap();
        let p = Problem::with_ssm(&mut rng, host, bt, l);
        for method in [Discretisation::Zoh, Discretisation::Bilinear] {
            let reference = p.reference(method).unwrap();
            for strategy in STRATEGIES {
                let out = run_case(&gpu, &p, method, strategy);
                assert_close(
                    &format!("{name} {} S4D-Inv N={n} {method}", strategy.name()),
                    &out,
                    &reference,
                    TOLERANCE,
                    seed,
                );
            }
        }
    }
}

/// The HiPPO path end to end: dense LegS normal system on the CPU (f64, nalgebra) vs its
/// diagonalisation scanned on the GPU.
#[test]
fn legs_diagonal_ssm_on_the_gpu_matches_the_dense_cpu_system() {
    let n = 16; // real LegS state size → 8 complex modes
    let l = 1500;
    let dt = 1.0 / 500.0;
    let signal: Vec<f64> = (0..l)
        .map(|k| {
            let t = k as f64 * dt;
            (2.0 * std::f64::consts::PI * 0.9 * t).sin() + 0.5 * (5.0 * t).cos()
        })
        .collect();
    let u_host: Vec<f32> = signal.iter().map(|&v| v as f32).collect();
    // Two channels: two output rows C, different feed-through.
    let rows: Vec<Vec<f64>> = vec![
        (0..n).map(|i| 1.0 / (1.0 + i as f64)).collect(),
        (0..n)
            .map(|i| if i % 2 == 0 { 0.5 } else { -0.25 })
            .collect(),
    ];
    let d = [0.0, 0.3];
    let host = DiagonalSsmHost::legs(n, &rows, &[dt, dt], &d).unwrap();
    assert_eq!(host.modes, n / 2);
    let (a_normal, _, b) = legs_nplr(n).unwrap();
    for method in [Discretisation::Zoh, Discretisation::Bilinear] {
        let (ad, bd) = discretise(&a_normal, &b, dt, method).unwrap();
        let states = simulate(&ad, &bd, &signal);
        let mut dense = Vec::new();
        for (h, row) in rows.iter().enumerate() {
            for (x, &u) in states.iter().zip(&signal) {
                dense.push(x.iter().zip(row).map(|(x, c)| x * c).sum::<f64>() + d[h] * u);
            }
        }
        // The input is the same for both channels: u (1, 2, L).
        let p = Problem {
            ssm: host.clone(),
            batch: 1,
            len: l,
            u: u_host.iter().chain(u_host.iter()).copied().collect(),
            dtype: DType::F32,
        };
        for (name, gpu) in gpus() {
            for strategy in STRATEGIES {
                let out = run_case(&gpu, &p, method, strategy);
                assert_close(
                    &format!(
                        "{name} {} LegS N={n} {method}: GPU diagonal vs CPU dense",
                        strategy.name()
                    ),
                    &out,
                    &dense,
                    Tolerance::new(5e-4, 2e-3),
                    0,
                );
            }
        }
    }
}

#[test]
fn rejects_bad_shapes_and_records_nothing() {
    let gpu = gpu();
    let mut rng = rng("diagonal_scan errors").0;
    let host = DiagonalSsmHost::random(&mut rng, 2, 4);
    let ssm = host.upload(&gpu).unwrap();
    let op = DiagonalScan::new(&gpu).unwrap();
    let u = gpu.upload_f32(&[1, 2, 5], &[0.0; 10]).unwrap();
    let y = gpu.nan_f32(&[1, 2, 5]).unwrap();
    let expect_err = |u: &ssm_mla::Tensor,
                      ssm: &ssm_mla::ops::diagonal_scan::DiagonalSsmTensors,
                      y: &ssm_mla::Tensor,
                      needle: &str| {
        let mut batch = gpu.batch();
        let err = op
            .record(&mut batch, u, ssm, y, Discretisation::Zoh)
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
        assert_eq!(batch.dispatches(), 0, "nothing may be recorded on error");
    };
    // u with the wrong channel count, y of another shape, L = 0.
    expect_err(
        &gpu.upload_f32(&[1, 3, 5], &[0.0; 15]).unwrap(),
        &ssm,
        &y,
        "`u`",
    );
    expect_err(&u, &ssm, &gpu.nan_f32(&[1, 2, 4]).unwrap(), "`y`");
    expect_err(&gpu.empty(&[1, 2, 0], DType::F32).unwrap(), &ssm, &y, "`u`");
    expect_err(&gpu.upload_f32(&[10], &[0.0; 10]).unwrap(), &ssm, &y, "`u`");
    // Parameters: b of the wrong shape, dt missing a channel, lambda not complex, too many modes.
    let mut bad = ssm.clone();
    bad.b = gpu.upload_f32(&[2, 3, 2], &[0.0; 12]).unwrap();
    expect_err(&u, &bad, &y, "`b`");
    let mut bad = ssm.clone();
    bad.dt = gpu.upload_f32(&[1], &[0.1]).unwrap();
    expect_err(&u, &bad, &y, "`dt`");
    let mut bad = ssm.clone();
    bad.lambda = gpu.upload_f32(&[2, 4], &[0.0; 8]).unwrap();
    expect_err(&u, &bad, &y, "`lambda`");
    let big = DiagonalSsmHost::random(&mut rng, 1, MAX_MODES + 1)
        .upload(&gpu)
        .unwrap();
    let u1 = gpu.upload_f32(&[1, 1, 5], &[0.0; 5]).unwrap();
    let y1 = gpu.nan_f32(&[1, 1, 5]).unwrap();
    expect_err(&u1, &big, &y1, "`lambda`");
    let mut bad = ssm.clone();
    bad.d = gpu.upload(&[2], DType::U32, &[0u32, 1]).unwrap();
    expect_err(&u, &bad, &y, "`d`");
    // Host-side builders refuse inconsistent inputs.
    assert!(DiagonalSsmHost::legs(4, &[vec![1.0; 3]], &[0.1], &[0.0]).is_err());
    assert!(DiagonalSsmHost::legs(4, &[vec![1.0; 4]], &[0.1, 0.2], &[0.0]).is_err());
    assert!(DiagonalSsmHost::from_ssms(&[], &[], &[]).is_err());
}

#[test]
fn convenience_function_and_pipeline_reuse() {
    let gpu = gpu();
    let (mut rng, seed) = rng("diagonal_scan convenience");
    let p = Problem::random(&mut rng, dims(1, 3, 40, 5));
    let t = p.upload(&gpu).unwrap();
    let y = diagonal_scan(&gpu, &t.u, &t.ssm, Discretisation::Zoh).unwrap();
    let before = gpu.cached_pipelines();
    let y2 = diagonal_scan(&gpu, &t.u, &t.ssm, Discretisation::Bilinear).unwrap();
    assert_eq!(gpu.cached_pipelines(), before, "the pipeline is built once");
    let reference = p.reference(Discretisation::Zoh).unwrap();
    assert_close(
        "convenience zoh",
        &gpu.read_f32(&y).unwrap(),
        &reference,
        TOLERANCE,
        seed,
    );
    let reference = p.reference(Discretisation::Bilinear).unwrap();
    assert_close(
        "convenience bilinear",
        &gpu.read_f32(&y2).unwrap(),
        &reference,
        TOLERANCE,
        seed,
    );
}

/// Auto's choice: always row-sequential on a CPU device; on a GPU chunked only for few long rows
/// (the selective scan's rule, rows = Bt·H); and an Auto op on this device records what it says.
#[test]
fn auto_strategy_choice() {
    let on = |d: Dims, device| {
        ScanStrategy::Auto.resolve_sizes(d.batch * d.channels, d.modes, d.len, device)
    };
    let gpu_type = wgpu::DeviceType::DiscreteGpu;
    assert_eq!(
        on(dims(1, 4, 8192, 16), gpu_type),
        ScanStrategy::ChunkedParallel
    );
    assert_eq!(
        on(dims(1, 2, 512, 16), gpu_type),
        ScanStrategy::RowSequential
    );
    assert_eq!(
        on(dims(1, 2, 513, 16), gpu_type),
        ScanStrategy::ChunkedParallel
    );
    assert_eq!(
        on(dims(4, 1024, 4096, 16), gpu_type),
        ScanStrategy::RowSequential
    );
    // N counts in blocks of 16 modes: 1000 rows × 2 blocks = 2000 < 2048, × 3 blocks is not.
    assert_eq!(
        on(dims(1, 1000, 600, 32), gpu_type),
        ScanStrategy::ChunkedParallel
    );
    assert_eq!(
        on(dims(1, 1000, 600, 33), gpu_type),
        ScanStrategy::RowSequential
    );
    for d in [
        dims(1, 4, 8192, 16),
        dims(1, 256, 256, 16),
        dims(1, 1, 100_000, 128),
    ] {
        assert_eq!(on(d, wgpu::DeviceType::Cpu), ScanStrategy::RowSequential);
    }
    // Explicit strategies are kept whatever the sizes.
    for s in STRATEGIES {
        assert_eq!(s.resolve_sizes(1, 16, 8192, wgpu::DeviceType::Cpu), s);
        assert_eq!(s.resolve_sizes(4096, 16, 8, gpu_type), s);
    }
    // This device: the op built with Auto reports and records the resolved strategy, which
    // computes the right answer.
    let gpu = gpu();
    let device = gpu.adapter_info().device_type;
    let op = DiagonalScan::new(&gpu).unwrap();
    assert_eq!(op.strategy(), ScanStrategy::Auto);
    let d = dims(1, 2, 700, 16);
    assert_eq!(op.strategy_for(d), on(d, device));
    if device == wgpu::DeviceType::Cpu {
        assert_eq!(op.strategy_for(d), ScanStrategy::RowSequential);
    }
    let (mut rng, seed) = rng("diagonal_scan auto");
    let p = Problem::random(&mut rng, dims(1, 2, 700, 16));
    let out = run_case(&gpu, &p, Discretisation::Zoh, ScanStrategy::Auto);
    let reference = p.reference(Discretisation::Zoh).unwrap();
    assert_close("auto", &out, &reference, TOLERANCE, seed);
}

/// A size read from one tensor and checked on another: the error names both tensors, their
/// shapes and the dimension.
#[test]
fn disagreeing_inputs_are_named_together() {
    let gpu = gpu();
    let mut rng = rng("diagonal_scan disagreements").0;
    let ssm = DiagonalSsmHost::random(&mut rng, 2, 4)
        .upload(&gpu)
        .unwrap();
    let op = DiagonalScan::new(&gpu).unwrap();
    let u = gpu.nan_f32(&[1, 2, 5]).unwrap();
    let y = gpu.nan_f32(&[1, 2, 5]).unwrap();
    let message = |u: &ssm_mla::Tensor, ssm: &ssm_mla::ops::diagonal_scan::DiagonalSsmTensors| {
        let mut batch = gpu.batch();
        let err = op
            .record(&mut batch, u, ssm, &y, Discretisation::Zoh)
            .unwrap_err();
        assert!(matches!(err, ssm_mla::Error::Mismatch { .. }), "{err:?}");
        assert_eq!(batch.dispatches(), 0);
        err.to_string()
    };
    assert_eq!(
        message(&gpu.nan_f32(&[1, 3, 5]).unwrap(), &ssm),
        "tensors `lambda` (2, 4, 2) and `u` (1, 3, 5) disagree on H: 2 vs 3"
    );
    let mut bad = ssm.clone();
    bad.c = gpu.nan_f32(&[2, 5, 2]).unwrap();
    assert_eq!(
        message(&u, &bad),
        "tensors `lambda` (2, 4, 2) and `c` (2, 5, 2) disagree on N: 4 vs 5"
    );
    let mut bad = ssm.clone();
    bad.d = gpu.nan_f32(&[3]).unwrap();
    assert_eq!(
        message(&u, &bad),
        "tensors `lambda` (2, 4, 2) and `d` (3) disagree on H: 2 vs 3"
    );
}

/// Half u and y for both strategies on both devices: size 1, odd H and ragged odd L (rows sharing
/// a u32 word of y), several chunks, N > 16 (chunked whatever the strategy, so that y is
/// rounded once); y NaN-poisoned in its dtype.
#[test]
fn half_u_and_y_every_strategy() {
    let chunk = (WG * T) as usize;
    let cases = [
        (1usize, 1usize, 1usize, 1usize, Discretisation::Zoh),
        (2, 3, 7, 5, Discretisation::Bilinear),
        (1, 3, chunk + 37, 16, Discretisation::Zoh),
        (2, 3, 51, 21, Discretisation::Bilinear),
    ];
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("diagonal_scan half");
        let ops = STRATEGIES.map(|s| DiagonalScan::with_strategy(&gpu, s).unwrap());
        for dtype in [DType::F16, DType::BF16] {
            for (bt, h, l, n, method) in cases {
                let p = Problem::random(&mut rng, dims(bt, h, l, n)).with_dtype(dtype);
                let reference = p.reference(method).unwrap();
                for op in &ops {
                    let strategy = op.strategy_for_dtype(p.dims(), dtype);
                    if n > 16 {
                        assert_eq!(strategy, ScanStrategy::ChunkedParallel);
                    } else {
                        assert_eq!(strategy, op.strategy());
                    }
                    let out = pollster::block_on(p.run(&gpu, op, method)).unwrap();
                    assert_close(
                        &format!(
                            "{name} {dtype} {} Bt={bt} H={h} L={l} N={n} {method}",
                            op.strategy().name()
                        ),
                        &out,
                        &reference,
                        y_tolerance(dtype),
                        seed,
                    );
                }
            }
        }
    }
}

/// y must have u's dtype, u a float dtype, the parameters f32: dtype errors name the tensor.
#[test]
fn half_dtype_mismatches_are_named() {
    let gpu = gpu();
    let mut rng = rng("diagonal_scan half errors").0;
    let ssm = DiagonalSsmHost::random(&mut rng, 2, 4)
        .upload(&gpu)
        .unwrap();
    let op = DiagonalScan::new(&gpu).unwrap();
    let t = |dtype| gpu.empty(&[1, 2, 5], dtype).unwrap();
    let mut half_lambda = ssm.clone();
    half_lambda.lambda = gpu.empty(&[2, 4, 2], DType::F16).unwrap();
    for (u, ssm, y, name, expected) in [
        (t(DType::F16), &ssm, t(DType::F32), "`y`", "f16"),
        (t(DType::BF16), &ssm, t(DType::F16), "`y`", "bf16"),
        (
            t(DType::I32),
            &ssm,
            t(DType::I32),
            "`u`",
            "f32, f16 or bf16",
        ),
        (
            t(DType::F16),
            &half_lambda,
            t(DType::F16),
            "`lambda`",
            "f32",
        ),
    ] {
        let mut batch = gpu.batch();
        let err = op
            .record(&mut batch, &u, ssm, &y, Discretisation::Zoh)
            .unwrap_err();
        assert!(matches!(err, ssm_mla::Error::DType { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(name) && msg.contains(expected),
            "{name}: {msg}"
        );
        assert_eq!(batch.dispatches(), 0, "{msg}");
    }
}
