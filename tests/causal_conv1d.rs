//! Conformance of the causal convolution (prefill and decode step, on both devices of
//! `common::gpus()`) against the f64 CPU reference: W = 2, 3, 4, with and without bias and
//! SiLU, L = 1, 7, 37, odd D, one case larger than a workgroup, x and y as channel-first,
//! channel-last and column-window views (every element outside a view NaN, so reads or writes
//! past it show), initial and final states (also in place), packed ragged sequences with a
//! state pool and slots (a sequence of length 1, one shorter than W − 1, a skipped slot,
//! sequences across the kernel's chunks of times), the
//! decode step with slots (a skipped slot, one past the pool), and the identity "prefill L
//! tokens = prefill P, then decode P..L one at a time" with the states carried over; misuse
//! errors.
//!
//! Tolerance (`testing::causal_conv1d::TOLERANCE`): |gpu − ref| ≤ 5e-6 + 1e-5·|ref|. A W-term
//! f32 sum of terms |w·x| ≲ 3 rounds by ~1e-6 absolute at worst; SiLU's exp and divide add a
//! few ulp (~1e-6) relative. States are copies and match exactly.

mod common;
use common::*;
use ssm_mla::ops::causal_conv1d::{
    Activation, CausalConv1d, CausalConv1dInputs, CausalConv1dUpdate, CausalConv1dUpdateInputs,
};
use ssm_mla::testing::causal_conv1d::{
    place, y_tolerance, Layout, Options, Outputs, Problem, UpdateProblem, TOLERANCE,
};
use ssm_mla::{DType, Gpu, View};

fn options(bits: usize) -> Options {
    Options {
        bias: bits & 1 != 0,
        silu: bits & 2 != 0,
    }
}

fn check_prefill(p: &Problem, gpu: &Gpu, what: &str, seed: u64) -> Outputs {
    let want = p.reference().unwrap();
    let got = pollster::block_on(p.run(gpu, &CausalConv1d::new(gpu).unwrap())).unwrap();
    let tol = y_tolerance(p.dtype);
    assert_close(&format!("{what} y"), &got.y, &want.y, tol, seed);
    assert_eq!(got.stray, 0, "{what}: y written outside its view");
    // States come back when asked for (batched final states, or a pool).
    if !got.states.is_empty() {
        assert_close(
            &format!("{what} states"),
            &got.states,
            &want.states,
            TOLERANCE,
            seed,
        );
    }
    got
}

#[test]
fn widths_options_and_lengths() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("causal_conv1d widths");
        for (i, len) in [1usize, 7, 37].into_iter().enumerate() {
            for w in 2..=4 {
                for bits in 0..4 {
                    let states = (i + w + bits) % 2 == 0;
                    let p = Problem::batched(&mut rng, 2, 5, len, w, options(bits), states, true);
                    check_prefill(
                        &p,
                        &gpu,
                        &format!("{name} L={len} W={w} bits={bits:02b} init={states}"),
                        seed,
                    );
                }
            }
        }
    }
}

#[test]
fn layouts_of_x_and_y() {
    let window = Layout::Window {
        before: 3,
        after: 2,
    };
    let all = [Layout::ChannelFirst, Layout::ChannelLast, window];
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("causal_conv1d layouts");
        for x in all {
            for y in all {
                let p = Problem::batched(&mut rng, 2, 7, 11, 4, options(3), true, true)
                    .with_layouts(x, y);
                check_prefill(&p, &gpu, &format!("{name} x {x:?} y {y:?}"), seed);
            }
        }
        // Mamba's in_proj output (T, 2·D): x is its first D columns, seen as (1, D, T).
        let p = Problem::batched(&mut rng, 1, 6, 13, 4, options(3), false, true).with_layouts(
            Layout::Window {
                before: 0,
                after: 6,
            },
            Layout::Window {
                before: 6,
                after: 0,
            },
        );
        check_prefill(&p, &gpu, &format!("{name} in_proj halves"), seed);
    }
}

