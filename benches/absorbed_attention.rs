//! Criterion bench of `absorbed_attention` (MLA decode on the paged latent cache, S_q = 1,
//! d_c = 512, d_R = 64) on the GPU and the CPU reference, and of the latent-cache append.
//!
//! Default sizes are small enough for lavapipe (context 1024, batch 1, H 16 and 128); set
//! `SSM_MLA_BENCH_FULL=1` for DESIGN §7's grid (contexts 1K, 4K, 32K × batch 1, 8 × H 16, 128;
//! sizes whose cache exceeds one storage binding are left out). GPU time is the sum of
//! `Batch::run_timed` (GPU timestamps where offered), with throughput in bytes per the op's
//! `cost()` (cache read once, q, o).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ssm_mla::ops::{absorbed_attention, latent_cache};
use ssm_mla::Gpu;
use std::sync::Arc;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let gpu = Arc::new(Gpu::new().expect("benches need a GPU adapter"));
    let full = std::env::var("SSM_MLA_BENCH_FULL").is_ok_and(|v| v == "1");
    let mut cases = absorbed_attention::bench_cases(&gpu, !full).expect("bench setup");
    cases.extend(latent_cache::bench_cases(&gpu, !full).expect("bench setup"));
    let mut group = c.benchmark_group("absorbed_attention");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for mut case in cases {
        group.throughput(Throughput::Bytes(case.cost.bytes));
        // Warm up (pipeline JIT, buffer first use).
        (case.gpu)().expect("GPU run");
        let label = format!("{} {}", case.kernel, case.size);
        group.bench_function(format!("gpu/{label}"), |b| {
            b.iter_custom(|iters| {
                let mut total = 0.0;
                for _ in 0..iters {
                    total += (case.gpu)().expect("GPU run").seconds;
                }
                Duration::from_secs_f64(total)
            })
        });
        if let Some(cpu) = case.cpu.as_mut() {
            group.bench_function(format!("cpu/{label}"), |b| b.iter(&mut *cpu));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
