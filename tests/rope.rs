//! Conformance of `rope` against its f64 CPU reference: interleaved and half-split pairs, plain
//! and YaRN frequencies with a cos/sin scale (from the V3 and V2 preset configs), strided input
//! (q_rope inside q) and output (k_rope inside latent rows), d_R = 2, one token, many tokens.
//! Tolerance: atol 1e-5, rtol 1e-4 (angles reduced exactly modulo 2π, then f32 cos/sin).
//!
//! Half x and y (f16, bf16): x is rounded to the dtype on the host and the f64 reference runs
//! on the rounded values, so only the f32 math and y's final rounding differ: rtol 1e-4 + 2^-8
//! for bf16 (nearest even of 8 significant bits), 1e-4 + 2^-10 for f16 (`pack2x16float` may
//! pick either neighbour: one ulp), atol 1e-5 as in f32 (see `testing::rope::y_tolerance`).
//! `gpus()` runs the packed-u32 path and, where the device has SHADER_F16, native f16.

mod common;
use common::*;
use ssm_mla::mla::config::presets;
use ssm_mla::mla::MlaConfig;
use ssm_mla::ops::rope::{Rope, RopeLayout, RopeTables};
use ssm_mla::testing::rope::{Frequencies, Problem, TOLERANCE as TOL};
use ssm_mla::DType;

#[test]
fn half_matches_reference() {
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("rope-half");
        let op = Rope::new(&gpu).unwrap();
        // (T, H, d, interleave): d_R = 2 with one token; odd heads, both pair layouts; more
        // heads than one vec4 invocation covers.
        for (tokens, heads, d, interleave) in [
            (1usize, 1usize, 2usize, true),
            (7, 3, 8, true),
            (5, 3, 8, false),
            (3, 19, 16, false),
        ] {
            // nope 5: the scalar kernel (odd offsets: words shared between pairs and heads);
            // 4: the vec4 one.
            for nope in [5usize, 4] {
                for dtype in [DType::F16, DType::BF16] {
                    let freqs = Frequencies::plain(d, interleave);
                    let p = Problem::random(&mut rng, tokens, heads, nope, freqs, 200_000)
                        .with_dtype(dtype);
                    assert_close(
                        &format!("{name} {dtype} T={tokens} H={heads} d={d} interleave={interleave} nope={nope}"),
                        &pollster::block_on(p.run(&gpu, &op)).unwrap(),
                        &p.reference(),
                        p.tolerance(),
                        seed,
                    );
                }
            }
        }
    }
}

#[test]
fn rejects_mismatched_dtypes_without_recording() {
    let gpu = gpu();
    let op = Rope::new(&gpu).unwrap();
    let tables = RopeTables::new(&gpu, &[1.0, 0.1], true, 1.0).unwrap();
    let x = gpu
        .upload_f32_as(&[3, 2, 4], DType::BF16, &[0.0; 24])
        .unwrap();
    let p = gpu.upload_u32(&[3], &[0, 1, 2]).unwrap();
    let l = RopeLayout::contiguous(2, 4);
    let mut batch = gpu.batch();
    for y_dtype in [DType::F32, DType::F16] {
        let y = gpu.nan_as(&[3, 2, 4], y_dtype).unwrap();
        let e = op
            .record(&mut batch, &x, l, &y, l, &p, &tables, 3, 2)
            .unwrap_err();
        assert!(e.to_string().contains("`y`"), "{e}");
    }
    let xi = gpu.upload_u32(&[3, 2, 4], &[0; 24]).unwrap();
    let y = gpu.nan_f32(&[3, 2, 4]).unwrap();
    let e = op
        .record(&mut batch, &xi, l, &y, l, &p, &tables, 3, 2)
        .unwrap_err();
    assert!(e.to_string().contains("`x`"), "{e}");
    assert_eq!(batch.dispatches(), 0);
}

#[test]
fn matches_reference_plain_and_yarn() {
    let v3 = MlaConfig::from_json_str(presets::DEEPSEEK_V3, "v3").unwrap();
    let v2 = MlaConfig::from_json_str(presets::DEEPSEEK_V2, "v2").unwrap();
    for (name, gpu) in gpus() {
        let (mut rng, seed) = rng("rope");
        let op = Rope::new(&gpu).unwrap();
        let plain = |d: usize| Frequencies::plain(d, true).inv_freq;
        let cases: Vec<(usize, usize, Vec<f64>, bool, f64)> = vec![
            (1, 1, plain(2), true, 1.0),
            (7, 3, plain(8), true, 1.0),
            (7, 3, plain(8), false, 1.0),
            (33, 5, v3.inv_freq(), true, v3.rope_attention_factor()),
            (9, 2, v2.inv_freq(), false, 1.3),
            // More heads than one vec4 invocation covers (8), ragged.
            (3, 19, plain(8), true, 1.0),
            (2, 11, plain(16), false, 1.0),
        ];
        for (tokens, heads, inv_freq, interleave, attn_factor) in cases {
            let freqs = Frequencies {
                inv_freq,
                interleave,
                attn_factor,
            };
            let d = freqs.width();
            // x: q-like rows (T, heads, nope + d) with the rotary part after `nope` values; 5 runs
            // the scalar kernel, 4 the vec4 one (where d allows).
            for nope in [5usize, 4] {
                let p = Problem::random(&mut rng, tokens, heads, nope, freqs.clone(), 200_000);
                assert_close(
                    &format!(
                        "{name} T={tokens} H={heads} d={d} interleave={interleave} nope={nope}"
                    ),
                    &pollster::block_on(p.run(&gpu, &op)).unwrap(),
                    &p.reference(),
                    TOL,
                    seed,
                );
            }
        }
    }
}

#[test]
fn rejects_bad_shapes_without_recording() {
    let gpu = gpu();
    let op = Rope::new(&gpu).unwrap();
    let tables = RopeTables::new(&gpu, &[1.0, 0.1], true, 1.0).unwrap();
    let x = gpu.upload_f32(&[3, 2, 4], &[0.0; 24]).unwrap();
    let y = gpu.nan_f32(&[3, 2, 4]).unwrap();
    let p = gpu.upload_u32(&[3], &[0, 1, 2]).unwrap();
    let p_bad = gpu.upload_u32(&[2], &[0, 1]).unwrap();
    let l = RopeLayout::contiguous(2, 4);
    let mut batch = gpu.batch();
    let e = op
        .record(&mut batch, &x, l, &y, l, &p_bad, &tables, 3, 2)
        .unwrap_err();
    assert!(e.to_string().contains("positions"), "{e}");
    let e = op
        .record(&mut batch, &x, l, &y, l, &p, &tables, 3, 3)
        .unwrap_err();
    assert!(e.to_string().contains("`x`"), "{e}");
    let e = op
        .record(&mut batch, &x, l, &x, l, &p, &tables, 3, 2)
        .unwrap_err();
    assert!(e.to_string().contains("share"), "{e}");
    assert_eq!(batch.dispatches(), 0);
}