/// Batched rows whose x and y are channel-contiguous and 16-byte aligned (channel-last, or
/// column windows at multiple-of-4 offsets of rows of a multiple-of-4 width: Mamba's in_proj
/// halves) run 4 channels per access: W = 2..4, every option, L within one chunk and crossing
/// several (1, 37, 300), initial states (also in place), D = 4, 8, 132; windows at an odd
/// offset or of an odd D keep the scalar pass. On a device that cannot take the quads the same
/// cases check the scalar pass.
#[test]
fn channel_quads() {
    let quads = |gpu: &Gpu, x: Layout, y: Layout, shape: &[usize]| {
        let (_, xv) = place(gpu, x, shape, DType::F32, None).unwrap();
        let (_, yv) = place(gpu, y, shape, DType::F32, None).unwrap();
        CausalConv1d::reads_channel_quads(&xv, &yv)
    };
    let last = Layout::ChannelLast;
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("causal_conv1d channel quads");
        for (i, (bt, dim, len)) in [(2, 4, 37), (1, 132, 300), (3, 8, 1)]
            .into_iter()
            .enumerate()
        {
            assert!(quads(&gpu, last, last, &[bt, dim, len]), "{name} D={dim}");
            for w in 2..=4 {
                for bits in 0..4 {
                    let states = (i + w + bits) % 2 == 0;
                    let mut p =
                        Problem::batched(&mut rng, bt, dim, len, w, options(bits), states, true)
                            .with_layouts(last, last);
                    p.in_place = states && bits == 3;
                    let what =
                        format!("{name} quads Bt={bt} D={dim} L={len} W={w} bits={bits:02b}");
                    check_prefill(&p, &gpu, &format!("{what} init={states}"), seed);
                }
            }
        }
        // Mamba's in_proj output (T, 2·D) with D = 8: x its first D columns, y the last D.
        let halves = (
            Layout::Window {
                before: 0,
                after: 8,
            },
            Layout::Window {
                before: 8,
                after: 0,
            },
        );
        assert!(
            quads(&gpu, halves.0, halves.1, &[1, 8, 45]),
            "{name} halves"
        );
        let p = Problem::batched(&mut rng, 1, 8, 45, 4, options(3), true, true)
            .with_layouts(halves.0, halves.1);
        check_prefill(&p, &gpu, &format!("{name} quads in_proj halves"), seed);
        // Not aligned: an odd offset, an odd D.
        let odd = Layout::Window {
            before: 3,
            after: 1,
        };
        assert!(!quads(&gpu, odd, last, &[1, 8, 9]), "{name} odd offset");
        assert!(!quads(&gpu, last, last, &[1, 6, 9]), "{name} D = 6");
        let p =
            Problem::batched(&mut rng, 1, 8, 40, 4, options(3), true, true).with_layouts(odd, last);
        check_prefill(&p, &gpu, &format!("{name} odd offset"), seed);
    }
}

#[test]
fn larger_than_a_workgroup_and_in_place_states() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("causal_conv1d large");
        let p = Problem::batched(&mut rng, 2, 130, 300, 4, options(3), true, true)
            .with_layouts(Layout::ChannelLast, Layout::ChannelFirst);
        check_prefill(&p, &gpu, &format!("{name} Bt=2 D=130 L=300"), seed);
        for len in [1, 2, 9] {
            let mut p = Problem::batched(&mut rng, 3, 5, len, 4, options(1), true, true);
            p.in_place = true;
            check_prefill(&p, &gpu, &format!("{name} in place L={len}"), seed);
        }
    }
}

