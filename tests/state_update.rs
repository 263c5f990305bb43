//! Conformance of the decode step (on both devices of `common::gpus()`) against the f64 CPU
//! reference: every option combination, B/C (Bt, N) and grouped (Bt, G, N), several N (1, 5, 16,
//! 64, 100, 256), slot indices into a larger pool with skipped (negative) slots, poisoned outputs;
//! the step applied L times equals the selective scan; error cases.
//!
//! Tolerance: one step is a reduction over N: |gpu − ref| ≤ 1e-5 + 1e-4·|ref|; L = 600 chained
//! steps compared with the scan reference: 5e-4 + 1e-3·|ref| (as the scan's tests).

mod common;
use common::*;
use ssm_mla::ops::selective_scan::{BcLayout, ScanShapes};
use ssm_mla::ops::state_update::{StateUpdate, StateUpdateInputs, UpdateDims, UpdateShapes};
use ssm_mla::reference::selective_scan::{selective_scan, SelectiveScanHost};
use ssm_mla::reference::state_update::{state_update as reference, StateUpdateHost};
use ssm_mla::{DType, Gpu, Rng, Tensor, Tolerance};

const STEP_TOL: Tolerance = Tolerance::new(1e-5, 1e-4);
const SCAN_TOL: Tolerance = Tolerance::new(5e-4, 1e-3);

#[derive(Clone, Debug)]
struct Data {
    dims: UpdateDims,
    state: Vec<f32>,
    x: Vec<f32>,
    dt: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    d: Option<Vec<f32>>,
    z: Option<Vec<f32>>,
    bias: Option<Vec<f32>>,
    slots: Option<Vec<i32>>,
    softplus: bool,
}

#[allow(clippy::too_many_arguments)]
fn make(
    rng: &mut Rng,
    bt: usize,
    dim: usize,
    n: usize,
    gb: usize,
    gc: usize,
    bits: u32,
    pool: Option<usize>,
) -> Data {
    let (has_d, has_z, has_bias, softplus) =
        (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0);
    let rows = pool.unwrap_or(bt);
    let slots = pool.map(|p| {
        // Distinct slots in random order; every third request is padding (-1).
        let mut free: Vec<i32> = (0..p as i32).collect();
        (0..bt)
            .map(|i| {
                if i % 3 == 2 {
                    -1
                } else {
                    free.swap_remove(rng.below(free.len()))
                }
            })
            .collect()
    });
    let dt = if softplus {
        rng.normal_vec(bt * dim, if has_bias { 0.0 } else { -4.0 }, 1.0)
    } else {
        rng.normal_vec(bt * dim, -4.0, 1.0)
            .iter()
            .map(|&v| (v as f64).exp().ln_1p() as f32)
            .collect()
    };
    let bshape: Vec<usize> = if gb == 1 {
        vec![bt, n]
    } else {
        vec![bt, gb, n]
    };
    let cshape: Vec<usize> = if gc == 1 {
        vec![bt, n]
    } else {
        vec![bt, gc, n]
    };
    let slot_shape = [bt];
    let dims = UpdateDims::from_shapes(&UpdateShapes {
        state: &[rows, dim, n],
        x: &[bt, dim],
        dt: &[bt, dim],
        a: &[dim, n],
        b: &bshape,
        c: &cshape,
        d: None,
        z: None,
        dt_bias: None,
        slots: pool.map(|_| &slot_shape[..]),
    })
    .unwrap();
    Data {
        dims,
        state: rng.normal_vec(rows * dim * n, 0.0, 1.0),
        x: rng.normal_vec(bt * dim, 0.0, 1.0),
        dt,
        a: rng
            .normal_vec(dim * n, 0.0, 1.0)
            .iter()
            .map(|v| -v.exp())
            .collect(),
        b: rng.normal_vec(bt * gb * n, 0.0, 1.0),
        c: rng.normal_vec(bt * gc * n, 0.0, 1.0),
        d: has_d.then(|| rng.normal_vec(dim, 0.0, 1.0)),
        z: has_z.then(|| rng.normal_vec(bt * dim, 0.0, 1.0)),
        bias: has_bias.then(|| {
            if softplus {
                rng.uniform_vec(dim, -6.0, -2.0)
            } else {
                rng.uniform_vec(dim, 0.0, 0.01)
            }
        }),
        slots,
        softplus,
    }
}

