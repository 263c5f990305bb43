//! Shared test helpers: the GPU (never skipped: no adapter is a failure that says how to get
//! one), seeded randomness with the seed printed on failure, and the tolerance assertion.
#![allow(dead_code)]

use ssm_mla::{compare, Gpu, GpuOptions, Rng, Tolerance};
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
