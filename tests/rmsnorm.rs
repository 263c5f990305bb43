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

mod common;
use common::*;
use ssm_mla::ops::rmsnorm::{RmsNorm, Rows};
use ssm_mla::testing::rmsnorm::{Problem, TOLERANCE as TOL};
use ssm_mla::DType;

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
                    let out = p.run(&gpu, &op).unwrap();
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
                let out = p.run(&gpu, &op).unwrap();
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
