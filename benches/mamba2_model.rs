//! Criterion bench of the whole Mamba-2 model on the GPU (`suite::mamba2_model`): a tiny random
//! model (hidden 128, 4 layers, vocab 1024, 16 heads of 16, N = 16) so it runs in seconds,
//! prefill of 64 tokens (four SSD chunks) and a decode step of Bt = 1 and 4. Times are the wall
//! clock of the whole forward call (host recording, device work and the logits readback). The
//! mamba2-130m shapes are in `ssm-mla bench --kernel mamba2_model`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion};
use ssm_mla::mamba2::Mamba2Config;

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cfg = Mamba2Config::tiny(1024, 128, 4);
    let cases = ssm_mla::suite::mamba2_model::model_cases(
        &gpu,
        "tiny",
        &cfg,
        ssm_mla::DType::F32,
        &[64],
        &[1, 4],
    )
    .expect("bench setup");
    common::bench_suite_cases(c, "mamba2_model", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
