//! Conformance of `matmul` against its f64 CPU reference: plain `Linear` products with and
//! without bias over every tile shape (M = 1, ragged, larger than a 64×64 tile, ragged K), the
//! strided per-head absorb products of MLA (W not transposed and transposed, head slices of
//! kv_b_proj), size-1 edges, and shape errors. Cases with K (and the strides) multiples of 4 run
//! the vec4 kernel, the others the tiled one.
//! Tolerance: atol 1e-5, rtol 1e-4 (f32 accumulation over K ≤ 300 of O(1) terms).
//! Half weights (f16, bf16; f16 both native and through u32 words, the fallback device having no
//! `SHADER_F16`): the same tolerance, because the reference is fed the same rounded weights and
//! widening a half to f32 is exact, so only the f32 accumulation differs.
//! Half activations (x and y f16 or bf16, with every weight dtype): x is rounded on the host and
//! the reference fed the rounded values, so only the f32 accumulation and y's final rounding
//! differ: rtol 1e-4 + 2^-8 for bf16 y (nearest even of 8 significant bits), 1e-4 + 2^-10 for
//! f16 y (`pack2x16float` may pick either neighbour: one ulp), atol 1e-5 (outputs are O(1)); see
//! `testing::matmul::y_tolerance`.

mod common;
use common::*;
use ssm_mla::ops::matmul::{prefill_rows, Matmul, MatmulDims, SUBGROUP_MIN_M};
use ssm_mla::testing::matmul::{Problem, HALF_W_TOLERANCE, TOLERANCE as TOL};
use ssm_mla::DType;

/// Half activations with f32, f16 and bf16 weights on both kernels (vec4: K and the strides
/// multiples of 4; tiled otherwise), odd N (y words shared by neighbouring invocations and
/// rows), size 1, y poisoned, and the strided absorb layout (x head slices).
#[test]
fn half_activations_match_reference() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("matmul half activations");
        let op = Matmul::new(&gpu).unwrap();
        for act in [DType::F16, DType::BF16] {
            for w_dtype in [DType::F32, DType::F16, DType::BF16] {
                for (m, n, k, with_bias) in [
                    (1usize, 1usize, 1usize, true),
                    (3, 7, 5, false),
                    (1, 65, 8, true),
                    (5, 9, 12, false),
                    (19, 33, 20, true),
                ] {
                    let p = Problem::linear(&mut rng, m, n, k, with_bias)
                        .with_w_dtype(w_dtype)
                        .with_x_dtype(act);
                    assert_close(
                        &format!("{name} x {act} w {w_dtype} M={m} N={n} K={k} bias={with_bias}"),
                        &pollster::block_on(p.run(&gpu, &op)).unwrap(),
                        &p.reference(),
                        p.tolerance(),
                        seed,
                    );
                }
            }
            // q_lat[t, h, c] = Σ_e q_nope[t, h, e] · kv_b[h·(nope+v) + e, c] (W not transposed).
            for (t, h, nope, v, d_c) in [(3usize, 3usize, 8usize, 4usize, 12usize), (2, 2, 5, 3, 7)]
            {
                let dims = MatmulDims {
                    g: h,
                    m: t,
                    n: d_c,
                    k: nope,
                    x_off: 0,
                    x_gs: nope + v,
                    x_rs: h * (nope + v),
                    w_off: 0,
                    w_gs: (nope + v) * d_c,
                    w_rs: d_c,
                    w_trans: false,
                    y_off: 0,
                    y_gs: d_c,
                    y_rs: h * d_c,
                };
                let kv_b = [h * (nope + v), d_c];
                let p = Problem::strided(
                    &mut rng,
                    dims,
                    &[t, h * (nope + v)],
                    &kv_b,
                    &[t, h * d_c],
                    false,
                )
                .with_w_dtype(act)
                .with_x_dtype(act);
                assert_close(
                    &format!("{name} {act} absorb q T={t} H={h} nope={nope} d_c={d_c}"),
                    &pollster::block_on(p.run(&gpu, &op)).unwrap(),
                    &p.reference(),
                    p.tolerance(),
                    seed,
                );
            }
        }
    }
}