struct OnGpu {
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    d: Option<Tensor>,
    z: Option<Tensor>,
    bias: Option<Tensor>,
    slots: Option<Tensor>,
    softplus: bool,
}

impl OnGpu {
    fn inputs(&self) -> StateUpdateInputs<'_> {
        StateUpdateInputs {
            state: &self.state,
            x: &self.x,
            dt: &self.dt,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: self.d.as_ref(),
            z: self.z.as_ref(),
            dt_bias: self.bias.as_ref(),
            state_batch_indices: self.slots.as_ref(),
            dt_softplus: self.softplus,
        }
    }
}

impl Data {
    fn host(&self) -> StateUpdateHost<'_> {
        StateUpdateHost {
            dims: self.dims,
            state: &self.state,
            x: &self.x,
            dt: &self.dt,
            a: &self.a,
            b: &self.b,
            c: &self.c,
            d: self.d.as_deref(),
            z: self.z.as_deref(),
            dt_bias: self.bias.as_deref(),
            slots: self.slots.as_deref(),
            dt_softplus: self.softplus,
        }
    }

    fn upload(&self, gpu: &Gpu) -> OnGpu {
        let s = self.dims;
        let up = |shape: &[usize], v: &[f32]| gpu.upload_f32(shape, v).unwrap();
        OnGpu {
            state: up(&[s.pool, s.dim, s.n], &self.state),
            x: up(&[s.batch, s.dim], &self.x),
            dt: up(&[s.batch, s.dim], &self.dt),
            a: up(&[s.dim, s.n], &self.a),
            b: up(&[s.batch, s.b_groups, s.n], &self.b),
            c: up(&[s.batch, s.c_groups, s.n], &self.c),
            d: self.d.as_ref().map(|v| up(&[s.dim], v)),
            z: self.z.as_ref().map(|v| up(&[s.batch, s.dim], v)),
            bias: self.bias.as_ref().map(|v| up(&[s.dim], v)),
            slots: self
                .slots
                .as_ref()
                .map(|v| gpu.upload(&[s.batch], DType::I32, v).unwrap()),
            softplus: self.softplus,
        }
    }

    fn check(&self, gpu: &Gpu, what: &str, seed: u64) {
        let want = reference(&self.host()).unwrap();
        let t = self.upload(gpu);
        let out = gpu.nan_f32(&[self.dims.batch, self.dims.dim]).unwrap();
        let op = StateUpdate::new(gpu).unwrap();
        let mut batch = gpu.batch();
        op.record(&mut batch, &t.inputs(), &out).unwrap();
        batch.run().unwrap();
        assert_close(
            &format!("{what} out"),
            &gpu.read_f32(&out).unwrap(),
            &want.out,
            STEP_TOL,
            seed,
        );
        assert_close(
            &format!("{what} state"),
            &gpu.read_f32(&t.state).unwrap(),
            &want.state,
            STEP_TOL,
            seed,
        );
    }
}

#[test]
fn every_option_combination() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update options");
        for bits in 0..16u32 {
            let (gb, gc) = [(1, 1), (2, 1), (1, 4), (4, 2)][bits as usize % 4];
            let data = make(&mut rng, 3, 4, 7, gb, gc, bits, None);
            data.check(&gpu, &format!("{name} bits={bits:04b} G=({gb},{gc})"), seed);
        }
    }
}

