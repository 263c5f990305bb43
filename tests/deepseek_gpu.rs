//! The DeepSeek-V2/V3 language models on the GPU (`DeepseekGpuLm`) against the f64 CPU reference
//! on random models of both versions: one ragged call (sequences of different lengths), a
//! prompt prefilled in chunks that attend to what earlier chunks cached, decode steps, a mixed
//! step (one sequence prefilling while others decode), last rows only, bf16 weights, an f16
//! latent cache, slot resets, a context overflow that leaves every cache as it was, and a
//! device whose storage bindings hold 16 KiB (tables in row chunks, forwards in passes).
//! transformers' own logits for the tiny checkpoints are checked through the CLI in
//! tests/deepseek_run_lm.rs.
//!
//! Tolerance: the GPU computes in f32 (dot products of ≤ 48 terms, softmaxes over ≤ 60 keys,
//! five RMSNorms per block over 3 blocks), the reference in f64: ~1e-6 relative per operation.
//! atol 1e-4 + rtol 1e-3 fails a misplaced weight, position, cache page or expert (O(0.1)
//! moves). Half storage rounds each weight or cached value to 2⁻⁹ (bf16) or 2⁻¹² (f16)
//! relative: the reference then runs on the same rounded weights, and an f16 cache (which the
//! reference does not round) gets atol 1e-2 + rtol 1e-2 (measured worst over seeds: 3.4e-3).

mod common;

use ssm_mla::deepseek::{DeepseekConfig, DeepseekGpuLm, DeepseekWeights};
use ssm_mla::lm::{CausalLm, SeqInput};
use ssm_mla::reference::deepseek::DeepseekCpuModel;
use ssm_mla::{compare, DType, Rng, Tolerance};

const GPU_TOL: Tolerance = Tolerance::new(1e-4, 1e-3);
const HALF_CACHE_TOL: Tolerance = Tolerance::new(1e-2, 1e-2);

