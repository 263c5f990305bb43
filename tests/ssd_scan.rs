//! The Mamba-2 SSD scan: the two f64 references agree (recurrence and chunked dual form, ragged
//! lengths, several chunk sizes); the GPU op against the recurrence on fresh random inputs with
//! NaN-poisoned outputs and pool (ragged L incl. 1, < Q and k·Q + 1; G = 1, 2, H; N up to 256,
//! P up to 128; D per head and per channel; with and without z, dt_bias, softplus, dt_limit and
//! initial states); packed ragged batches with strided views into wider buffers and a pool;
//! chunk sizes 16/64/256 agreeing; windowing forced by a small max binding equal to one window;
//! errors naming tensors, a bad chunk size, duplicate slots.

mod common;

use ssm_mla::ops::ssd_scan::{DLayout, SsdOptions, SsdPackedInputs, SsdScan};
use ssm_mla::reference::ssd_scan::SsdOutput;
use ssm_mla::testing::ssd_scan::{dims, Problem, ALL, MAMBA2, TOLERANCE};
use ssm_mla::{compare, Gpu, GpuOptions, Tolerance, View};
use std::sync::Arc;

/// The two f64 references differ only by f64 rounding (sums reordered, exp(a)·exp(b) vs
/// exp(a + b)): 1e-9 absolute and relative.
const REF_TOL: Tolerance = Tolerance::new(1e-9, 1e-9);
/// GPU (f32) against the f64 recurrence: sums of up to 256 terms and states carried across
/// chunks (the fixtures' tolerance, 1e-4 + 1e-3·|ref|).
const GPU_TOL: Tolerance = TOLERANCE;
/// Two GPU runs of the same f32 math in another order (other chunk sizes, windows): rounding
/// only, 1e-4 + 1e-3·|other|.
const SELF_TOL: Tolerance = Tolerance::new(1e-4, 1e-3);

