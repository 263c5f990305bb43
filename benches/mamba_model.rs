//! Criterion bench of the whole Mamba-1 model on the GPU (`suite::mamba_model`): a tiny random
//! model (hidden 128, 4 layers, vocab 1024) so it runs in seconds, prefill of 64 tokens and a
//! decode step of Bt = 1 and 4. Times are the wall clock of the whole forward call (host
//! recording, device work and the logits readback). The model shapes of mamba-130m and -370m
//! are in `ssm-mla bench --kernel mamba_model`.

mod common;
use criterion::{criterion_group, criterion_main, Criterion};
use ssm_mla::mamba::MambaConfig;

fn bench(c: &mut Criterion) {
    let gpu = common::gpu();
    let cfg = MambaConfig::tiny(1024, 128, 4);
    let cases = ssm_mla::suite::mamba_model::model_cases(
        &gpu,
        "tiny",
        &cfg,
        ssm_mla::DType::F32,
        &[64],
        &[1, 4],
    )
    .expect("bench setup");
    common::bench_suite_cases(c, "mamba_model", cases);
}

criterion_group!(benches, bench);
criterion_main!(benches);
