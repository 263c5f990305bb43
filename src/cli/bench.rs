//! `ssm-mla bench`: the adapter's ceilings, then every kernel at several sizes against them:
//! GPU time (timestamps where offered), bytes, FLOPs, GB/s, GFLOP/s, fraction of the
//! roofline bound and the CPU reference's time on the same size.

use ssm_mla::suite::{measure, measure_ceilings, BenchPlan, BenchRecord, Ceilings, KERNELS};
use ssm_mla::{DType, Error, Gpu, Result};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

pub struct Args {
    pub quick: bool,
    pub json: Option<PathBuf>,
    pub kernel: Option<String>,
    /// Only sizes whose label contains this text.
    pub size: Option<String>,
    /// Storage dtype of the half-capable tensor of each kernel (f32 runs every kernel).
    pub dtype: DType,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    adapter: String,
    backend: String,
    ceilings: &'a Ceilings,
    flop_counting: &'static str,
    results: &'a [BenchRecord],
}

fn progress(msg: &str) {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[2K{msg}");
        let _ = err.flush();
    }
}

fn human_time(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

pub fn run(args: Args) -> Result<i32> {
    let gpu = Arc::new(Gpu::new()?);
    run_on(&gpu, &args)
}

pub fn run_on(gpu: &Arc<Gpu>, args: &Args) -> Result<i32> {
    println!("adapter: {}", gpu.describe());
    progress("measuring ceilings…");
    let ceilings = pollster::block_on(measure_ceilings(gpu, args.quick))?;
    progress("");
    println!(
        "ceilings: copy {:.1} GB/s ({}), FMA {:.1} GFLOP/s ({}), timed by {}",
        ceilings.copy_gbps,
        ceilings.copy_shape,
        ceilings.fma_gflops,
        ceilings.fma_shape,
        ceilings.timing
    );
    let plan = if args.quick {
        BenchPlan::quick()
    } else {
        BenchPlan::full()
    };
    println!(
        "{:<20} {:<56} {:>10} {:>9} {:>9} {:>8} {:>7} {:>10} {:>8} {:>9} {:>9}",
        "kernel",
        "size",
        "gpu",
        "GB/s",
        "GFLOP/s",
        "roofline",
        "bound",
        "cpu",
        "speedup",
        "host",
        "tok/s"
    );
    let mut results = Vec::new();
    let mut failed = 0;
    let mut flush = ssm_mla::suite::CacheFlush::new(gpu)?;
    for kernel in KERNELS {
        if args.kernel.as_deref().is_some_and(|k| k != kernel.name) {
            continue;
        }
        progress(&format!("preparing {}…", kernel.name));
        // One kernel's failure (a size past this adapter's limits, say) is reported and the
        // run goes on; the exit code says something failed.
        let prepared = match (args.dtype, kernel.bench_as) {
            (DType::F32, _) => (kernel.bench)(gpu, args.quick),
            (dtype, Some(bench_as)) => bench_as(gpu, args.quick, dtype),
            (dtype, None) => {
                println!(
                    "{:<20} stores f32 only so far (no {dtype} rows)",
                    kernel.name
                );
                continue;
            }
        };
        let cases = match prepared {
            Ok(cases) => cases,
            Err(e) => {
                progress("");
                println!("{:<20} error: {e}", kernel.name);
                failed += 1;
                continue;
            }
        };
        for mut case in cases {
            if args
                .size
                .as_ref()
                .is_some_and(|s| !case.size.contains(s.as_str()))
            {
                continue;
            }
            progress(&format!("measuring {} {}…", case.kernel, case.size));
            let r = match pollster::block_on(measure(
                gpu,
                &mut case,
                &ceilings,
                &plan,
                Some(&mut flush),
            )) {
                Ok(r) => r,
                Err(e) => {
                    progress("");
                    println!("{:<20} {:<56} error: {e}", case.kernel, case.size);
                    failed += 1;
                    continue;
                }
            };
            progress("");
            println!(
                "{:<20} {:<56} {:>10} {:>9.2} {:>9.2} {:>7.0}% {:>7} {:>10} {:>8} {:>9} {:>9}",
                r.kernel,
                r.size,
                human_time(r.gpu_seconds),
                r.gbps,
                r.gflops,
                100.0 * r.roofline_fraction,
                r.bound,
                r.cpu_seconds.map(human_time).unwrap_or_else(|| "-".into()),
                r.cpu_seconds
                    .map(|c| format!("{:.1}×", c / r.gpu_seconds))
                    .unwrap_or_else(|| "-".into()),
                r.host_overhead_seconds
                    .map(human_time)
                    .unwrap_or_else(|| "-".into()),
                r.tokens_per_second
                    .map(|t| format!("{t:.1}"))
                    .unwrap_or_else(|| "-".into()),
            );
            results.push(r);
        }
    }
    println!(
        "times: median of repeats after warm-up, caches flushed before each repeat ({}); bytes: each input read once, each output \
         written once; FLOPs: FMA = 2, exp/divide/compare = 1; host: wall time per call minus \
         device time (record, submit, wait, readback); tok/s: tokens per run / time (whole-model \
         rows, timed by the wall clock of the whole forward call: host recording, device work \
         and the logits readback)",
        results.first().map(|r| r.timing.as_str()).unwrap_or("none")
    );
    if let Some(path) = &args.json {
        let report = Report {
            adapter: gpu.describe(),
            backend: format!("{:?}", gpu.adapter_info().backend),
            ceilings: &ceilings,
            flop_counting: "FMA = 2 FLOPs; exp, divide, compare-and-select = 1",
            results: &results,
        };
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Error::invalid(e.to_string()))?;
        std::fs::write(path, text).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        println!("wrote {}", path.display());
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