#[test]
fn packed_sequences_with_a_state_pool() {
    let window = Layout::Window {
        before: 1,
        after: 4,
    };
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("causal_conv1d packed");
        // Lengths 1 and 2 are shorter than W − 1 = 3: their final states keep the older part
        // of the initial state in front.
        let lens = [5, 1, 2, 37, 4];
        for (pool_initial, skip, layout) in [
            (true, vec![4], Layout::ChannelFirst),
            (false, vec![], Layout::ChannelLast),
            (true, vec![0, 2], window),
        ] {
            let p = Problem::packed(
                &mut rng,
                7,
                &lens,
                4,
                options(3),
                Some(8),
                &skip,
                pool_initial,
            )
            .with_layouts(layout, layout);
            check_prefill(
                &p,
                &gpu,
                &format!("{name} packed initial={pool_initial} skip={skip:?} {layout:?}"),
                seed,
            );
        }
        for w in [2, 3] {
            let p = Problem::packed(&mut rng, 3, &[1, 6, 2], w, options(2), Some(3), &[], true);
            check_prefill(&p, &gpu, &format!("{name} packed W={w}"), seed);
        }
        // Without a pool: no states, the convolution still restarts at each sequence.
        let p = Problem::packed(&mut rng, 5, &[3, 1, 8], 4, options(1), None, &[], false);
        check_prefill(&p, &gpu, &format!("{name} packed without a pool"), seed);
        // Sequences across the boundaries of the kernel's chunks of times (8 on GPUs, 64 on
        // CPU devices): T = 153, sequences 50..80 and 80..150 span t = 64 and 128, the skipped
        // one among them; a chunk then walks several segments.
        for skip in [vec![], vec![2]] {
            let p = Problem::packed(
                &mut rng,
                6,
                &[50, 30, 70, 3],
                4,
                options(3),
                Some(5),
                &skip,
                true,
            )
            .with_layouts(Layout::ChannelLast, Layout::ChannelLast);
            check_prefill(
                &p,
                &gpu,
                &format!("{name} packed T=153 skip={skip:?}"),
                seed,
            );
        }
        // A single sequence of length 1 (T = 1).
        let p = Problem::packed(&mut rng, 1, &[1], 2, options(3), Some(1), &[], true);
        check_prefill(&p, &gpu, &format!("{name} packed T=1"), seed);
    }
}

#[test]
fn decode_step_with_slots() {
    let window = Layout::Window {
        before: 2,
        after: 1,
    };
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("causal_conv1d update");
        let op = CausalConv1dUpdate::new(&gpu).unwrap();
        let mut problems = Vec::new();
        for w in 2..=4 {
            for bits in 0..4 {
                problems.push(UpdateProblem::random(
                    &mut rng,
                    3,
                    5,
                    w,
                    options(bits),
                    None,
                    &[],
                ));
            }
        }
        problems.push(UpdateProblem::random(
            &mut rng,
            5,
            9,
            4,
            options(3),
            Some(7),
            &[1],
        ));
        problems.push(
            UpdateProblem::random(&mut rng, 4, 6, 4, options(3), Some(4), &[3])
                .with_layouts(Layout::ChannelLast, window),
        );
        problems.push(
            UpdateProblem::random(&mut rng, 2, 300, 3, options(3), Some(2), &[])
                .with_layouts(window, Layout::ChannelLast),
        );
        problems.push(UpdateProblem::random(
            &mut rng,
            1,
            1,
            2,
            options(0),
            None,
            &[],
        ));
        // A slot past the pool is skipped like a negative one.
        let mut past = UpdateProblem::random(&mut rng, 2, 3, 4, options(3), Some(3), &[]);
        past.slots = Some(vec![5, 1]);
        problems.push(past);
        for (i, p) in problems.iter().enumerate() {
            let want = p.reference().unwrap();
            let got = pollster::block_on(p.run(&gpu, &op)).unwrap();
            let what = format!("{name} case {i} {:?} {:?}", p.dims, p.slots);
            assert_close(&format!("{what} y"), &got.y, &want.y, TOLERANCE, seed);
            assert_eq!(got.stray, 0, "{what}: y written outside its view");
            assert_close(
                &format!("{what} conv_state"),
                &got.states,
                &want.conv_state,
                TOLERANCE,
                seed,
            );
        }
    }
}

