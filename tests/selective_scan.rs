//! Conformance of the selective scan against the f64 CPU reference, for BOTH strategies run
//! explicitly (row-sequential, and chunked parallel-in-time whose subgroup and shared-memory
//! variants run on the two devices of `common::gpus()`): every option combination, constant /
//! variable / grouped B and C, ragged L (1, 7, > one chunk of 512, 2049), several N (1, 5, 16,
//! 64, 256), poisoned outputs; scanning two halves equals one scan; splitting over storage
//! bindings and over a 2-D grid; what `Auto` picks; error cases.
//!
//! Tolerance: |gpu − ref| ≤ 5e-4 + 1e-3·|ref| for out and last_state: an f32 state carried over
//! up to L = 2049 steps (products of L decays, reordered by the parallel scan) and sums over N
//! terms of both signs. A survey over 30 seeds saw at most 0.18 of this allowance (err 1.8e-4 at
//! L = 2049); `mamba_ssm`'s own f32 test allows rtol 6e-4, atol 2e-3.
//!
//! Half inputs (u, delta, z, out in f16 or bf16; B and C f32 or that dtype; the rest f32): the
//! reference is fed the same rounded inputs, widened, so the f32 bound holds up to the store of
//! out, which rounds once: out within 5e-4 + (1e-3 + 2^-8)·|ref| for bf16 (unit roundoff of 7
//! stored bits, nearest even) and 5e-4 + (1e-3 + 2^-10)·|ref| for f16 (one ulp of 10 stored
//! bits: `pack2x16float` may return either neighbour) (`out_tolerance`; mamba_ssm tests bf16 at
//! rtol 5e-2, atol 1e-1). last_state is f32 and keeps 5e-4 + 1e-3·|ref|.

mod common;
use common::*;
use ssm_mla::ops::selective_scan::{
    BcLayout, ScanDims, ScanOptions, ScanStrategy, SelectiveScan, SelectiveScanInputs,
};
use ssm_mla::testing::selective_scan::{dims, out_tolerance, Problem, ALL, TOLERANCE as TOL};
use ssm_mla::{DType, Gpu, GpuOptions, Rng};

/// Both strategies, each run explicitly by every conformance test.
const STRATEGIES: [ScanStrategy; 2] = [ScanStrategy::RowSequential, ScanStrategy::ChunkedParallel];

/// The options of bits 0..5: D, z, delta_bias, softplus, initial_state.
fn options(bits: u32) -> ScanOptions {
    ScanOptions {
        d: bits & 1 != 0,
        z: bits & 2 != 0,
        delta_bias: bits & 4 != 0,
        delta_softplus: bits & 8 != 0,
        initial_state: bits & 16 != 0,
    }
}

#[allow(clippy::too_many_arguments)]
fn make(
    rng: &mut Rng,
    bt: usize,
    dim: usize,
    l: usize,
    n: usize,
    bl: BcLayout,
    cl: BcLayout,
    o: ScanOptions,
) -> Problem {
    Problem::random(rng, dims(bt, dim, l, n, bl, cl), o)
}

/// Run on the GPU with poisoned outputs; (out, last_state).
fn run_gpu(
    p: &Problem,
    gpu: &Gpu,
    strategy: ScanStrategy,
) -> ssm_mla::Result<(Vec<f32>, Vec<f32>)> {
    let op = SelectiveScan::with_strategy(gpu, strategy)?;
    if strategy != ScanStrategy::Auto {
        assert_eq!(op.strategy_for(&p.dims), strategy);
    }
    pollster::block_on(p.run(gpu, &op))
}

/// Both strategies against the reference.
fn check(p: &Problem, gpu: &Gpu, what: &str, seed: u64) {
    let want = p.reference().unwrap();
    for strategy in STRATEGIES {
        let (out, last) = run_gpu(p, gpu, strategy).unwrap();
        assert_close(
            &format!("{what} {strategy:?} out"),
            &out,
            &want.out,
            TOL,
            seed,
        );
        assert_close(
            &format!("{what} {strategy:?} last_state"),
            &last,
            &want.last_state,
            TOL,
            seed,
        );
    }
}