#[test]
fn rejects_mismatched_activation_dtypes_without_recording() {
    let gpu = gpu();
    let op = Matmul::new(&gpu).unwrap();
    let x = gpu.upload_f32_as(&[2, 3], DType::BF16, &[0.0; 6]).unwrap();
    let w = gpu.upload_f32(&[4, 3], &[0.0; 12]).unwrap();
    let mut batch = gpu.batch();
    for y_dtype in [DType::F32, DType::F16] {
        let y = gpu.nan_as(&[2, 4], y_dtype).unwrap();
        let e = op.record_linear(&mut batch, &x, &w, None, &y).unwrap_err();
        assert!(e.to_string().contains("`y`"), "{e}");
    }
    let xi = gpu.upload_u32(&[2, 3], &[0; 6]).unwrap();
    let y = gpu.nan_f32(&[2, 4]).unwrap();
    let e = op.record_linear(&mut batch, &xi, &w, None, &y).unwrap_err();
    assert!(e.to_string().contains("`x`"), "{e}");
    assert_eq!(batch.dispatches(), 0, "nothing may be recorded on error");
}

/// Half weights on both kernels (vec4 and tiled), odd counts of halves, size 1, y poisoned,
/// and the strided per-head absorb layout (w offsets into kv_b_proj).
#[test]
fn half_weights_match_reference_on_the_same_rounded_weights() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("matmul half weights");
        let op = Matmul::new(&gpu).unwrap();
        for dtype in [DType::F16, DType::BF16] {
            for (m, n, k, with_bias) in [
                (1usize, 1usize, 1usize, true),
                (3, 7, 5, false),
                (67, 130, 45, true),
                (1, 65, 8, true),
                (2, 7, 12, false),
                (4, 129, 20, true),
                (67, 130, 44, false),
            ] {
                let p = Problem::linear(&mut rng, m, n, k, with_bias).with_w_dtype(dtype);
                let t = p.upload(&gpu).unwrap();
                assert_eq!(t.w.dtype(), dtype);
                let y = gpu.nan_f32(&[m, n]).unwrap();
                let mut batch = gpu.batch();
                op.record_linear(&mut batch, &t.x, &t.w, t.bias.as_ref(), &y)
                    .unwrap();
                batch.run().unwrap();
                assert_close(
                    &format!("{name} {dtype} M={m} N={n} K={k} bias={with_bias}"),
                    &gpu.read_f32(&y).unwrap(),
                    &p.reference(),
                    HALF_W_TOLERANCE,
                    seed,
                );
            }
            // o[t, h, e] = Σ_c o_lat[t, h, c] · kv_b[h·(nope+v) + nope + e, c], both alignments.
            for (t, h, nope, v, d_c) in
                [(3usize, 3usize, 8usize, 12usize, 20usize), (2, 2, 5, 3, 7)]
            {
                let dims = MatmulDims {
                    g: h,
                    m: t,
                    n: v,
                    k: d_c,
                    x_off: 0,
                    x_gs: d_c,
                    x_rs: h * d_c,
                    w_off: nope * d_c,
                    w_gs: (nope + v) * d_c,
                    w_rs: d_c,
                    w_trans: true,
                    y_off: 0,
                    y_gs: v,
                    y_rs: h * v,
                };
                let kv_b = [h * (nope + v), d_c];
                let p = Problem::strided(&mut rng, dims, &[t, h, d_c], &kv_b, &[t, h * v], false)
                    .with_w_dtype(dtype);
                assert_close(
                    &format!("{name} {dtype} absorb o T={t} H={h} d_c={d_c}"),
                    &pollster::block_on(p.run(&gpu, &op)).unwrap(),
                    &p.reference(),
                    HALF_W_TOLERANCE,
                    seed,
                );
            }
        }
    }
}