fn seqs<'a>(parts: &'a [(usize, &'a [u32])]) -> Vec<SeqInput<'a>> {
    parts
        .iter()
        .map(|&(slot, tokens)| SeqInput { slot, tokens })
        .collect()
}

fn tokens(rng: &mut Rng, vocab: usize, n: usize) -> Vec<u32> {
    (0..n).map(|_| rng.below(vocab) as u32).collect()
}

/// The reference logits of every position of `ids` fed from an empty cache.
fn reference(cfg: &DeepseekConfig, w: &DeepseekWeights, ids: &[u32]) -> Vec<f64> {
    let cpu = DeepseekCpuModel::new(cfg, w);
    let mut state = cpu.new_state();
    cpu.forward(&mut state, ids, false).unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f64], tol: Tolerance) {
    let c = compare(got, want, tol);
    assert!(c.passed(), "{what}: {c}");
}

/// The configs under test: the golden checkpoints' shapes (V2 group-limited greedy with a tied
/// head; V3 with query compression, noaux_tc, YaRN), 5 heads in V2's case so rows per
/// attention group do not divide evenly.
fn configs() -> Vec<(&'static str, DeepseekConfig)> {
    let mut v2 = DeepseekConfig::tiny_v2();
    v2.attention.num_heads = 5;
    vec![("v2", v2), ("v3", DeepseekConfig::tiny_v3())]
}

#[test]
fn ragged_chunked_decoding_and_mixed_steps_match_the_reference() {
    let gpu = common::gpu();
    let (mut rng, seed) = common::rng("deepseek gpu vs cpu");
    for (name, cfg) in configs() {
        cfg.check().unwrap();
        let v = cfg.vocab_size;
        let w = DeepseekWeights::random(&cfg, &mut rng);
        let mut model =
            DeepseekGpuLm::new(gpu.clone(), cfg.clone(), &w, 3, Some(64), None, DType::F32)
                .unwrap();
        let a = tokens(&mut rng, v, 37);
        let b = tokens(&mut rng, v, 1);
        let c = tokens(&mut rng, v, 19);
        let (ra, rb, rc) = (
            reference(&cfg, &w, &a),
            reference(&cfg, &w, &b),
            reference(&cfg, &w, &c),
        );
        // One ragged call: 37, 1 and 19 new tokens, slots out of order.
        let out = model
            .forward(&seqs(&[(2, &a[..]), (0, &b[..]), (1, &c[..])]), false)
            .unwrap();
        assert_close(
            &format!("{name} ragged 37 (seed {seed})"),
            &out[0],
            &ra,
            GPU_TOL,
        );
        assert_close(
            &format!("{name} ragged 1 (seed {seed})"),
            &out[1],
            &rb,
            GPU_TOL,
        );
        assert_close(
            &format!("{name} ragged 19 (seed {seed})"),
            &out[2],
            &rc,
            GPU_TOL,
        );

        // Chunked prefill of a over slot 2 (16 + 16 + 5 tokens, across cache pages) while
        // slot 0 decodes b's continuation and slot 1 is left alone: mixed steps.
        for s in 0..3 {
            model.reset(s).unwrap();
        }
        assert_eq!(model.slot_len(2), 0);
        let bb = tokens(&mut rng, v, 3);
        let mut b_all = b.clone();
        b_all.extend(&bb);
        let rbb = reference(&cfg, &w, &b_all);
        let mut got_a = Vec::new();
        let mut got_b = Vec::new();
        for (step, (lo, hi)) in [(0usize, 16usize), (16, 32), (32, 37)]
            .into_iter()
            .enumerate()
        {
            let bt = &b_all[step..step + 1];
            let out = model
                .forward(&seqs(&[(0, bt), (2, &a[lo..hi])]), false)
                .unwrap();
            got_b.extend_from_slice(&out[0]);
            got_a.extend_from_slice(&out[1]);
        }
        assert_eq!(model.slot_len(2), 37);
        assert_close(
            &format!("{name} chunked prefill (seed {seed})"),
            &got_a,
            &ra,
            GPU_TOL,
        );
        assert_close(
            &format!("{name} decode beside prefill (seed {seed})"),
            &got_b,
            &rbb[..3 * v],
            GPU_TOL,
        );
        // Then every sequence decodes one token, last rows only.
        let last = model
            .forward(&seqs(&[(2, &[7][..]), (0, &b_all[3..4])]), true)
            .unwrap();
        let mut a7 = a.clone();
        a7.push(7);
        let ra7 = reference(&cfg, &w, &a7);
        assert_close(
            &format!("{name} decode a (seed {seed})"),
            &last[0],
            &ra7[37 * v..],
            GPU_TOL,
        );
        assert_close(
            &format!("{name} decode b (seed {seed})"),
            &last[1],
            &rbb[3 * v..],
            GPU_TOL,
        );
        // Bad requests are refused and change nothing.
        assert!(model.forward(&seqs(&[(3, &a[..])]), false).is_err());
        assert!(model
            .forward(&seqs(&[(0, &[v as u32][..])]), false)
            .is_err());
        assert_eq!(model.slot_len(2), 38);
    }
}

#[test]
fn half_weights_and_a_half_cache_match_the_reference() {
    let gpu = common::gpu();
    let (mut rng, seed) = common::rng("deepseek gpu half");
    let cfg = DeepseekConfig::tiny_v3();
    let w = DeepseekWeights::random(&cfg, &mut rng);
    let ids = tokens(&mut rng, cfg.vocab_size, 21);
    // bf16 weights: the reference runs on the same rounded weights.
    let rounded = w.rounded_to(DType::BF16).unwrap();
    let want = reference(&cfg, &rounded, &ids);
    let mut model = DeepseekGpuLm::new(
        gpu.clone(),
        cfg.clone(),
        &w,
        1,
        Some(32),
        Some(DType::BF16),
        DType::F32,
    )
    .unwrap();
    let got = model.forward(&seqs(&[(0, &ids[..])]), false).unwrap();
    assert_close(
        &format!("bf16 weights (seed {seed})"),
        &got[0],
        &want,
        GPU_TOL,
    );
    // An f16 latent cache: prefill 13, then decode the rest through the half cache.
    let want = reference(&cfg, &w, &ids);
    let mut model =
        DeepseekGpuLm::new(gpu, cfg.clone(), &w, 1, Some(32), None, DType::F16).unwrap();
    let mut got = model
        .forward(&seqs(&[(0, &ids[..13])]), false)
        .unwrap()
        .remove(0);
    for t in 13..ids.len() {
        got.extend(
            model
                .forward(&seqs(&[(0, &ids[t..t + 1])]), false)
                .unwrap()
                .remove(0),
        );
    }
    assert_close(
        &format!("f16 cache (seed {seed})"),
        &got,
        &want,
        HALF_CACHE_TOL,
    );
}

#[test]
fn context_overflow_leaves_the_caches_as_they_were() {
    let gpu = common::gpu();
    let (mut rng, seed) = common::rng("deepseek gpu context");
    let cfg = DeepseekConfig::tiny_v2();
    let w = DeepseekWeights::random(&cfg, &mut rng);
    let mut model =
        DeepseekGpuLm::new(gpu, cfg.clone(), &w, 2, Some(20), None, DType::F32).unwrap();
    let a = tokens(&mut rng, cfg.vocab_size, 20);
    model.forward(&seqs(&[(0, &a[..12])]), false).unwrap();
    let err = model
        .forward(&seqs(&[(1, &a[..3]), (0, &a[..9])]), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("context"), "{err}");
    assert_eq!((model.slot_len(0), model.slot_len(1)), (12, 0));
    // The slot continues as if the failed call had not happened.
    let rest = model.forward(&seqs(&[(0, &a[12..])]), false).unwrap();
    let want = reference(&cfg, &w, &a);
    assert_close(
        &format!("after overflow (seed {seed})"),
        &rest[0],
        &want[12 * cfg.vocab_size..],
        GPU_TOL,
    );
}

#[test]
fn tables_and_prompts_past_one_binding_are_split() {
    // 1 MiB bindings (one attention work area is 64 KiB): the (10000, 32) f32 embedding table
    // and head go up in row chunks, and a 40-token forward with every row's logits (40 KB a
    // token) runs in passes that continue from the caches.
    let options = ssm_mla::GpuOptions {
        max_storage_binding: Some(1 << 20),
        ..Default::default()
    };
    let gpu = std::sync::Arc::new(ssm_mla::Gpu::with_options(&options).unwrap());
    let (mut rng, seed) = common::rng("deepseek small bindings");
    let mut cfg = DeepseekConfig::tiny_v3();
    cfg.vocab_size = 10000;
    let w = DeepseekWeights::random(&cfg, &mut rng);
    let mut model =
        DeepseekGpuLm::new(gpu, cfg.clone(), &w, 2, Some(48), None, DType::F32).unwrap();
    let a = tokens(&mut rng, 10000, 40);
    let b = tokens(&mut rng, 10000, 3);
    let out = model
        .forward(&seqs(&[(0, &a[..]), (1, &b[..])]), false)
        .unwrap();
    assert_close(
        &format!("passes a (seed {seed})"),
        &out[0],
        &reference(&cfg, &w, &a),
        GPU_TOL,
    );
    assert_close(
        &format!("passes b (seed {seed})"),
        &out[1],
        &reference(&cfg, &w, &b),
        GPU_TOL,
    );
}
