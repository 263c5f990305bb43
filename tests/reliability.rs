//! Reliability (issue 7): property tests over random shapes and options against the CPU
//! reference, NaN confined to the outputs it reaches, bit-identical repeated runs, and a long
//! decode loop that equals the one-shot scan without allocating per step.

mod common;
use common::*;
use proptest::prelude::*;
use ssm_mla::ops::selective_scan::{
    BcLayout, ScanDims, ScanStrategy, SelectiveScan, SelectiveScanInputs,
};
use ssm_mla::ops::state_update::{StateUpdate, StateUpdateInputs};
use ssm_mla::reference::selective_scan::{selective_scan as reference, SelectiveScanHost};
use ssm_mla::{DType, Gpu, Rng, Tensor, Tolerance};

const TOL: Tolerance = Tolerance::new(5e-4, 1e-3);
/// Both scan strategies, run explicitly.
const STRATEGIES: [ScanStrategy; 2] = [ScanStrategy::RowSequential, ScanStrategy::ChunkedParallel];

/// One scan problem on the host.
struct Problem {
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

impl Problem {
    #[allow(clippy::too_many_arguments)]
    fn random(
        seed: u64,
        (batch, dim, len, n): (usize, usize, usize, usize),
        b: BcLayout,
        c: BcLayout,
        [d, z, bias, init, softplus]: [bool; 5],
    ) -> Self {
        let mut rng = Rng::new(seed);
        let dims = ScanDims {
            batch,
            dim,
            len,
            n,
            b,
            c,
        };
        let x = batch * dim * len;
        let size = |l: BcLayout| l.shape(&dims).iter().product::<usize>();
        let delta = if softplus {
            rng.normal_vec(x, -4.0, 1.0)
        } else {
            rng.uniform_vec(x, 0.001, 0.1)
        };
        Self {
            dims,
            u: rng.normal_vec(x, 0.0, 1.0),
            delta,
            a: rng
                .normal_vec(dim * n, 0.0, 1.0)
                .iter()
                .map(|v| -v.exp())
                .collect(),
            b: rng.normal_vec(size(b), 0.0, 1.0),
            c: rng.normal_vec(size(c), 0.0, 1.0),
            d: d.then(|| rng.normal_vec(dim, 0.0, 1.0)),
            z: z.then(|| rng.normal_vec(x, 0.0, 1.0)),
            // Without softplus dt is used as is, so dt + bias must stay positive (a decay).
            bias: bias.then(|| {
                if softplus {
                    rng.uniform_vec(dim, -0.5, 0.5)
                } else {
                    rng.uniform_vec(dim, 0.0, 0.01)
                }
            }),
            init: init.then(|| rng.normal_vec(batch * dim * n, 0.0, 1.0)),
            softplus,
        }
    }

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