/// (Bt, D, L, N, B's layout, C's layout).
type Case = (usize, usize, usize, usize, BcLayout, BcLayout);

/// Every case without options and with all of them, both strategies, against the reference.
fn check_cases(name: &str, gpu: &Gpu, label: &str, cases: &[Case]) {
    let (mut rng, seed) = rng(label);
    for &(bt, dim, l, n, bl, cl) in cases {
        for o in [ScanOptions::default(), ALL] {
            let data = make(&mut rng, bt, dim, l, n, bl, cl, o);
            check(
                &data,
                gpu,
                &format!("{name} Bt={bt} D={dim} L={l} N={n} B {bl:?} C {cl:?} {o:?}"),
                seed,
            );
        }
    }
}

#[test]
fn every_option_combination() {
    for (name, gpu) in gpus() {
        let op = SelectiveScan::with_strategy(&gpu, ScanStrategy::ChunkedParallel).unwrap();
        eprintln!("{name}: chunked subgroup scan = {}", op.uses_subgroups());
        if !gpu.has_subgroups() {
            assert!(
                !op.uses_subgroups(),
                "{name}: no subgroups, shared-memory variant"
            );
        }
        let (mut rng, seed) = rng("selective_scan options");
        let layouts = [
            (BcLayout::Constant, BcLayout::Constant),
            (BcLayout::Grouped(1), BcLayout::Grouped(1)),
            (BcLayout::Grouped(3), BcLayout::Constant),
            (BcLayout::Constant, BcLayout::Grouped(3)),
        ];
        for bits in 0..32u32 {
            let (bl, cl) = layouts[bits as usize % layouts.len()];
            let o = options(bits);
            let data = make(&mut rng, 2, 3, 37, 7, bl, cl, o);
            check(
                &data,
                &gpu,
                &format!("{name} {o:?} B {bl:?} C {cl:?}"),
                seed,
            );
        }
    }
}

#[test]
fn ragged_lengths_state_sizes_and_groups() {
    let cases: &[Case] = &[
        (1, 1, 1, 1, BcLayout::Constant, BcLayout::Constant),
        (2, 3, 7, 16, BcLayout::Grouped(1), BcLayout::Grouped(1)),
        (1, 4, 2049, 16, BcLayout::Grouped(2), BcLayout::Grouped(2)),
        (2, 2, 600, 5, BcLayout::Constant, BcLayout::Grouped(1)),
        (1, 4, 513, 64, BcLayout::Grouped(4), BcLayout::Grouped(2)),
        (1, 2, 70, 256, BcLayout::Grouped(1), BcLayout::Constant),
        (3, 2, 1, 64, BcLayout::Grouped(2), BcLayout::Grouped(1)),
    ];
    for (name, gpu) in gpus() {
        check_cases(name, &gpu, "selective_scan sizes", cases);
    }
}

#[test]
fn rows_of_four_step_accesses() {
    // Rows of L % 4 = 0 steps, which CPU adapters run 4 steps per access (VEC4): subgroups that
    // share B_t and C_t (one pass; three passes, where later passes read out back), a subgroup
    // with dead lanes, constant B and C, and subgroups whose rows span requests (each state's
    // B_t and C_t loaded per lane).
    use BcLayout::{Constant, Grouped};
    let cases: &[Case] = &[
        (1, 16, 64, 16, Grouped(1), Grouped(1)),
        (2, 24, 36, 40, Grouped(3), Grouped(3)),
        (1, 5, 8, 16, Grouped(1), Constant),
        (1, 8, 12, 7, Constant, Constant),
        (3, 7, 4, 3, Grouped(1), Grouped(1)),
    ];
    for (name, gpu) in gpus() {
        let op = SelectiveScan::with_strategy(&gpu, ScanStrategy::RowSequential).unwrap();
        eprintln!(
            "{name}: rows share B_t/C_t = {}, 4 steps per access = {}",
            op.rows_share_bc(),
            op.rows_read_vec4(64)
        );
        assert_eq!(
            op.rows_read_vec4(64),
            op.rows_share_bc(),
            "{name}: VEC4 where rows share"
        );
        assert!(!op.rows_read_vec4(62), "{name}: VEC4 needs L % 4 = 0");
        check_cases(name, &gpu, "selective_scan vec4 rows", cases);
    }
}

