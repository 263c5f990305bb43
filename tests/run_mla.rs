//! `ssm-mla run mla` on files the test writes: GPU one-shot, GPU with --decode-from, and the CPU
//! device all match the f64 naive reference; bad input exits with code 2 and one line naming the
//! problem. Tolerance: atol 1e-4, rtol 2e-3 (as tests/mla.rs); 3e-2 with `--cache-dtype bf16`
//! (the cache rounds c and k_rope to bf16's 8-bit significand, as in tests/mla.rs).

mod common;
use common::*;
use ssm_mla::io::{write_safetensors, HostTensor, SafeTensors};
use ssm_mla::mla::{MlaConfig, MlaWeights};
use ssm_mla::{reference, Tolerance};
use std::path::{Path, PathBuf};
use std::process::Command;

const CONFIG: &str = r#"{"hidden_size": 64, "num_attention_heads": 3, "q_lora_rank": 24,
  "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
  "rope_theta": 10000, "rms_norm_eps": 1e-6,
  "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 64,
                   "mscale": 1.0, "mscale_all_dim": 0.5}}"#;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ssm-mla-test-run-mla-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ssm-mla"))
        .args(args)
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
        )
        .output()
        .unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn run_mla_matches_reference_on_every_path() {
    let (mut rng, seed) = rng("run mla");
    let d = dir();
    let cfg_path = d.join("config.json");
    std::fs::write(&cfg_path, CONFIG).unwrap();
    let cfg = MlaConfig::from_json_str(CONFIG, "config").unwrap();
    let w = MlaWeights::random(&cfg, &mut rng);
    let w_path = d.join("weights.safetensors");
    let named = w.host_tensors("model.layers.3.self_attn.").unwrap();
    let refs: Vec<(&str, &HostTensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&w_path, &refs).unwrap();
    let (bt, s) = (2, 6);
    let h = rng.normal_vec(bt * s * 64, 0.0, 1.0);
    let in_path = d.join("in.safetensors");
    let hidden = HostTensor::new(&[bt, s, 64], h.clone()).unwrap();
    write_safetensors(&in_path, &[("hidden_states", &hidden)]).unwrap();
    let want = reference::mla::naive(&cfg, &w, &h, bt, s);
    for extra in [
        vec![],
        vec!["--decode-from", "2"],
        vec!["--cache-dtype", "bf16", "--decode-from", "3"],
        vec!["--device", "cpu"],
        vec!["--device", "cpu", "--decode-from", "5"],
    ] {
        let out_path = d.join("out.safetensors");
        let _ = std::fs::remove_file(&out_path);
        let mut args = vec![
            "run",
            "mla",
            "--config",
            p(&cfg_path),
            "--weights",
            p(&w_path),
            "--input",
            p(&in_path),
            "--output",
            p(&out_path),
        ];
        args.extend(extra.iter().copied());
        let o = run(&args);
        assert!(
            o.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let out = SafeTensors::read(&out_path).unwrap();
        let t = out.get("out").unwrap();
        assert_eq!(t.shape, vec![bt, s, 64]);
        assert_close(
            &format!("run mla {extra:?}"),
            &t.data,
            &want,
            if extra.contains(&"bf16") {
                Tolerance::new(3e-2, 3e-2)
            } else {
                Tolerance::new(1e-4, 2e-3)
            },
            seed,
        );
    }

    // Bad input: exit code 2 and one line naming the problem.
    let bad_in = d.join("bad.safetensors");
    let wrong = HostTensor::new(&[1, 2, 63], vec![0.0; 126]).unwrap();
    write_safetensors(&bad_in, &[("hidden_states", &wrong)]).unwrap();
    let missing = d.join("missing.safetensors");
    write_safetensors(&missing, &[("x", &wrong)]).unwrap();
    let bad_cfg = d.join("bad.json");
    std::fs::write(&bad_cfg, "{\"hidden_size\": 64}").unwrap();
    let out_path = d.join("never.safetensors");
    for (cfg_p, w_p, in_p, extra, needle) in [
        (&cfg_path, &w_path, &bad_in, vec![], "hidden_states"),
        (&cfg_path, &w_path, &missing, vec![], "hidden_states"),
        (
            &cfg_path,
            &missing,
            &in_path,
            vec![],
            "kv_a_proj_with_mqa.weight",
        ),
        (&bad_cfg, &w_path, &in_path, vec![], "num_attention_heads"),
        (
            &cfg_path,
            &w_path,
            &in_path,
            vec!["--decode-from", "7"],
            "decode-from",
        ),
    ] {
        let mut args = vec![
            "run",
            "mla",
            "--config",
            p(cfg_p),
            "--weights",
            p(w_p),
            "--input",
            p(in_p),
            "--output",
            p(&out_path),
            "--device",
            "cpu",
        ];
        args.extend(extra.iter().copied());
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{needle}: {err}");
        assert!(err.contains(needle), "{needle:?} not in {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!out_path.exists());
    }
}
