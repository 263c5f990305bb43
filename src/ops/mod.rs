//! GPU ops: each one is a `.wgsl` kernel under `shaders/` plus the host code that validates
//! shapes, builds (cached) pipelines and records dispatches into a [`crate::Batch`]. Every op has a
//! CPU reference of the same name in the `reference` module; the shapes both share, and their
//! validation, are in the `spec` module (re-exported here).

pub mod absorbed_attention;
pub mod diagonal_scan;
pub mod fma_peak;
pub mod latent_cache;
pub mod matmul;
pub mod rmsnorm;
pub mod rope;
pub mod scan_strategy;
pub mod selective_scan;
pub mod state_update;
pub mod stream_copy;

/// Work an op must do, for roofline accounting: bytes that must move (each input
/// read once, each output written once) and floating-point operations (an FMA is two; an exp, a
/// divide or a compare-and-select is one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Bytes read plus bytes written.
    pub bytes: u64,
    /// Floating-point operations.
    pub flops: u64,
}