#[test]
fn two_halves_equal_one_scan() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("selective_scan halves");
        let (bt, dim, l, n) = (2, 4, 1100, 16);
        let full = make(
            &mut rng,
            bt,
            dim,
            l,
            n,
            BcLayout::Grouped(2),
            BcLayout::Grouped(1),
            ALL,
        );
        for strategy in STRATEGIES {
            let (want_out, want_last) = run_gpu(&full, &gpu, strategy).unwrap();
            let split = 700;
            let first = full.steps(0..split);
            let (out1, last1) = run_gpu(&first, &gpu, strategy).unwrap();
            let mut second = full.steps(split..l);
            second.initial_state = Some(last1);
            let (out2, last2) = run_gpu(&second, &gpu, strategy).unwrap();
            let mut joined = vec![0.0f64; bt * dim * l];
            for row in 0..bt * dim {
                for t in 0..l {
                    joined[row * l + t] = if t < split {
                        out1[row * split + t] as f64
                    } else {
                        out2[row * (l - split) + t - split] as f64
                    };
                }
            }
            let as64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            assert_close(
                &format!("{name} {strategy:?} halves out"),
                &want_out,
                &joined,
                TOL,
                seed,
            );
            assert_close(
                &format!("{name} {strategy:?} halves last_state"),
                &want_last,
                &as64(&last2),
                TOL,
                seed,
            );
        }
        // And the whole against the reference (both strategies).
        check(&full, &gpu, &format!("{name} full"), seed);
    }
}

#[test]
fn in_place_state_and_rerun_reuse_the_pipeline() {
    let gpu = gpu();
    let (mut rng, seed) = rng("selective_scan in place");
    let data = make(
        &mut rng,
        1,
        3,
        50,
        8,
        BcLayout::Grouped(1),
        BcLayout::Grouped(1),
        ALL,
    );
    let want = data.reference().unwrap();
    let t = data.upload(&gpu).unwrap();
    let x = [data.dims.batch, data.dims.dim, data.dims.len];
    for strategy in STRATEGIES {
        let state = gpu
            .upload_f32(&[1, 3, 8], data.initial_state.as_ref().unwrap())
            .unwrap();
        let out = gpu.nan_f32(&x).unwrap();
        let op = SelectiveScan::with_strategy(&gpu, strategy).unwrap();
        let cached = gpu.cached_pipelines();
        let mut batch = gpu.batch();
        op.record(
            &mut batch,
            &SelectiveScanInputs {
                initial_state: Some(&state),
                ..t.inputs()
            },
            &out,
            &state,
        )
        .unwrap();
        batch.run().unwrap();
        assert_eq!(gpu.cached_pipelines(), cached);
        assert_close(
            &format!("{strategy:?} in-place out"),
            &gpu.read_f32(&out).unwrap(),
            &want.out,
            TOL,
            seed,
        );
        assert_close(
            &format!("{strategy:?} in-place state"),
            &gpu.read_f32(&state).unwrap(),
            &want.last_state,
            TOL,
            seed,
        );
    }
}

#[test]
fn splits_over_bindings_and_grid() {
    // A 4 KiB binding limit forces several dispatches over windows; 7 workgroups per dimension
    // force a 2-D grid, and 60 rows > 7² several dispatches.
    let gpu = Gpu::with_options(&GpuOptions {
        max_storage_binding: Some(4096),
        max_workgroups_per_dimension: Some(7),
        ..Default::default()
    })
    .expect("GPU tests need an adapter");
    let (mut rng, seed) = rng("selective_scan split");
    let data = make(
        &mut rng,
        3,
        5,
        100,
        4,
        BcLayout::Grouped(1),
        BcLayout::Constant,
        ALL,
    );
    check(&data, &gpu, "split", seed);
    let data = make(
        &mut rng,
        2,
        30,
        9,
        3,
        BcLayout::Constant,
        BcLayout::Grouped(1),
        ALL,
    );
    check(&data, &gpu, "split grid", seed);
}

