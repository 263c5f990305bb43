//! The Mamba-2 language model: the f64 CPU reference against logits transformers gave for tiny
//! random checkpoints (tests/data/mamba2_tiny_*, made by scripts/golden/mamba2.py): one-shot,
//! batched and prefill-then-decode through the cache; config and checkpoint errors. The CLI
//! (`ssm-mla run lm`) on these checkpoints is tests/mamba2_run_lm.rs.
//!
//! Tolerance of the reference against transformers: transformers computes in f32, prefill with
//! the chunked SSD scan (exp of segment sums, C·Bᵀ products over 16-token chunks, a scan of
//! chunk states) and decode with the recurrence, the reference in f64 token by token. The
//! logits reach ~20 after two blocks of ≤ 328-wide dot products, 16-state sums and three
//! RMSNorms; f32 rounding of those is ~1e-6 relative per operation, and the measured worst is
//! 7.6e-6 absolute (each test prints its own). atol 5e-5 + rtol 2e-4 keeps a margin of several
//! times that and still fails any misplaced weight, head-to-group map or skipped clamp, whose
//! errors are O(0.1–10) (`every_parameter_reaches_the_logits`).

mod common;
use common::*;

use ssm_mla::checkpoint::Checkpoint;
use ssm_mla::lm::{Device, LoadOptions, SeqInput};
use ssm_mla::mamba2::{InProjSplit, Mamba2Config, Mamba2Weights};
use ssm_mla::reference::mamba2::Mamba2CpuModel;
use ssm_mla::{compare, SafeTensors, Tolerance};

const TRANSFORMERS_TOL: Tolerance = Tolerance::new(5e-5, 2e-4);
const MODELS: [&str; 2] = ["mamba2_tiny_tied", "mamba2_tiny_untied"];
const VOCAB: usize = 128;

fn load(name: &str) -> (Mamba2Config, Mamba2Weights, Checkpoint) {
    let ck = Checkpoint::open(&data_dir(name)).unwrap();
    assert_eq!(ck.model_type().unwrap(), "mamba2");
    let cfg = Mamba2Config::from_json(&ck.config, name).unwrap();
    let w = Mamba2Weights::from_safetensors(&cfg, &ck.tensors).unwrap();
    (cfg, w, ck)
}

/// Each golden prompt k: input_ids_k (1, L) and logits_k (1, L, vocab).
fn prompts(name: &str) -> Vec<(Vec<u32>, Vec<f32>)> {
    let file = golden_file(name);
    (0..)
        .map_while(|k| {
            file.get_ids(&format!("input_ids_{k}")).ok()?;
            let (_, ids) = ids_of(&file, &format!("input_ids_{k}"));
            let logits = file.get(&format!("logits_{k}")).unwrap();
            Some((ids, logits.to_f32().to_vec()))
        })
        .collect()
}

fn check(what: &str, got: &[f32], want: &[f32], tol: Tolerance) {
    let want64: Vec<f64> = want.iter().map(|&x| x as f64).collect();
    let c = compare(got, &want64, tol);
    eprintln!("{what}: {c}");
    assert!(c.passed(), "{what}: {c}");
}