fn check(what: &str, got: &[f32], want: &[f64], tol: Tolerance, seed: u64) -> (f64, f64) {
    let c = compare(got, want, tol);
    assert!(c.passed(), "{what}: {c} (seed {seed})");
    (c.max_abs, c.max_rel)
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn recurrent_equals_quadratic_reference() {
    let (mut rng, seed) = common::rng("ssd references");
    for (lens, g, chunks) in [
        (vec![1usize, 7, 16, 33], 2usize, vec![1usize, 4, 16, 64]),
        (vec![50], 1, vec![7, 16, 50]),
        (vec![0, 3, 0, 20], 4, vec![2, 5]),
    ] {
        let d = dims(1, lens.iter().sum(), 4, 3, g, 5);
        let mut p = Problem::random_lengths(&mut rng, d, &lens, ALL);
        p.dt_limit = (0.001, 0.08);
        let rec: SsdOutput = p.reference().unwrap();
        for q in chunks {
            let quad = p.reference_quadratic(q).unwrap();
            for (what, r, c) in [
                ("out", &rec.out, &quad.out),
                ("final_states", &rec.final_states, &quad.final_states),
            ] {
                for (a, b) in r.iter().zip(c.iter()) {
                    assert!(
                        (a - b).abs() <= REF_TOL.atol + REF_TOL.rtol * b.abs(),
                        "{what} {a} vs {b} (lens {lens:?}, Q={q}, seed {seed})"
                    );
                }
            }
        }
    }
}

fn opts(d: Option<DLayout>, z: bool, bias: bool, softplus: bool, init: bool) -> SsdOptions {
    SsdOptions {
        d,
        z,
        dt_bias: bias,
        dt_softplus: softplus,
        initial_states: init,
    }
}

#[test]
fn gpu_matches_reference_batched() {
    let (mut rng, seed) = common::rng("ssd batched");
    let mut worst = (0.0f64, 0.0f64);
    for (name, gpu) in common::gpus() {
        let op = SsdScan::new(&gpu).unwrap();
        // (Bt, L, H, P, G, N, options, chunk, dt_limit)
        let cases = [
            (2, 1, 2, 4, 1, 8, ALL, 16, None),
            (1, 13, 4, 8, 2, 16, MAMBA2, 16, None),
            (
                2,
                33,
                4,
                5,
                4,
                12,
                opts(Some(DLayout::PerChannel), false, true, false, true),
                32,
                None,
            ),
            (
                1,
                65,
                2,
                16,
                1,
                32,
                opts(None, true, false, true, false),
                64,
                Some((0.01, 0.1)),
            ),
            (1, 40, 2, 128, 1, 24, MAMBA2, 16, None),
            (1, 20, 2, 8, 2, 256, ALL, 16, None),
            // Multiples of 4 that are not of 8 (the vec4 register tiles' clamped halves).
            (1, 37, 3, 12, 1, 20, ALL, 16, None),
            // P and N multiples of 64: on CPU devices with subgroups, stages 3 and 5 share
            // their row loads across a subgroup (ragged chunks, two sequences, groups).
            (2, 77, 3, 64, 1, 128, MAMBA2, 32, None),
            (1, 45, 4, 64, 2, 64, ALL, 16, None),
            // N a multiple of 64 with P not one of 16 (stage 3's 16-row blocks cut short).
            (1, 30, 2, 20, 1, 64, ALL, 16, None),
        ];
        for (bt, l, h, p, g, n, o, q, limit) in cases {
            let mut pr = Problem::random(&mut rng, dims(bt, l, h, p, g, n), o);
            pr.chunk_size = q;
            if let Some(lim) = limit {
                pr.dt_limit = lim;
            }
            let want = pr.reference().unwrap();
            let (out, finals) = pollster::block_on(pr.run(&gpu, &op)).unwrap();
            let what = format!("{name} Bt={bt} L={l} H={h} P={p} G={g} N={n} Q={q}");
            let a = check(&format!("{what} out"), &out, &want.out, GPU_TOL, seed);
            let b = check(
                &format!("{what} final_states"),
                &finals,
                &want.final_states,
                GPU_TOL,
                seed,
            );
            worst = (worst.0.max(a.0).max(b.0), worst.1.max(a.1).max(b.1));
        }
    }
    eprintln!(
        "ssd batched: max abs {:.2e}, max rel {:.2e}",
        worst.0, worst.1
    );
}

#[test]
fn chunk_sizes_agree() {
    let (mut rng, seed) = common::rng("ssd chunk sizes");
    let gpu = common::gpu();
    let op = SsdScan::new(&gpu).unwrap();
    let mut pr = Problem::random(&mut rng, dims(1, 300, 2, 8, 1, 16), ALL);
    let want = pr.reference().unwrap();
    let mut runs = Vec::new();
    for q in [16, 64, 256] {
        pr.chunk_size = q;
        let (out, finals) = pollster::block_on(pr.run(&gpu, &op)).unwrap();
        check(&format!("Q={q} out"), &out, &want.out, GPU_TOL, seed);
        check(
            &format!("Q={q} final_states"),
            &finals,
            &want.final_states,
            GPU_TOL,
            seed,
        );
        runs.push((out, finals));
    }
    for (q, r) in [(64, &runs[1]), (256, &runs[2])] {
        check(
            &format!("Q=16 vs Q={q} out"),
            &runs[0].0,
            &widen(&r.0),
            SELF_TOL,
            seed,
        );
        check(
            &format!("Q=16 vs Q={q} states"),
            &runs[0].1,
            &widen(&r.1),
            SELF_TOL,
            seed,
        );
    }
}

/// Column window `c0 .. c0 + w` of every row of a (T, width) matrix.
fn scatter(dst: &mut [f32], width: usize, c0: usize, src: &[f32], w: usize) {
    for (t, row) in src.chunks(w).enumerate() {
        dst[t * width + c0..t * width + c0 + w].copy_from_slice(row);
    }
}

/// `aligned`: every view's offset and strides a multiple of 4 (what a model's projections give,
/// and what the vec4 kernels need); otherwise odd ones (the scalar kernels).
#[allow(clippy::too_many_arguments)]
fn packed_case(
    gpu: &Arc<Gpu>,
    op: &SsdScan,
    lens: &[usize],
    g: usize,
    q: usize,
    aligned: bool,
    seed: u64,
    rng: &mut ssm_mla::Rng,
) -> (Vec<f32>, Vec<f32>) {
    let (h, p, n) = (4, 8, 16);
    let t: usize = lens.iter().sum();
    let s = lens.len();
    let mut pr = Problem::random_lengths(rng, dims(1, t, h, p, g, n), lens, ALL);
    pr.chunk_size = q;
    let pool_rows = s + 2;
    let slots: Vec<u32> = (0..s).map(|i| ((2 * i + 1) % pool_rows) as u32).collect();
    let init = pr.initial_states.clone().unwrap();
    // The pool: poisoned rows except the sequences' slots, which hold their initial states.
    let hpn = h * p * n;
    let mut pool = vec![f32::NAN; pool_rows * hpn];
    for (i, &slot) in slots.iter().enumerate() {
        pool[slot as usize * hpn..][..hpn].copy_from_slice(&init[i * hpn..][..hpn]);
    }
    // A conv-output-like buffer (T, conv_dim): x | B | C, plus an in_proj-like (T, proj_dim)
    // holding z | dt.
    let (hp, gn) = (h * p, g * n);
    let zo = if aligned { 4 } else { 1 }; // offset of z in proj and of out in its buffer
    let conv_dim = hp + 2 * gn + 3 + aligned as usize;
    let mut conv = vec![f32::NAN; t * conv_dim];
    scatter(&mut conv, conv_dim, 0, &pr.x, hp);
    scatter(&mut conv, conv_dim, hp, &pr.b, gn);
    scatter(&mut conv, conv_dim, hp + gn, &pr.c, gn);
    let proj_dim = zo + hp + h + 4;
    let mut proj = vec![f32::NAN; t * proj_dim];
    scatter(&mut proj, proj_dim, zo, pr.z.as_ref().unwrap(), hp);
    scatter(&mut proj, proj_dim, zo + hp, &pr.dt, h);
    let conv_g = gpu.upload_f32(&[t.max(1), conv_dim], &conv).unwrap();
    let proj_g = gpu.upload_f32(&[t.max(1), proj_dim], &proj).unwrap();
    let x = View::as_strided(&conv_g, 0, &[t, h, p], &[conv_dim, p, 1]).unwrap();
    let b = View::as_strided(&conv_g, hp, &[t, g, n], &[conv_dim, n, 1]).unwrap();
    let c = View::as_strided(&conv_g, hp + gn, &[t, g, n], &[conv_dim, n, 1]).unwrap();
    let z = View::as_strided(&proj_g, zo, &[t, h, p], &[proj_dim, p, 1]).unwrap();
    let dt = View::as_strided(&proj_g, zo + hp, &[t, h], &[proj_dim, 1]).unwrap();
    let a = gpu.upload_f32(&[h], &pr.a).unwrap();
    let d = gpu.upload_f32(&[h, p], pr.d.as_ref().unwrap()).unwrap();
    let bias = gpu.upload_f32(&[h], pr.dt_bias.as_ref().unwrap()).unwrap();
    // out: a column window of a wider poisoned buffer.
    let out_w = hp + 2 * zo;
    let out_g = gpu.nan_f32(&[t.max(1), out_w]).unwrap();
    let out = View::as_strided(&out_g, zo, &[t, h, p], &[out_w, p, 1]).unwrap();
    let pool_g = gpu.upload_f32(&[pool_rows, h, p, n], &pool).unwrap();
    let cu: Vec<u32> = pr.cu_seqlens().iter().map(|&v| v as u32).collect();
    let inputs = SsdPackedInputs {
        x: &x,
        dt: &dt,
        a: &a,
        b: &b,
        c: &c,
        d: Some(&d),
        z: Some(&z),
        dt_bias: Some(&bias),
        dt_softplus: true,
        dt_limit: (0.0, f32::INFINITY),
        chunk_size: q,
        cu_seqlens: &cu,
        slots: &slots,
    };
    let mut batch = gpu.batch();
    op.record_packed(&mut batch, &inputs, &out, &pool_g)
        .unwrap();
    batch.run().unwrap();
    let want = pr.reference().unwrap();
    let out_all = gpu.read_f32(&out_g).unwrap();
    let got: Vec<f32> = (0..t)
        .flat_map(|i| out_all[i * out_w + zo..i * out_w + zo + hp].to_vec())
        .collect();
    let what = format!("packed lens {lens:?} G={g} Q={q} aligned={aligned}");
    check(&format!("{what} out"), &got, &want.out, GPU_TOL, seed);
    for i in 0..t {
        assert!(
            out_all[i * out_w + zo - 1].is_nan() && out_all[i * out_w + zo + hp].is_nan(),
            "{what}: wrote outside out"
        );
    }
    let pool_after = gpu.read_f32(&pool_g).unwrap();
    let mut finals = Vec::new();
    for (i, &slot) in slots.iter().enumerate() {
        let row = &pool_after[slot as usize * hpn..][..hpn];
        check(
            &format!("{what} state {i}"),
            row,
            &want.final_states[i * hpn..][..hpn],
            GPU_TOL,
            seed,
        );
        finals.extend_from_slice(row);
    }
    for row in 0..pool_rows {
        if !slots.contains(&(row as u32)) {
            assert!(
                pool_after[row * hpn..][..hpn].iter().all(|v| v.is_nan()),
                "{what}: pool row {row} touched"
            );
        }
    }
    (got, finals)
}

#[test]
fn packed_ragged_views_and_pool() {
    let (mut rng, seed) = common::rng("ssd packed");
    for (_, gpu) in common::gpus() {
        let op = SsdScan::new(&gpu).unwrap();
        for aligned in [false, true] {
            packed_case(
                &gpu,
                &op,
                &[5, 0, 1, 40, 17],
                2,
                16,
                aligned,
                seed,
                &mut rng,
            );
            packed_case(&gpu, &op, &[1], 4, 32, aligned, seed, &mut rng);
            packed_case(&gpu, &op, &[65, 3], 1, 64, aligned, seed, &mut rng);
        }
    }
}

#[test]
fn windows_equal_one_window() {
    let (mut rng, seed) = common::rng("ssd windows");
    let gpu = common::gpu();
    // One chunk's state is H·P·N = 2·8·16 floats = 1 KiB: 4 KiB holds 3 chunks after alignment.
    let small = Arc::new(
        Gpu::with_options(&GpuOptions {
            max_storage_binding: Some(4096),
            ..Default::default()
        })
        .unwrap(),
    );
    let mut pr = Problem::random(&mut rng, dims(2, 70, 2, 8, 1, 16), ALL);
    pr.chunk_size = 16;
    let want = pr.reference().unwrap();
    let (out1, fin1) = pollster::block_on(pr.run(&gpu, &SsdScan::new(&gpu).unwrap())).unwrap();
    let (out2, fin2) = pollster::block_on(pr.run(&small, &SsdScan::new(&small).unwrap())).unwrap();
    // The windows really were cut: more than one window's five dispatches.
    let t = pr.upload(&small).unwrap();
    let (o, f) = pr.poisoned_outputs(&small).unwrap();
    let mut batch = small.batch();
    SsdScan::new(&small)
        .unwrap()
        .record(&mut batch, &t.inputs(), &o, &f)
        .unwrap();
    assert!(batch.dispatches() > 5, "{} dispatches", batch.dispatches());
    check("one window out", &out1, &want.out, GPU_TOL, seed);
    check("windows out", &out2, &want.out, GPU_TOL, seed);
    check(
        "windows final_states",
        &fin2,
        &want.final_states,
        GPU_TOL,
        seed,
    );
    check(
        "windows vs one window",
        &out2,
        &widen(&out1),
        SELF_TOL,
        seed,
    );
    check(
        "windows vs one window states",
        &fin2,
        &widen(&fin1),
        SELF_TOL,
        seed,
    );
}

#[test]
fn errors_name_the_tensor_and_record_nothing() {
    let (mut rng, _) = common::rng("ssd errors");
    let gpu = common::gpu();
    let op = SsdScan::new(&gpu).unwrap();
    let pr = Problem::random(&mut rng, dims(1, 20, 4, 8, 2, 16), MAMBA2);
    let t = pr.upload(&gpu).unwrap();
    let (out, finals) = pr.poisoned_outputs(&gpu).unwrap();
    let bad_c = gpu.nan_f32(&[1, 20, 2, 17]).unwrap();
    let bad_a = gpu.nan_f32(&[3]).unwrap();
    let bad_out = gpu.nan_f32(&[1, 20, 4, 7]).unwrap();
    let mut batch = gpu.batch();
    let base = t.inputs();
    let err = op
        .record(
            &mut batch,
            &ssm_mla::ops::ssd_scan::SsdInputs { c: &bad_c, ..base },
            &out,
            &finals,
        )
        .unwrap_err();
    assert!(err.to_string().contains("`C`"), "{err}");
    let err = op
        .record(
            &mut batch,
            &ssm_mla::ops::ssd_scan::SsdInputs { a: &bad_a, ..base },
            &out,
            &finals,
        )
        .unwrap_err();
    assert!(err.to_string().contains("`A`"), "{err}");
    let err = op.record(&mut batch, &base, &bad_out, &finals).unwrap_err();
    assert!(err.to_string().contains("`out`"), "{err}");
    let err = op
        .record(
            &mut batch,
            &ssm_mla::ops::ssd_scan::SsdInputs {
                chunk_size: 40,
                ..base
            },
            &out,
            &finals,
        )
        .unwrap_err();
    assert!(err.to_string().contains("chunk_size"), "{err}");
    let err = op
        .record(
            &mut batch,
            &ssm_mla::ops::ssd_scan::SsdInputs {
                dt_limit: (0.5, 0.1),
                ..base
            },
            &out,
            &finals,
        )
        .unwrap_err();
    assert!(err.to_string().contains("dt_limit"), "{err}");
    // Packed: duplicate slots, bad cu_seqlens.
    let x = t.x.reshaped(&[20, 4, 8]).unwrap().view();
    let dt = t.dt.reshaped(&[20, 4]).unwrap().view();
    let b = t.b.reshaped(&[20, 2, 16]).unwrap().view();
    let c = t.c.reshaped(&[20, 2, 16]).unwrap().view();
    let out_v = out.reshaped(&[20, 4, 8]).unwrap().view();
    let pool = gpu.nan_f32(&[3, 4, 8, 16]).unwrap();
    let packed = SsdPackedInputs {
        x: &x,
        dt: &dt,
        a: &t.a,
        b: &b,
        c: &c,
        d: None,
        z: None,
        dt_bias: None,
        dt_softplus: true,
        dt_limit: (0.0, f32::INFINITY),
        chunk_size: 16,
        cu_seqlens: &[0, 5, 20],
        slots: &[1, 1],
    };
    let err = op
        .record_packed(&mut batch, &packed, &out_v, &pool)
        .unwrap_err();
    assert!(err.to_string().contains("slots"), "{err}");
    let err = op
        .record_packed(
            &mut batch,
            &SsdPackedInputs {
                slots: &[0, 3],
                ..packed
            },
            &out_v,
            &pool,
        )
        .unwrap_err();
    assert!(err.to_string().contains("slots"), "{err}");
    let err = op
        .record_packed(
            &mut batch,
            &SsdPackedInputs {
                cu_seqlens: &[0, 5, 19],
                slots: &[0, 1],
                ..packed
            },
            &out_v,
            &pool,
        )
        .unwrap_err();
    assert!(err.to_string().contains("cu_seqlens"), "{err}");
    // out aliasing x is refused.
    let err = op
        .record_packed(
            &mut batch,
            &SsdPackedInputs {
                slots: &[0, 1],
                ..packed
            },
            &x,
            &pool,
        )
        .unwrap_err();
    assert!(err.to_string().contains("shares"), "{err}");
    assert_eq!(batch.dispatches(), 0);
}
