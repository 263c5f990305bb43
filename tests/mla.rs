//! The MLA layer: config parsing and derived numbers, the cache-size table,
//! weights loading with and without the `model.layers.<i>.self_attn.` prefix and its errors, the
//! CPU reference's absorbed == naive identity, and the GPU layer (absorbed, through the paged
//! latent cache) against the CPU naive form on random weights — with and without q_lora, H = 3
//! and 4, YaRN on and off, biases — plus prefill-of-S == prefill-of-P + decode and sequences of
//! different lengths batched together.
//! Tolerance GPU vs CPU: atol 1e-4, rtol 2e-3 (f32 through six chained products of length ≤ 64
//! and a softmax; outputs are O(1)).
//! Half storage (bf16 weights, f16/bf16 cache) against the CPU layer fed the same rounded
//! weights: the weights are then exact on both sides, so the cache's rounding of c and k_rope
//! (relative 2^-9 for bf16's 8-bit significand, 2^-12 for f16's 11) dominates; it perturbs
//! scores of O(1) and the values summed into O(1) outputs by about that much, a few times over
//! along the chain, hence atol = rtol = 3e-2 for a bf16 cache and 4e-3 for f16. Measured over six
//! seeds (one-shot, 768 outputs each): largest |error| 5.3e-4 … 8.9e-4 with an f16 cache and
//! 4.1e-3 … 6.0e-3 with bf16, so each bound leaves a margin of about 5×.

mod common;
use common::*;
use ssm_mla::io::{write_safetensors, HostTensor, SafeTensors};
use ssm_mla::mla::config::{cache_size_table, presets, yarn_get_mscale};
use ssm_mla::mla::{MlaConfig, MlaLayer, MlaWeights};
use ssm_mla::ops::latent_cache::LatentCache;
use ssm_mla::reference::mla::MlaCpuLayer;
use ssm_mla::testing::mla::{small_config, Problem, TOLERANCE as TOL};
use ssm_mla::{reference, DType, Error, Rng, Tolerance};
use std::path::PathBuf;

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ssm-mla-test-mla-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn parses_public_configs() {
    let v3 = MlaConfig::from_json_str(presets::DEEPSEEK_V3, "v3").unwrap();
    assert_eq!(
        (
            v3.hidden_size,
            v3.num_heads,
            v3.q_lora_rank,
            v3.kv_lora_rank
        ),
        (7168, 128, Some(1536), 512)
    );
    assert_eq!(
        (v3.qk_nope_head_dim, v3.qk_rope_head_dim, v3.v_head_dim),
        (128, 64, 128)
    );
    assert!(v3.rope_interleave, "rope_interleave defaults to true");
    let v2 = MlaConfig::from_json_str(presets::DEEPSEEK_V2, "v2").unwrap();
    assert_eq!(
        (v2.hidden_size, v2.num_heads, v2.q_lora_rank),
        (5120, 128, Some(1536))
    );
    let lite = MlaConfig::from_json_str(presets::DEEPSEEK_V2_LITE, "lite").unwrap();
    assert_eq!(
        (lite.hidden_size, lite.num_heads, lite.q_lora_rank),
        (2048, 16, None)
    );

    // Softmax scale: 192^-½ · mscale(40, mscale_all_dim)².
    let m3 = 0.1 * 1.0 * 40f64.ln() + 1.0;
    assert!((v3.softmax_scale() - m3 * m3 / 192f64.sqrt()).abs() < 1e-12);
    let m2 = 0.1 * 0.707 * 40f64.ln() + 1.0;
    assert!((v2.softmax_scale() - m2 * m2 / 192f64.sqrt()).abs() < 1e-12);
    assert_eq!(v3.rope_attention_factor(), 1.0);
    assert_eq!(yarn_get_mscale(0.5, 1.0), 1.0);

    // YaRN frequencies for V3 (d_R 64, θ 1e4, 4096 original positions, β 32/1): the correction
    // range is [⌊10.47⌋, ⌈22.5⌉] = [10, 23]; below it frequencies are kept, above divided by 40.
    let inv = v3.inv_freq();
    assert_eq!(inv.len(), 32);
    let base = |i: usize| 10000f64.powf(-((2 * i) as f64) / 64.0);
    for (i, &f) in inv.iter().enumerate().take(11) {
        assert!((f - base(i)).abs() <= 1e-15 * base(i), "i={i}");
    }
    for (i, &f) in inv.iter().enumerate().skip(23) {
        assert!((f - base(i) / 40.0).abs() <= 1e-15 * base(i), "i={i}");
    }
    let ramp = (16.0 - 10.0) / 13.0;
    assert!((inv[16] - (base(16) / 40.0 * ramp + base(16) * (1.0 - ramp))).abs() < 1e-15);
    // Without rope_scaling: plain θ^(-2i/d_R).
    let plain = small_config(3, None, false, false);
    assert_eq!(plain.inv_freq()[1], 10000f64.powf(-2.0 / 8.0));
    assert_eq!(plain.softmax_scale(), 24f64.powf(-0.5));
}