fn f32s(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

#[test]
fn cpu_reference_matches_transformers_one_shot_and_batched() {
    for name in MODELS {
        let (cfg, w, _) = load(name);
        let model = Mamba2CpuModel::new(&cfg, &w);
        let ps = prompts(name);
        assert_eq!(ps.len(), 3, "{name}: golden prompts missing");
        for (k, (ids, want)) in ps.iter().enumerate() {
            let (logits, _) = model.forward(ids).unwrap();
            let what = format!("{name} prompt {k} (L = {})", ids.len());
            check(&what, &f32s(&logits), want, TRANSFORMERS_TOL);
        }
        let file = golden_file(name);
        let (shape, ids) = ids_of(&file, "batch_input_ids");
        let want = file.get("batch_logits").unwrap().to_f32();
        let l = shape[1];
        for (b, row) in ids.chunks(l).enumerate() {
            let (logits, _) = model.forward(row).unwrap();
            let what = format!("{name} batch row {b}");
            check(
                &what,
                &f32s(&logits),
                &want[b * l * VOCAB..(b + 1) * l * VOCAB],
                TRANSFORMERS_TOL,
            );
        }
    }
}

/// Prefill the first `from` tokens of `ids` in one call, then one token per call, through the
/// registry's CPU model (its slots), every position's logits.
fn prefill_then_decode(name: &str, ids: &[u32], from: usize) -> Vec<f32> {
    let options = LoadOptions {
        slots: 2,
        weight_dtype: None,
        ..Default::default()
    };
    let mut lm = ssm_mla::models::load(&data_dir(name), &Device::Cpu, &options).unwrap();
    assert_eq!(lm.vocab_size(), VOCAB);
    let slot = 1;
    let mut got = lm
        .forward(
            &[SeqInput {
                slot,
                tokens: &ids[..from],
            }],
            false,
        )
        .unwrap()
        .remove(0);
    for t in from..ids.len() {
        let out = lm
            .forward(
                &[SeqInput {
                    slot,
                    tokens: &ids[t..t + 1],
                }],
                false,
            )
            .unwrap();
        got.extend(&out[0]);
    }
    got
}

#[test]
fn cpu_model_matches_transformers_decoding_through_the_cache() {
    // Tied: transformers' own prefill (chunked, P = 20 crosses a chunk boundary) and one-token
    // steps through its cache.
    let name = "mamba2_tiny_tied";
    let file = golden_file(name);
    let from = file.get_ids("decode_from").unwrap().data[0] as usize;
    let (_, ids) = ids_of(&file, "input_ids_0");
    let want = file.get("decode_logits_0").unwrap().to_f32();
    let got = prefill_then_decode(name, &ids, from);
    check(
        &format!("{name} decode from {from}"),
        &got,
        want,
        TRANSFORMERS_TOL,
    );
    // Untied (finite time_step_limit): transformers' one-token step skips the dt clamp, so its
    // decoded logits are not recorded; the reference clamps on every token and must give the
    // one-shot logits whichever way the tokens come.
    let name = "mamba2_tiny_untied";
    assert!(golden_file(name).get("decode_logits_0").is_err());
    let (ids, want) = &prompts(name)[0];
    let got = prefill_then_decode(name, ids, 20);
    check(
        &format!("{name} decode from 20 vs one-shot"),
        &got,
        want,
        TRANSFORMERS_TOL,
    );
}

#[test]
fn every_parameter_reaches_the_logits() {
    // The goldens are sensitive to what transformers' init would hide: without the dt clamp, with
    // D = 0, or with the gated norm's weight at 1, the untied model's logits move far outside
    // the tolerance.
    let (cfg, w, _) = load("mamba2_tiny_untied");
    let (ids, want) = &prompts("mamba2_tiny_untied")[0];
    let want64: Vec<f64> = want.iter().map(|&x| x as f64).collect();
    let unclamped = Mamba2Config {
        time_step_limit: (0.0, f64::INFINITY),
        ..cfg.clone()
    };
    let mut no_d = w.clone();
    let mut flat_norm = w.clone();
    for l in 0..cfg.num_hidden_layers {
        let d = &no_d.layers[l].d;
        no_d.layers[l].d = ssm_mla::HostTensor::new(&d.shape, vec![0.0; d.len()]).unwrap();
        let g = &flat_norm.layers[l].gated_norm;
        flat_norm.layers[l].gated_norm =
            ssm_mla::HostTensor::new(&g.shape, vec![1.0; g.len()]).unwrap();
    }
    for (what, c, w) in [
        ("no clamp", &unclamped, &w),
        ("D = 0", &cfg, &no_d),
        ("norm = 1", &cfg, &flat_norm),
    ] {
        let (logits, _) = Mamba2CpuModel::new(c, w).forward(ids).unwrap();
        let cmp = compare(&f32s(&logits), &want64, TRANSFORMERS_TOL);
        assert!(cmp.max_abs > 1e-2, "{what}: {cmp}");
    }
}

#[test]
fn config_fields_are_honoured() {
    let (cfg, w, _) = load("mamba2_tiny_tied");
    assert_eq!(
        (cfg.num_heads, cfg.head_dim, cfg.n_groups, cfg.state_size),
        (8, 16, 2, 16)
    );
    assert_eq!(
        (cfg.d_inner(), cfg.conv_dim(), cfg.chunk_size),
        (128, 192, 16)
    );
    assert_eq!(cfg.time_step_limit, (0.0, f64::INFINITY));
    assert_eq!(
        cfg.in_proj_split(),
        InProjSplit {
            z: 0,
            xbc: 128,
            dt: 320,
            width: 328,
            b: 128,
            c: 160
        }
    );
    assert!(cfg.tie_word_embeddings && w.lm_head.is_none());
    assert_eq!(w.head(), &w.embeddings);
    assert!(w.layers[0].conv1d_bias.is_some() && w.layers[0].in_proj_bias.is_none());
    let (cfg, w, _) = load("mamba2_tiny_untied");
    assert_eq!(
        (cfg.num_heads, cfg.head_dim, cfg.n_groups, cfg.conv_kernel),
        (4, 32, 1, 3)
    );
    assert_eq!(cfg.time_step_limit, (0.01, 0.3));
    assert_eq!(cfg.in_proj_split().width, 128 + 160 + 4);
    assert_eq!(cfg.norm_group_size(), 128);
    assert!(!cfg.tie_word_embeddings && w.lm_head.is_some());
    assert!(w.layers[1].conv1d_bias.is_none() && w.layers[1].out_proj_bias.is_some());
    assert_eq!(cfg.eos_token_id, Some(0));
}

#[test]
fn bad_configs_are_named_errors() {
    let (_, _, ck) = load("mamba2_tiny_tied");
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("hidden_act", "gelu".into(), "hidden_act"),
        ("conv_kernel", 5.into(), "conv_kernel"),
        ("num_heads", 7.into(), "num_heads"),
        ("n_groups", 3.into(), "n_groups"),
        ("rms_norm", false.into(), "rms_norm"),
        ("norm_before_gate", true.into(), "norm_before_gate"),
        (
            "time_step_limit",
            serde_json::json!([0.5, 0.1]),
            "time_step_limit",
        ),
        (
            "time_step_limit",
            serde_json::json!("wide"),
            "time_step_limit",
        ),
        ("state_size", 0.into(), "state_size"),
        ("model_type", "mamba".into(), "model_type"),
    ];
    for (field, value, needle) in cases {
        let mut v = ck.config.clone();
        v[field] = value.clone();
        let err = Mamba2Config::from_json(&v, "config.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{field} = {value}: {err}");
    }
    // mamba_ssm's defaults are accepted.
    let mut v = ck.config.clone();
    v["rms_norm"] = true.into();
    v["norm_before_gate"] = false.into();
    assert!(Mamba2Config::from_json(&v, "config.json").is_ok());
}