/// Columns t0..t1 of a (rows, L) row-major array.
fn columns(v: &[f32], len: usize, t0: usize, t1: usize) -> Vec<f32> {
    v.chunks(len).flat_map(|r| r[t0..t1].to_vec()).collect()
}

#[test]
fn prefill_then_decode_equals_one_shot() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("causal_conv1d decode-from");
        let (bt, dim, len, w) = (2, 5, 12, 4);
        for p_len in [1, 2, 7] {
            let full = Problem::batched(&mut rng, bt, dim, len, w, options(3), true, true);
            let want = full.reference().unwrap();
            // Prefill the first p_len tokens; final states land in `state`.
            let mut head = full.clone();
            head.dims.len = p_len;
            head.x = columns(&full.x, len, 0, p_len);
            let t = head.upload(&gpu).unwrap();
            let state = t.final_states.clone().unwrap();
            let y_head = gpu.nan_f32(&[bt, dim, p_len]).unwrap();
            let mut batch = gpu.batch();
            CausalConv1d::new(&gpu)
                .unwrap()
                .record(&mut batch, &t.inputs(), &y_head.view())
                .unwrap();
            // Then one token at a time, through the same state tensor, in the same batch.
            let step = CausalConv1dUpdate::new(&gpu).unwrap();
            let mut ys = Vec::new();
            let mut keep = Vec::new();
            for tok in p_len..len {
                let x_t = gpu
                    .upload_f32(&[bt, dim], &columns(&full.x, len, tok, tok + 1))
                    .unwrap();
                let y_t = gpu.nan_f32(&[bt, dim]).unwrap();
                step.record(
                    &mut batch,
                    &CausalConv1dUpdateInputs {
                        x: &x_t.view(),
                        conv_state: &state,
                        weight: &t.weight,
                        bias: t.bias.as_ref(),
                        activation: Activation::Silu,
                        slots: None,
                    },
                    &y_t.view(),
                )
                .unwrap();
                ys.push(y_t);
                keep.push(x_t);
            }
            batch.run().unwrap();
            let head_y = gpu.read_f32(&y_head).unwrap();
            let mut joined = vec![0.0f32; bt * dim * len];
            for row in 0..bt * dim {
                joined[row * len..row * len + p_len]
                    .copy_from_slice(&head_y[row * p_len..(row + 1) * p_len]);
            }
            for (k, y_t) in ys.iter().enumerate() {
                for (row, v) in gpu.read_f32(y_t).unwrap().into_iter().enumerate() {
                    joined[row * len + p_len + k] = v;
                }
            }
            let what = format!("{name} P={p_len}");
            assert_close(&format!("{what} y"), &joined, &want.y, TOLERANCE, seed);
            assert_close(
                &format!("{what} state"),
                &gpu.read_f32(&state).unwrap(),
                &want.states,
                TOLERANCE,
                seed,
            );
        }
    }
}

