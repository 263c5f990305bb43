//! `ssm-mla run selective-scan` and `ssm-mla run state-update` through the binary: a small
//! safetensors file written here, run with `--device gpu` and `--device cpu`, outputs compared
//! (tolerance as the kernels' tests); a missing tensor and a wrong shape exit with code 2 and one
//! line naming the tensor. A bf16 file (activations bf16, the rest f32) runs on both devices with
//! its dtypes kept: out comes back bf16, the states f32; a dtype the op refuses exits with code 2
//! naming the tensor on both devices.

mod common;
use common::*;
use ssm_mla::io::write_safetensors;
use ssm_mla::{DType, HostTensor, SafeTensors, Tolerance};
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

/// `tensor` stored as `dtype` (the values rounded to it).
fn tensor_as(
    rng: &mut ssm_mla::Rng,
    shape: &[usize],
    mean: f64,
    std: f64,
    dtype: DType,
) -> HostTensor {
    HostTensor::from_f32_as(shape, dtype, tensor(rng, shape, mean, std).to_f32()).unwrap()
}

/// The dtypes written for `names` by a GPU run of `target` on `input` (run by `gpu_vs_cpu`).
fn output_dtypes(input: &Path, target: &str, names: &[&str]) -> Vec<DType> {
    let out = SafeTensors::read(
        &input
            .parent()
            .unwrap()
            .join(format!("{target}-gpu.safetensors")),
    )
    .unwrap();
    names.iter().map(|n| out.get(n).unwrap().dtype()).collect()
}

/// Both devices round out to bf16 once, from results within the f32 bound of each other, so
/// the two may differ by that bound plus one bf16 ulp (2^-7 relative) where they straddle a
/// rounding boundary.
const BF16_OUT: Tolerance = Tolerance::new(5e-4, 1e-3 + 1.0 / 128.0);

/// Exit code 2 and one line naming `name`, on both devices.
fn refused(target: &str, input: &Path, name: &str) {
    for device in ["gpu", "cpu"] {
        let o = run(&[
            "run",
            target,
            "--input",
            input.to_str().unwrap(),
            "--output",
            input.with_extension("out").to_str().unwrap(),
            "--device",
            device,
        ]);
        assert_eq!(o.status.code(), Some(2), "{target} {device}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("`{name}`")) && err.trim().lines().count() == 1,
            "{target} {device}: {err}"
        );
    }
}

