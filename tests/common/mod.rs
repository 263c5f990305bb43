//! Shared test helpers: the GPU (never skipped: no adapter is a failure that says how to get
//! one), seeded randomness with the seed printed on failure, the tolerance assertion, and the
//! pieces the model tests share (tests/data, scratch directories, running the CLI).
#![allow(dead_code)]

use ssm_mla::{compare, Gpu, GpuOptions, Rng, SafeTensors, Tolerance};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

/// The default adapter, shared by the tests of one binary. Panics (fails the test) with the
/// install hint when there is no adapter.
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new() {
        Ok(g) => Arc::new(g),
        Err(e) => panic!("GPU tests need an adapter and never skip: {e}"),
    })
    .clone()
}

/// A device without subgroups, f16 or timestamps: the fallback paths.
pub fn gpu_without_optional_features() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        let options = GpuOptions {
            disable_subgroups: true,
            disable_f16: true,
            disable_timestamps: true,
            ..Default::default()
        };
        match Gpu::with_options(&options) {
            Ok(g) => Arc::new(g),
            Err(e) => panic!("GPU tests need an adapter and never skip: {e}"),
        }
    })
    .clone()
}

/// Both devices: every conformance test runs on the full-featured one and the fallback one.
pub fn gpus() -> Vec<(&'static str, Arc<Gpu>)> {
    vec![
        ("default", gpu()),
        ("no-optional-features", gpu_without_optional_features()),
    ]
}

/// A fresh seeded generator; the seed is printed so a failure can be replayed with
/// `SSM_MLA_SEED=<seed>`.
pub fn rng(test: &str) -> (Rng, u64) {
    let seed = Rng::seed_from_env();
    eprintln!("{test}: seed {seed} (replay with SSM_MLA_SEED={seed})");
    (Rng::new(seed), seed)
}

/// Assert |out − ref| ≤ atol + rtol·|ref| everywhere.
pub fn assert_close(what: &str, out: &[f32], reference: &[f64], tol: Tolerance, seed: u64) {
    let c = compare(out, reference, tol);
    assert!(
        c.passed(),
        "{what}: {c} (atol {}, rtol {}; seed {seed})",
        tol.atol,
        tol.rtol
    );
}

/// A directory (or file) under tests/data: the golden checkpoints and their files.
pub fn data_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The golden.safetensors of the checkpoint `name` under tests/data.
pub fn golden_file(name: &str) -> SafeTensors {
    SafeTensors::read(&data_dir(name).join("golden.safetensors")).unwrap()
}

/// An id tensor of `file` as (shape, u32 ids).
pub fn ids_of(file: &SafeTensors, key: &str) -> (Vec<usize>, Vec<u32>) {
    let t = file.get_ids(key).unwrap();
    (t.shape.clone(), t.data.iter().map(|&x| x as u32).collect())
}

/// A scratch directory for one test binary's files, named by `tag` and the process id.
pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ssm-mla-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run the `ssm-mla` binary with `args` (lavapipe's runtime directory set if unset).
pub fn run_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssm-mla"))
        .args(args)
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
        )
        .output()
        .unwrap()
}

/// A path as a command-line argument.
pub fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `ssm-mla generate` with greedy decoding of `max_new` tokens after `prompt` on `device`
/// (`cpu` or `gpu`); asserts it succeeded and returns its standard output.
pub fn generate_greedy(model: &Path, prompt: &str, max_new: usize, device: &str) -> String {
    let max_new = max_new.to_string();
    let out = run_cli(&[
        "generate",
        "--model",
        path_arg(model),
        "--prompt",
        prompt,
        "--max-new-tokens",
        &max_new,
        "--temperature",
        "0",
        "--device",
        device,
    ]);
    assert!(
        out.status.success(),
        "{device}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every `.wgsl` file under `dir`, recursively, appended to `out`.
pub fn wgsl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            wgsl_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "wgsl") {
            out.push(path);
        }
    }
}