/// Packed prompts prefilled into a pool, then decoded through the pool by slot: the same as
/// prefilling each prompt with its continuation.
#[test]
fn packed_prefill_then_decode_through_the_pool() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("causal_conv1d packed decode");
        let (dim, w, pool) = (4, 4, 5);
        let prompts = [1usize, 6, 2];
        let extra = 3;
        // The whole sequences (prompt + extra tokens), each its own packed problem for the
        // reference, sharing weights, bias and the pool's initial rows.
        let full: Vec<usize> = prompts.iter().map(|l| l + extra).collect();
        let whole = Problem::packed(&mut rng, dim, &full, w, options(3), Some(pool), &[], true);
        let want = whole.reference().unwrap();
        let slots = whole.slots.clone().unwrap();
        let cu_full = whole.cu_seqlens.clone().unwrap();
        // Prefill: each sequence's first prompts[s] tokens.
        let mut head = whole.clone();
        let mut x = Vec::new();
        let mut cu = vec![0i32];
        for d in 0..dim {
            for (s, &l) in prompts.iter().enumerate() {
                let start = cu_full[s] as usize;
                x.extend_from_slice(&whole.x[d * whole.dims.len + start..][..l]);
            }
        }
        for &l in &prompts {
            cu.push(cu[cu.len() - 1] + l as i32);
        }
        let total: usize = prompts.iter().sum();
        head.x = x;
        head.cu_seqlens = Some(cu.clone());
        head.dims.len = total;
        let t = head.upload(&gpu).unwrap();
        let pool_t = t.state_pool.clone().unwrap();
        let y_head = gpu.nan_f32(&[1, dim, total]).unwrap();
        let mut batch = gpu.batch();
        CausalConv1d::new(&gpu)
            .unwrap()
            .record(&mut batch, &t.inputs(), &y_head.view())
            .unwrap();
        let step = CausalConv1dUpdate::new(&gpu).unwrap();
        let slots_t = gpu.upload_i32(&[prompts.len()], &slots).unwrap();
        let mut ys = Vec::new();
        let mut keep = Vec::new();
        for k in 0..extra {
            // Token prompts[s] + k of each sequence s, as (S, D).
            let mut x_k = Vec::new();
            for (s, &l) in prompts.iter().enumerate() {
                for d in 0..dim {
                    x_k.push(whole.x[d * whole.dims.len + cu_full[s] as usize + l + k]);
                }
            }
            let x_t = gpu.upload_f32(&[prompts.len(), dim], &x_k).unwrap();
            let y_t = gpu.nan_f32(&[prompts.len(), dim]).unwrap();
            step.record(
                &mut batch,
                &CausalConv1dUpdateInputs {
                    x: &x_t.view(),
                    conv_state: &pool_t,
                    weight: &t.weight,
                    bias: t.bias.as_ref(),
                    activation: Activation::Silu,
                    slots: Some(&slots_t),
                },
                &y_t.view(),
            )
            .unwrap();
            ys.push(y_t);
            keep.push(x_t);
        }
        batch.run().unwrap();
        let head_y = gpu.read_f32(&y_head).unwrap();
        let mut joined = vec![f32::NAN; dim * whole.dims.len];
        for d in 0..dim {
            for (s, &l) in prompts.iter().enumerate() {
                for i in 0..l {
                    joined[d * whole.dims.len + cu_full[s] as usize + i] =
                        head_y[d * total + cu[s] as usize + i];
                }
            }
        }
        for (k, y_t) in ys.iter().enumerate() {
            let y = gpu.read_f32(y_t).unwrap();
            for (s, &l) in prompts.iter().enumerate() {
                for d in 0..dim {
                    joined[d * whole.dims.len + cu_full[s] as usize + l + k] = y[s * dim + d];
                }
            }
        }
        assert_close(&format!("{name} y"), &joined, &want.y, TOLERANCE, seed);
        assert_close(
            &format!("{name} pool"),
            &gpu.read_f32(&pool_t).unwrap(),
            &want.states,
            TOLERANCE,
            seed,
        );
    }
}