fn variable(bt: usize, dim: usize, len: usize, n: usize) -> ScanDims {
    let v = BcLayout::Grouped(1);
    dims(bt, dim, len, n, v, v)
}

#[test]
fn auto_picks_chunked_for_few_long_rows_and_row_sequential_otherwise() {
    let gpu = gpu();
    let auto = SelectiveScan::new(&gpu).unwrap();
    assert_eq!(auto.strategy(), ScanStrategy::Auto);
    let few_long = variable(1, 2, 3000, 16);
    let many_short = variable(2, 1024, 64, 16);
    // On a GPU: chunked for few long rows, row-sequential otherwise, with these boundaries
    // (L = 512 is not long; 2048 row-passes fill the device; N = 32 is 2 passes).
    let on_gpu = |d: &ScanDims| ScanStrategy::Auto.resolve(d, wgpu::DeviceType::DiscreteGpu);
    assert_eq!(on_gpu(&few_long), ScanStrategy::ChunkedParallel);
    assert_eq!(on_gpu(&many_short), ScanStrategy::RowSequential);
    assert_eq!(
        on_gpu(&variable(1, 2, 512, 16)),
        ScanStrategy::RowSequential
    );
    assert_eq!(
        on_gpu(&variable(1, 2, 513, 16)),
        ScanStrategy::ChunkedParallel
    );
    assert_eq!(
        on_gpu(&variable(1, 1023, 600, 32)),
        ScanStrategy::ChunkedParallel
    );
    assert_eq!(
        on_gpu(&variable(1, 1024, 600, 32)),
        ScanStrategy::RowSequential
    );
    // On a CPU device (where barriers are fiber switches) always row-sequential.
    for d in [few_long, many_short] {
        assert_eq!(
            ScanStrategy::Auto.resolve(&d, wgpu::DeviceType::Cpu),
            ScanStrategy::RowSequential
        );
    }
    // The op resolves with its own device's type.
    let device = gpu.adapter_info().device_type;
    for d in [few_long, many_short] {
        assert_eq!(
            auto.strategy_for(&d),
            ScanStrategy::Auto.resolve(&d, device)
        );
    }
    // An explicit strategy is kept whatever the sizes.
    for s in STRATEGIES {
        let op = SelectiveScan::with_strategy(&gpu, s).unwrap();
        assert_eq!(op.strategy_for(&few_long), s);
        assert_eq!(op.strategy_for(&many_short), s);
    }
    // And Auto's choice for the few-long-rows case gives the reference's answer.
    let (mut rng, seed) = rng("selective_scan auto");
    let data = make(
        &mut rng,
        1,
        2,
        3000,
        16,
        BcLayout::Grouped(1),
        BcLayout::Grouped(1),
        ALL,
    );
    let want = data.reference().unwrap();
    let (out, last) = run_gpu(&data, &gpu, ScanStrategy::Auto).unwrap();
    assert_close("auto out", &out, &want.out, TOL, seed);
    assert_close("auto last_state", &last, &want.last_state, TOL, seed);
}