#[test]
fn state_sizes_and_many_rows() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update sizes");
        for (bt, dim, n) in [
            (1, 1, 1),
            (2, 3, 5),
            (3, 37, 16),
            (2, 5, 64),
            (1, 9, 100),
            (2, 3, 256),
            (5, 300, 16),
        ] {
            let data = make(&mut rng, bt, dim, n, 1, 1, 15, None);
            data.check(&gpu, &format!("{name} Bt={bt} D={dim} N={n}"), seed);
        }
    }
}

#[test]
fn slot_indices_into_a_pool() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update slots");
        for (bt, pool, n, bits) in [(5, 9, 16, 15), (3, 3, 7, 0), (7, 20, 64, 5)] {
            let data = make(&mut rng, bt, 6, n, 2, 1, bits, Some(pool));
            assert!(data.slots.as_ref().unwrap().contains(&-1));
            data.check(&gpu, &format!("{name} Bt={bt} pool={pool} N={n}"), seed);
        }
        // A slot past the pool is skipped like a negative one.
        let mut data = make(&mut rng, 2, 3, 4, 1, 1, 15, Some(4));
        data.slots = Some(vec![9, 1]);
        data.check(&gpu, &format!("{name} slot past the pool"), seed);
    }
}

#[test]
fn steps_applied_l_times_equal_the_scan() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update vs scan");
        let (bt, dim, l, n, g) = (2, 4, 600, 16, 2);
        let x_len = bt * dim * l;
        let u = rng.normal_vec(x_len, 0.0, 1.0);
        let delta = rng.normal_vec(x_len, 0.0, 1.0);
        let bias = rng.uniform_vec(dim, -6.0, -2.0);
        let a: Vec<f32> = rng
            .normal_vec(dim * n, 0.0, 1.0)
            .iter()
            .map(|v| -v.exp())
            .collect();
        let b = rng.normal_vec(bt * g * n * l, 0.0, 1.0);
        let c = rng.normal_vec(bt * g * n * l, 0.0, 1.0);
        let d = rng.normal_vec(dim, 0.0, 1.0);
        let z = rng.normal_vec(x_len, 0.0, 1.0);
        let init = rng.normal_vec(bt * dim * n, 0.0, 1.0);
        let dims = ssm_mla::ops::selective_scan::ScanDims::from_shapes(&ScanShapes {
            u: &[bt, dim, l],
            delta: &[bt, dim, l],
            a: &[dim, n],
            b: &[bt, g, n, l],
            c: &[bt, g, n, l],
            d: None,
            z: None,
            delta_bias: None,
            initial_state: None,
        })
        .unwrap();
        assert_eq!(dims.b, BcLayout::Grouped(g));
        let want = selective_scan(&SelectiveScanHost {
            dims,
            u: &u,
            delta: &delta,
            a: &a,
            b: &b,
            c: &c,
            d: Some(&d),
            z: Some(&z),
            delta_bias: Some(&bias),
            initial_state: Some(&init),
            delta_softplus: true,
        })
        .unwrap();
        // Step t's inputs: column t of each (rows, L) array.
        let col = |v: &[f32], t: usize| -> Vec<f32> { v.chunks(l).map(|row| row[t]).collect() };
        let state = gpu.upload_f32(&[bt, dim, n], &init).unwrap();
        let a_t = gpu.upload_f32(&[dim, n], &a).unwrap();
        let d_t = gpu.upload_f32(&[dim], &d).unwrap();
        let bias_t = gpu.upload_f32(&[dim], &bias).unwrap();
        let op = StateUpdate::new(&gpu).unwrap();
        let mut outs = Vec::new();
        let mut batch = gpu.batch();
        let mut keep = Vec::new();
        for t in 0..l {
            let x_t = gpu.upload_f32(&[bt, dim], &col(&u, t)).unwrap();
            let dt_t = gpu.upload_f32(&[bt, dim], &col(&delta, t)).unwrap();
            let z_t = gpu.upload_f32(&[bt, dim], &col(&z, t)).unwrap();
            let b_t = gpu.upload_f32(&[bt, g, n], &col(&b, t)).unwrap();
            let c_t = gpu.upload_f32(&[bt, g, n], &col(&c, t)).unwrap();
            let out = gpu.nan_f32(&[bt, dim]).unwrap();
            op.record(
                &mut batch,
                &StateUpdateInputs {
                    state: &state,
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
            )
            .unwrap();
            outs.push(out);
            keep.push((x_t, dt_t, z_t, b_t, c_t));
            if t % 100 == 99 || t == l - 1 {
                // Many steps in one submission; the scratch buffer is reused in stream order.
                std::mem::replace(&mut batch, gpu.batch()).run().unwrap();
            }
        }
        let mut joined = vec![0.0f32; x_len];
        for (t, out) in outs.iter().enumerate() {
            for (row, v) in gpu.read_f32(out).unwrap().into_iter().enumerate() {
                joined[row * l + t] = v;
            }
        }
        assert_close(
            &format!("{name} stepped out"),
            &joined,
            &want.out,
            SCAN_TOL,
            seed,
        );
        assert_close(
            &format!("{name} stepped state"),
            &gpu.read_f32(&state).unwrap(),
            &want.last_state,
            SCAN_TOL,
            seed,
        );
    }
}

