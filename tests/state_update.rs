//! Conformance of the decode step (on both devices of `common::gpus()`) against the f64 CPU
//! reference: every option combination, B/C (Bt, N) and grouped (Bt, G, N), several N (1, 5, 16,
//! 64, 100, 256), slot indices into a larger pool with skipped (negative) slots, poisoned outputs;
//! the step applied L times equals the selective scan; error cases.
//!
//! Tolerance: one step is a reduction over N: |gpu − ref| ≤ 1e-5 + 1e-4·|ref|; L = 600 chained
//! steps compared with the scan reference: 5e-4 + 1e-3·|ref| (as the scan's tests).
//!
//! Half activations (x, dt, B, C, z, out in f16 or bf16, state f32): the reference is fed the
//! same rounded inputs, widened, so the f32 bound holds up to the store of out, which adds the
//! rounding of out: out within 1e-5 + (1e-4 + 2^-8)·|ref| for bf16 (unit roundoff of 7 stored
//! bits, nearest even), 1e-5 + (1e-4 + 2^-10)·|ref| for f16 (one ulp of 10 stored bits:
//! `pack2x16float` may round to either neighbour) (`out_tolerance`; mamba_ssm tests bf16 at
//! rtol 5e-2, atol 1e-1). The state is f32 and keeps 1e-5 + 1e-4·|ref|.
//!
//! Half state pool (f16 or bf16, with f32 and half activations): the initial state is rounded on
//! the host and the reference starts from it; the step is f32 and the stored state is rounded,
//! so the state is within 1e-5 + (1e-4 + 2^-8)·|ref| for bf16 and 1e-5 + (1e-4 + 2^-10)·|ref|
//! for f16 (`state_tolerance`, the same reasoning as out's). out is computed from the unrounded
//! f32 state and keeps its own tolerance. Odd N puts two rows' halves in one word (atomics).
//!
//! Views (`record_views`): x, z, B, C and out are column windows of wider tensors at odd offsets
//! and odd row (and group) strides, dt a contiguous block at an offset, in f32, f16 and bf16,
//! with slots (one skipped); the same tolerances, and every element outside out's window keeps
//! its NaN poison. Layouts the kernel does not take are typed errors naming the view.
//!
//! The multi-head (Mamba-2) form (`record_heads`, `record_heads_tensors`): every option
//! combination with D as (H) and (H, P) and G ∈ {1, 2, H}; Mamba-2 sizes (H = 24, P = 64,
//! N = 128), N up to 256, P up to 128, size 1; slots with skipped requests; dt_limit; half
//! activations and half state pools (two steps); the model's strided layout (x, B, C windows of
//! the conv output, z and dt windows of in_proj's output, dt at an odd offset); P = 1 against
//! the channel form; errors naming the tensor and the expected shape. Tolerances as above: one
//! step reduces over N ≤ 256 in f32.

mod common;
use common::*;
use ssm_mla::ops::selective_scan::BcLayout;
use ssm_mla::ops::state_update::{
    StateUpdate, StateUpdateHeadsInputs, StateUpdateHeadsViews, StateUpdateInputs,
    StateUpdateViews, UpdateOptions,
};
use ssm_mla::testing::selective_scan::{self as scan, TOLERANCE as SCAN_TOL};
use ssm_mla::testing::state_update::{
    dims, heads_dims, out_tolerance, state_tolerance, HeadsProblem, Problem, TOLERANCE as STEP_TOL,
};
use ssm_mla::{DType, Error, Gpu, Rng, Tensor, View};

/// The options of bits 0..4: D, z, dt_bias, softplus.
fn options(bits: u32) -> UpdateOptions {
    UpdateOptions {
        d: bits & 1 != 0,
        z: bits & 2 != 0,
        dt_bias: bits & 4 != 0,
        dt_softplus: bits & 8 != 0,
    }
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
) -> Problem {
    Problem::random(rng, dims(bt, dim, n, gb, gc, pool), options(bits))
}

/// The step on the GPU (out poisoned) against the reference: out and the state pool.
fn check(p: &Problem, gpu: &Gpu, what: &str, seed: u64) {
    check_with(p, gpu, &StateUpdate::new(gpu).unwrap(), what, seed);
}

/// [`check`] with a given op.
fn check_with(p: &Problem, gpu: &Gpu, op: &StateUpdate, what: &str, seed: u64) {
    let want = p.reference().unwrap();
    let (out, state) = pollster::block_on(p.run(gpu, op)).unwrap();
    assert_close(&format!("{what} out"), &out, &want.out, STEP_TOL, seed);
    assert_close(
        &format!("{what} state"),
        &state,
        &want.state,
        STEP_TOL,
        seed,
    );
}

#[test]
fn every_option_combination() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update options");
        for bits in 0..16u32 {
            let (gb, gc) = [(1, 1), (2, 1), (1, 4), (4, 2)][bits as usize % 4];
            let data = make(&mut rng, 3, 4, 7, gb, gc, bits, None);
            check(
                &data,
                &gpu,
                &format!("{name} bits={bits:04b} G=({gb},{gc})"),
                seed,
            );
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
            check(&data, &gpu, &format!("{name} Bt={bt} D={dim} N={n}"), seed);
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
            check(
                &data,
                &gpu,
                &format!("{name} Bt={bt} pool={pool} N={n}"),
                seed,
            );
        }
        // A slot past the pool is skipped like a negative one.
        let mut data = make(&mut rng, 2, 3, 4, 1, 1, 15, Some(4));
        data.slots = Some(vec![9, 1]);
        check(&data, &gpu, &format!("{name} slot past the pool"), seed);
    }
}