#[test]
fn misuse_is_a_typed_error_and_records_nothing() {
    let gpu = gpu();
    let f = |shape: &[usize]| gpu.empty(shape, DType::F32).unwrap();
    let (bt, dim, len) = (2, 3, 5);
    let x = f(&[bt, dim, len]);
    let y = f(&[bt, dim, len]);
    let w4 = f(&[dim, 4]);
    let w5 = f(&[dim, 5]);
    let w_bad = f(&[dim + 1, 4]);
    let xv = x.view();
    let yv = y.view();
    let op = CausalConv1d::new(&gpu).unwrap();
    let base = CausalConv1dInputs::new(&xv, &w4);
    let states_bad = f(&[bt, dim, 2]);
    let x1 = f(&[1, dim, len]);
    let x1v = x1.view();
    let y1 = f(&[1, dim, len]);
    let cu = gpu.upload_i32(&[3], &[0, 2, 5]).unwrap();
    let cu_f32 = f(&[3]);
    let pool = f(&[4, dim, 3]);
    let slots_f32 = f(&[2]);
    let slots_bad = gpu.upload_i32(&[3], &[0, 1, 2]).unwrap();
    let y_half = gpu.empty(&[bt, dim, len], DType::F16).unwrap();
    let x_int = gpu.empty(&[bt, dim, len], DType::I32).unwrap().view();
    let packed = CausalConv1dInputs {
        cu_seqlens: Some(&cu),
        state_pool: Some(&pool),
        slots: Some(&slots_bad),
        ..CausalConv1dInputs::new(&x1v, &w4)
    };
    // y (2, 3, 5) through strides that overlap: time steps one element apart, channels two.
    let big = f(&[64]);
    let overlapping = View::as_strided(&big, 0, &[bt, dim, len], &[20, 2, 1]).unwrap();
    let broadcast = View::as_strided(&big, 0, &[bt, dim, len], &[0, 5, 1]).unwrap();
    let cases: Vec<(&str, CausalConv1dInputs, View)> = vec![
        (
            "weight",
            CausalConv1dInputs {
                weight: &w_bad,
                ..base
            },
            yv.clone(),
        ),
        (
            "weight",
            CausalConv1dInputs {
                weight: &w5,
                ..base
            },
            yv.clone(),
        ),
        (
            "bias",
            CausalConv1dInputs {
                bias: Some(&w4),
                ..base
            },
            yv.clone(),
        ),
        (
            "initial_states",
            CausalConv1dInputs {
                initial_states: Some(&states_bad),
                ..base
            },
            yv.clone(),
        ),
        (
            "final_states",
            CausalConv1dInputs {
                final_states: Some(&states_bad),
                ..base
            },
            yv.clone(),
        ),
        ("y", base, y1.view()),
        ("y", base, y_half.view()),
        ("x", CausalConv1dInputs::new(&x_int, &w4), yv.clone()),
        ("y", base, overlapping),
        ("y", base, broadcast),
        ("y", base, x.view()),
        (
            "cu_seqlens",
            CausalConv1dInputs {
                cu_seqlens: Some(&cu_f32),
                ..CausalConv1dInputs::new(&x1v, &w4)
            },
            y1.view(),
        ),
        (
            "x",
            CausalConv1dInputs {
                cu_seqlens: Some(&cu),
                ..base
            },
            yv.clone(),
        ),
        ("slots", packed, y1.view()),
        (
            "slots",
            CausalConv1dInputs {
                slots: Some(&slots_f32),
                ..packed
            },
            y1.view(),
        ),
        (
            "state_pool",
            CausalConv1dInputs {
                slots: None,
                ..packed
            },
            y1.view(),
        ),
        (
            "initial_states",
            CausalConv1dInputs {
                initial_states: Some(&states_bad),
                slots: Some(&cu),
                ..packed
            },
            y1.view(),
        ),
    ];
    for (name, inputs, out) in cases {
        let mut batch = gpu.batch();
        let err = op.record(&mut batch, &inputs, &out).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("`{name}`")),
            "expected an error naming {name}: {msg}"
        );
        assert_eq!(batch.dispatches(), 0, "nothing may be recorded ({msg})");
    }

    // The decode step.
    let state = f(&[bt, dim, 3]);
    let x2 = f(&[bt, dim]);
    let y2 = f(&[bt, dim]);
    let (x2v, y2v) = (x2.view(), y2.view());
    let step = CausalConv1dUpdate::new(&gpu).unwrap();
    let ubase = CausalConv1dUpdateInputs {
        x: &x2v,
        conv_state: &state,
        weight: &w4,
        bias: None,
        activation: Activation::Silu,
        slots: None,
    };
    let slots_i = gpu.upload_i32(&[bt + 1], &[0, 1, 2]).unwrap();
    let state_w3 = f(&[bt, dim, 2]);
    let overlapping2 = View::as_strided(&big, 0, &[bt, dim], &[1, 1]).unwrap();
    let cases: Vec<(&str, CausalConv1dUpdateInputs, View)> = vec![
        (
            "weight",
            CausalConv1dUpdateInputs {
                weight: &w5,
                ..ubase
            },
            y2v.clone(),
        ),
        (
            "conv_state",
            CausalConv1dUpdateInputs {
                conv_state: &state_w3,
                ..ubase
            },
            y2v.clone(),
        ),
        (
            "slots",
            CausalConv1dUpdateInputs {
                slots: Some(&slots_f32),
                ..ubase
            },
            y2v.clone(),
        ),
        (
            "slots",
            CausalConv1dUpdateInputs {
                slots: Some(&slots_i),
                ..ubase
            },
            y2v.clone(),
        ),
        ("y", ubase, overlapping2),
        (
            "y",
            ubase,
            View::as_strided(&state, 0, &[bt, dim], &[3, 1]).unwrap(),
        ),
        ("y", ubase, x2.view()),
    ];
    for (name, inputs, out) in cases {
        let mut batch = gpu.batch();
        let err = step.record(&mut batch, &inputs, &out).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("`{name}`")),
            "expected an error naming {name}: {msg}"
        );
        assert_eq!(batch.dispatches(), 0, "nothing may be recorded ({msg})");
    }
    // A view reaching past its tensor cannot be made.
    assert!(View::as_strided(&big, 60, &[2, 3], &[3, 1]).is_err());
}

