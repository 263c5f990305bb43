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

mod common;
use common::*;
use ssm_mla::ops::selective_scan::{
    BcLayout, ScanDims, ScanShapes, ScanStrategy, SelectiveScan, SelectiveScanInputs,
};
use ssm_mla::reference::selective_scan::{selective_scan as reference, SelectiveScanHost};
use ssm_mla::{DType, Gpu, GpuOptions, Rng, Tolerance};

const TOL: Tolerance = Tolerance::new(5e-4, 1e-3);
/// Both strategies, each run explicitly by every conformance test.
const STRATEGIES: [ScanStrategy; 2] = [ScanStrategy::RowSequential, ScanStrategy::ChunkedParallel];

#[derive(Clone, Copy, Debug, Default)]
struct Opts {
    d: bool,
    z: bool,
    bias: bool,
    softplus: bool,
    init: bool,
}

impl Opts {
    fn all() -> Self {
        Self {
            d: true,
            z: true,
            bias: true,
            softplus: true,
            init: true,
        }
    }
    fn from_bits(bits: u32) -> Self {
        Self {
            d: bits & 1 != 0,
            z: bits & 2 != 0,
            bias: bits & 4 != 0,
            softplus: bits & 8 != 0,
            init: bits & 16 != 0,
        }
    }
}

/// Host data of one scan, realistic ranges (DESIGN §6).
#[derive(Clone, Debug)]
struct Data {
    dims: ScanDims,
    u: Vec<f32>,
    delta: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    d: Option<Vec<f32>>,
    z: Option<Vec<f32>>,
    bias: Option<Vec<f32>>,
    init: Option<Vec<f32>>,
    softplus: bool,
}

fn bc_shape(layout: BcLayout, bt: usize, dim: usize, n: usize, l: usize) -> Vec<usize> {
    match layout {
        BcLayout::Constant => vec![dim, n],
        BcLayout::Grouped(g) => vec![bt, g, n, l],
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
    o: Opts,
) -> Data {
    let x = bt * dim * l;
    let u = rng.normal_vec(x, 0.0, 1.0);
    // With softplus the kernel sees raw delta (+ a bias around -4); without, a positive dt.
    let delta: Vec<f32> = if o.softplus {
        rng.normal_vec(x, if o.bias { 0.0 } else { -4.0 }, 1.0)
    } else {
        rng.normal_vec(x, -4.0, 1.0)
            .iter()
            .map(|&v| (v as f64).exp().ln_1p() as f32)
            .collect()
    };
    let bias = o.bias.then(|| {
        if o.softplus {
            rng.uniform_vec(dim, -6.0, -2.0)
        } else {
            rng.uniform_vec(dim, 0.0, 0.01)
        }
    });
    let a: Vec<f32> = rng
        .normal_vec(dim * n, 0.0, 1.0)
        .iter()
        .map(|v| -v.exp())
        .collect();
    let bsh = bc_shape(bl, bt, dim, n, l);
    let csh = bc_shape(cl, bt, dim, n, l);
    let b = rng.normal_vec(bsh.iter().product(), 0.0, 1.0);
    let c = rng.normal_vec(csh.iter().product(), 0.0, 1.0);
    let d = o.d.then(|| rng.normal_vec(dim, 0.0, 1.0));
    let z = o.z.then(|| rng.normal_vec(x, 0.0, 1.0));
    let init = o.init.then(|| rng.normal_vec(bt * dim * n, 0.0, 1.0));
    let dims = ScanDims::from_shapes(&ScanShapes {
        u: &[bt, dim, l],
        delta: &[bt, dim, l],
        a: &[dim, n],
        b: &bsh,
        c: &csh,
        d: None,
        z: None,
        delta_bias: None,
        initial_state: None,
    })
    .unwrap();
    Data {
        dims,
        u,
        delta,
        a,
        b,
        c,
        d,
        z,
        bias,
        init,
        softplus: o.softplus,
    }
}

impl Data {
    fn host(&self) -> SelectiveScanHost<'_> {
        SelectiveScanHost {
            dims: self.dims,
            u: &self.u,
            delta: &self.delta,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: self.d.as_deref(),
            z: self.z.as_deref(),
            delta_bias: self.bias.as_deref(),
            initial_state: self.init.as_deref(),
            delta_softplus: self.softplus,
        }
    }

    /// Upload and run on the GPU with poisoned outputs; (out, last_state).
    fn run_gpu(&self, gpu: &Gpu, strategy: ScanStrategy) -> ssm_mla::Result<(Vec<f32>, Vec<f32>)> {
        let s = self.dims;
        let x = [s.batch, s.dim, s.len];
        let u = gpu.upload_f32(&x, &self.u)?;
        let delta = gpu.upload_f32(&x, &self.delta)?;
        let a = gpu.upload_f32(&[s.dim, s.n], &self.a)?;
        let b = gpu.upload_f32(&s.b.shape(&s), &self.b)?;
        let c = gpu.upload_f32(&s.c.shape(&s), &self.c)?;
        let d = self
            .d
            .as_ref()
            .map(|v| gpu.upload_f32(&[s.dim], v))
            .transpose()?;
        let z = self.z.as_ref().map(|v| gpu.upload_f32(&x, v)).transpose()?;
        let bias = self
            .bias
            .as_ref()
            .map(|v| gpu.upload_f32(&[s.dim], v))
            .transpose()?;
        let init = self
            .init
            .as_ref()
            .map(|v| gpu.upload_f32(&[s.batch, s.dim, s.n], v))
            .transpose()?;
        let out = gpu.nan_f32(&x)?;
        let last = gpu.nan_f32(&[s.batch, s.dim, s.n])?;
        let op = SelectiveScan::with_strategy(gpu, strategy)?;
        if strategy != ScanStrategy::Auto {
            assert_eq!(op.strategy_for(&s), strategy);
        }
        let mut batch = gpu.batch();
        op.record(
            &mut batch,
            &SelectiveScanInputs {
                u: &u,
                delta: &delta,
                a: &a,
                b: &b,
                c: &c,
                d: d.as_ref(),
                z: z.as_ref(),
                delta_bias: bias.as_ref(),
                initial_state: init.as_ref(),
                delta_softplus: self.softplus,
            },
            &out,
            &last,
        )?;
        batch.run()?;
        Ok((gpu.read_f32(&out)?, gpu.read_f32(&last)?))
    }

    /// Both strategies against the reference.
    fn check(&self, gpu: &Gpu, what: &str, seed: u64) {
        let want = reference(&self.host()).unwrap();
        for strategy in STRATEGIES {
            let (out, last) = self.run_gpu(gpu, strategy).unwrap();
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
            let o = Opts::from_bits(bits);
            let data = make(&mut rng, 2, 3, 37, 7, bl, cl, o);
            data.check(&gpu, &format!("{name} {o:?} B {bl:?} C {cl:?}"), seed);
        }
    }
}

