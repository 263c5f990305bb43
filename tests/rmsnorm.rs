//! Conformance of `rmsnorm` against its f64 CPU reference: widths 1, ragged, wider than a
//! workgroup (1536, 3000), strided rows in and out (the latent-row case), and shape errors.
//! Tolerance: atol 1e-5, rtol 1e-4 (one f32 square-sum of ≤ 3000 terms, then a scale).
//!
//! Half rows (x and y f16 or bf16, w f32 or the rows' dtype): x and w are rounded to their
//! dtypes on the host and the f64 reference runs on those values, so only the f32 math and
//! y's final rounding differ: rtol 1e-4 + 2^-8 for bf16 (round to nearest even of 8
//! significant bits), 1e-4 + 2^-10 for f16 (`pack2x16float` may pick either neighbour: one
//! ulp of 11 significant bits); atol 1e-5 (y is O(1)). See `testing::rmsnorm::y_tolerance`.
//! Both the packed-u32 path and (where the device has SHADER_F16) native f16 run: `gpus()`
//! gives a device with every optional feature and one with them withheld.
//!
//! The gated, grouped form (`record_gated`, Mamba-2's `MambaRMSNormGated`): groups 1, 2, 8,
//! both gate orders, ragged rows, z a column window with row stride > d, f32 and half rows, the
//! same tolerances (the gate adds one f32 silu per element, a few ulps); errors naming z or the
//! group size.

mod common;
use common::*;
use ssm_mla::ops::rmsnorm::{Gate, RmsNorm, Rows};
use ssm_mla::testing::rmsnorm::{GatedProblem, Problem, TOLERANCE as TOL};
use ssm_mla::{DType, View};

#[test]
fn half_rows_match_reference() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("rmsnorm-half");
        let op = RmsNorm::new(&gpu).unwrap();
        // (rows, d, extra, x offset): size 1; odd width at an odd offset and stride (words
        // straddle rows: the scalar path's atomics); vec4-aligned (the vec4 path); wider than a
        // workgroup, unaligned.
        for (rows, d, extra, x_off) in [
            (1usize, 1usize, 0usize, 0usize),
            (3, 7, 2, 1),
            (5, 32, 8, 4),
            (2, 257, 3, 2),
            (3, 512, 0, 0),
        ] {
            for dtype in [DType::F16, DType::BF16] {
                for w_dtype in [DType::F32, dtype] {
                    let x_rows = Rows {
                        offset: x_off,
                        stride: d + extra,
                    };
                    let p = Problem::strided(&mut rng, rows, d, x_rows).with_dtype(dtype, w_dtype);
                    let out = pollster::block_on(p.run(&gpu, &op)).unwrap();
                    assert_close(
                        &format!("{name} {dtype} w {w_dtype} rows={rows} d={d} x_off={x_off}"),
                        &p.rows_of(&out),
                        &p.reference(),
                        p.tolerance(),
                        seed,
                    );
                    let stride = d + extra;
                    for r in 0..rows {
                        assert!(out[r * stride + d..(r + 1) * stride]
                            .iter()
                            .all(|v| v.is_nan()));
                    }
                }
            }
        }
    }
}

#[test]
fn rejects_bad_dtypes_without_recording() {
    let gpu = gpu();
    let op = RmsNorm::new(&gpu).unwrap();
    let l = Rows::contiguous(4);
    let x = gpu.upload_f32_as(&[2, 4], DType::BF16, &[1.0; 8]).unwrap();
    let w16 = gpu.upload_f32_as(&[4], DType::F16, &[1.0; 4]).unwrap();
    let wbf = gpu.upload_f32_as(&[4], DType::BF16, &[1.0; 4]).unwrap();
    let y32 = gpu.nan_f32(&[2, 4]).unwrap();
    let ybf = gpu.nan_as(&[2, 4], DType::BF16).unwrap();
    let mut batch = gpu.batch();
    // y of another dtype than x.
    let e = op
        .record(&mut batch, &x, l, &wbf, &y32, l, 2, 1e-6)
        .unwrap_err();
    assert!(e.to_string().contains("`y`"), "{e}");
    // w half of another dtype than x.
    let e = op
        .record(&mut batch, &x, l, &w16, &ybf, l, 2, 1e-6)
        .unwrap_err();
    assert!(e.to_string().contains("`w`"), "{e}");
    // f32 rows with a half weight.
    let x32 = gpu.upload_f32(&[2, 4], &[1.0; 8]).unwrap();
    let e = op
        .record(&mut batch, &x32, l, &wbf, &y32, l, 2, 1e-6)
        .unwrap_err();
    assert!(e.to_string().contains("`w`"), "{e}");
    // Integer rows.
    let xi = gpu.upload_u32(&[2, 4], &[1; 8]).unwrap();
    let e = op
        .record(&mut batch, &xi, l, &wbf, &y32, l, 2, 1e-6)
        .unwrap_err();
    assert!(e.to_string().contains("`x`"), "{e}");
    assert_eq!(batch.dispatches(), 0);
}