#[test]
fn bad_configs_are_clear_errors() {
    let cases = [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (r#"{"num_attention_heads": 2}"#, "hidden_size"),
        (
            &presets::DEEPSEEK_V2_LITE.replace("\"kv_lora_rank\": 512", "\"kv_lora_rank\": \"x\""),
            "kv_lora_rank",
        ),
        (
            &presets::DEEPSEEK_V2_LITE
                .replace("\"qk_rope_head_dim\": 64", "\"qk_rope_head_dim\": 63"),
            "even",
        ),
        (
            &presets::DEEPSEEK_V2_LITE.replace("\"v_head_dim\": 128", "\"v_head_dim\": 0"),
            "v_head_dim",
        ),
        (
            &presets::DEEPSEEK_V3.replace("\"type\": \"yarn\"", "\"type\": \"linear\""),
            "linear",
        ),
        (
            &presets::DEEPSEEK_V3.replace("\"factor\": 40,", ""),
            "factor",
        ),
        (
            &presets::DEEPSEEK_V3.replace("\"rope_theta\": 10000", "\"rope_theta\": 1"),
            "rope_theta",
        ),
    ];
    for (json, needle) in cases {
        let e = MlaConfig::from_json_str(json, "cfg.json").unwrap_err();
        assert!(
            matches!(e, Error::Format { .. } | Error::Invalid(_)),
            "{e:?}"
        );
        assert!(e.to_string().contains(needle), "{needle:?} not in: {e}");
    }
    let e = MlaConfig::from_file(&temp_path("absent.json")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
}

#[test]
fn cache_sizes_per_token() {
    let get = |j: &str| MlaConfig::from_json_str(j, "p").unwrap();
    let v3 = get(presets::DEEPSEEK_V3);
    let v2 = get(presets::DEEPSEEK_V2);
    let lite = get(presets::DEEPSEEK_V2_LITE);
    // MLA: d_c + d_R = 512 + 64. MHA: K of H·(128 + 64) plus V of H·128.
    for c in [&v3, &v2, &lite] {
        assert_eq!(c.cache_values_per_token(), 576);
    }
    assert_eq!(v3.mha_values_per_token(), 128 * 192 + 128 * 128);
    assert_eq!(v3.mha_values_per_token(), 40960);
    assert_eq!(v2.mha_values_per_token(), 40960);
    assert_eq!(lite.mha_values_per_token(), 16 * 320);
    // The bytes columns are what the crate's cache really takes per token and layer.
    let gpu = gpu();
    for (dtype, bytes) in [(DType::F32, 2304), (DType::F16, 1152), (DType::BF16, 1152)] {
        let cache = LatentCache::with_dtype(&gpu, 1, 1, 512, 64, dtype).unwrap();
        assert_eq!(cache.bytes_per_token(), bytes, "{dtype}");
        assert_eq!(v3.cache_values_per_token() * dtype.size(), bytes, "{dtype}");
    }
    // The table in docs/ is the one the crate computes.
    let table = cache_size_table().unwrap();
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/mla_cache.md")).unwrap();
    assert!(
        doc.contains(&table),
        "docs/mla_cache.md is out of date; regenerate it with cache_size_table():\n{table}"
    );
    assert!(
        table.contains("| DeepSeek-V3 | 128 | 512 | 64 | 128 | 128 | 576 | 40960 | 71.1× |"),
        "{table}"
    );
}

#[test]
fn reference_absorbed_equals_naive() {
    let (mut rng, seed) = rng("mla reference");
    for (heads, q_lora, yarn, bias) in [
        (3, None, false, false),
        (4, Some(24), true, true),
        (1, Some(8), true, false),
    ] {
        let p = Problem::random(&mut rng, &small_config(heads, q_lora, yarn, bias), 2, 6);
        let naive = p.reference();
        let absorbed = reference::mla::absorbed(&p.cfg, &p.weights, &p.hidden, p.bt, p.s);
        let got: Vec<f32> = absorbed.iter().map(|&v| v as f32).collect();
        // f64 both ways; the f32 cast of one side bounds the comparison.
        assert_close(
            &format!("H={heads} q_lora={q_lora:?} yarn={yarn}"),
            &got,
            &naive,
            Tolerance::new(1e-6, 1e-6),
            seed,
        );
        // And the f64 values agree to rounding.
        let max = naive
            .iter()
            .zip(&absorbed)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            max < 1e-10,
            "absorbed vs naive differ by {max} (seed {seed})"
        );
    }
}

/// The layer on the GPU: one shot through `record` into a NaN-poisoned output (so an element
/// the layer fails to write fails the comparison), or prefill P then decode via `run_host`.
fn gpu_run(layer: &MlaLayer, h: &[f32], bt: usize, s: usize, p: Option<usize>) -> Vec<f32> {
    if p.is_some() {
        return layer.run_host(h, bt, s, p).unwrap();
    }
    let gpu = gpu();
    let hid = h.len() / (bt * s);
    let mut cache = layer.new_cache(bt, s, 16).unwrap();
    let x = gpu.upload_f32(&[bt, s, hid], h).unwrap();
    let out = gpu.nan_f32(&[bt, s, hid]).unwrap();
    let seqs: Vec<usize> = (0..bt).collect();
    let mut batch = gpu.batch();
    layer
        .record(&mut batch, &mut cache, &seqs, &x, &out)
        .unwrap();
    batch.run().unwrap();
    gpu.read_f32(&out).unwrap()
}

#[test]
fn gpu_layer_matches_cpu_naive() {
    let (mut rng, seed) = rng("mla gpu");
    let gpu = gpu();
    for (heads, q_lora, yarn, bias, bt, s) in [
        (3, None, false, false, 2, 7),
        (4, Some(24), true, true, 1, 5),
        (3, Some(16), true, false, 3, 1),
        (4, None, true, false, 1, 21),
    ] {
        let problem = Problem::random(&mut rng, &small_config(heads, q_lora, yarn, bias), bt, s);
        let (cfg, w, h) = (&problem.cfg, &problem.weights, &problem.hidden);
        let want = problem.reference();
        let layer = MlaLayer::new(gpu.clone(), cfg, w).unwrap();
        let what = format!("H={heads} q_lora={q_lora:?} yarn={yarn} bias={bias} Bt={bt} S={s}");
        assert_close(
            &format!("{what} one-shot"),
            &gpu_run(&layer, h, bt, s, None),
            &want,
            TOL,
            seed,
        );
        // Prefill P then decode the rest one token at a time.
        if s > 1 {
            let p = s / 2 + 1;
            let got = gpu_run(&layer, h, bt, s, Some(p));
            assert_close(&format!("{what} decode-from {p}"), &got, &want, TOL, seed);
            assert_close(
                &format!("{what} decode-from 1"),
                &gpu_run(&layer, h, bt, s, Some(1)),
                &want,
                TOL,
                seed,
            );
        }
        // The CPU path of the layer.
        let cpu = MlaCpuLayer::run_host(cfg, w, h, bt, s, Some(1.max(s / 2))).unwrap();
        assert_close(
            &format!("{what} cpu decode"),
            &cpu,
            &want,
            Tolerance::new(1e-6, 1e-5),
            seed,
        );
    }
}

/// Sequences of different lengths in one cache, forwarded separately and then decoded together.
#[test]
fn ragged_sequences_share_the_paged_cache() {
    let (mut rng, seed) = rng("mla ragged");
    let gpu = gpu();
    let cfg = small_config(3, Some(16), true, false);
    let w = MlaWeights::random(&cfg, &mut rng);
    let hid = cfg.hidden_size;
    let layer = MlaLayer::new(gpu.clone(), &cfg, &w).unwrap();
    let mut cache = layer.new_cache(2, 12, 4).unwrap();
    let mut cpu = MlaCpuLayer::new(&cfg, &w, 2).unwrap();
    // seq 1 gets 5 tokens, seq 0 gets 2, then 3 decode steps of both together.
    for (seqs, s) in [
        (vec![1usize], 5usize),
        (vec![0], 2),
        (vec![0, 1], 1),
        (vec![1, 0], 1),
        (vec![0, 1], 1),
    ] {
        let h = rng.normal_vec(seqs.len() * s * hid, 0.0, 1.0);
        let x = gpu.upload_f32(&[seqs.len(), s, hid], &h).unwrap();
        let got = gpu
            .read_f32(&layer.forward(&mut cache, &seqs, &x).unwrap())
            .unwrap();
        let want = cpu.forward(&seqs, &h, s).unwrap();
        assert_close(&format!("seqs {seqs:?} S={s}"), &got, &want, TOL, seed);
    }
    assert_eq!((cache.seq_len(0), cache.seq_len(1)), (5, 8));
    assert_eq!((cpu.seq_len(0), cpu.seq_len(1)), (5, 8));
}

#[test]
fn layer_rejects_bad_calls_without_changing_the_cache() {
    let gpu = gpu();
    let cfg = small_config(3, None, false, false);
    let w = MlaWeights::random(&cfg, &mut Rng::new(1));
    let layer = MlaLayer::new(gpu.clone(), &cfg, &w).unwrap();
    let mut cache = layer.new_cache(2, 4, 2).unwrap();
    let x = gpu.upload_f32(&[1, 3, 64], &[0.1; 192]).unwrap();
    let bad = gpu.upload_f32(&[1, 3, 63], &[0.1; 189]).unwrap();
    let e = layer.forward(&mut cache, &[0], &bad).unwrap_err();
    assert!(e.to_string().contains("hidden_states"), "{e}");
    let e = layer.forward(&mut cache, &[0, 1], &x).unwrap_err();
    assert!(e.to_string().contains("hidden_states"), "{e}");
    let e = layer.forward(&mut cache, &[2], &x).unwrap_err();
    assert!(e.to_string().contains("sequence 2"), "{e}");
    layer.forward(&mut cache, &[0], &x).unwrap();
    // 3 + 3 > 4 tokens of pages for one sequence, plus the other's: the cache holds 4 pages of 2.
    let x5 = gpu.upload_f32(&[1, 5, 64], &[0.1; 320]).unwrap();
    let e = layer.forward(&mut cache, &[1], &x5).unwrap_err();
    assert!(e.to_string().contains("free pages"), "{e}");
    assert_eq!((cache.seq_len(0), cache.seq_len(1)), (3, 0));
    // Weights of the wrong config are refused up front.
    let other = small_config(4, None, false, false);
    let e = MlaLayer::new(gpu.clone(), &other, &w).unwrap_err();
    assert!(e.to_string().contains("q_proj.weight"), "{e}");
}

fn write_weights(path: &std::path::Path, w: &MlaWeights, prefix: &str) {
    let tensors = w.host_tensors(prefix).unwrap();
    let refs: Vec<(&str, &HostTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(path, &refs).unwrap();
}

#[test]
fn loads_weights_with_and_without_prefix() {
    let mut rng = Rng::new(7);
    for (q_lora, bias) in [(None, false), (Some(24), true)] {
        let cfg = small_config(3, q_lora, true, bias);
        let w = MlaWeights::random(&cfg, &mut rng);
        for prefix in ["", "model.layers.5.self_attn."] {
            let path = temp_path(&format!("w-{q_lora:?}-{bias}-{}.safetensors", prefix.len()));
            write_weights(&path, &w, prefix);
            let st = SafeTensors::read(&path).unwrap();
            let loaded = MlaWeights::from_safetensors(&st, &cfg, None).unwrap();
            assert_eq!(loaded, w, "prefix {prefix:?}");
            if !prefix.is_empty() {
                assert_eq!(MlaWeights::from_safetensors(&st, &cfg, Some(5)).unwrap(), w);
                let e = MlaWeights::from_safetensors(&st, &cfg, Some(4)).unwrap_err();
                assert!(e.to_string().contains("model.layers.4.self_attn."), "{e}");
            }
        }
    }
}

#[test]
fn weight_errors_name_the_tensor_and_shape() {
    let mut rng = Rng::new(8);
    let cfg = small_config(3, Some(24), false, false);
    let w = MlaWeights::random(&cfg, &mut rng);
    let named = w.host_tensors("model.layers.0.self_attn.").unwrap();
    type Named = Vec<(String, HostTensor)>;
    let build = |edit: &dyn Fn(&mut Named)| {
        let mut t = named.clone();
        edit(&mut t);
        let mut st = SafeTensors::default();
        for (n, h) in t {
            st.insert(&n, h);
        }
        st
    };
    // Missing tensor.
    let st = build(&|t| t.retain(|(n, _)| !n.ends_with("kv_b_proj.weight")));
    let e = MlaWeights::from_safetensors(&st, &cfg, None).unwrap_err();
    assert!(matches!(e, Error::MissingTensor { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("model.layers.0.self_attn.kv_b_proj.weight"),
        "{e}"
    );
    // Wrong shape.
    let st = build(&|t| {
        for (n, h) in t.iter_mut() {
            if n.ends_with("o_proj.weight") {
                *h = HostTensor::new(&[64, 47], vec![0.0; 64 * 47]).unwrap();
            }
        }
    });
    let e = MlaWeights::from_safetensors(&st, &cfg, None).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("o_proj.weight") && msg.contains("[64, 48]") && msg.contains("[64, 47]"),
        "{msg}"
    );
    // A config with attention_bias needs the biases.
    let cfg_bias = small_config(3, Some(24), false, true);
    let e = MlaWeights::from_safetensors(&build(&|_| {}), &cfg_bias, None).unwrap_err();
    assert!(e.to_string().contains("q_a_proj.bias"), "{e}");
    // A plain q_proj config does not match q_lora weights.
    let cfg_direct = small_config(3, None, false, false);
    let e = MlaWeights::from_safetensors(&build(&|_| {}), &cfg_direct, None).unwrap_err();
    assert!(e.to_string().contains("q_proj.weight"), "{e}");
    // Two layers in one file need a choice.
    let st = build(&|t| {
        let extra: Vec<_> = t
            .iter()
            .map(|(n, h)| (n.replace("layers.0.", "layers.1."), h.clone()))
            .collect();
        t.extend(extra);
    });
    let e = MlaWeights::from_safetensors(&st, &cfg, None).unwrap_err();
    assert!(e.to_string().contains("0, 1"), "{e}");
    assert!(MlaWeights::from_safetensors(&st, &cfg, Some(1)).is_ok());
    // Nothing at all.
    let e = MlaWeights::from_safetensors(&SafeTensors::default(), &cfg, None).unwrap_err();
    assert!(e.to_string().contains("kv_a_proj_with_mqa.weight"), "{e}");
}

#[test]
fn decode_loop_creates_no_gpu_objects_per_step() {
    // A private context so other tests' work does not move the counters.
    let gpu = std::sync::Arc::new(ssm_mla::Gpu::new().expect("GPU tests need an adapter"));
    let cfg = small_config(3, Some(24), true, false);
    let mut rng = ssm_mla::Rng::new(11);
    let weights = ssm_mla::mla::MlaWeights::random(&cfg, &mut rng);
    let layer = ssm_mla::mla::MlaLayer::new(gpu.clone(), &cfg, &weights).unwrap();
    let mut cache = layer.new_cache(2, 200, 16).unwrap();
    let hidden = gpu
        .upload_f32(
            &[2, 1, cfg.hidden_size],
            &rng.normal_vec(2 * cfg.hidden_size, 0.0, 1.0),
        )
        .unwrap();
    let out = gpu
        .empty(&[2, 1, cfg.hidden_size], ssm_mla::DType::F32)
        .unwrap();
    let step = |cache: &mut ssm_mla::mla::MlaCache| {
        let mut batch = gpu.batch();
        layer
            .record(&mut batch, cache, &[0, 1], &hidden, &out)
            .unwrap();
        batch.run().unwrap();
    };
    for _ in 0..3 {
        step(&mut cache);
    }
    let warm = gpu.resource_counters();
    let pipelines = gpu.cached_pipelines();
    for _ in 0..40 {
        step(&mut cache);
    }
    assert_eq!(cache.seq_len(0), 43);
    assert_eq!(
        gpu.resource_counters(),
        warm,
        "no bind group or buffer per decode step"
    );
    assert_eq!(gpu.cached_pipelines(), pipelines);
    assert!(gpu.read_f32(&out).unwrap().iter().all(|v| v.is_finite()));
}

/// bf16 weights (kept bf16 on the GPU) with an f16 and a bf16 cache against the CPU layer fed the
/// same rounded weights; prefill-P-then-decode matches one-shot through a half cache.
#[test]
fn gpu_layer_with_half_weights_and_cache() {
    use ssm_mla::DType;
    let (mut rng, seed) = rng("mla half");
    let gpu = gpu();
    let (bt, s) = (2, 6);
    let cfg = small_config(3, Some(16), true, true);
    let problem = Problem::random(&mut rng, &cfg, bt, s);
    let w = problem.weights.rounded_to(DType::BF16).unwrap();
    assert_eq!(w.dtype, DType::BF16);
    let h = &problem.hidden;
    let want = reference::mla::naive(&cfg, &w, h, bt, s);
    let layer = MlaLayer::new(gpu.clone(), &cfg, &w).unwrap();
    for (cache, tol) in [
        (DType::F16, Tolerance::new(4e-3, 4e-3)),
        (DType::BF16, Tolerance::new(3e-2, 3e-2)),
    ] {
        let one = layer
            .run_host_with_cache_dtype(h, bt, s, None, cache)
            .unwrap();
        assert_close(&format!("{cache} cache one-shot"), &one, &want, tol, seed);
        let dec = layer
            .run_host_with_cache_dtype(h, bt, s, Some(2), cache)
            .unwrap();
        assert_close(
            &format!("{cache} cache decode-from 2"),
            &dec,
            &want,
            tol,
            seed,
        );
        let one64: Vec<f64> = one.iter().map(|&x| x as f64).collect();
        assert_close(
            &format!("{cache} cache decode vs one-shot"),
            &dec,
            &one64,
            TOL,
            seed,
        );
    }
    // The weights round-trip through a file in bf16 and load as bf16.
    let path = temp_path("bf16-weights.safetensors");
    let tensors = w.host_tensors("").unwrap();
    let refs: Vec<(&str, &HostTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&path, &refs).unwrap();
    let st = SafeTensors::read(&path).unwrap();
    assert_eq!(st.get("kv_b_proj.weight").unwrap().dtype(), DType::BF16);
    let back = MlaWeights::from_safetensors(&st, &cfg, None).unwrap();
    assert_eq!(back, w);
}