#[test]
fn bad_checkpoints_are_named_errors() {
    let (cfg, _, ck) = load("mamba2_tiny_untied");
    // A missing tensor.
    let mut tensors = SafeTensors::default();
    for name in ck.tensors.names() {
        if name != "backbone.layers.1.mixer.dt_bias" {
            tensors.insert(name, ck.tensors.get(name).unwrap().clone());
        }
    }
    let err = Mamba2Weights::from_safetensors(&cfg, &tensors)
        .unwrap_err()
        .to_string();
    assert!(err.contains("backbone.layers.1.mixer.dt_bias"), "{err}");
    // Misshapen tensors: A_log per channel instead of per head, in_proj transposed.
    for (name, shape, needle) in [
        ("backbone.layers.0.mixer.A_log", vec![4, 1], "(H)"),
        (
            "backbone.layers.1.mixer.in_proj.weight",
            vec![64, 292],
            "(d_inner + conv_dim + H, hidden)",
        ),
    ] {
        let mut bad = ck.tensors.clone();
        let t = ck.tensors.get(name).unwrap();
        bad.insert(name, t.reshaped(&shape).unwrap());
        let err = Mamba2Weights::from_safetensors(&cfg, &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains(name) && err.contains(needle), "{err}");
    }
    // A bias the config says is absent, and a missing untied head.
    let no_bias = Mamba2Config {
        use_bias: false,
        ..cfg.clone()
    };
    let err = Mamba2Weights::from_safetensors(&no_bias, &ck.tensors)
        .unwrap_err()
        .to_string();
    assert!(err.contains("in_proj.bias"), "{err}");
    let (tied_cfg, _, tied) = load("mamba2_tiny_tied");
    let untied = Mamba2Config {
        tie_word_embeddings: false,
        ..tied_cfg
    };
    let err = Mamba2Weights::from_safetensors(&untied, &tied.tensors)
        .unwrap_err()
        .to_string();
    assert!(err.contains("lm_head.weight"), "{err}");
}