/// Half x and y on both devices (native f16 and packed words): odd sizes and column windows
/// (a word shared by two elements of different invocations, or by one inside and one outside
/// the view), batched with states, packed with a pool, and the decode step.
#[test]
fn half_x_and_y() {
    let win = Layout::Window {
        before: 1,
        after: 2,
    };
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("causal_conv1d half");
        let step = CausalConv1dUpdate::new(&gpu).unwrap();
        for dtype in [DType::F16, DType::BF16] {
            for (x, y) in [
                (Layout::ChannelFirst, Layout::ChannelFirst),
                (Layout::ChannelLast, win),
                (win, Layout::ChannelLast),
            ] {
                let p = Problem::batched(&mut rng, 2, 5, 9, 4, options(3), true, true)
                    .with_layouts(x, y)
                    .with_dtype(dtype);
                check_prefill(&p, &gpu, &format!("{name} {dtype} {x:?} {y:?}"), seed);
            }
            let p = Problem::packed(&mut rng, 3, &[1, 7, 2], 4, options(3), Some(4), &[1], true)
                .with_layouts(win, win)
                .with_dtype(dtype);
            check_prefill(&p, &gpu, &format!("{name} {dtype} packed"), seed);
            let p = UpdateProblem::random(&mut rng, 3, 7, 4, options(3), Some(5), &[2])
                .with_layouts(win, Layout::ChannelFirst)
                .with_dtype(dtype);
            let want = p.reference().unwrap();
            let got = pollster::block_on(p.run(&gpu, &step)).unwrap();
            let what = format!("{name} {dtype} update");
            assert_close(
                &format!("{what} y"),
                &got.y,
                &want.y,
                y_tolerance(dtype),
                seed,
            );
            assert_eq!(got.stray, 0, "{what}: y written outside its view");
            assert_close(
                &format!("{what} conv_state"),
                &got.states,
                &want.conv_state,
                TOLERANCE,
                seed,
            );
        }
    }
}

#[test]
fn the_y_tensor_outside_a_window_is_untouched() {
    // place() fills everything outside the view with NaN; gather() counts what changed there.
    let gpu = gpu();
    let (mut rng, seed) = rng("causal_conv1d window");
    let lay = Layout::Window {
        before: 2,
        after: 3,
    };
    let (_, v) = place(&gpu, lay, &[1, 4, 3], DType::F32, None).unwrap();
    assert_eq!(v.strides(), &[27, 1, 9][..]);
    assert_eq!(v.offset(), 2);
    let p = Problem::batched(&mut rng, 1, 4, 3, 2, options(0), false, false).with_layouts(lay, lay);
    check_prefill(&p, &gpu, "window", seed);
}
