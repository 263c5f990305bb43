//! `ssm-mla run selective-scan` and `ssm-mla run state-update` through the binary: a small
//! safetensors file written here, run with `--device gpu` and `--device cpu`, outputs compared
//! (tolerance as the kernels' tests); a missing tensor and a wrong shape exit with code 2 and one
//! line naming the tensor.

mod common;
use common::*;
use ssm_mla::io::write_safetensors;
use ssm_mla::{HostTensor, SafeTensors, Tolerance};
use std::path::{Path, PathBuf};
use std::process::Command;

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ssm-mla-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ssm-mla"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn tensor(rng: &mut ssm_mla::Rng, shape: &[usize], mean: f64, std: f64) -> HostTensor {
    let n = shape.iter().product();
    HostTensor::new(shape, rng.normal_vec(n, mean, std)).unwrap()
}

fn gpu_vs_cpu(target: &str, flag: &str, input: &Path, names: &[&str], tol: Tolerance, seed: u64) {
    let d = input.parent().unwrap();
    let mut outs = Vec::new();
    for device in ["gpu", "cpu"] {
        let output = d.join(format!("{target}-{device}.safetensors"));
        let o = run(&[
            "run",
            target,
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            flag,
            "--device",
            device,
        ]);
        assert!(
            o.status.success(),
            "{target} {device}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        outs.push(SafeTensors::read(&output).unwrap());
    }
    for name in names {
        let (g, c) = (outs[0].get(name).unwrap(), outs[1].get(name).unwrap());
        assert_eq!(g.shape, c.shape, "{name}");
        let reference: Vec<f64> = c.data.iter().map(|&v| v as f64).collect();
        assert_close(&format!("{target} {name}"), &g.data, &reference, tol, seed);
    }
}

#[test]
fn selective_scan_gpu_matches_cpu() {
    let (mut rng, seed) = rng("cli selective-scan");
    let (bt, dim, l, n) = (2, 4, 600, 8);
    let a = HostTensor::new(
        &[dim, n],
        rng.normal_vec(dim * n, 0.0, 1.0)
            .iter()
            .map(|v| -v.exp())
            .collect(),
    )
    .unwrap();
    let tensors = [
        ("u", tensor(&mut rng, &[bt, dim, l], 0.0, 1.0)),
        ("delta", tensor(&mut rng, &[bt, dim, l], 0.0, 1.0)),
        ("A", a),
        ("B", tensor(&mut rng, &[bt, 2, n, l], 0.0, 1.0)),
        ("C", tensor(&mut rng, &[bt, n, l], 0.0, 1.0)),
        ("D", tensor(&mut rng, &[dim], 0.0, 1.0)),
        ("z", tensor(&mut rng, &[bt, dim, l], 0.0, 1.0)),
        ("delta_bias", tensor(&mut rng, &[dim], -4.0, 1.0)),
        ("initial_state", tensor(&mut rng, &[bt, dim, n], 0.0, 1.0)),
    ];
    let d = dir("scan");
    let input = d.join("in.safetensors");
    let refs: Vec<(&str, &HostTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    write_safetensors(&input, &refs).unwrap();
    gpu_vs_cpu(
        "selective-scan",
        "--delta-softplus",
        &input,
        &["out", "last_state"],
        Tolerance::new(5e-4, 1e-3),
        seed,
    );

    // Missing tensor and wrong shape: exit code 2, one line naming the tensor.
    let bad = d.join("bad.safetensors");
    write_safetensors(&bad, &refs[..4]).unwrap();
    let o = run(&[
        "run",
        "selective-scan",
        "--input",
        bad.to_str().unwrap(),
        "--output",
        d.join("x").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`C`") && err.trim().lines().count() == 1,
        "{err}"
    );
    let mut wrong = refs.clone();
    let short = HostTensor::new(&[bt, dim, l - 1], vec![0.0; bt * dim * (l - 1)]).unwrap();
    wrong[1] = ("delta", &short);
    write_safetensors(&bad, &wrong).unwrap();
    let o = run(&[
        "run",
        "selective-scan",
        "--input",
        bad.to_str().unwrap(),
        "--output",
        d.join("x").to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`delta`"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn state_update_gpu_matches_cpu() {
    let (mut rng, seed) = rng("cli state-update");
    let (bt, dim, n, g) = (3, 8, 16, 2);
    let a = HostTensor::new(
        &[dim, n],
        rng.normal_vec(dim * n, 0.0, 1.0)
            .iter()
            .map(|v| -v.exp())
            .collect(),
    )
    .unwrap();
    let tensors = [
        ("state", tensor(&mut rng, &[bt, dim, n], 0.0, 1.0)),
        ("x", tensor(&mut rng, &[bt, dim], 0.0, 1.0)),
        ("dt", tensor(&mut rng, &[bt, dim], 0.0, 1.0)),
        ("A", a),
        ("B", tensor(&mut rng, &[bt, g, n], 0.0, 1.0)),
        ("C", tensor(&mut rng, &[bt, n], 0.0, 1.0)),
        ("D", tensor(&mut rng, &[dim], 0.0, 1.0)),
        ("z", tensor(&mut rng, &[bt, dim], 0.0, 1.0)),
        ("dt_bias", tensor(&mut rng, &[dim], -4.0, 1.0)),
    ];
    let d = dir("update");
    let input = d.join("in.safetensors");
    let refs: Vec<(&str, &HostTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    write_safetensors(&input, &refs).unwrap();
    gpu_vs_cpu(
        "state-update",
        "--dt-softplus",
        &input,
        &["out", "state"],
        Tolerance::new(1e-5, 1e-4),
        seed,
    );
    let _ = std::fs::remove_dir_all(&d);
}