#[test]
fn matches_reference_contiguous_and_strided() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("rmsnorm");
        let op = RmsNorm::new(&gpu).unwrap();
        for (rows, d, extra, eps) in [
            (1usize, 1usize, 0usize, 1e-6f32),
            (3, 7, 0, 1e-6),
            (5, 32, 8, 1e-5),
            (2, 257, 3, 1e-6),
            (4, 1536, 0, 1e-6),
            (1, 3000, 64, 1e-6),
            (19, 64, 4, 1e-6),
        ] {
            // x offset 2: the scalar kernel; 4 (with d and the stride multiples of 4): the vec4 one.
            for x_off in [2usize, 4] {
                // x rows have `extra` trailing values (like kv's k_rope part) the norm must skip;
                // y rows are also strided, written into a NaN-poisoned wider matrix.
                let stride = d + extra;
                let x_rows = Rows {
                    offset: x_off,
                    stride,
                };
                let p = Problem {
                    eps,
                    ..Problem::strided(&mut rng, rows, d, x_rows)
                };
                let out = pollster::block_on(p.run(&gpu, &op)).unwrap();
                assert_close(
                    &format!("{name} rows={rows} d={d} x_off={x_off}"),
                    &p.rows_of(&out),
                    &p.reference(),
                    TOL,
                    seed,
                );
                // The columns past d are untouched.
                for r in 0..rows {
                    assert!(out[r * stride + d..(r + 1) * stride]
                        .iter()
                        .all(|v| v.is_nan()));
                }
            }
        }
    }
}

#[test]
fn rejects_bad_shapes_without_recording() {
    let gpu = gpu();
    let op = RmsNorm::new(&gpu).unwrap();
    let x = gpu.upload_f32(&[2, 4], &[1.0; 8]).unwrap();
    let w = gpu.upload_f32(&[4], &[1.0; 4]).unwrap();
    let y = gpu.nan_f32(&[2, 3]).unwrap();
    let mut batch = gpu.batch();
    let l = Rows::contiguous(4);
    let e = op
        .record(&mut batch, &x, l, &w, &y, l, 2, 1e-6)
        .unwrap_err();
    assert!(e.to_string().contains("`y`"), "{e}");
    let e = op
        .record(&mut batch, &x, l, &w, &x, l, 3, 1e-6)
        .unwrap_err();
    assert!(e.to_string().contains("`x`"), "{e}");
    let y = gpu.nan_f32(&[2, 4]).unwrap();
    let e = op
        .record(&mut batch, &x, l, &w, &y, l, 2, -1.0)
        .unwrap_err();
    assert!(e.to_string().contains("eps"), "{e}");
    assert_eq!(batch.dispatches(), 0);
}

