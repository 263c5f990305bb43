//! `ssm-mla check`: every kernel of the suite against its CPU reference on this adapter, as a
//! pass/fail table with max errors. Exit code 1 if any case fails.

use ssm_mla::suite::KERNELS;
use ssm_mla::{Gpu, Result, Rng};
use std::sync::Arc;

pub fn run(seed: Option<u64>) -> Result<i32> {
    let gpu = Arc::new(Gpu::new()?);
    run_on(&gpu, seed)
}

/// Without a GPU: run every kernel's CPU reference on small random inputs and time it.
pub fn run_cpu_only() -> Result<i32> {
    let mut rng = Rng::new(Rng::seed_from_env());
    println!("running the CPU path (f64 references):");
    println!(
        "{:<20} {:<34} {:>10} {:>10}",
        "kernel", "size", "time", "GFLOP/s"
    );
    for kernel in KERNELS {
        for mut case in (kernel.cpu)(&mut rng) {
            let start = std::time::Instant::now();
            (case.run)();
            let t = start.elapsed().as_secs_f64();
            println!(
                "{:<20} {:<34} {:>8.2} ms {:>10.2}",
                kernel.name,
                case.size,
                t * 1e3,
                case.cost.flops as f64 / t / 1e9
            );
        }
    }
    Ok(0)
}

pub fn run_on(gpu: &Arc<Gpu>, seed: Option<u64>) -> Result<i32> {
    println!("adapter: {}", gpu.describe());
    let seed = seed.unwrap_or_else(Rng::seed_from_env);
    println!("seed: {seed}");
    let mut rng = Rng::new(seed);
    println!(
        "{:<18} {:<66} {:>6} {:>10} {:>10} {:>9}",
        "kernel", "case", "result", "max abs", "max rel", "rtol"
    );
    let mut failed = 0;
    for kernel in KERNELS {
        let outcomes = match pollster::block_on((kernel.check)(gpu, &mut rng)) {
            Ok(o) => o,
            Err(e) => {
                failed += 1;
                println!("{:<18} {:<66} {:>6} {e}", kernel.name, "-", "ERROR");
                continue;
            }
        };
        for o in outcomes {
            let ok = o.comparison.passed();
            if !ok {
                failed += 1;
            }
            println!(
                "{:<18} {:<66} {:>6} {:>10.2e} {:>10.2e} {:>9.0e}",
                o.kernel,
                o.case,
                if ok { "pass" } else { "FAIL" },
                o.comparison.max_abs,
                o.comparison.max_rel,
                o.tolerance.rtol
            );
            if !ok {
                println!("    {}", o.comparison);
            }
        }
    }
    if failed > 0 {
        println!("{failed} case(s) failed (seed {seed})");
        Ok(1)
    } else {
        println!("all cases passed");
        Ok(0)
    }
}