#[test]
fn linear_matches_reference_at_every_tile_shape() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("matmul linear");
        let op = Matmul::new(&gpu).unwrap();
        for (m, n, k, with_bias) in [
            (1usize, 1usize, 1usize, true),
            (1, 65, 7, false),
            (3, 64, 16, true),
            (4, 129, 17, false),
            (11, 70, 33, true),
            (16, 5, 300, false),
            (67, 130, 45, true),
            (128, 64, 64, false),
            // K a multiple of 4: the vec4 kernel (rows per invocation 1, 2, 4 and 8, N ragged
            // within a block of 8 columns, N < 4, more rows than one block).
            (1, 65, 8, true),
            (2, 7, 12, false),
            (3, 3, 4, true),
            (4, 129, 20, false),
            (11, 70, 36, true),
            (67, 130, 44, false),
            (9, 1100, 8, true),
            (64, 1030, 4, false),
        ] {
            let p = Problem::linear(&mut rng, m, n, k, with_bias);
            let t = p.upload(&gpu).unwrap();
            let y = gpu.nan_f32(&[m, n]).unwrap();
            let mut batch = gpu.batch();
            op.record_linear(&mut batch, &t.x, &t.w, t.bias.as_ref(), &y)
                .unwrap();
            batch.run().unwrap();
            assert_close(
                &format!("{name} M={m} N={n} K={k} bias={with_bias}"),
                &gpu.read_f32(&y).unwrap(),
                &p.reference(),
                TOL,
                seed,
            );
        }
    }
}

/// The absorb products of MLA with the strides the layer uses.
#[test]
fn strided_head_products_match_reference() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("matmul strided");
        let op = Matmul::new(&gpu).unwrap();
        for (t, h, nope, rope, v, d_c) in [
            (1usize, 3usize, 16usize, 8usize, 16usize, 32usize),
            (5, 4, 8, 4, 12, 20),
            (19, 3, 16, 8, 16, 70),
        ] {
            let qk = nope + rope;
            // q_lat[t, h, c] = Σ_n q[t, h, n] · kv_b[h·(nope+v) + n, c]   (W = [K, N] per head)
            let dims = MatmulDims {
                g: h,
                m: t,
                n: d_c,
                k: nope,
                x_off: 0,
                x_gs: qk,
                x_rs: h * qk,
                w_off: 0,
                w_gs: (nope + v) * d_c,
                w_rs: d_c,
                w_trans: false,
                y_off: 0,
                y_gs: d_c,
                y_rs: h * d_c,
            };
            let kv_b = [h * (nope + v), d_c];
            let p = Problem::strided(&mut rng, dims, &[t, h, qk], &kv_b, &[t, h, d_c], false);
            assert_close(
                &format!("{name} q_lat T={t} H={h}"),
                &pollster::block_on(p.run(&gpu, &op)).unwrap(),
                &p.reference(),
                TOL,
                seed,
            );

            // o[t, h, e] = Σ_c o_lat[t, h, c] · kv_b[h·(nope+v) + nope + e, c]   (W = [N, K])
            let dims = MatmulDims {
                g: h,
                m: t,
                n: v,
                k: d_c,
                x_off: 0,
                x_gs: d_c,
                x_rs: h * d_c,
                w_off: nope * d_c,
                w_gs: (nope + v) * d_c,
                w_rs: d_c,
                w_trans: true,
                y_off: 0,
                y_gs: v,
                y_rs: h * v,
            };
            let p = Problem {
                w: p.w,
                ..Problem::strided(&mut rng, dims, &[t, h, d_c], &kv_b, &[t, h * v], false)
            };
            assert_close(
                &format!("{name} o T={t} H={h}"),
                &pollster::block_on(p.run(&gpu, &op)).unwrap(),
                &p.reference(),
                TOL,
                seed,
            );
        }
    }
}