#[test]
fn rejects_bad_shapes_and_records_nothing() {
    let gpu = gpu();
    let t = |shape: &[usize]| gpu.empty(shape, DType::F32).unwrap();
    let (bt, dim, l, n) = (2, 4, 9, 8);
    let u = t(&[bt, dim, l]);
    let a = t(&[dim, n]);
    let bc = t(&[bt, n, l]);
    let out = t(&[bt, dim, l]);
    let last = t(&[bt, dim, n]);
    for strategy in [
        ScanStrategy::Auto,
        ScanStrategy::RowSequential,
        ScanStrategy::ChunkedParallel,
    ] {
        let op = SelectiveScan::with_strategy(&gpu, strategy).unwrap();
        let base = SelectiveScanInputs {
            u: &u,
            delta: &u,
            a: &a,
            b: &bc,
            c: &bc,
            d: None,
            z: None,
            delta_bias: None,
            initial_state: None,
            delta_softplus: false,
        };
        let bad_delta = t(&[bt, dim, l + 1]);
        let g3 = t(&[bt, 3, n, l]); // G = 3 does not divide D = 4
        let a_big = t(&[dim, 257]);
        let bc_big = t(&[bt, 257, l]);
        let last_big = t(&[bt, dim, 257]);
        let d_bad = t(&[dim + 1]);
        let z_bad = t(&[bt, dim]);
        let init_bad = t(&[bt, dim, n + 1]);
        let u2 = t(&[dim, l]);
        let ints = gpu.empty(&[bt, dim, l], DType::I32).unwrap();
        let cases: Vec<(
            &str,
            SelectiveScanInputs,
            &ssm_mla::Tensor,
            &ssm_mla::Tensor,
        )> = vec![
            (
                "delta",
                SelectiveScanInputs {
                    delta: &bad_delta,
                    ..base
                },
                &out,
                &last,
            ),
            ("B", SelectiveScanInputs { b: &g3, ..base }, &out, &last),
            ("C", SelectiveScanInputs { c: &a_big, ..base }, &out, &last),
            (
                "A",
                SelectiveScanInputs {
                    a: &a_big,
                    b: &bc_big,
                    c: &bc_big,
                    ..base
                },
                &out,
                &last_big,
            ),
            (
                "D",
                SelectiveScanInputs {
                    d: Some(&d_bad),
                    ..base
                },
                &out,
                &last,
            ),
            (
                "z",
                SelectiveScanInputs {
                    z: Some(&z_bad),
                    ..base
                },
                &out,
                &last,
            ),
            (
                "initial_state",
                SelectiveScanInputs {
                    initial_state: Some(&init_bad),
                    ..base
                },
                &out,
                &last,
            ),
            ("u", SelectiveScanInputs { u: &u2, ..base }, &out, &last),
            ("u", SelectiveScanInputs { u: &ints, ..base }, &out, &last),
            ("out", base, &last, &last),
            ("last_state", base, &out, &out),
        ];
        for (name, inputs, out, last) in cases {
            let mut batch = gpu.batch();
            let err = op.record(&mut batch, &inputs, out, last).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("`{name}`")),
                "expected an error naming {name}: {msg}"
            );
            assert_eq!(
                batch.dispatches(),
                0,
                "nothing may be recorded on error ({msg})"
            );
        }
    }
}

/// A size read from one input and checked on another: the error names both tensors, their
/// shapes and the dimension.
#[test]
fn disagreeing_inputs_are_named_together() {
    let gpu = gpu();
    let t = |shape: &[usize]| gpu.empty(shape, DType::F32).unwrap();
    let (u, a, bc) = (t(&[1, 4, 16]), t(&[4, 5]), t(&[1, 5, 16]));
    let (out, last) = (t(&[1, 4, 16]), t(&[1, 4, 5]));
    let base = SelectiveScanInputs {
        u: &u,
        delta: &u,
        a: &a,
        b: &bc,
        c: &bc,
        d: None,
        z: None,
        delta_bias: None,
        initial_state: None,
        delta_softplus: true,
    };
    let op = SelectiveScan::new(&gpu).unwrap();
    let (b8, a5, d3, delta17, init6) = (
        t(&[1, 8, 16]),
        t(&[5, 5]),
        t(&[3]),
        t(&[1, 4, 17]),
        t(&[1, 4, 6]),
    );
    let cases = [
        (
            SelectiveScanInputs { b: &b8, ..base },
            "tensors `A` (4, 5) and `B` (1, 8, 16) disagree on N: 5 vs 8",
        ),
        (
            SelectiveScanInputs { a: &a5, ..base },
            "tensors `u` (1, 4, 16) and `A` (5, 5) disagree on D: 4 vs 5",
        ),
        (
            SelectiveScanInputs {
                delta: &delta17,
                ..base
            },
            "tensors `u` (1, 4, 16) and `delta` (1, 4, 17) disagree on L: 16 vs 17",
        ),
        (
            SelectiveScanInputs {
                d: Some(&d3),
                ..base
            },
            "tensors `u` (1, 4, 16) and `D` (3) disagree on D: 4 vs 3",
        ),
        (
            SelectiveScanInputs {
                initial_state: Some(&init6),
                ..base
            },
            "tensors `A` (4, 5) and `initial_state` (1, 4, 6) disagree on N: 5 vs 6",
        ),
    ];
    for (inputs, want) in cases {
        let mut batch = gpu.batch();
        let err = op.record(&mut batch, &inputs, &out, &last).unwrap_err();
        assert!(matches!(err, ssm_mla::Error::Mismatch { .. }), "{err:?}");
        assert_eq!(err.to_string(), want);
        assert_eq!(batch.dispatches(), 0);
    }
}