/// The gated, grouped norm (Mamba-2's `MambaRMSNormGated`): groups 1, 2, 8, both gate orders,
/// ragged rows, z a column window with row stride > d at an offset (unaligned: the scalar
/// kernel; aligned: the vec4 one), f32 and half rows; y poisoned and its spare columns stay
/// NaN. Max errors printed.
#[test]
fn gated_grouped_matches_reference() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("rmsnorm gated");
        let op = RmsNorm::new(&gpu).unwrap();
        // (rows, d, extra x columns, x offset, z offset, extra z columns)
        for (rows, d, extra, x_off, z_off, z_extra) in [
            (1usize, 8usize, 0usize, 0usize, 0usize, 0usize),
            (3, 24, 2, 1, 3, 5),
            (5, 64, 4, 4, 0, 40),
            (7, 1536, 0, 0, 0, 1816),
            (2, 200, 3, 2, 7, 1),
        ] {
            for groups in [1usize, 2, 8] {
                for norm_before_gate in [false, true] {
                    for dtype in [DType::F32, DType::BF16, DType::F16] {
                        let x_rows = Rows {
                            offset: x_off,
                            stride: d + extra,
                        };
                        let p = GatedProblem::random(
                            &mut rng,
                            rows,
                            d,
                            x_rows,
                            z_off,
                            z_off + d + z_extra,
                            groups,
                            norm_before_gate,
                        )
                        .with_dtype(dtype, dtype);
                        let out = pollster::block_on(p.run(&gpu, &op)).unwrap();
                        let what = format!(
                            "{name} {dtype} rows={rows} d={d} groups={groups} \
                             norm_before_gate={norm_before_gate} x_off={x_off} z_off={z_off}"
                        );
                        let got = p.base.rows_of(&out);
                        let want = p.reference();
                        assert_close(&what, &got, &want, p.base.tolerance(), seed);
                        if d == 1536 && groups == 8 {
                            let err = got
                                .iter()
                                .zip(&want)
                                .map(|(&g, &w)| (g as f64 - w).abs())
                                .fold(0.0, f64::max);
                            println!("{what}: max |err| {err:.2e}");
                        }
                        let stride = d + extra;
                        for r in 0..rows {
                            assert!(out[r * stride + d..(r + 1) * stride]
                                .iter()
                                .all(|v| v.is_nan()));
                        }
                    }
                }
            }
        }
    }
}

/// The gate must not be a no-op: the gated norm differs from the plain one, and the two gate
/// orders differ from each other (so the tests above would notice a swapped order).
#[test]
fn gate_orders_differ() {
    let (mut rng, _) = rng("rmsnorm gate orders");
    let p = GatedProblem::random(&mut rng, 2, 16, Rows::contiguous(16), 0, 16, 2, false);
    let q = GatedProblem {
        norm_before_gate: true,
        ..p.clone()
    };
    assert!(p.reference() != q.reference());
    assert!(p.reference() != p.base.reference());
}

/// Bad gated calls: an error naming z (shape, dtype, inner stride, y's buffer) or the group
/// size, nothing recorded.
#[test]
fn gated_errors_name_the_problem() {
    let gpu = gpu();
    let op = RmsNorm::new(&gpu).unwrap();
    let (rows, d) = (2, 8);
    let l = Rows::contiguous(d);
    let x = gpu.upload_f32(&[rows, d], &[1.0; 16]).unwrap();
    let w = gpu.upload_f32(&[d], &[1.0; 8]).unwrap();
    let y = gpu.nan_f32(&[rows, d]).unwrap();
    let z_t = gpu.upload_f32(&[rows, 2 * d], &[0.5; 32]).unwrap();
    let z = View::as_strided(&z_t, 0, &[rows, d], &[2 * d, 1]).unwrap();
    let z_short = View::as_strided(&z_t, 0, &[rows, d - 1], &[2 * d, 1]).unwrap();
    let z_every_other = View::as_strided(&z_t, 0, &[rows, d], &[2 * d, 2]).unwrap();
    let z_bf_t = gpu
        .upload_f32_as(&[rows, d], DType::BF16, &[0.5; 16])
        .unwrap();
    let z_bf = z_bf_t.view();
    let y_view = y.view();
    let gate = |z| Gate {
        z,
        norm_before_gate: false,
    };
    let mut batch = gpu.batch();
    op.record_gated(&mut gpu.batch(), &x, l, &gate(&z), &w, 4, &y, l, rows, 1e-5)
        .unwrap();
    for (want, z, group) in [
        ("`z`", &z_short, 4),
        ("`z`", &z_bf, 4),
        ("`z`", &z_every_other, 4),
        ("`z`", &y_view, 4),
        ("group_size", &z, 3),
        ("group_size", &z, 0),
    ] {
        let e = op
            .record_gated(&mut batch, &x, l, &gate(z), &w, group, &y, l, rows, 1e-5)
            .unwrap_err();
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
    assert_eq!(batch.dispatches(), 0);
}