/// Several requests per invocation (the subgroup-sharing kernel of CPU adapters walks a
/// channel's requests one after another, A's row in registers for N ≤ 16): forced counts that
/// leave a ragged last group (Bt = 11 by 2, 3 and 8), every N whose row fits in registers
/// (4, 8, 12, 16) and two that do not (20: a last half-group of 4 states; 32), grouped B/C,
/// slots with skipped requests, D ragged against the workgroup; the multi-head form too. The
/// automatic choice walks 8 requests on such an adapter where the grid is large and N ≤ 16,
/// one elsewhere.
#[test]
fn several_requests_per_invocation() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update requests per invocation");
        for reqs in [2, 3, 8] {
            let op = StateUpdate::new(&gpu)
                .unwrap()
                .with_requests_per_invocation(reqs);
            for (i, n) in [4, 8, 12, 16, 20, 32].into_iter().enumerate() {
                let (gb, gc) = [(1, 1), (2, 1), (3, 3)][i % 3];
                let pool = (i % 2 == 1).then_some(14);
                let data = make(&mut rng, 11, 300, n, gb, gc, 15 - i as u32 % 2 * 4, pool);
                let what = format!("{name} requests={reqs} Bt=11 D=300 N={n} G=({gb},{gc})");
                check_with(&data, &gpu, &op, &what, seed);
            }
            let p = heads(&mut rng, 9, 6, 50, 16, 2, 15, true, Some(12));
            check_heads(
                &p,
                &gpu,
                &op,
                &format!("{name} requests={reqs} heads"),
                seed,
            );
        }
        let auto = StateUpdate::new(&gpu).unwrap();
        // At D = 2^20 a request is 4096 workgroups, enough for every CPU thread: 8 requests per
        // invocation where the subgroup-sharing kernel runs, whatever the thread count.
        let walked = auto.requests_per_invocation(&gpu, 8, 1 << 20, 16, DType::F32);
        let info = gpu.adapter_info();
        let sharing = info.device_type == wgpu::DeviceType::Cpu
            && gpu.has_subgroups()
            && info.subgroup_min_size >= 8;
        assert_eq!(walked, if sharing { 8 } else { 1 }, "{name}");
        // A's row past registers (N > 16) or a half state: one request.
        assert_eq!(
            auto.requests_per_invocation(&gpu, 8, 1 << 20, 128, DType::F32),
            1
        );
        assert_eq!(
            auto.requests_per_invocation(&gpu, 8, 1 << 20, 16, DType::BF16),
            1
        );
    }
}