/// Half u, delta, z, out (B and C f32 or halves, alternating) for every strategy on both devices:
/// size 1, odd D, ragged and odd L (rows sharing a u32 word of out), past one chunk, N > 16 (run
/// chunked whatever the strategy, so that out is rounded once), grouped and constant B/C, every
/// option; out NaN-poisoned in its dtype.
#[test]
fn half_inputs_every_strategy() {
    let c = BcLayout::Constant;
    let v = BcLayout::Grouped(1);
    let cases: &[(usize, usize, usize, usize, BcLayout, BcLayout, u32)] = &[
        (1, 1, 1, 1, c, c, 0),
        (2, 3, 7, 5, v, v, 31),
        (1, 5, 37, 16, BcLayout::Grouped(5), c, 15),
        (2, 3, 9, 16, c, v, 23),
        (1, 2, 601, 4, v, BcLayout::Grouped(2), 31),
        (2, 3, 9, 20, v, v, 31),
    ];
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("selective_scan half");
        let ops = STRATEGIES.map(|s| SelectiveScan::with_strategy(&gpu, s).unwrap());
        for dtype in [DType::F16, DType::BF16] {
            for (i, &(bt, dim, l, n, bl, cl, bits)) in cases.iter().enumerate() {
                let bc_half = i % 2 == 1;
                let p =
                    make(&mut rng, bt, dim, l, n, bl, cl, options(bits)).with_dtype(dtype, bc_half);
                let want = p.reference().unwrap();
                for op in &ops {
                    let strategy = op.strategy_for_dtype(&p.dims, dtype);
                    if n > 16 {
                        assert_eq!(strategy, ScanStrategy::ChunkedParallel);
                    } else {
                        assert_eq!(strategy, op.strategy());
                    }
                    let (out, last) = pollster::block_on(p.run(&gpu, op)).unwrap();
                    let what = format!(
                        "{name} {dtype} B/C half={bc_half} {:?} {:?}",
                        op.strategy(),
                        p.dims
                    );
                    assert_close(
                        &format!("{what} out"),
                        &out,
                        &want.out,
                        out_tolerance(dtype),
                        seed,
                    );
                    assert_close(
                        &format!("{what} last_state"),
                        &last,
                        &want.last_state,
                        TOL,
                        seed,
                    );
                }
            }
        }
    }
}

/// Halves over several storage-binding windows: with odd L a window's first row starts mid-word,
/// so the window starts on the word (the aligned offset) and the kernel keeps each element's lane.
#[test]
fn half_inputs_split_over_bindings() {
    let gpu = Gpu::with_options(&GpuOptions {
        max_storage_binding: Some(4096),
        max_workgroups_per_dimension: Some(7),
        ..Default::default()
    })
    .expect("GPU tests need an adapter");
    let (mut rng, seed) = rng("selective_scan half split");
    for (dtype, bc_half) in [(DType::BF16, true), (DType::F16, false)] {
        let p = make(
            &mut rng,
            3,
            5,
            201,
            4,
            BcLayout::Grouped(1),
            BcLayout::Constant,
            ALL,
        )
        .with_dtype(dtype, bc_half);
        let want = p.reference().unwrap();
        for strategy in STRATEGIES {
            let (out, last) = run_gpu(&p, &gpu, strategy).unwrap();
            let what = format!("split {dtype} {strategy:?}");
            assert_close(
                &format!("{what} out"),
                &out,
                &want.out,
                out_tolerance(dtype),
                seed,
            );
            assert_close(
                &format!("{what} last_state"),
                &last,
                &want.last_state,
                TOL,
                seed,
            );
        }
    }
}

