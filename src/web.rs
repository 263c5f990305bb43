//! The browser entry points (wasm32 only), exported to JavaScript by wasm-bindgen for the page
//! under `web/`: a [`WebGpu`] on the page's WebGPU adapter that runs the `check` suite and a
//! quick `bench` kernel by kernel (so the page can show progress), and the HiPPO
//! reconstruction demo. Results cross into JavaScript as JSON strings, so the bindings stay a
//! handful of functions. Everything GPU-side is awaited: a browser's readback resolves from its
//! event loop.

use crate::hippo::demo::{reconstruction, MAX_N};
use crate::hippo::Measure;
use crate::rng::Rng;
use crate::runtime::{Gpu, GpuOptions};
use crate::suite::{measure, measure_ceilings, BenchPlan, CacheFlush, Ceilings, KERNELS};
use crate::Error;
use serde_json::json;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

fn js_error(e: Error) -> JsValue {
    JsValue::from_str(&e.to_string())
}

/// A device on the browser's WebGPU adapter, with the optional features it grants.
#[wasm_bindgen]
pub struct WebGpu {
    gpu: Arc<Gpu>,
}

#[wasm_bindgen]
impl WebGpu {
    /// Request the adapter and device; `withhold_features` leaves out f16 and timestamps even
    /// where granted, so the fallback kernels run. Rejects with a message where the browser has
    /// no WebGPU or no adapter.
    pub fn create(withhold_features: bool) -> js_sys::Promise {
        future_to_promise(async move {
            let options = GpuOptions {
                disable_subgroups: withhold_features,
                disable_f16: withhold_features,
                disable_timestamps: withhold_features,
                ..Default::default()
            };
            let gpu = Gpu::with_options_async(&options).await.map_err(js_error)?;
            Ok(WebGpu { gpu: Arc::new(gpu) }.into())
        })
    }

    /// JSON: the adapter's name, vendor, architecture, backend, type, the features the device
    /// got and its largest storage binding.
    pub fn adapter(&self) -> String {
        let info = self.gpu.adapter_info();
        let features: Vec<&str> = [
            (self.gpu.has_f16(), "shader-f16"),
            (self.gpu.has_subgroups(), "subgroups"),
            (self.gpu.has_timestamps(), "timestamp-query"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        json!({
            "name": info.name,
            "vendor": info.vendor,
            "driver": info.driver,
            "driver_info": info.driver_info,
            "backend": format!("{:?}", info.backend),
            "device_type": format!("{:?}", info.device_type),
            "features": features,
            "max_storage_binding": self.gpu.max_binding_bytes(),
            "describe": self.gpu.describe(),
        })
        .to_string()
    }

    /// The suite's kernel names, in order, as a JSON array.
    pub fn kernels() -> String {
        serde_json::to_string(&KERNELS.iter().map(|k| k.name).collect::<Vec<_>>())
            .unwrap_or_default()
    }

    /// Run one kernel's conformance cases (seeded by `seed`); resolves to a JSON array of
    /// `{kernel, case, passed, max_abs, max_rel, rtol, atol, detail}`. An error running them
    /// resolves to one failed row naming it, so the table shows it.
    pub fn check(&self, kernel: String, seed: f64) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        future_to_promise(async move {
            let entry = KERNELS
                .iter()
                .find(|k| k.name == kernel)
                .ok_or_else(|| JsValue::from_str(&format!("no kernel {kernel:?}")))?;
            let mut rng = Rng::new(seed as u64);
            let rows: Vec<_> = match (entry.check)(&gpu, &mut rng).await {
                Ok(outcomes) => outcomes
                    .iter()
                    .map(|o| {
                        json!({
                            "kernel": o.kernel,
                            "case": o.case,
                            "passed": o.comparison.passed(),
                            "max_abs": o.comparison.max_abs,
                            "max_rel": o.comparison.max_rel,
                            "rtol": o.tolerance.rtol,
                            "atol": o.tolerance.atol,
                            "detail": o.comparison.to_string(),
                        })
                    })
                    .collect(),
                Err(e) => vec![json!({
                    "kernel": entry.name,
                    "case": "-",
                    "passed": false,
                    "max_abs": null,
                    "max_rel": null,
                    "detail": e.to_string(),
                })],
            };
            Ok(JsValue::from_str(&json!(rows).to_string()))
        })
    }

    /// Measure the copy and FMA ceilings (quick sizes); resolves to their JSON.
    pub fn ceilings(&self) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        future_to_promise(async move {
            let c = measure_ceilings(&gpu, true).await.map_err(js_error)?;
            Ok(JsValue::from_str(&json!(c).to_string()))
        })
    }

    /// Time one kernel's quick bench cases against `ceilings` (the JSON [`WebGpu::ceilings`]
    /// gave), without the CPU reference; resolves to a JSON array of bench records
    /// (`roofline_fraction` among them).
    pub fn bench(&self, kernel: String, ceilings: String) -> js_sys::Promise {
        let gpu = self.gpu.clone();
        future_to_promise(async move {
            let ceilings: Ceilings = serde_json::from_str(&ceilings)
                .map_err(|e| JsValue::from_str(&format!("ceilings: {e}")))?;
            let entry = KERNELS
                .iter()
                .find(|k| k.name == kernel)
                .ok_or_else(|| JsValue::from_str(&format!("no kernel {kernel:?}")))?;
            let plan = BenchPlan {
                cpu: false,
                warmup: 1,
                min_repeats: 3,
                max_repeats: 5,
                budget: std::time::Duration::from_millis(500),
                long_run: std::time::Duration::from_secs(30),
            };
            let mut flush = CacheFlush::new(&gpu).map_err(js_error)?;
            let mut records = Vec::new();
            for mut case in (entry.bench)(&gpu, true).map_err(js_error)? {
                records.push(
                    measure(&gpu, &mut case, &ceilings, &plan, Some(&mut flush))
                        .await
                        .map_err(js_error)?,
                );
            }
            Ok(JsValue::from_str(&json!(records).to_string()))
        })
    }
}

/// The HiPPO reconstruction demo for `measure` (legt, legs, lagt or fout) and the state sizes
/// `ns`: JSON `{times, signal, curves: [{n, values, max_error}]}`. Host math, no GPU.
#[wasm_bindgen]
pub fn hippo_demo(measure: &str, ns: Vec<u32>) -> Result<String, JsValue> {
    let measure: Measure = measure.parse().map_err(js_error)?;
    if ns.is_empty() || ns.iter().any(|&n| n == 0 || n as usize > MAX_N) {
        return Err(JsValue::from_str(&format!(
            "N must be in 1..={MAX_N}, got {ns:?}"
        )));
    }
    let mut curves = Vec::new();
    let mut shown = None;
    for &n in &ns {
        let (demo, values) = reconstruction(measure, n as usize).map_err(js_error)?;
        let max_error = values
            .iter()
            .zip(&demo.signal)
            .fold(0.0f64, |m, (r, s)| m.max((r - s).abs()));
        curves.push(json!({ "n": n, "values": values, "max_error": max_error }));
        shown = Some(demo);
    }
    let demo = shown.ok_or_else(|| JsValue::from_str("no state size"))?;
    Ok(json!({
        "measure": measure.name(),
        "times": demo.times,
        "signal": demo.signal,
        "curves": curves,
    })
    .to_string())
}