#[test]
fn bf16_files_keep_their_dtypes() {
    let (mut rng, seed) = rng("cli bf16");
    let bf = DType::BF16;
    let d = dir("bf16");

    // selective-scan: u, delta, z, B bf16; C, A, D, delta_bias, initial_state f32.
    let (bt, dim, l, n) = (1, 3, 37, 4);
    let a = HostTensor::new(&[dim, n], vec![-0.5; dim * n]).unwrap();
    let scan = [
        ("u", tensor_as(&mut rng, &[bt, dim, l], 0.0, 1.0, bf)),
        ("delta", tensor_as(&mut rng, &[bt, dim, l], 0.0, 1.0, bf)),
        ("A", a.clone()),
        ("B", tensor_as(&mut rng, &[bt, n, l], 0.0, 1.0, bf)),
        ("C", tensor(&mut rng, &[bt, n, l], 0.0, 1.0)),
        ("D", tensor(&mut rng, &[dim], 0.0, 1.0)),
        ("z", tensor_as(&mut rng, &[bt, dim, l], 0.0, 1.0, bf)),
        ("delta_bias", tensor(&mut rng, &[dim], -4.0, 1.0)),
        ("initial_state", tensor(&mut rng, &[bt, dim, n], 0.0, 1.0)),
    ];
    let input = d.join("scan.safetensors");
    let refs: Vec<(&str, &HostTensor)> = scan.iter().map(|(k, v)| (*k, v)).collect();
    write_safetensors(&input, &refs).unwrap();
    for (name, tol) in [
        ("out", BF16_OUT),
        ("last_state", Tolerance::new(5e-4, 1e-3)),
    ] {
        gpu_vs_cpu(
            "selective-scan",
            "--delta-softplus",
            &input,
            &[name],
            tol,
            seed,
        );
    }
    assert_eq!(
        output_dtypes(&input, "selective-scan", &["out", "last_state"]),
        [bf, DType::F32]
    );
    // delta of another half dtype than u: refused, naming delta.
    let mut wrong = refs.clone();
    let delta16 = tensor_as(&mut rng, &[bt, dim, l], 0.0, 1.0, DType::F16);
    wrong[1] = ("delta", &delta16);
    let bad = d.join("scan-bad.safetensors");
    write_safetensors(&bad, &wrong).unwrap();
    refused("selective-scan", &bad, "delta");

    // state-update: x, dt, B, C, z bf16; state, A, D, dt_bias f32.
    let (bt, dim, n) = (3, 3, 4);
    let update = [
        ("state", tensor(&mut rng, &[bt, dim, n], 0.0, 1.0)),
        ("x", tensor_as(&mut rng, &[bt, dim], 0.0, 1.0, bf)),
        ("dt", tensor_as(&mut rng, &[bt, dim], 0.0, 1.0, bf)),
        ("A", a),
        ("B", tensor_as(&mut rng, &[bt, n], 0.0, 1.0, bf)),
        ("C", tensor_as(&mut rng, &[bt, n], 0.0, 1.0, bf)),
        ("D", tensor(&mut rng, &[dim], 0.0, 1.0)),
        ("z", tensor_as(&mut rng, &[bt, dim], 0.0, 1.0, bf)),
        ("dt_bias", tensor(&mut rng, &[dim], -4.0, 1.0)),
    ];
    let input = d.join("update.safetensors");
    let refs: Vec<(&str, &HostTensor)> = update.iter().map(|(k, v)| (*k, v)).collect();
    write_safetensors(&input, &refs).unwrap();
    let step_out = Tolerance::new(1e-5, 1e-4 + 1.0 / 128.0);
    for (name, tol) in [("out", step_out), ("state", Tolerance::new(1e-5, 1e-4))] {
        gpu_vs_cpu("state-update", "--dt-softplus", &input, &[name], tol, seed);
    }
    assert_eq!(
        output_dtypes(&input, "state-update", &["out", "state"]),
        [bf, DType::F32]
    );
    // A in bf16: refused, naming A.
    let mut wrong = refs.clone();
    let a_bf = HostTensor::from_f32_as(&[dim, n], bf, &vec![-0.5; dim * n]).unwrap();
    wrong[3] = ("A", &a_bf);
    let bad = d.join("update-bad.safetensors");
    write_safetensors(&bad, &wrong).unwrap();
    refused("state-update", &bad, "A");
    let _ = std::fs::remove_dir_all(&d);
}