#[test]
fn random_models_round_trip_through_a_directory() {
    let (mut rng, _) = common::rng("mamba2 random_models_round_trip_through_a_directory");
    let cfgs = [
        Mamba2Config::tiny(40, 32, 2),
        Mamba2Config {
            use_bias: true,
            use_conv_bias: false,
            tie_word_embeddings: false,
            n_groups: 2,
            time_step_limit: (0.001, 0.2),
            ..Mamba2Config::tiny(40, 32, 1)
        },
    ];
    for (i, cfg) in cfgs.iter().enumerate() {
        for dtype in [ssm_mla::DType::F32, ssm_mla::DType::BF16] {
            let w = Mamba2Weights::random(cfg, &mut rng, dtype).unwrap();
            let dir = std::env::temp_dir()
                .join(format!("ssm-mla-mamba2-{}-{i}-{dtype}", std::process::id()));
            w.write_dir(cfg, &dir).unwrap();
            let ck = Checkpoint::open(&dir).unwrap();
            let cfg2 = Mamba2Config::from_json(&ck.config, "config.json").unwrap();
            assert_eq!(&cfg2, cfg);
            let w2 = Mamba2Weights::from_safetensors(&cfg2, &ck.tensors).unwrap();
            assert_eq!(w2, w);
            assert_eq!(w2.layers[0].in_proj.dtype(), dtype);
            let (logits, _) = Mamba2CpuModel::new(cfg, &w).forward(&[1, 2, 3]).unwrap();
            assert!(logits.iter().all(|x| x.is_finite()));
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[test]
fn configs_with_bare_python_infinity_load() {
    // Older transformers wrote `time_step_limit` as `[0.0, Infinity]`, which JSON does not
    // allow; such directories still load.
    let src = data_dir("mamba2_tiny_tied");
    let dir = std::env::temp_dir().join(format!("ssm-mla-mamba2-inf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(src.join("config.json")).unwrap();
    let tagged = text.find("\"__float__\"").map(|at| {
        let start = text[..at].rfind('{').unwrap();
        let end = at + text[at..].find('}').unwrap() + 1;
        format!("{}Infinity{}", &text[..start], &text[end..])
    });
    let bare = tagged.expect("the golden config holds a tagged infinity");
    assert!(serde_json::from_str::<serde_json::Value>(&bare).is_err());
    std::fs::write(dir.join("config.json"), bare).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    let cfg = Mamba2Config::from_json(&ck.config, "config.json").unwrap();
    assert_eq!(cfg.time_step_limit, (0.0, f64::INFINITY));
    std::fs::remove_dir_all(&dir).unwrap();
}