#[test]
fn rejects_bad_shapes_and_records_nothing() {
    let gpu = gpu();
    let t = |shape: &[usize]| gpu.empty(shape, DType::F32).unwrap();
    let (bt, dim, n) = (2, 4, 8);
    let state = t(&[bt, dim, n]);
    let x = t(&[bt, dim]);
    let a = t(&[dim, n]);
    let bc = t(&[bt, n]);
    let out = t(&[bt, dim]);
    let op = StateUpdate::new(&gpu).unwrap();
    let base = StateUpdateInputs {
        state: &state,
        x: &x,
        dt: &x,
        a: &a,
        b: &bc,
        c: &bc,
        d: None,
        z: None,
        dt_bias: None,
        state_batch_indices: None,
        dt_softplus: false,
    };
    let bad_state = t(&[bt + 1, dim, n]);
    let g3 = t(&[bt, 3, n]); // G = 3 does not divide D = 4
    let dt_bad = t(&[bt, dim + 1]);
    let a_bad = t(&[dim, n, 1]);
    let d_bad = t(&[1]);
    let slots_f32 = t(&[bt]);
    let slots_bad = gpu.empty(&[bt + 1], DType::I32).unwrap();
    let cases: Vec<(&str, StateUpdateInputs, &Tensor)> = vec![
        (
            "state",
            StateUpdateInputs {
                state: &bad_state,
                ..base
            },
            &out,
        ),
        ("B", StateUpdateInputs { b: &g3, ..base }, &out),
        ("C", StateUpdateInputs { c: &dt_bad, ..base }, &out),
        (
            "dt",
            StateUpdateInputs {
                dt: &dt_bad,
                ..base
            },
            &out,
        ),
        ("A", StateUpdateInputs { a: &a_bad, ..base }, &out),
        (
            "D",
            StateUpdateInputs {
                d: Some(&d_bad),
                ..base
            },
            &out,
        ),
        (
            "dt_bias",
            StateUpdateInputs {
                dt_bias: Some(&d_bad),
                ..base
            },
            &out,
        ),
        (
            "z",
            StateUpdateInputs {
                z: Some(&a),
                ..base
            },
            &out,
        ),
        (
            "state_batch_indices",
            StateUpdateInputs {
                state_batch_indices: Some(&slots_f32),
                ..base
            },
            &out,
        ),
        (
            "state_batch_indices",
            StateUpdateInputs {
                state_batch_indices: Some(&slots_bad),
                ..base
            },
            &out,
        ),
        ("out", base, &a),
    ];
    for (name, inputs, out) in cases {
        let mut batch = gpu.batch();
        let err = op.record(&mut batch, &inputs, out).unwrap_err();
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