/// The multi-head (Mamba-2) form through the binary: x (Bt, H, P) selects it; GPU against CPU
/// with softplus, then with `--dt-limit` (which must change the state); a wrong A shape exits
/// with code 2 naming `A` and the expected (H).
#[test]
fn state_update_heads_gpu_matches_cpu() {
    let (mut rng, seed) = rng("cli state-update heads");
    let (bt, h, p, n, g) = (2, 4, 8, 16, 2);
    let a = HostTensor::new(
        &[h],
        rng.normal_vec(h, 0.0, 1.0)
            .iter()
            .map(|v| -v.exp())
            .collect(),
    )
    .unwrap();
    let tensors = [
        ("state", tensor(&mut rng, &[bt, h, p, n], 0.0, 1.0)),
        ("x", tensor(&mut rng, &[bt, h, p], 0.0, 1.0)),
        ("dt", tensor(&mut rng, &[bt, h], 0.0, 1.0)),
        ("A", a),
        ("B", tensor(&mut rng, &[bt, g, n], 0.0, 1.0)),
        ("C", tensor(&mut rng, &[bt, g, n], 0.0, 1.0)),
        ("D", tensor(&mut rng, &[h, p], 0.0, 1.0)),
        ("z", tensor(&mut rng, &[bt, h, p], 0.0, 1.0)),
        ("dt_bias", tensor(&mut rng, &[h], -4.0, 1.0)),
    ];
    let d = dir("update-heads");
    let input = d.join("in.safetensors");
    let refs: Vec<(&str, &HostTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    write_safetensors(&input, &refs).unwrap();
    let tol = Tolerance::new(1e-5, 1e-4);
    gpu_vs_cpu(
        "state-update",
        "--dt-softplus",
        &input,
        &["out", "state"],
        tol,
        seed,
    );
    let plain = SafeTensors::read(&d.join("state-update-cpu.safetensors")).unwrap();
    assert_eq!(plain.get("out").unwrap().shape, vec![bt, h, p]);
    // With a clamp: both devices, compared.
    let mut outs = Vec::new();
    for device in ["gpu", "cpu"] {
        let output = d.join(format!("limit-{device}.safetensors"));
        let o = run(&[
            "run",
            "state-update",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
            "--dt-softplus",
            "--dt-limit",
            "0.0",
            "0.01",
            "--device",
            device,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        outs.push(SafeTensors::read(&output).unwrap());
    }
    for name in ["out", "state"] {
        let reference: Vec<f64> = outs[1]
            .get(name)
            .unwrap()
            .data
            .iter()
            .map(|&v| v as f64)
            .collect();
        assert_close(
            &format!("dt-limit {name}"),
            &outs[0].get(name).unwrap().data,
            &reference,
            tol,
            seed,
        );
    }
    assert_ne!(
        outs[1].get("state").unwrap().data,
        plain.get("state").unwrap().data,
        "the clamp changes the state"
    );
    // A of the Mamba-1 shape (D, N) with a 3-D x: refused, naming A and (H).
    let mut wrong = refs.clone();
    let a_dn = HostTensor::new(&[h, n], vec![-0.5; h * n]).unwrap();
    wrong[3] = ("A", &a_dn);
    let bad = d.join("bad.safetensors");
    write_safetensors(&bad, &wrong).unwrap();
    refused("state-update", &bad, "A");
    let _ = std::fs::remove_dir_all(&d);
}

/// `run ssd`: a bf16 x and z (the rest f32) with every optional tensor, GPU against CPU (out
/// comes back bf16 on both, final_states f32; tolerance as tests/ssd_scan.rs plus one bf16 ulp
/// where the two straddle a rounding boundary); a missing tensor and a wrong shape exit with
/// code 2 and one line naming the tensor; a bad chunk size exits with code 2.
#[test]
fn ssd_gpu_matches_cpu() {
    let (mut rng, seed) = rng("cli ssd");
    let (bt, l, h, p, g, n) = (2, 37, 4, 8, 2, 16);
    let a = HostTensor::new(
        &[h],
        rng.normal_vec(h, 0.0, 1.0)
            .iter()
            .map(|v| -v.exp())
            .collect(),
    )
    .unwrap();
    let tensors = [
        (
            "x",
            tensor_as(&mut rng, &[bt, l, h, p], 0.0, 1.0, DType::BF16),
        ),
        ("dt", tensor(&mut rng, &[bt, l, h], -4.0, 1.0)),
        ("A", a),
        ("B", tensor(&mut rng, &[bt, l, g, n], 0.0, 1.0)),
        ("C", tensor(&mut rng, &[bt, l, g, n], 0.0, 1.0)),
        ("D", tensor(&mut rng, &[h, p], 0.0, 1.0)),
        (
            "z",
            tensor_as(&mut rng, &[bt, l, h, p], 0.0, 1.0, DType::BF16),
        ),
        ("dt_bias", tensor(&mut rng, &[h], 0.0, 0.5)),
        ("initial_states", tensor(&mut rng, &[bt, h, p, n], 0.0, 1.0)),
        ("dt_limit", HostTensor::new(&[2], vec![0.0, 0.2]).unwrap()),
    ];
    let d = dir("ssd");
    let input = d.join("in.safetensors");
    let refs: Vec<(&str, &HostTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    write_safetensors(&input, &refs).unwrap();
    gpu_vs_cpu(
        "ssd",
        "--dt-softplus",
        &input,
        &["out", "final_states"],
        BF16_OUT,
        seed,
    );
    assert_eq!(
        output_dtypes(&input, "ssd", &["out", "final_states"]),
        vec![DType::BF16, DType::F32]
    );

    let bad = d.join("bad.safetensors");
    let out = d.join("x");
    let run_bad = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "ssd",
            "--input",
            bad.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    write_safetensors(&bad, &refs[..4]).unwrap();
    let o = run_bad(&[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`C`") && err.trim().lines().count() == 1,
        "{err}"
    );
    let mut wrong = refs.clone();
    let short = HostTensor::new(&[bt, l, g, n + 1], vec![0.0; bt * l * g * (n + 1)]).unwrap();
    wrong[4] = ("C", &short);
    write_safetensors(&bad, &wrong).unwrap();
    let o = run_bad(&["--device", "cpu"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`C`"));
    write_safetensors(&bad, &refs).unwrap();
    let o = run_bad(&["--chunk-size", "40"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("chunk_size"));
    let _ = std::fs::remove_dir_all(&d);
}
