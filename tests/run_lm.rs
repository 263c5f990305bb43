//! `ssm-mla run lm` and `ssm-mla generate` on the tiny Mamba checkpoints of tests/data (made by
//! scripts/golden/mamba.py): the logits equal transformers' for each prompt, one-shot and with
//! --decode-from, on each device; bad model directories and inputs exit 2 with one line.
//! Tolerances: CPU (f64) vs transformers (f32) atol 2e-5 + rtol 1e-4 (tests/mamba_model.rs);
//! GPU (f32 math) vs transformers atol 1e-4 + rtol 1e-3 (f32 sums of ≤ 96 terms per dot product
//! and a 16-state recurrence per step, ~1e-6 relative each, over 2 blocks).

mod common;
use common::*;
use ssm_mla::io::{write_id_tensors, IdTensor, SafeTensors};
use ssm_mla::{compare, Tolerance};

const CPU_TOL: Tolerance = Tolerance::new(2e-5, 1e-4);
const GPU_TOL: Tolerance = Tolerance::new(1e-4, 1e-3);

/// The golden prompts of one model padded into one (Bt, L) batch is not what transformers ran
/// (no padding there), so each prompt is run as its own file: (ids, logits).
fn golden(name: &str) -> Vec<(Vec<i64>, Vec<f32>)> {
    let file = SafeTensors::read(&data_dir(name).join("golden.safetensors")).unwrap();
    (0..)
        .map_while(|k| {
            let ids = file.get_ids(&format!("input_ids_{k}")).ok()?;
            let logits = file.get(&format!("logits_{k}")).unwrap();
            Some((ids.data.clone(), logits.to_f32().to_vec()))
        })
        .collect()
}