#[test]
fn rejects_bad_shapes_without_recording() {
    let gpu = gpu();
    let op = Matmul::new(&gpu).unwrap();
    let x = gpu.upload_f32(&[2, 3], &[0.0; 6]).unwrap();
    let w = gpu.upload_f32(&[4, 3], &[0.0; 12]).unwrap();
    let w_bad = gpu.upload_f32(&[4, 2], &[0.0; 8]).unwrap();
    let y = gpu.nan_f32(&[2, 4]).unwrap();
    let y_bad = gpu.nan_f32(&[2, 5]).unwrap();
    let b_bad = gpu.upload_f32(&[3], &[0.0; 3]).unwrap();
    let mut batch = gpu.batch();
    let e = op
        .record_linear(&mut batch, &x, &w_bad, None, &y)
        .unwrap_err();
    assert!(e.to_string().contains("`x`"), "{e}");
    let e = op
        .record_linear(&mut batch, &x, &w, None, &y_bad)
        .unwrap_err();
    assert!(e.to_string().contains("`y`"), "{e}");
    let e = op
        .record_linear(&mut batch, &x, &w, Some(&b_bad), &y)
        .unwrap_err();
    assert!(e.to_string().contains("`bias`"), "{e}");
    let mut dims = MatmulDims::linear(2, 4, 3);
    dims.x_rs = 4; // reads past the end of x
    let e = op.record(&mut batch, &dims, &x, &w, None, &y).unwrap_err();
    assert!(e.to_string().contains("`x`"), "{e}");
    let e = op
        .record(&mut batch, &MatmulDims::linear(2, 2, 3), &x, &x, None, &x)
        .unwrap_err();
    assert!(e.to_string().contains("share"), "{e}");
    assert_eq!(batch.dispatches(), 0, "nothing may be recorded on error");
}

/// K read from w and checked on x, N read from w and checked on the bias: the error names both
/// tensors, their shapes and the dimension.
#[test]
fn disagreeing_inputs_are_named_together() {
    let gpu = gpu();
    let op = Matmul::new(&gpu).unwrap();
    let x = gpu.nan_f32(&[2, 3]).unwrap();
    let w = gpu.nan_f32(&[4, 3]).unwrap();
    let y = gpu.nan_f32(&[2, 4]).unwrap();
    let mut batch = gpu.batch();
    let e = op
        .record_linear(&mut batch, &x, &gpu.nan_f32(&[4, 2]).unwrap(), None, &y)
        .unwrap_err();
    assert!(matches!(e, ssm_mla::Error::Mismatch { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "tensors `w` (4, 2) and `x` (2, 3) disagree on K: 2 vs 3"
    );
    let bias = gpu.nan_f32(&[5]).unwrap();
    let e = op
        .record_linear(&mut batch, &x, &w, Some(&bias), &y)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "tensors `w` (4, 3) and `bias` (5) disagree on N: 4 vs 5"
    );
    assert_eq!(batch.dispatches(), 0);
}

/// The prefill tile (`VEC4_SUBGROUP` with 32 or 64 rows: M ≥ `SUBGROUP_MIN_M`, W [N, K], on a
/// CPU device with 8-wide subgroups) and, on the device without subgroups, the plain vec4 kernel
/// on the same cases: M just below and above the threshold, both row counts (a ragged last tile
/// of 64), M, N and K ragged against every tile
/// (32 rows, 64 columns per workgroup, K a multiple of 4 only), N < 4, bias, half weights with
/// half activations (f16, bf16), and the per-head absorb products with G > 1 (W [K, N], which
/// keeps the plain tile, and [N, K] slices of kv_b_proj); y poisoned. The 4-row decode tile runs
/// in the other tests' M ≤ 4 cases.
#[test]
fn prefill_tile_matches_reference() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("matmul prefill tile");
        let op = Matmul::new(&gpu).unwrap();
        let lo = SUBGROUP_MIN_M;
        // The 64-row tile where it wastes little (one exact row tile; a ragged last one), the
        // 32-row one where 64 would waste more.
        assert_eq!(prefill_rows(64), 64);
        assert_eq!(prefill_rows(250), 64);
        assert_eq!(prefill_rows(96), 32);
        for (m, n, k, with_bias, w_dtype, act) in [
            (64, 77, 40, true, DType::F32, DType::F32),
            (250, 70, 36, false, DType::F32, DType::F32),
            (96, 65, 8, true, DType::F32, DType::F32),
            (250, 33, 24, false, DType::BF16, DType::F16),
            (lo - 1, 70, 36, true, DType::F32, DType::F32),
            (lo, 3, 4, false, DType::F32, DType::F32),
            (lo + 1, 130, 44, true, DType::F32, DType::F32),
            (lo + 19, 101, 68, false, DType::F32, DType::F32),
            (lo + 6, 13, 20, true, DType::F16, DType::F16),
            (lo + 1, 200, 12, false, DType::BF16, DType::BF16),
        ] {
            let p = Problem::linear(&mut rng, m, n, k, with_bias)
                .with_w_dtype(w_dtype)
                .with_x_dtype(act);
            assert_close(
                &format!("{name} x {act} w {w_dtype} M={m} N={n} K={k} bias={with_bias}"),
                &pollster::block_on(p.run(&gpu, &op)).unwrap(),
                &p.reference(),
                p.tolerance(),
                seed,
            );
        }
        let (t, h, nope, v, d_c) = (lo + 5, 3usize, 12usize, 8usize, 20usize);
        let kv_b = [h * (nope + v), d_c];
        // q_lat[t, h, c] = Σ_e q_nope[t, h, e] · kv_b[h·(nope+v) + e, c] (W = [K, N] per head).
        let dims = MatmulDims {
            g: h,
            m: t,
            n: d_c,
            k: nope,
            x_off: 0,
            x_gs: nope + v,
            x_rs: h * (nope + v),
            w_off: 0,
            w_gs: (nope + v) * d_c,
            w_rs: d_c,
            w_trans: false,
            y_off: 0,
            y_gs: d_c,
            y_rs: h * d_c,
        };
        let p = Problem::strided(
            &mut rng,
            dims,
            &[t, h * (nope + v)],
            &kv_b,
            &[t, h * d_c],
            true,
        );
        assert_close(
            &format!("{name} absorb q T={t} H={h}"),
            &pollster::block_on(p.run(&gpu, &op)).unwrap(),
            &p.reference(),
            TOL,
            seed,
        );
        // o[t, h, e] = Σ_c o_lat[t, h, c] · kv_b[h·(nope+v) + nope + e, c] (W = [N, K]).
        let dims = MatmulDims {
            g: h,
            m: t,
            n: v,
            k: d_c,
            x_off: 0,
            x_gs: d_c,
            x_rs: h * d_c,
            w_off: nope * d_c,
            w_gs: (nope + v) * d_c,
            w_rs: d_c,
            w_trans: true,
            y_off: 0,
            y_gs: v,
            y_rs: h * v,
        };
        let p = Problem::strided(&mut rng, dims, &[t, h * d_c], &kv_b, &[t, h * v], false);
        assert_close(
            &format!("{name} absorb o T={t} H={h}"),
            &pollster::block_on(p.run(&gpu, &op)).unwrap(),
            &p.reference(),
            TOL,
            seed,
        );
    }
}

