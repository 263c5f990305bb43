//! Every kernel's conformance cases in a browser, on its WebGPU adapter: run by
//! `wasm-bindgen-test` in headless Chromium (see `scripts/test-web`). Each kernel is checked
//! on the device with every optional feature the browser grants and again with them withheld,
//! so both sides of each feature flag run. No adapter is a failure, never a skip.
#![cfg(target_arch = "wasm32")]

use ssm_mla::suite::KERNELS;
use ssm_mla::{Gpu, GpuOptions, Rng};
use std::sync::Arc;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// The device, or a panic that says why there is none (a test failure, not a skip).
async fn gpu(withhold: bool) -> Arc<Gpu> {
    let options = GpuOptions {
        disable_subgroups: withhold,
        disable_f16: withhold,
        disable_timestamps: withhold,
        ..Default::default()
    };
    match Gpu::with_options_async(&options).await {
        Ok(gpu) => Arc::new(gpu),
        Err(e) => {
            panic!("no WebGPU device in this browser ({e}); Chromium needs --enable-unsafe-webgpu")
        }
    }
}

async fn check_all(withhold: bool) {
    let gpu = gpu(withhold).await;
    web_sys_log(&format!(
        "adapter: {} (features withheld: {withhold}; f16 {}, timestamps {})",
        gpu.describe(),
        gpu.has_f16(),
        gpu.has_timestamps()
    ));
    let mut rng = Rng::new(0x5EB);
    let mut failures = Vec::new();
    let mut cases = 0;
    for kernel in KERNELS {
        match (kernel.check)(&gpu, &mut rng).await {
            Ok(outcomes) => {
                for o in outcomes {
                    cases += 1;
                    if !o.comparison.passed() {
                        failures.push(format!("{} {}: {}", o.kernel, o.case, o.comparison));
                    }
                }
            }
            Err(e) => failures.push(format!("{}: error {e}", kernel.name)),
        }
    }
    web_sys_log(&format!("{cases} cases, {} failed", failures.len()));
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
    assert!(cases > KERNELS.len(), "only {cases} cases ran");
}

fn web_sys_log(line: &str) {
    wasm_bindgen_test::console_log!("{line}");
}

#[wasm_bindgen_test]
async fn every_kernel_passes_with_the_granted_features() {
    check_all(false).await;
}

#[wasm_bindgen_test]
async fn every_kernel_passes_with_optional_features_withheld() {
    check_all(true).await;
}