    /// Run on the GPU with poisoned outputs; (out, last_state).
    fn gpu(&self, gpu: &Gpu, strategy: ScanStrategy) -> (Vec<f32>, Vec<f32>) {
        let s = &self.dims;
        let x = [s.batch, s.dim, s.len];
        let up = |shape: &[usize], v: &[f32]| gpu.upload_f32(shape, v).unwrap();
        let opt = |shape: &[usize], v: &Option<Vec<f32>>| v.as_ref().map(|v| up(shape, v));
        let (u, delta) = (up(&x, &self.u), up(&x, &self.delta));
        let a = up(&[s.dim, s.n], &self.a);
        let b = up(&s.b.shape(s), &self.b);
        let c = up(&s.c.shape(s), &self.c);
        let d: Option<Tensor> = opt(&[s.dim], &self.d);
        let z = opt(&x, &self.z);
        let bias = opt(&[s.dim], &self.bias);
        let init = opt(&[s.batch, s.dim, s.n], &self.init);
        let out = gpu.nan_f32(&x).unwrap();
        let last = gpu.nan_f32(&[s.batch, s.dim, s.n]).unwrap();
        let mut batch = gpu.batch();
        SelectiveScan::with_strategy(gpu, strategy)
            .unwrap()
            .record(
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
            )
            .unwrap();
        batch.run().unwrap();
        (gpu.read_f32(&out).unwrap(), gpu.read_f32(&last).unwrap())
    }
}

fn layout() -> impl Strategy<Value = (bool, usize)> {
    (any::<bool>(), 1usize..=3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random shapes (ragged L across chunk boundaries, N from 1 to 40, groups dividing D) and
    /// random options: the GPU scan equals the f64 reference on both devices.
    #[test]
    fn selective_scan_matches_reference_on_random_shapes(
        seed in any::<u64>(),
        batch in 1usize..=2,
        groups_per_channel in 1usize..=3,
        channels_per_group in 1usize..=3,
        len in 1usize..=700,
        n in 1usize..=40,
        (b_variable, b_groups) in layout(),
        (c_variable, c_groups) in layout(),
        options in any::<[bool; 5]>(),
    ) {
        // D is a multiple of both group counts so every layout is valid.
        let dim = b_groups * c_groups * groups_per_channel * channels_per_group;
        let b = if b_variable { BcLayout::Grouped(b_groups) } else { BcLayout::Constant };
        let c = if c_variable { BcLayout::Grouped(c_groups) } else { BcLayout::Constant };
        let p = Problem::random(seed, (batch, dim, len, n), b, c, options);
        let want = reference(&p.host()).unwrap();
        for (name, gpu) in gpus() {
            for strategy in STRATEGIES {
                let (out, last) = p.gpu(&gpu, strategy);
                let oc = ssm_mla::compare(&out, &want.out, TOL);
                let lc = ssm_mla::compare(&last, &want.last_state, TOL);
                prop_assert!(oc.passed(), "{name} {strategy:?} out: {oc}");
                prop_assert!(lc.passed(), "{name} {strategy:?} last_state: {lc}");
            }
        }
    }
}

#[test]
fn nan_input_poisons_only_the_outputs_it_reaches() {
    let (_, seed) = rng("nan propagation");
    let dims = (2, 3, 40, 16);
    let clean = Problem::random(
        seed,
        dims,
        BcLayout::Constant,
        BcLayout::Constant,
        [true; 5],
    );
    let mut dirty = Problem::random(
        seed,
        dims,
        BcLayout::Constant,
        BcLayout::Constant,
        [true; 5],
    );
    let (batch, dim, len, n) = dims;
    // u of batch 1, channel 2, step 17 becomes NaN: that row's outputs from step 17 on and its
    // last state are NaN; every other row is bit-identical to the clean run.
    let (b0, d0, t0) = (1, 2, 17);
    dirty.u[(b0 * dim + d0) * len + t0] = f32::NAN;
    let gpu = gpu();
    for strategy in STRATEGIES {
        let (out_c, last_c) = clean.gpu(&gpu, strategy);
        let (out_d, last_d) = dirty.gpu(&gpu, strategy);
        for b in 0..batch {
            for d in 0..dim {
                let row = (b * dim + d) * len;
                for t in 0..len {
                    let (x, y) = (out_c[row + t], out_d[row + t]);
                    if (b, d) == (b0, d0) && t >= t0 {
                        assert!(y.is_nan(), "out[{b},{d},{t}] should be NaN, got {y}");
                    } else {
                        assert_eq!(
                            x.to_bits(),
                            y.to_bits(),
                            "out[{b},{d},{t}] changed (seed {seed})"
                        );
                    }
                }
                let state = (b * dim + d) * n;
                for k in 0..n {
                    let (x, y) = (last_c[state + k], last_d[state + k]);
                    if (b, d) == (b0, d0) {
                        assert!(y.is_nan(), "last_state[{b},{d},{k}] should be NaN");
                    } else {
                        assert_eq!(x.to_bits(), y.to_bits(), "last_state[{b},{d},{k}] changed");
                    }
                }
            }
        }
    }
}

#[test]
fn repeated_runs_are_bit_identical() {
    let (_, seed) = rng("bit-identical");
    let p = Problem::random(
        seed,
        (2, 6, 1100, 16),
        BcLayout::Grouped(2),
        BcLayout::Grouped(3),
        [true; 5],
    );
    for (name, gpu) in gpus() {
        for strategy in STRATEGIES {
            let first = p.gpu(&gpu, strategy);
            for _ in 0..3 {
                let again = p.gpu(&gpu, strategy);
                let same =
                    |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same(&first.0, &again.0) && same(&first.1, &again.1),
                    "{name} {strategy:?}: results differ between runs"
                );
            }
        }
    }
}

#[test]
fn a_thousand_decode_steps_equal_the_scan_without_per_step_allocation() {
    let (_, seed) = rng("long decode");
    let (batch, dim, len, n) = (2, 4, 1000, 16);
    let p = Problem::random(
        seed,
        (batch, dim, len, n),
        BcLayout::Grouped(1),
        BcLayout::Grouped(1),
        [true, true, true, false, true],
    );
    let want = reference(&p.host()).unwrap();
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let up = |shape: &[usize], v: &[f32]| gpu.upload_f32(shape, v).unwrap();
    let a = up(&[dim, n], &p.a);
    let d = up(&[dim], p.d.as_ref().unwrap());
    let bias = up(&[dim], p.bias.as_ref().unwrap());
    let state = up(&[batch, dim, n], &vec![0.0; batch * dim * n]);
    let (x, dt, z) = (
        gpu.empty(&[batch, dim], DType::F32).unwrap(),
        gpu.empty(&[batch, dim], DType::F32).unwrap(),
        gpu.empty(&[batch, dim], DType::F32).unwrap(),
    );
    let (b, c) = (
        gpu.empty(&[batch, n], DType::F32).unwrap(),
        gpu.empty(&[batch, n], DType::F32).unwrap(),
    );
    let y = gpu.empty(&[len * batch * dim], DType::F32).unwrap();
    let out_row = gpu.empty(&[batch, dim], DType::F32).unwrap();
    let op = StateUpdate::new(&gpu).unwrap();
    let column = |v: &[f32], rows: usize, t: usize| -> Vec<f32> {
        (0..rows).map(|r| v[r * len + t]).collect()
    };
    let mut counters = None;
    for t in 0..len {
        let mut work = gpu.batch();
        work.write(&x, 0, &column(&p.u, batch * dim, t)).unwrap();
        work.write(&dt, 0, &column(&p.delta, batch * dim, t))
            .unwrap();
        work.write(&z, 0, &column(p.z.as_ref().unwrap(), batch * dim, t))
            .unwrap();
        work.write(&b, 0, &column(&p.b, batch * n, t)).unwrap();
        work.write(&c, 0, &column(&p.c, batch * n, t)).unwrap();
        op.record(
            &mut work,
            &StateUpdateInputs {
                state: &state,
                x: &x,
                dt: &dt,
                a: &a,
                b: &b,
                c: &c,
                d: Some(&d),
                z: Some(&z),
                dt_bias: Some(&bias),
                state_batch_indices: None,
                dt_softplus: true,
            },
            &out_row,
        )
        .unwrap();
        let row_bytes = (batch * dim * 4) as u64;
        work.copy(&out_row, 0, &y, t as u64 * row_bytes, row_bytes);
        work.run().unwrap();
        if t == 2 {
            counters = Some(gpu.resource_counters());
        }
    }
    assert_eq!(
        Some(gpu.resource_counters()),
        counters,
        "nothing created per step"
    );
    // y is (L, Bt, D); the scan's out is (Bt, D, L).
    let got = gpu.read_f32(&y).unwrap();
    let mut got_bdl = vec![0.0f32; got.len()];
    for t in 0..len {
        for r in 0..batch * dim {
            got_bdl[r * len + t] = got[t * batch * dim + r];
        }
    }
    assert_close("decode ×1000 vs scan: out", &got_bdl, &want.out, TOL, seed);
    assert_close(
        "decode ×1000 vs scan: state",
        &gpu.read_f32(&state).unwrap(),
        &want.last_state,
        TOL,
        seed,
    );
}
