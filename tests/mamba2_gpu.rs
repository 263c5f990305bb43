//! The Mamba-2 language model on the GPU (`Mamba2GpuLm`): against transformers' golden logits
//! for the tiny checkpoints (one ragged call, prefill then one-token decode, chunked prefill,
//! last rows), and against the f64 CPU reference on random models (f32 and bf16 weights, groups,
//! biases, finite dt limits, prompts longer than several SSD chunks) and on a device whose
//! storage bindings hold 16 KiB (row-chunked tables, forwards in passes, SSD windows).
//!
//! Tolerance: the GPU computes in f32 with the chunked SSD scan for prefill and the recurrence
//! for decode, the references in f64 (or transformers in f32); over 2–3 blocks of ≤ 330-wide dot
//! products, 16-state sums and three RMSNorms that is ~1e-6 relative per operation. atol 1e-4 +
//! rtol 1e-3 (as for Mamba-1) fails any misplaced weight, head-to-group map, state or slot.

mod common;
use common::*;

use ssm_mla::lm::{CausalLm, Device, LoadOptions, SeqInput};
use ssm_mla::mamba2::{Mamba2Config, Mamba2GpuLm, Mamba2Weights};
use ssm_mla::reference::mamba2::Mamba2CpuModel;
use ssm_mla::{compare, DType, SafeTensors, Tolerance};

const GPU_TOL: Tolerance = Tolerance::new(1e-4, 1e-3);
const VOCAB: usize = 128;

/// Each golden prompt k: its ids and transformers' logits (L, vocab).
fn prompts(name: &str) -> Vec<(Vec<u32>, Vec<f32>)> {
    let file = SafeTensors::read(&data_dir(name).join("golden.safetensors")).unwrap();
    (0..)
        .map_while(|k| {
            let ids = file.get_ids(&format!("input_ids_{k}")).ok()?;
            let ids: Vec<u32> = ids.data.iter().map(|&x| x as u32).collect();
            let logits = file.get(&format!("logits_{k}")).unwrap();
            Some((ids, logits.to_f32().to_vec()))
        })
        .collect()
}

fn load_gpu(name: &str, slots: usize) -> Box<dyn CausalLm> {
    let options = LoadOptions {
        slots,
        weight_dtype: None,
        ..Default::default()
    };
    ssm_mla::models::load(&data_dir(name), &Device::Gpu(common::gpu()), &options).unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    let want: Vec<f64> = want.iter().map(|&x| x as f64).collect();
    let c = compare(got, &want, GPU_TOL);
    assert!(c.passed(), "{what}: {c}");
}