#[test]
fn ragged_lengths_state_sizes_and_groups() {
    let cases: &[(usize, usize, usize, usize, BcLayout, BcLayout)] = &[
        (1, 1, 1, 1, BcLayout::Constant, BcLayout::Constant),
        (2, 3, 7, 16, BcLayout::Grouped(1), BcLayout::Grouped(1)),
        (1, 4, 2049, 16, BcLayout::Grouped(2), BcLayout::Grouped(2)),
        (2, 2, 600, 5, BcLayout::Constant, BcLayout::Grouped(1)),
        (1, 4, 513, 64, BcLayout::Grouped(4), BcLayout::Grouped(2)),
        (1, 2, 70, 256, BcLayout::Grouped(1), BcLayout::Constant),
        (3, 2, 1, 64, BcLayout::Grouped(2), BcLayout::Grouped(1)),
    ];
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("selective_scan sizes");
        for &(bt, dim, l, n, bl, cl) in cases {
            for o in [Opts::default(), Opts::all()] {
                let data = make(&mut rng, bt, dim, l, n, bl, cl, o);
                data.check(
                    &gpu,
                    &format!("{name} Bt={bt} D={dim} L={l} N={n} B {bl:?} C {cl:?} {o:?}"),
                    seed,
                );
            }
        }
    }
}

