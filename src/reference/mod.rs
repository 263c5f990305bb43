//! CPU references: plain Rust that mirrors each GPU kernel's math, accumulating in f64. The
//! conformance tests and `ssm-mla check` compare every kernel against these.

pub mod absorbed_attention;
pub mod causal_conv1d;
pub mod deepseek;
pub mod diagonal_scan;
pub mod embedding;
pub mod fma_peak;
pub mod latent_cache;
pub mod mamba;
pub mod mamba2;
pub mod matmul;
pub mod mla;
pub mod moe;
pub mod rmsnorm;
pub mod rope;
pub mod selective_scan;
pub mod ssd_scan;
pub mod state_update;
pub mod stream_copy;