/// `record_accumulate` adds the product (and bias) to what y holds, on the decode, plain and
/// prefill tiles and the tiled fallback (K = 7), with f32 and bf16 activations and weights (y's
/// starting values rounded to its dtype on the host).
#[test]
fn accumulate_adds_to_y() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("matmul accumulate");
        let op = Matmul::new(&gpu).unwrap();
        for (m, n, k, act) in [
            (3usize, 70usize, 36usize, DType::F32),
            (5, 70, 36, DType::F32),
            (SUBGROUP_MIN_M + 3, 70, 36, DType::F32),
            (SUBGROUP_MIN_M + 3, 70, 36, DType::BF16),
            (9, 13, 7, DType::F32),
        ] {
            let p = Problem::linear(&mut rng, m, n, k, true)
                .with_w_dtype(act)
                .with_x_dtype(act);
            let y0: Vec<f32> = rng
                .normal_vec(m * n, 0.0, 1.0)
                .into_iter()
                .map(|v| act.round_f32(v))
                .collect();
            let t = p.upload(&gpu).unwrap();
            let y = gpu.upload_f32_as(&[m, n], act, &y0).unwrap();
            let mut batch = gpu.batch();
            op.record_accumulate(&mut batch, &p.dims, &t.x, &t.w, t.bias.as_ref(), &y)
                .unwrap();
            batch.run().unwrap();
            let expected: Vec<f64> = p
                .reference()
                .iter()
                .zip(&y0)
                .map(|(r, &v)| r + v as f64)
                .collect();
            assert_close(
                &format!("{name} accumulate x {act} M={m} N={n} K={k}"),
                &gpu.read_f32(&y).unwrap(),
                &expected,
                p.tolerance(),
                seed,
            );
        }
    }
}