#[test]
fn steps_applied_l_times_equal_the_scan() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update vs scan");
        let (bt, dim, l, n, g) = (2, 4, 600, 16, 2);
        let grouped = BcLayout::Grouped(g);
        let p = scan::Problem::random(
            &mut rng,
            scan::dims(bt, dim, l, n, grouped, grouped),
            scan::ALL,
        );
        let want = p.reference().unwrap();
        let (u, delta, b, c) = (&p.u, &p.delta, &p.b, &p.c);
        let z = p.z.as_ref().unwrap();
        let init = p.initial_state.as_ref().unwrap();
        // Step t's inputs: column t of each (rows, L) array.
        let col = |v: &[f32], t: usize| -> Vec<f32> { v.chunks(l).map(|row| row[t]).collect() };
        let state = gpu.upload_f32(&[bt, dim, n], init).unwrap();
        let a_t = gpu.upload_f32(&[dim, n], &p.a).unwrap();
        let d_t = gpu.upload_f32(&[dim], p.d.as_ref().unwrap()).unwrap();
        let bias_t = gpu
            .upload_f32(&[dim], p.delta_bias.as_ref().unwrap())
            .unwrap();
        let op = StateUpdate::new(&gpu).unwrap();
        let mut outs = Vec::new();
        let mut batch = gpu.batch();
        let mut keep = Vec::new();
        for t in 0..l {
            let x_t = gpu.upload_f32(&[bt, dim], &col(u, t)).unwrap();
            let dt_t = gpu.upload_f32(&[bt, dim], &col(delta, t)).unwrap();
            let z_t = gpu.upload_f32(&[bt, dim], &col(z, t)).unwrap();
            let b_t = gpu.upload_f32(&[bt, g, n], &col(b, t)).unwrap();
            let c_t = gpu.upload_f32(&[bt, g, n], &col(c, t)).unwrap();
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
        let mut joined = vec![0.0f32; bt * dim * l];
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

/// The Mamba-1 step's inputs with no options: x also as dt, `bc` as both B and C.
fn plain_inputs<'a>(
    state: &'a Tensor,
    x: &'a Tensor,
    a: &'a Tensor,
    bc: &'a Tensor,
) -> StateUpdateInputs<'a> {
    StateUpdateInputs {
        state,
        x,
        dt: x,
        a,
        b: bc,
        c: bc,
        d: None,
        z: None,
        dt_bias: None,
        state_batch_indices: None,
        dt_softplus: false,
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
    let base = plain_inputs(&state, &x, &a, &bc);
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

/// D past the kernel's exact index arithmetic (2^21 channels, divided in f32) is a limit error
/// naming D, with nothing recorded.
#[test]
fn too_many_channels_is_a_limit_error() {
    let gpu = gpu();
    let t = |shape: &[usize]| gpu.empty(shape, DType::F32).unwrap();
    let dim = 1 << 21;
    let (state, x, a, bc, out) = (
        t(&[1, dim, 1]),
        t(&[1, dim]),
        t(&[dim, 1]),
        t(&[1, 1]),
        t(&[1, dim]),
    );
    let inputs = plain_inputs(&state, &x, &a, &bc);
    let mut batch = gpu.batch();
    let err = StateUpdate::new(&gpu)
        .unwrap()
        .record(&mut batch, &inputs, &out)
        .unwrap_err();
    assert!(matches!(err, ssm_mla::Error::Limit { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("D = {dim}")) && msg.contains("2^21"),
        "{msg}"
    );
    assert_eq!(batch.dispatches(), 0, "nothing may be recorded on error");
}

/// A size read from one input and checked on another: the error names both tensors, their
/// shapes and the dimension.
#[test]
fn disagreeing_inputs_are_named_together() {
    let gpu = gpu();
    let t = |shape: &[usize]| gpu.empty(shape, DType::F32).unwrap();
    let (state, x, a, bc, out) = (
        t(&[2, 5, 16]),
        t(&[2, 5]),
        t(&[5, 16]),
        t(&[2, 16]),
        t(&[2, 5]),
    );
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
        dt_softplus: true,
    };
    let op = StateUpdate::new(&gpu).unwrap();
    let (a4, c8, state3, bias4) = (t(&[4, 16]), t(&[2, 8]), t(&[3, 5, 16]), t(&[4]));
    let slots3 = gpu.empty(&[3], DType::I32).unwrap();
    let cases = [
        (
            StateUpdateInputs { a: &a4, ..base },
            "tensors `x` (2, 5) and `A` (4, 16) disagree on D: 5 vs 4",
        ),
        (
            StateUpdateInputs { c: &c8, ..base },
            "tensors `A` (5, 16) and `C` (2, 8) disagree on N: 16 vs 8",
        ),
        (
            StateUpdateInputs {
                state: &state3,
                ..base
            },
            "tensors `x` (2, 5) and `state` (3, 5, 16) disagree on Bt: 2 vs 3",
        ),
        (
            StateUpdateInputs {
                dt_bias: Some(&bias4),
                ..base
            },
            "tensors `x` (2, 5) and `dt_bias` (4) disagree on D: 5 vs 4",
        ),
        (
            StateUpdateInputs {
                state_batch_indices: Some(&slots3),
                ..base
            },
            "tensors `x` (2, 5) and `state_batch_indices` (3) disagree on Bt: 2 vs 3",
        ),
    ];
    for (inputs, want) in cases {
        let mut batch = gpu.batch();
        let err = op.record(&mut batch, &inputs, &out).unwrap_err();
        assert!(matches!(err, ssm_mla::Error::Mismatch { .. }), "{err:?}");
        assert_eq!(err.to_string(), want);
        assert_eq!(batch.dispatches(), 0);
    }
}

/// Half activations on both devices (native f16 and packed words): every option combination,
/// ragged and odd Bt·D (a word shared by two invocations' rows), size 1, groups, slots into a
/// pool with padded requests (their out rows 0); out NaN-poisoned in its dtype.
#[test]
fn half_activations() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update half");
        let op = StateUpdate::new(&gpu).unwrap();
        for dtype in [DType::F16, DType::BF16] {
            let mut problems = Vec::new();
            for bits in 0..16u32 {
                let (gb, gc) = [(1, 1), (5, 1), (1, 5), (5, 5)][bits as usize % 4];
                problems.push(make(&mut rng, 3, 5, 7, gb, gc, bits, None));
            }
            for (bt, dim, n, pool) in [
                (1, 1, 1, None),
                (1, 3, 5, None),
                (3, 37, 16, None),
                (4, 6, 64, Some(9)),
                (5, 3, 3, Some(5)),
            ] {
                problems.push(make(&mut rng, bt, dim, n, 1, 1, 15, pool));
            }
            for (i, p) in problems.into_iter().enumerate() {
                let p = p.with_dtype(dtype);
                let want = p.reference().unwrap();
                let (out, state) = pollster::block_on(p.run(&gpu, &op)).unwrap();
                let what = format!("{name} {dtype} case {i} {:?}", p.dims);
                assert_close(
                    &format!("{what} out"),
                    &out,
                    &want.out,
                    out_tolerance(dtype),
                    seed,
                );
                assert_close(
                    &format!("{what} state"),
                    &state,
                    &want.state,
                    STEP_TOL,
                    seed,
                );
            }
        }
    }
}