fn check_run(model: &str, device: &str, extra: &[&str], tol: Tolerance) {
    let d = scratch("run-lm");
    let model_dir = data_dir(model);
    for (k, (ids, want)) in golden(model).iter().enumerate() {
        let input = d.join(format!("{model}-{k}-ids.safetensors"));
        let output = d.join(format!(
            "{model}-{k}-{device}-{}.safetensors",
            extra.join("")
        ));
        let t = IdTensor::new(&[1, ids.len()], ids.clone()).unwrap();
        write_id_tensors(&input, &[("input_ids", &t)]).unwrap();
        let mut args = vec![
            "run",
            "lm",
            "--model",
            path_arg(&model_dir),
            "--input",
            path_arg(&input),
            "--output",
            path_arg(&output),
            "--device",
            device,
        ];
        let from;
        if let Some(&f) = extra.first() {
            let n: usize = f.parse().unwrap();
            if n > ids.len() {
                continue;
            }
            from = n.to_string();
            args.extend(["--decode-from", from.as_str()]);
        }
        let out = run_cli(&args);
        assert!(
            out.status.success(),
            "{model} prompt {k} {device} {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = SafeTensors::read(&output).unwrap();
        let logits = got.get("logits").unwrap();
        assert_eq!(logits.shape, vec![1, ids.len(), 64]);
        let want64: Vec<f64> = want.iter().map(|&x| x as f64).collect();
        let c = compare(logits.to_f32(), &want64, tol);
        assert!(c.passed(), "{model} prompt {k} {device} {extra:?}: {c}");
    }
}

#[test]
fn cpu_logits_match_transformers_one_shot_and_decoding() {
    for model in ["mamba_tiny_tied", "mamba_tiny_untied"] {
        check_run(model, "cpu", &[], CPU_TOL);
        check_run(model, "cpu", &["2"], CPU_TOL);
    }
}

#[test]
fn gpu_logits_match_transformers_one_shot_and_decoding() {
    for model in ["mamba_tiny_tied", "mamba_tiny_untied"] {
        check_run(model, "gpu", &[], GPU_TOL);
        check_run(model, "gpu", &["3"], GPU_TOL);
    }
}

#[test]
fn batched_prompts_decode_together() {
    // Two prompts of one length in one (2, L) file: prefilled together, decoded together.
    let d = scratch("run-lm");
    let model = data_dir("mamba_tiny_untied");
    let prompts = golden("mamba_tiny_untied");
    let (a, la) = (&prompts[1].0, &prompts[1].1);
    let ids: Vec<i64> = a.iter().chain(a.iter().rev()).copied().collect();
    let input = d.join("batch-ids.safetensors");
    write_id_tensors(
        &input,
        &[("input_ids", &IdTensor::new(&[2, a.len()], ids).unwrap())],
    )
    .unwrap();
    let one_shot = d.join("batch-one.safetensors");
    let decoded = d.join("batch-dec.safetensors");
    for (out, extra) in [(&one_shot, None), (&decoded, Some("4"))] {
        let mut args = vec![
            "run",
            "lm",
            "--model",
            path_arg(&model),
            "--input",
            path_arg(&input),
            "--output",
            path_arg(out),
        ];
        if let Some(e) = extra {
            args.extend(["--decode-from", e]);
        }
        let o = run_cli(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let one = SafeTensors::read(&one_shot).unwrap();
    let dec = SafeTensors::read(&decoded).unwrap();
    let one = one.get("logits").unwrap();
    let dec = dec.get("logits").unwrap();
    assert_eq!(one.shape, vec![2, a.len(), 64]);
    let n = a.len() * 64;
    let want: Vec<f64> = la.iter().map(|&x| x as f64).collect();
    let c = compare(&one.to_f32()[..n], &want, GPU_TOL);
    assert!(c.passed(), "row 0 one-shot: {c}");
    let one64: Vec<f64> = one.to_f32().iter().map(|&x| x as f64).collect();
    let c = compare(dec.to_f32(), &one64, GPU_TOL);
    assert!(c.passed(), "decode-from 4 vs one-shot: {c}");
}

#[test]
fn bad_models_and_inputs_exit_2_with_one_line() {
    let d = scratch("run-lm");
    let input = d.join("bad-ids.safetensors");
    let t = IdTensor::new(&[1, 3], vec![1, 2, 3]).unwrap();
    write_id_tensors(&input, &[("input_ids", &t)]).unwrap();
    let output = d.join("bad-out.safetensors");
    // A model directory with a config of an unknown model type.
    let bad_dir = d.join("bad-model");
    std::fs::create_dir_all(&bad_dir).unwrap();
    std::fs::write(bad_dir.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    std::fs::copy(
        data_dir("mamba_tiny_tied").join("model.safetensors"),
        bad_dir.join("model.safetensors"),
    )
    .unwrap();
    let nowhere = d.join("nowhere");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--model", path_arg(&bad_dir)], "gpt2"),
        (vec!["--model", path_arg(&nowhere)], "nowhere"),
    ];
    for (args, needle) in cases {
        let mut all = vec![
            "run",
            "lm",
            "--input",
            path_arg(&input),
            "--output",
            path_arg(&output),
            "--device",
            "cpu",
        ];
        all.extend(args);
        let out = run_cli(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
    }
    // A checkpoint with a tensor missing, and one with a misshapen tensor.
    let src = data_dir("mamba_tiny_tied");
    let full = SafeTensors::read(&src.join("model.safetensors")).unwrap();
    for (case, needle) in [
        ("missing", "backbone.layers.1.mixer.D"),
        ("misshapen", "A_log"),
    ] {
        let dir = d.join(format!("model-{case}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
        let mut kept: Vec<(String, ssm_mla::HostTensor)> = Vec::new();
        for name in full.names() {
            let t = full.get(name).unwrap().clone();
            match case {
                "missing" if name == needle => continue,
                "misshapen" if name == "backbone.layers.0.mixer.A_log" => kept.push((
                    name.to_string(),
                    t.reshaped(&[t.shape[1], t.shape[0]]).unwrap(),
                )),
                _ => kept.push((name.to_string(), t)),
            }
        }
        let refs: Vec<(&str, &ssm_mla::HostTensor)> =
            kept.iter().map(|(n, t)| (n.as_str(), t)).collect();
        ssm_mla::io::write_safetensors(&dir.join("model.safetensors"), &refs).unwrap();
        let out = run_cli(&[
            "run",
            "lm",
            "--model",
            path_arg(&dir),
            "--input",
            path_arg(&input),
            "--output",
            path_arg(&output),
            "--device",
            "cpu",
        ]);
        assert_eq!(out.status.code(), Some(2), "{case}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{case}: {err}");
    }
    // A token outside the vocabulary.
    let big = IdTensor::new(&[1, 2], vec![1, 64]).unwrap();
    write_id_tensors(&input, &[("input_ids", &big)]).unwrap();
    let model = data_dir("mamba_tiny_tied");
    let out = run_cli(&[
        "run",
        "lm",
        "--model",
        path_arg(&model),
        "--input",
        path_arg(&input),
        "--output",
        path_arg(&output),
        "--device",
        "cpu",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("64"));
}

#[test]
fn int32_input_ids_are_accepted() {
    let d = scratch("run-lm");
    let (ids, want) = &golden("mamba_tiny_tied")[0];
    let bytes: Vec<u8> = ids.iter().flat_map(|&t| (t as i32).to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![1, ids.len()], &bytes)
            .unwrap();
    let input = d.join("ids-i32.safetensors");
    std::fs::write(
        &input,
        safetensors::serialize(vec![("input_ids", view)], None).unwrap(),
    )
    .unwrap();
    let output = d.join("ids-i32-out.safetensors");
    let model = data_dir("mamba_tiny_tied");
    let out = run_cli(&[
        "run",
        "lm",
        "--model",
        path_arg(&model),
        "--input",
        path_arg(&input),
        "--output",
        path_arg(&output),
        "--device",
        "cpu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = SafeTensors::read(&output).unwrap();
    let want64: Vec<f64> = want.iter().map(|&x| x as f64).collect();
    let c = compare(got.get("logits").unwrap().to_f32(), &want64, CPU_TOL);
    assert!(c.passed(), "{c}");
}

#[test]
fn generate_streams_text_and_reports_rates() {
    let model = data_dir("mamba_tiny_tied");
    let args = [
        "generate",
        "--model",
        path_arg(&model),
        "--prompt",
        "w3 w7 w1",
        "--max-new-tokens",
        "5",
        "--temperature",
        "0",
        "--device",
        "cpu",
    ];
    let out = run_cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("w3 w7 w1"), "{text}");
    assert!(
        text.contains("prefill: 3 tokens") && text.contains("tokens/s"),
        "{text}"
    );
    // Greedy decoding is deterministic: the same command gives the same text.
    let again = run_cli(&args);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).lines().next(),
        text.lines().next()
    );
    // Sampling with a seed is reproducible too.
    let sampled = |seed: &str| {
        let out = run_cli(&[
            "generate",
            "--model",
            path_arg(&model),
            "--prompt",
            "w3",
            "--max-new-tokens",
            "6",
            "--temperature",
            "1.0",
            "--top-p",
            "0.9",
            "--seed",
            seed,
            "--device",
            "cpu",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(sampled("5"), sampled("5"));
    // No tokenizer: exit 2.
    let out = run_cli(&[
        "generate",
        "--model",
        path_arg(&data_dir("mamba_tiny_untied")),
        "--prompt",
        "w1",
        "--device",
        "cpu",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokenizer.json"));
}