/// u, delta, z and out share u's dtype, B and C are f32 or u's dtype, the rest f32: a mismatch
/// is a dtype error naming the tensor, and nothing is recorded.
#[test]
fn half_dtype_mismatches_are_named() {
    let gpu = gpu();
    let (bt, dim, l, n) = (2, 3, 5, 4);
    let t = |shape: &[usize], dtype| gpu.empty(shape, dtype).unwrap();
    let u = t(&[bt, dim, l], DType::F16);
    let x_bf = t(&[bt, dim, l], DType::BF16);
    let x_f32 = t(&[bt, dim, l], DType::F32);
    let ints = t(&[bt, dim, l], DType::I32);
    let a = t(&[dim, n], DType::F32);
    let a_half = t(&[dim, n], DType::F16);
    let bc = t(&[bt, n, l], DType::F16);
    let bc_bf = t(&[bt, n, l], DType::BF16);
    let d_half = t(&[dim], DType::F16);
    let init_half = t(&[bt, dim, n], DType::F16);
    let last = t(&[bt, dim, n], DType::F32);
    let last_half = t(&[bt, dim, n], DType::F16);
    let base = SelectiveScanInputs {
        u: &u,
        delta: &u,
        a: &a,
        b: &bc,
        c: &bc,
        d: None,
        z: None,
        delta_bias: None,
        initial_state: None,
        delta_softplus: false,
    };
    let op = SelectiveScan::new(&gpu).unwrap();
    #[rustfmt::skip]
    let cases: Vec<(&str, SelectiveScanInputs, &ssm_mla::Tensor, &ssm_mla::Tensor, &str)> = vec![
        ("u", SelectiveScanInputs { u: &ints, delta: &ints, ..base }, &ints, &last, "f32, f16 or bf16"),
        ("delta", SelectiveScanInputs { delta: &x_bf, ..base }, &u, &last, "u's dtype"),
        ("z", SelectiveScanInputs { z: Some(&x_f32), ..base }, &u, &last, "u's dtype"),
        ("B", SelectiveScanInputs { b: &bc_bf, ..base }, &u, &last, "f32 or f16"),
        ("C", SelectiveScanInputs { c: &bc_bf, ..base }, &u, &last, "f32 or f16"),
        ("A", SelectiveScanInputs { a: &a_half, ..base }, &u, &last, "f32"),
        ("D", SelectiveScanInputs { d: Some(&d_half), ..base }, &u, &last, "f32"),
        ("delta_bias", SelectiveScanInputs { delta_bias: Some(&d_half), ..base }, &u, &last, "f32"),
        ("initial_state", SelectiveScanInputs { initial_state: Some(&init_half), ..base }, &u, &last, "f32"),
        ("out", base, &x_f32, &last, "u's dtype"),
        ("last_state", base, &u, &last_half, "f32"),
    ];
    for (name, inputs, out, last, expected) in cases {
        let mut batch = gpu.batch();
        let err = op.record(&mut batch, &inputs, out, last).unwrap_err();
        assert!(
            matches!(err, ssm_mla::Error::DType { .. }),
            "{name}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{name}`")), "{name}: {msg}");
        assert!(msg.contains(expected), "{name}: {msg}");
        assert_eq!(batch.dispatches(), 0, "{msg}");
    }
    // f32 B and C with half u are accepted (mamba_ssm's constant B/C are f32).
    let bc_f32 = t(&[bt, n, l], DType::F32);
    let mut batch = gpu.batch();
    op.record(
        &mut batch,
        &SelectiveScanInputs {
            b: &bc_f32,
            c: &bc_f32,
            ..base
        },
        &u,
        &last,
    )
    .unwrap();
}