/// Columns `range` of a row-major (rows, L) array.
fn cols(data: &[f32], l: usize, range: std::ops::Range<usize>) -> Vec<f32> {
    data.chunks(l)
        .flat_map(|row| row[range.clone()].to_vec())
        .collect()
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
            Opts::all(),
        );
        for strategy in STRATEGIES {
            let (want_out, want_last) = full.run_gpu(&gpu, strategy).unwrap();
            let split = 700;
            let half = |r: std::ops::Range<usize>, init: Option<Vec<f32>>| {
                let mut h = full.clone();
                let len = r.len();
                h.u = cols(&full.u, l, r.clone());
                h.delta = cols(&full.delta, l, r.clone());
                h.z = full.z.as_ref().map(|z| cols(z, l, r.clone()));
                h.b = cols(&full.b, l, r.clone());
                h.c = cols(&full.c, l, r.clone());
                h.init = init;
                h.dims.len = len;
                h
            };
            let first = half(0..split, full.init.clone());
            let (out1, last1) = first.run_gpu(&gpu, strategy).unwrap();
            let second = half(split..l, Some(last1));
            let (out2, last2) = second.run_gpu(&gpu, strategy).unwrap();
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
        full.check(&gpu, &format!("{name} full"), seed);
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
        Opts::all(),
    );
    let want = reference(&data.host()).unwrap();
    let s = data.dims;
    let x = [s.batch, s.dim, s.len];
    let u = gpu.upload_f32(&x, &data.u).unwrap();
    let delta = gpu.upload_f32(&x, &data.delta).unwrap();
    let a = gpu.upload_f32(&[s.dim, s.n], &data.a).unwrap();
    let b = gpu.upload_f32(&s.b.shape(&s), &data.b).unwrap();
    let c = gpu.upload_f32(&s.c.shape(&s), &data.c).unwrap();
    let d = gpu.upload_f32(&[s.dim], data.d.as_ref().unwrap()).unwrap();
    let z = gpu.upload_f32(&x, data.z.as_ref().unwrap()).unwrap();
    let bias = gpu
        .upload_f32(&[s.dim], data.bias.as_ref().unwrap())
        .unwrap();
    for strategy in STRATEGIES {
        let state = gpu
            .upload_f32(&[1, 3, 8], data.init.as_ref().unwrap())
            .unwrap();
        let out = gpu.nan_f32(&x).unwrap();
        let op = SelectiveScan::with_strategy(&gpu, strategy).unwrap();
        let cached = gpu.cached_pipelines();
        let mut batch = gpu.batch();
        op.record(
            &mut batch,
            &SelectiveScanInputs {
                u: &u,
                delta: &delta,
                a: &a,
                b: &b,
                c: &c,
                d: Some(&d),
                z: Some(&z),
                delta_bias: Some(&bias),
                initial_state: Some(&state),
                delta_softplus: true,
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
        Opts::all(),
    );
    data.check(&gpu, "split", seed);
    let data = make(
        &mut rng,
        2,
        30,
        9,
        3,
        BcLayout::Constant,
        BcLayout::Grouped(1),
        Opts::all(),
    );
    data.check(&gpu, "split grid", seed);
}

fn dims(bt: usize, dim: usize, len: usize, n: usize) -> ScanDims {
    let v = BcLayout::Grouped(1);
    ScanDims {
        batch: bt,
        dim,
        len,
        n,
        b: v,
        c: v,
    }
}

#[test]
fn auto_picks_chunked_for_few_long_rows_and_row_sequential_otherwise() {
    let gpu = gpu();
    let auto = SelectiveScan::new(&gpu).unwrap();
    assert_eq!(auto.strategy(), ScanStrategy::Auto);
    let few_long = dims(1, 2, 3000, 16);
    let many_short = dims(2, 1024, 64, 16);
    // On a GPU: chunked for few long rows, row-sequential otherwise, with these boundaries
    // (L = 512 is not long; 2048 row-passes fill the device; N = 32 is 2 passes).
    let on_gpu = |d: &ScanDims| ScanStrategy::Auto.resolve(d, wgpu::DeviceType::DiscreteGpu);
    assert_eq!(on_gpu(&few_long), ScanStrategy::ChunkedParallel);
    assert_eq!(on_gpu(&many_short), ScanStrategy::RowSequential);
    assert_eq!(on_gpu(&dims(1, 2, 512, 16)), ScanStrategy::RowSequential);
    assert_eq!(on_gpu(&dims(1, 2, 513, 16)), ScanStrategy::ChunkedParallel);
    assert_eq!(
        on_gpu(&dims(1, 1023, 600, 32)),
        ScanStrategy::ChunkedParallel
    );
    assert_eq!(on_gpu(&dims(1, 1024, 600, 32)), ScanStrategy::RowSequential);
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
        Opts::all(),
    );
    let want = reference(&data.host()).unwrap();
    let (out, last) = data.run_gpu(&gpu, ScanStrategy::Auto).unwrap();
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