fn seqs<'a>(parts: &'a [(usize, &'a [u32])]) -> Vec<SeqInput<'a>> {
    parts
        .iter()
        .map(|&(slot, tokens)| SeqInput { slot, tokens })
        .collect()
}

#[test]
fn gpu_model_matches_transformers_ragged_decoding_and_chunked() {
    for name in ["mamba2_tiny_tied", "mamba2_tiny_untied"] {
        let prompts = prompts(name);
        assert!(prompts.iter().any(|(ids, _)| ids.len() > 32), "{name}");
        let mut model = load_gpu(name, prompts.len());
        // Every prompt in one ragged call (lengths 40, 7, 1: several SSD chunks, one partial,
        // a single token).
        let parts: Vec<(usize, &[u32])> = prompts
            .iter()
            .enumerate()
            .map(|(k, (ids, _))| (k, &ids[..]))
            .collect();
        let out = model.forward(&seqs(&parts), false).unwrap();
        for (k, (ids, want)) in prompts.iter().enumerate() {
            assert_close(&format!("{name} ragged L = {}", ids.len()), &out[k], want);
        }
        // Chunked prefill (calls of 11 tokens, across the 16-token SSD chunks) and then the
        // rest one token per call: each call continues from the slot's conv and SSM states.
        for k in 0..prompts.len() {
            model.reset(k).unwrap();
        }
        let mut got: Vec<Vec<f32>> = vec![Vec::new(); prompts.len()];
        let mut pos = vec![0usize; prompts.len()];
        loop {
            let mut parts = Vec::new();
            for (k, (ids, _)) in prompts.iter().enumerate() {
                // Prefill in 11-token calls up to position 22, then decode.
                let take = if pos[k] < 22 { 11 } else { 1 };
                let end = (pos[k] + take).min(ids.len());
                if pos[k] < end {
                    parts.push((k, &ids[pos[k]..end]));
                    pos[k] = end;
                }
            }
            if parts.is_empty() {
                break;
            }
            let ks: Vec<usize> = parts.iter().map(|p| p.0).collect();
            for (k, o) in ks
                .into_iter()
                .zip(model.forward(&seqs(&parts), false).unwrap())
            {
                got[k].extend(o);
            }
        }
        for (k, (_, want)) in prompts.iter().enumerate() {
            assert_close(&format!("{name} chunked then decoded {k}"), &got[k], want);
        }
        // last_only: one row per sequence, the last position's.
        for k in 0..prompts.len() {
            model.reset(k).unwrap();
        }
        let last = model.forward(&seqs(&parts), true).unwrap();
        for (k, (ids, want)) in prompts.iter().enumerate() {
            let l = ids.len();
            assert_close(
                &format!("{name} last row {k}"),
                &last[k],
                &want[(l - 1) * VOCAB..],
            );
        }
    }
}

#[test]
fn gpu_model_matches_the_cpu_reference_on_random_models() {
    let (mut rng, seed) = common::rng("mamba2 gpu vs cpu");
    let gpu = common::gpu();
    // Two groups of three heads of 8 (odd widths: d_inner 48, conv_dim 112, in_proj 166),
    // N = 12, W = 3, biases on, a finite dt limit, an untied head.
    let cfg = Mamba2Config {
        num_heads: 6,
        head_dim: 8,
        state_size: 12,
        n_groups: 2,
        conv_kernel: 3,
        use_bias: true,
        time_step_limit: (0.02, 0.4),
        tie_word_embeddings: false,
        ..Mamba2Config::tiny(77, 24, 3)
    };
    cfg.check().unwrap();
    for dtype in [DType::F32, DType::BF16] {
        let w = Mamba2Weights::random(&cfg, &mut rng, dtype).unwrap();
        let cpu = Mamba2CpuModel::new(&cfg, &w);
        let mut model = Mamba2GpuLm::new(gpu.clone(), cfg.clone(), &w, 3, None).unwrap();
        let a: Vec<u32> = (0..37).map(|_| rng.below(77) as u32).collect();
        let b: Vec<u32> = (0..2).map(|_| rng.below(77) as u32).collect();
        let c: Vec<u32> = (0..16).map(|_| rng.below(77) as u32).collect();
        let out = model
            .forward(&seqs(&[(2, &a[..]), (0, &b[..]), (1, &c[..])]), false)
            .unwrap();
        for (ids, got) in [(&a, &out[0]), (&b, &out[1]), (&c, &out[2])] {
            let (want, _) = cpu.forward(ids).unwrap();
            let cmp = compare(got, &want, GPU_TOL);
            assert!(
                cmp.passed(),
                "{dtype} L = {} (seed {seed}): {cmp}",
                ids.len()
            );
        }
        // A decode step of all three continues from the pools the prefill left.
        let next = [5u32, 6, 7];
        let step = model
            .forward(
                &seqs(&[(2, &next[..1]), (0, &next[1..2]), (1, &next[2..])]),
                true,
            )
            .unwrap();
        for (k, ids) in [&a, &b, &c].into_iter().enumerate() {
            let mut more = ids.clone();
            more.push(next[k]);
            let (want, _) = cpu.forward(&more).unwrap();
            let cmp = compare(&step[k], &want[(more.len() - 1) * 77..], GPU_TOL);
            assert!(cmp.passed(), "{dtype} decode {k} (seed {seed}): {cmp}");
        }
        assert!(model.forward(&seqs(&[(3, &a[..])]), false).is_err());
        assert!(model.forward(&seqs(&[(0, &[77][..])]), false).is_err());
    }
}

#[test]
fn tables_prompts_and_scans_past_one_binding_are_split() {
    // 16 KiB bindings: the (1000, 16) f32 embedding table goes up in row chunks, a 43-token
    // forward runs in passes (of 4 tokens with every row's logits, of 21 for the last rows)
    // that continue from the slots, and the SSD's per-chunk states (8 KiB a chunk at N = 64)
    // fill its bindings.
    let options = ssm_mla::GpuOptions {
        max_storage_binding: Some(16 * 1024),
        ..Default::default()
    };
    let gpu = std::sync::Arc::new(ssm_mla::Gpu::with_options(&options).unwrap());
    let (mut rng, seed) = common::rng("mamba2 small bindings");
    let cfg = Mamba2Config {
        state_size: 64,
        ..Mamba2Config::tiny(1000, 16, 2)
    };
    let w = Mamba2Weights::random(&cfg, &mut rng, DType::F32).unwrap();
    let cpu = Mamba2CpuModel::new(&cfg, &w);
    let mut model = Mamba2GpuLm::new(gpu, cfg.clone(), &w, 2, None).unwrap();
    let a: Vec<u32> = (0..40).map(|_| rng.below(1000) as u32).collect();
    let b: Vec<u32> = (0..3).map(|_| 999 - rng.below(10) as u32).collect();
    let parts = [(0, &a[..]), (1, &b[..])];
    let out = model.forward(&seqs(&parts), false).unwrap();
    for (ids, got) in [(&a, &out[0]), (&b, &out[1])] {
        let (want, _) = cpu.forward(ids).unwrap();
        let c = compare(got, &want, GPU_TOL);
        assert!(c.passed(), "L = {} (seed {seed}): {c}", ids.len());
    }
    for s in 0..2 {
        model.reset(s).unwrap();
    }
    let last = model.forward(&seqs(&parts), true).unwrap();
    let (want, _) = cpu.forward(&a).unwrap();
    let c = compare(&last[0], &want[39 * 1000..], GPU_TOL);
    assert!(c.passed(), "last row (seed {seed}): {c}");
}
