//! Criterion bench of the Mamba-2 SSD scan (Mamba-2's options: D, z, dt_bias, softplus; chunk
//! size 256) on the GPU (device time through `iter_custom`, timestamps where offered), next to
//! the Mamba-1 selective scan at the same d_inner, at the sizes of
//! `suite::ssd_scan::bench_cases`: Mamba-2-130m at L = 512 by default (lavapipe), the 130m,
//! 370m and 2.7b layer shapes at L up to 16384 with `SSM_MLA_BENCH_FULL=1`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cases = ssm_mla::suite::ssd_scan::bench_cases(&gpu, !common::full()).expect("bench setup");
    common::bench_suite_cases(c, "ssd_scan", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