/// The activations share x's dtype, the state is a float and the rest is f32: a mismatch names
/// the tensor (and x).
#[test]
fn half_dtype_mismatches_are_named() {
    let gpu = gpu();
    let (bt, dim, n) = (2, 3, 4);
    let t = |shape: &[usize], dtype| gpu.empty(shape, dtype).unwrap();
    let state = t(&[bt, dim, n], DType::F32);
    let x = t(&[bt, dim], DType::F16);
    let x_bf = t(&[bt, dim], DType::BF16);
    let a = t(&[dim, n], DType::F32);
    let a_half = t(&[dim, n], DType::F16);
    let bc = t(&[bt, n], DType::F16);
    let bc_f32 = t(&[bt, n], DType::F32);
    let d_half = t(&[dim], DType::F16);
    let out = t(&[bt, dim], DType::F16);
    let out_f32 = t(&[bt, dim], DType::F32);
    // The state may be any float dtype; an integer pool is refused.
    let state_int = t(&[bt, dim, n], DType::U32);
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
    let op = StateUpdate::new(&gpu).unwrap();
    let cases: Vec<(&str, StateUpdateInputs, &Tensor)> = vec![
        ("dt", StateUpdateInputs { dt: &x_bf, ..base }, &out),
        ("B", StateUpdateInputs { b: &bc_f32, ..base }, &out),
        ("C", StateUpdateInputs { c: &bc_f32, ..base }, &out),
        (
            "z",
            StateUpdateInputs {
                z: Some(&x_bf),
                ..base
            },
            &out,
        ),
        ("A", StateUpdateInputs { a: &a_half, ..base }, &out),
        (
            "D",
            StateUpdateInputs {
                d: Some(&d_half),
                ..base
            },
            &out,
        ),
        (
            "dt_bias",
            StateUpdateInputs {
                dt_bias: Some(&d_half),
                ..base
            },
            &out,
        ),
        (
            "state",
            StateUpdateInputs {
                state: &state_int,
                ..base
            },
            &out,
        ),
        ("out", base, &out_f32),
    ];
    for (name, inputs, out) in cases {
        let mut batch = gpu.batch();
        let err = op.record(&mut batch, &inputs, out).unwrap_err();
        assert!(matches!(err, ssm_mla::Error::DType { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{name}`")), "{name}: {msg}");
        if matches!(name, "dt" | "B" | "C" | "z" | "out") {
            assert!(msg.contains("x's dtype"), "{name}: {msg}");
        }
        assert_eq!(batch.dispatches(), 0, "{msg}");
    }
}

/// A half state pool (f16, bf16) with f32 and half activations: odd N (rows share words), N = 1,
/// size 1, groups, slots into a pool with padded requests (their rows untouched), two steps in a
/// row (the second reads what the first stored).
#[test]
fn half_state_pool() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update half state");
        let op = StateUpdate::new(&gpu).unwrap();
        for state_dtype in [DType::F16, DType::BF16] {
            for act in [DType::F32, state_dtype] {
                for (bt, dim, n, g, pool) in [
                    (1, 1, 1, 1, None),
                    (3, 5, 7, 1, None),
                    (2, 6, 16, 2, None),
                    (4, 3, 5, 1, Some(7)),
                ] {
                    let p = make(&mut rng, bt, dim, n, g, g, 15, pool)
                        .with_dtype(act)
                        .with_state_dtype(state_dtype);
                    let want = p.reference().unwrap();
                    let (out, state) = pollster::block_on(p.run(&gpu, &op)).unwrap();
                    let what = format!("{name} state {state_dtype} x {act} Bt={bt} D={dim} N={n}");
                    assert_close(
                        &format!("{what} out"),
                        &out,
                        &want.out,
                        out_tolerance(act),
                        seed,
                    );
                    assert_close(
                        &format!("{what} state"),
                        &state,
                        &want.state,
                        state_tolerance(state_dtype),
                        seed,
                    );
                    // A second step from the stored (rounded) state, against the reference fed
                    // that same state.
                    let mut p2 = p.clone();
                    p2.state = state;
                    let want2 = p2.reference().unwrap();
                    let (out2, state2) = pollster::block_on(p2.run(&gpu, &op)).unwrap();
                    assert_close(
                        &format!("{what} step 2 out"),
                        &out2,
                        &want2.out,
                        out_tolerance(act),
                        seed,
                    );
                    assert_close(
                        &format!("{what} step 2 state"),
                        &state2,
                        &want2.state,
                        state_tolerance(state_dtype),
                        seed,
                    );
                }
            }
        }
    }
}

/// `rows` × `inner` values laid into rows of `width` elements of a tensor otherwise filled with
/// NaN (so a read outside the window poisons the result): element (r, g, k) of an
/// (rows, groups, inner / groups) window at `col0 + g·gs + k` of row r. The view and its tensor.
#[allow(clippy::too_many_arguments)]
fn window(
    gpu: &Gpu,
    vals: &[f32],
    rows: usize,
    groups: Option<(usize, usize)>,
    inner: usize,
    width: usize,
    col0: usize,
    dtype: DType,
) -> View {
    let mut host = vec![f32::NAN; rows * width];
    let (g, gs) = groups.unwrap_or((1, 0));
    let per = inner / g;
    for r in 0..rows {
        for gi in 0..g {
            for k in 0..per {
                host[r * width + col0 + gi * gs + k] = vals[(r * g + gi) * per + k];
            }
        }
    }
    let t = gpu.upload_f32_as(&[rows, width], dtype, &host).unwrap();
    match groups {
        Some((g, gs)) => View::as_strided(&t, col0, &[rows, g, per], &[width, gs, 1]).unwrap(),
        None => View::as_strided(&t, col0, &[rows, inner], &[width, 1]).unwrap(),
    }
}

/// The step through `record_views` with x, z, B, C and out as column windows of wider tensors
/// (odd offsets and row strides, B and C grouped with a gap between groups), dt a contiguous
/// block at an (even) offset: out and the state against the reference, out's surroundings still
/// NaN.
#[test]
fn strided_views_match_the_reference() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update views");
        let op = StateUpdate::new(&gpu).unwrap();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for (bt, dim, n, g, pool) in [
                (4, 5, 7, 1, Some(6)),
                (3, 6, 16, 2, Some(3)),
                (1, 3, 5, 1, None),
                (5, 10, 3, 5, Some(9)),
            ] {
                let p = make(&mut rng, bt, dim, n, g, g, 15, pool).with_dtype(dtype);
                if bt >= 3 && pool.is_some() {
                    assert!(p.slots.as_ref().unwrap().contains(&-1), "a skipped slot");
                }
                let want = p.reference().unwrap();
                let t = p.upload(&gpu).unwrap();
                let x = window(&gpu, &p.x, bt, None, dim, dim + 3, 1, dtype);
                let z = window(
                    &gpu,
                    p.z.as_ref().unwrap(),
                    bt,
                    None,
                    dim,
                    2 * dim + 1,
                    dim + 1,
                    dtype,
                );
                // B and C: G groups of N with one unused element between groups, after R = 3
                // leading columns, as in x_proj's packed output.
                let bw = 3 + g * (n + 1) + 2;
                let b = window(&gpu, &p.b, bt, Some((g, n + 1)), g * n, bw, 3, dtype);
                let c = window(&gpu, &p.c, bt, Some((g, n + 1)), g * n, bw, 2, dtype);
                let mut dt_host = vec![f32::NAN; bt * dim + 6];
                dt_host[4..4 + bt * dim].copy_from_slice(&p.dt);
                let dt_t = gpu.upload_f32_as(&[bt * dim + 6], dtype, &dt_host).unwrap();
                let dt = View::as_strided(&dt_t, 4, &[bt, dim], &[dim, 1]).unwrap();
                let ow = dim + 4;
                let out_t = gpu.nan_as(&[bt, ow], dtype).unwrap();
                let out = View::as_strided(&out_t, 3, &[bt, dim], &[ow, 1]).unwrap();
                let mut batch = gpu.batch();
                op.record_views(
                    &mut batch,
                    &StateUpdateViews {
                        state: &t.state,
                        x: &x,
                        dt: &dt,
                        a: &t.a,
                        b: &b,
                        c: &c,
                        d: t.d.as_ref(),
                        z: Some(&z),
                        dt_bias: t.dt_bias.as_ref(),
                        state_batch_indices: t.slots.as_ref(),
                        dt_softplus: t.dt_softplus,
                    },
                    &out,
                )
                .unwrap();
                batch.run().unwrap();
                let all = gpu.read_f32(&out_t).unwrap();
                let mut got = Vec::new();
                for r in 0..bt {
                    for k in 0..ow {
                        let v = all[r * ow + k];
                        if (3..3 + dim).contains(&k) {
                            got.push(v);
                        } else {
                            assert!(
                                v.is_nan(),
                                "{name} {dtype}: out[{r}, {k}] outside the view was written"
                            );
                        }
                    }
                }
                let what = format!("{name} {dtype} views {:?}", p.dims);
                assert_close(
                    &format!("{what} out"),
                    &got,
                    &want.out,
                    out_tolerance(dtype),
                    seed,
                );
                let state = gpu.read_f32(&t.state).unwrap();
                assert_close(
                    &format!("{what} state"),
                    &state,
                    &want.state,
                    STEP_TOL,
                    seed,
                );
            }
        }
    }
}

/// Layouts `record_views` does not take are `Error::Invalid` naming the view, with nothing
/// recorded: a non-unit element stride, dt not one block (a column window) or at an odd half
/// offset, an out whose rows overlap.
#[test]
fn unsupported_view_layouts_are_refused() {
    let gpu = gpu();
    let (bt, dim, n) = (2, 4, 3);
    let op = StateUpdate::new(&gpu).unwrap();
    for dtype in [DType::F32, DType::BF16] {
        let t = |shape: &[usize]| gpu.empty(shape, dtype).unwrap();
        let state = gpu.empty(&[bt, dim, n], DType::F32).unwrap();
        let a = gpu.empty(&[dim, n], DType::F32).unwrap();
        let wide = t(&[bt, 2 * dim + 2]);
        let x = wide.view().narrow(1, 0, dim).unwrap();
        let bc_t = t(&[bt, 2 * n]);
        let bc = View::as_strided(&bc_t, 0, &[bt, n], &[2 * n, 1]).unwrap();
        let bc_every_other = View::as_strided(&bc_t, 0, &[bt, n], &[2 * n, 2]).unwrap();
        let dt_t = t(&[bt * dim + 2]);
        let dt = View::as_strided(&dt_t, 2, &[bt, dim], &[dim, 1]).unwrap();
        let dt_odd = View::as_strided(&dt_t, 1, &[bt, dim], &[dim, 1]).unwrap();
        let dt_window = wide.view().narrow(1, dim, dim).unwrap();
        let z_every_other = View::as_strided(&wide, 0, &[bt, dim], &[2 * dim + 2, 2]).unwrap();
        let out_t = t(&[bt * dim + 2]);
        let out = View::as_strided(&out_t, 1, &[bt, dim], &[dim, 1]).unwrap();
        let out_overlap = View::as_strided(&out_t, 0, &[bt, dim], &[dim - 1, 1]).unwrap();
        let base = StateUpdateViews {
            state: &state,
            x: &x,
            dt: &dt,
            a: &a,
            b: &bc,
            c: &bc,
            d: None,
            z: None,
            dt_bias: None,
            state_batch_indices: None,
            dt_softplus: false,
        };
        // The valid base records.
        op.record_views(&mut gpu.batch(), &base, &out).unwrap();
        let mut cases: Vec<(&str, StateUpdateViews, &View)> = vec![
            (
                "C",
                StateUpdateViews {
                    c: &bc_every_other,
                    ..base
                },
                &out,
            ),
            (
                "z",
                StateUpdateViews {
                    z: Some(&z_every_other),
                    ..base
                },
                &out,
            ),
            (
                "dt",
                StateUpdateViews {
                    dt: &dt_window,
                    ..base
                },
                &out,
            ),
            ("out", base, &out_overlap),
        ];
        if dtype.size() == 2 {
            cases.push((
                "dt",
                StateUpdateViews {
                    dt: &dt_odd,
                    ..base
                },
                &out,
            ));
        }
        for (name, inputs, out) in cases {
            let mut batch = gpu.batch();
            let err = op.record_views(&mut batch, &inputs, out).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::Invalid(_)), "{dtype} {name}: {msg}");
            assert!(
                msg.contains(&format!("`{name}`")),
                "{dtype}: expected an error naming {name}: {msg}"
            );
            assert_eq!(
                batch.dispatches(),
                0,
                "nothing may be recorded on error ({msg})"
            );
        }
    }
}

// ---- The multi-head (Mamba-2) form: `record_heads` / `record_heads_tensors`. ----

/// A multi-head problem: `bits` as [`options`], D of shape (H, P) when `d_hp`.
#[allow(clippy::too_many_arguments)]
fn heads(
    rng: &mut Rng,
    bt: usize,
    h: usize,
    p: usize,
    n: usize,
    g: usize,
    bits: u32,
    d_hp: bool,
    pool: Option<usize>,
) -> HeadsProblem {
    HeadsProblem::random(rng, heads_dims(bt, h, p, n, g, pool), options(bits), d_hp)
}

/// The multi-head step on the GPU (whole tensors, out poisoned) against the reference; returns
/// the largest |gpu − ref| of out and of the state.
fn check_heads(p: &HeadsProblem, gpu: &Gpu, op: &StateUpdate, what: &str, seed: u64) -> (f64, f64) {
    let want = p.reference().unwrap();
    let (out, state) = pollster::block_on(p.run(gpu, op)).unwrap();
    let state_tol = if p.state_dtype == DType::F32 {
        STEP_TOL
    } else {
        state_tolerance(p.state_dtype)
    };
    assert_close(
        &format!("{what} out"),
        &out,
        &want.out,
        out_tolerance(p.dtype),
        seed,
    );
    assert_close(
        &format!("{what} state"),
        &state,
        &want.state,
        state_tol,
        seed,
    );
    let max = |a: &[f32], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (x as f64 - y).abs())
            .fold(0.0, f64::max)
    };
    (max(&out, &want.out), max(&state, &want.state))
}

/// Every option combination, D as (H) and (H, P), G ∈ {1, 2, H}.
#[test]
fn heads_every_option_and_group() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update heads options");
        let op = StateUpdate::new(&gpu).unwrap();
        for bits in 0..16u32 {
            for g in [1, 2, 4] {
                let d_hp = bits % 2 == 1 && g != 2;
                let p = heads(&mut rng, 3, 4, 5, 7, g, bits, d_hp, None);
                check_heads(
                    &p,
                    &gpu,
                    &op,
                    &format!("{name} bits={bits:04b} G={g} D(H,P)={d_hp}"),
                    seed,
                );
            }
        }
    }
}

/// Mamba-2 shapes (H = 24, P = 64, N = 128; N up to 256, P up to 128), grouped, size 1, slots
/// into a pool with a skipped request; max errors printed.
#[test]
fn heads_sizes_groups_and_slots() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update heads sizes");
        let op = StateUpdate::new(&gpu).unwrap();
        for (bt, h, p, n, g, pool, d_hp) in [
            (1, 1, 1, 1, 1, None, false),
            (1, 24, 64, 128, 1, None, false),
            (2, 8, 16, 256, 2, None, true),
            (2, 4, 128, 16, 4, None, true),
            (5, 6, 8, 32, 3, Some(9), false),
            (3, 2, 3, 5, 1, Some(3), true),
        ] {
            let pr = heads(&mut rng, bt, h, p, n, g, 15, d_hp, pool);
            if bt >= 3 && pool.is_some() {
                assert!(pr.slots.as_ref().unwrap().contains(&-1), "a skipped slot");
            }
            let what = format!("{name} Bt={bt} H={h} P={p} N={n} G={g} pool={pool:?}");
            let (eo, es) = check_heads(&pr, &gpu, &op, &what, seed);
            println!("{what}: max |err| out {eo:.2e} state {es:.2e}");
        }
        // A slot past the pool is skipped like a negative one.
        let mut pr = heads(&mut rng, 2, 3, 4, 4, 1, 15, false, Some(4));
        pr.slots = Some(vec![9, 1]);
        check_heads(&pr, &gpu, &op, &format!("{name} slot past the pool"), seed);
    }
}

/// dt_limit clamps after softplus (a window inside dt's range so both bounds bite), and
/// without softplus a negative dt is clamped by a non-default lower bound.
#[test]
fn heads_dt_limit() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update heads dt_limit");
        let op = StateUpdate::new(&gpu).unwrap();
        for (bits, limit) in [(15, (0.01, 0.05)), (13, (0.0, 0.02)), (7, (0.0, 0.5))] {
            let mut pr = heads(&mut rng, 2, 6, 8, 16, 2, bits, false, None);
            if bits & 8 == 0 {
                // Without softplus: some dt negative, which only a non-default limit clamps.
                pr.dt.iter_mut().step_by(2).for_each(|v| *v = -*v);
            }
            pr.dt_limit = limit;
            let mut unclamped = pr.clone();
            unclamped.dt_limit = (0.0, f32::INFINITY);
            // The limit must change the result, or this test would prove nothing.
            assert!(
                pr.reference().unwrap().state != unclamped.reference().unwrap().state,
                "dt_limit {limit:?} changes nothing"
            );
            check_heads(&pr, &gpu, &op, &format!("{name} dt_limit {limit:?}"), seed);
        }
    }
}

/// Half activations and half state pools, odd sizes (words shared across rows).
#[test]
fn heads_half_activations_and_state() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update heads half");
        let op = StateUpdate::new(&gpu).unwrap();
        for dtype in [DType::F16, DType::BF16] {
            for state_dtype in [DType::F32, dtype] {
                for (bt, h, p, n, g, pool) in [
                    (1, 1, 1, 1, 1, None),
                    (3, 3, 5, 7, 1, None),
                    (2, 4, 16, 64, 2, Some(5)),
                ] {
                    let pr = heads(&mut rng, bt, h, p, n, g, 15, true, pool)
                        .with_dtype(dtype)
                        .with_state_dtype(state_dtype);
                    let what = format!("{name} {dtype} state {state_dtype} {:?}", pr.dims);
                    check_heads(&pr, &gpu, &op, &what, seed);
                    // A second step from the stored state.
                    let (_, state) = pollster::block_on(pr.run(&gpu, &op)).unwrap();
                    let mut p2 = pr.clone();
                    p2.state = state;
                    check_heads(&p2, &gpu, &op, &format!("{what} step 2"), seed);
                }
            }
        }
    }
}

/// The Mamba-2 model's layout through `record_heads`: x, B, C column windows of one conv output
/// row (x | B | C, row stride conv_dim), z and dt column windows of one in_proj output row
/// (z | xBC | dt, dt the last H columns, at an odd offset), out a window of a wider NaN tensor;
/// f32 and halves, slots with a skipped request. Elements outside out's window stay NaN.
#[test]
fn heads_strided_views_match_the_reference() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("state_update heads views");
        let op = StateUpdate::new(&gpu).unwrap();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for (bt, h, p, n, g, pool) in [
                (4, 3, 4, 5, 1, Some(6)),
                (2, 4, 8, 16, 2, None),
                (1, 5, 3, 7, 5, None),
            ] {
                let pr = heads(&mut rng, bt, h, p, n, g, 15, false, pool).with_dtype(dtype);
                let want = pr.reference().unwrap();
                let t = pr.upload(&gpu).unwrap();
                let d_in = h * p;
                // conv output row: x (d_in) | B (g·n) | C (g·n) | 1 spare column.
                let conv_dim = d_in + 2 * g * n + 1;
                let mut conv = vec![f32::NAN; bt * conv_dim];
                // in_proj output row: z (d_in) | xBC (conv_dim - 1) | dt (h), then 1 spare
                // column, so dt starts at an odd column when d_in + conv_dim is even.
                let dt_col = d_in + conv_dim - 1 + usize::from((d_in + conv_dim - 1) % 2 == 0);
                let proj = dt_col + h + 1;
                let mut inproj = vec![f32::NAN; bt * proj];
                for b in 0..bt {
                    for k in 0..d_in {
                        conv[b * conv_dim + k] = pr.x[b * d_in + k];
                        inproj[b * proj + k] = pr.z.as_ref().unwrap()[b * d_in + k];
                    }
                    for k in 0..g * n {
                        conv[b * conv_dim + d_in + k] = pr.b[b * g * n + k];
                        conv[b * conv_dim + d_in + g * n + k] = pr.c[b * g * n + k];
                    }
                    for k in 0..h {
                        inproj[b * proj + dt_col + k] = pr.dt[b * h + k];
                    }
                }
                let conv_t = gpu.upload_f32_as(&[bt, conv_dim], dtype, &conv).unwrap();
                let proj_t = gpu.upload_f32_as(&[bt, proj], dtype, &inproj).unwrap();
                let x = View::as_strided(&conv_t, 0, &[bt, h, p], &[conv_dim, p, 1]).unwrap();
                let b_v = View::as_strided(&conv_t, d_in, &[bt, g, n], &[conv_dim, n, 1]).unwrap();
                let c_v = View::as_strided(&conv_t, d_in + g * n, &[bt, g, n], &[conv_dim, n, 1])
                    .unwrap();
                let z = View::as_strided(&proj_t, 0, &[bt, h, p], &[proj, p, 1]).unwrap();
                let dt = View::as_strided(&proj_t, dt_col, &[bt, h], &[proj, 1]).unwrap();
                let ow = d_in + 3;
                let out_t = gpu.nan_as(&[bt, ow], dtype).unwrap();
                let out = View::as_strided(&out_t, 1, &[bt, h, p], &[ow, p, 1]).unwrap();
                let mut batch = gpu.batch();
                op.record_heads(
                    &mut batch,
                    &StateUpdateHeadsViews {
                        state: &t.state,
                        x: &x,
                        dt: &dt,
                        a: &t.a,
                        b: &b_v,
                        c: &c_v,
                        d: t.d.as_ref(),
                        z: Some(&z),
                        dt_bias: t.dt_bias.as_ref(),
                        state_batch_indices: t.slots.as_ref(),
                        dt_softplus: t.dt_softplus,
                        dt_limit: t.dt_limit,
                    },
                    &out,
                )
                .unwrap();
                batch.run().unwrap();
                let all = gpu.read_f32(&out_t).unwrap();
                let mut got = Vec::new();
                for r in 0..bt {
                    for k in 0..ow {
                        let v = all[r * ow + k];
                        if (1..1 + d_in).contains(&k) {
                            got.push(v);
                        } else {
                            assert!(v.is_nan(), "{name} {dtype}: out[{r}, {k}] outside the view");
                        }
                    }
                }
                let what = format!("{name} {dtype} heads views {:?}", pr.dims);
                assert_close(
                    &format!("{what} out"),
                    &got,
                    &want.out,
                    out_tolerance(dtype),
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
    }
}

/// Wrong shapes, dtypes, layouts and limits: an error naming the tensor (and, for shapes, the
/// expected shape), nothing recorded.
#[test]
fn heads_errors_name_the_tensor() {
    let gpu = gpu();
    let op = StateUpdate::new(&gpu).unwrap();
    let (bt, h, p, n, g) = (2, 4, 3, 8, 2);
    let t = |shape: &[usize]| gpu.empty(shape, DType::F32).unwrap();
    let state = t(&[bt, h, p, n]);
    let x = t(&[bt, h, p]);
    let dt = t(&[bt, h]);
    let a = t(&[h]);
    let bc = t(&[bt, g, n]);
    let out = t(&[bt, h, p]);
    let base = StateUpdateHeadsInputs {
        state: &state,
        x: &x,
        dt: &dt,
        a: &a,
        b: &bc,
        c: &bc,
        d: None,
        z: None,
        dt_bias: None,
        state_batch_indices: None,
        dt_softplus: true,
        dt_limit: (0.0, f32::INFINITY),
    };
    op.record_heads_tensors(&mut gpu.batch(), &base, &out)
        .unwrap();
    let (x2, a_dn, b3, c_n, d_bad, dt_bh, st3) = (
        t(&[bt, h * p]),
        t(&[h, n]),
        t(&[bt, 3, n]),
        t(&[bt, g, n + 1]),
        t(&[h, p + 1]),
        t(&[bt, h + 1]),
        t(&[bt, h, p]),
    );
    let dt_half = gpu.empty(&[bt, h], DType::BF16).unwrap();
    let out_bad = t(&[bt, h, p + 1]);
    let cases: Vec<(&str, &str, StateUpdateHeadsInputs, &Tensor)> = vec![
        (
            "x",
            "(Bt, H, P)",
            StateUpdateHeadsInputs { x: &x2, ..base },
            &out,
        ),
        (
            "A",
            "(H)",
            StateUpdateHeadsInputs { a: &a_dn, ..base },
            &out,
        ),
        (
            "B",
            "(Bt, G, N)",
            StateUpdateHeadsInputs { b: &b3, ..base },
            &out,
        ),
        ("C", "N", StateUpdateHeadsInputs { c: &c_n, ..base }, &out),
        (
            "D",
            "P",
            StateUpdateHeadsInputs {
                d: Some(&d_bad),
                ..base
            },
            &out,
        ),
        (
            "dt",
            "H",
            StateUpdateHeadsInputs { dt: &dt_bh, ..base },
            &out,
        ),
        (
            "dt",
            "x's dtype",
            StateUpdateHeadsInputs {
                dt: &dt_half,
                ..base
            },
            &out,
        ),
        (
            "state",
            "(Bt, H, P, N)",
            StateUpdateHeadsInputs {
                state: &st3,
                ..base
            },
            &out,
        ),
        (
            "dt_bias",
            "(H)",
            StateUpdateHeadsInputs {
                dt_bias: Some(&bc),
                ..base
            },
            &out,
        ),
        ("out", "(Bt, H, P)", base, &out_bad),
        (
            "dt_limit",
            "lo ≤ hi",
            StateUpdateHeadsInputs {
                dt_limit: (1.0, 0.5),
                ..base
            },
            &out,
        ),
    ];
    for (name, expect, inputs, out) in cases {
        let mut batch = gpu.batch();
        let msg = op
            .record_heads_tensors(&mut batch, &inputs, out)
            .unwrap_err()
            .to_string();
        let named = if name == "dt_limit" {
            msg.contains("dt_limit")
        } else {
            msg.contains(&format!("`{name}`"))
        };
        assert!(named, "expected an error naming {name}: {msg}");
        assert!(
            msg.contains(expect),
            "{name}: expected `{expect}` in: {msg}"
        );
        assert_eq!(batch.dispatches(), 0, "nothing may be recorded ({msg})");
    }
    // Views: a non-unit inner stride of dt, out overlapping itself, out sharing x's buffer.
    let wide = t(&[bt, 2 * h]);
    let dt_every_other = View::as_strided(&wide, 0, &[bt, h], &[2 * h, 2]).unwrap();
    let out_t = t(&[bt * h * p]);
    let out_overlap = View::as_strided(&out_t, 0, &[bt, h, p], &[p, p, 1]).unwrap();
    let (xv, dtv, bv, outv) = (x.view(), dt.view(), bc.view(), out.view());
    let views = StateUpdateHeadsViews {
        state: &state,
        x: &xv,
        dt: &dtv,
        a: &a,
        b: &bv,
        c: &bv,
        d: None,
        z: None,
        dt_bias: None,
        state_batch_indices: None,
        dt_softplus: false,
        dt_limit: (0.0, f32::INFINITY),
    };
    let cases: Vec<(&str, StateUpdateHeadsViews, &View)> = vec![
        (
            "dt",
            StateUpdateHeadsViews {
                dt: &dt_every_other,
                ..views
            },
            &outv,
        ),
        ("out", views, &out_overlap),
        ("out", views, &xv),
    ];
    for (name, inputs, out) in cases {
        let mut batch = gpu.batch();
        let err = op.record_heads(&mut batch, &inputs, out).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Invalid(_)), "{name}: {msg}");
        assert!(msg.contains(&format!("`{name}`")), "{name}: {msg}");
        assert_eq!(batch.dispatches(), 0, "{msg}");
    }
}

/// The heads form with P = 1 and A broadcast over n is the Mamba-1 step with D channels: both
/// entry points give the same out and state on the same inputs.
#[test]
fn heads_with_one_channel_per_head_equal_the_channel_form() {
    let gpu = gpu();
    let (mut rng, seed) = rng("state_update heads vs channels");
    let op = StateUpdate::new(&gpu).unwrap();
    let (bt, h, n, g) = (3, 6, 16, 2);
    let pr = heads(&mut rng, bt, h, 1, n, g, 15, false, None);
    let (out_h, state_h) = pollster::block_on(pr.run(&gpu, &op)).unwrap();
    let mut p1 = Problem::random(&mut rng, dims(bt, h, n, g, g, None), options(15));
    p1.state = pr.state.clone();
    p1.x = pr.x.clone();
    p1.dt = pr.dt.clone();
    p1.a =
        pr.a.iter()
            .flat_map(|&a| std::iter::repeat_n(a, n))
            .collect();
    p1.b = pr.b.clone();
    p1.c = pr.c.clone();
    p1.d = pr.d.clone();
    p1.z = pr.z.clone();
    p1.dt_bias = pr.dt_bias.clone();
    let (out_1, state_1) = pollster::block_on(p1.run(&gpu, &op)).unwrap();
    let as64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    assert_close(
        "out heads vs channels",
        &out_h,
        &as64(&out_1),
        STEP_TOL,
        seed,
    );
    assert_close(
        "state heads vs channels",
        &state_h,
        &as64(&state_1),
        STEP_TOL,
        seed,
    );
}
