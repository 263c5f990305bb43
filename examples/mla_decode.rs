//! An MLA decode loop over a paged latent cache with two sequences of different lengths: prefill
//! each on its own, then decode both together, one token per step, and compare every output
//! with the f64 CPU layer.
//!
//! Run: `cargo run --example mla_decode`

use ssm_mla::mla::{MlaConfig, MlaLayer, MlaWeights};
use ssm_mla::reference::mla::MlaCpuLayer;
use ssm_mla::{Gpu, Rng};
use std::sync::Arc;

fn main() -> ssm_mla::Result<()> {
    let gpu = Arc::new(Gpu::new()?);
    println!("adapter: {}", gpu.describe());
    // A small DeepSeek-shaped layer (same structure as V2-Lite: no query compression).
    let cfg = MlaConfig::from_json_str(
        r#"{"hidden_size": 128, "num_attention_heads": 4, "q_lora_rank": null,
            "kv_lora_rank": 64, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16,
            "v_head_dim": 32, "rope_theta": 10000, "rms_norm_eps": 1e-6}"#,
        "example",
    )?;
    let mut rng = Rng::new(7);
    let weights = MlaWeights::random(&cfg, &mut rng);
    let layer = MlaLayer::new(gpu.clone(), &cfg, &weights)?;
    let mut cpu = MlaCpuLayer::new(&cfg, &weights, 2)?;
    // Two sequences, up to 64 tokens each, pages of 16 tokens from one shared free list.
    let mut cache = layer.new_cache(2, 64, 16)?;
    let hidden = cfg.hidden_size;
    let mut worst = 0.0f64;
    let mut compare = |gpu_out: &[f32], cpu_out: &[f64]| {
        for (g, c) in gpu_out.iter().zip(cpu_out) {
            worst = worst.max((*g as f64 - c).abs() / (1.0 + c.abs()));
        }
    };

    // Prefill: sequence 0 gets 5 tokens, sequence 1 gets 19 (each its own forward call).
    for (seq, prompt) in [(0usize, 5usize), (1, 19)] {
        let h = rng.normal_vec(prompt * hidden, 0.0, 1.0);
        let h_t = gpu.upload_f32(&[1, prompt, hidden], &h)?;
        let out = layer.forward(&mut cache, &[seq], &h_t)?;
        compare(&gpu.read_f32(&out)?, &cpu.forward(&[seq], &h, prompt)?);
    }
    // Decode: both sequences advance one token per step in one batched call.
    for _ in 0..8 {
        let h = rng.normal_vec(2 * hidden, 0.0, 1.0);
        let h_t = gpu.upload_f32(&[2, 1, hidden], &h)?;
        let out = layer.forward(&mut cache, &[0, 1], &h_t)?;
        compare(&gpu.read_f32(&out)?, &cpu.forward(&[0, 1], &h, 1)?);
    }
    println!(
        "lengths after decoding: {} and {} tokens; worst relative difference GPU vs CPU: {worst:.2e}",
        cache.seq_len(0),
        cache.seq_len(1)
    );
    assert!(worst < 1e-3, "GPU and CPU layers must agree");
    // Reset sequence 0 (its pages return to the free list) and start it again.
    cache.reset(0);
    println!("after reset: sequence 0 holds {} tokens", cache.seq_len(0));
    Ok(())
}
