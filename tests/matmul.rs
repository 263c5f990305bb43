//! Conformance of `matmul` against its f64 CPU reference: plain `Linear` products with and
//! without bias over every tile shape (M = 1, ragged, larger than a 64×64 tile, ragged K), the
//! strided per-head absorb products of MLA (W not transposed and transposed, head slices of
//! kv_b_proj), size-1 edges, and shape errors. Cases with K (and the strides) multiples of 4 run
//! the vec4 kernel, the others the tiled one.
//! Tolerance: atol 1e-5, rtol 1e-4 (f32 accumulation over K ≤ 300 of O(1) terms).

mod common;
use common::*;
use ssm_mla::ops::matmul::{Matmul, MatmulDims};
use ssm_mla::{reference, Tolerance};

const TOL: Tolerance = Tolerance::new(1e-5, 1e-4);

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
            let dims = MatmulDims::linear(m, n, k);
            let xh = rng.normal_vec(m * k, 0.0, 1.0);
            let wh = rng.normal_vec(n * k, 0.0, 1.0 / (k as f64).sqrt());
            let bh = rng.normal_vec(n, 0.0, 0.5);
            let x = gpu.upload_f32(&[m, k], &xh).unwrap();
            let w = gpu.upload_f32(&[n, k], &wh).unwrap();
            let b = gpu.upload_f32(&[n], &bh).unwrap();
            let y = gpu.nan_f32(&[m, n]).unwrap();
            let mut batch = gpu.batch();
            op.record_linear(&mut batch, &x, &w, with_bias.then_some(&b), &y)
                .unwrap();
            batch.run().unwrap();
            let want =
                reference::matmul::matmul(&dims, &xh, &wh, with_bias.then_some(&bh[..]), m * n);
            assert_close(
                &format!("{name} M={m} N={n} K={k} bias={with_bias}"),
                &gpu.read_f32(&y).unwrap(),
                &want,
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
            let q = rng.normal_vec(t * h * qk, 0.0, 1.0);
            let kv_b = rng.normal_vec(h * (nope + v) * d_c, 0.0, 0.3);
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
            let qt = gpu.upload_f32(&[t, h, qk], &q).unwrap();
            let wt = gpu.upload_f32(&[h * (nope + v), d_c], &kv_b).unwrap();
            let q_lat = gpu.nan_f32(&[t, h, d_c]).unwrap();
            let mut batch = gpu.batch();
            op.record(&mut batch, &dims, &qt, &wt, None, &q_lat)
                .unwrap();
            batch.run().unwrap();
            let want = reference::matmul::matmul(&dims, &q, &kv_b, None, t * h * d_c);
            assert_close(
                &format!("{name} q_lat T={t} H={h}"),
                &gpu.read_f32(&q_lat).unwrap(),
                &want,
                TOL,
                seed,
            );

            // o[t, h, e] = Σ_c o_lat[t, h, c] · kv_b[h·(nope+v) + nope + e, c]   (W = [N, K])
            let o_lat = rng.normal_vec(t * h * d_c, 0.0, 1.0);
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
            let ot = gpu.upload_f32(&[t, h, d_c], &o_lat).unwrap();
            let o = gpu.nan_f32(&[t, h * v]).unwrap();
            let mut batch = gpu.batch();
            op.record(&mut batch, &dims, &ot, &wt, None, &o).unwrap();
            batch.run().unwrap();
            let want = reference::matmul::matmul(&dims, &o_lat, &kv_b, None, t * h * v);
            assert_close(
                &format!("{name} o T={t} H={h}"),
                &gpu.read_f32(&o).unwrap(),
                &want,
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
