//! Test fixtures, one module per kernel: seeded random inputs with realistic ranges, the ways
//! to upload them to the GPU (outputs NaN-poisoned, so an element a kernel fails to write fails
//! the comparison), and the CPU reference on them. The conformance tests (`tests/`), the suite
//! behind `ssm-mla check` and `ssm-mla bench` ([`crate::suite`]) and the criterion benches all
//! build their inputs here, so each kernel's inputs are generated one way.
//!
//! Each module has a `Problem` (the host inputs, with `random`, `reference` and `upload`), a
//! `GpuInputs` where the op takes several tensors, and the kernel's `TOLERANCE` against its f64
//! reference.

pub mod absorbed_attention;
pub mod causal_conv1d;
pub mod diagonal_scan;
pub mod embedding;
pub mod fma_peak;
pub mod latent_cache;
pub mod matmul;
pub mod mla;
pub mod moe;
pub mod rmsnorm;
pub mod rope;
pub mod selective_scan;
pub mod ssd_scan;
pub mod state_update;
pub mod stream_copy;

use crate::rng::Rng;

/// 0..n in a random order (Fisher–Yates): distinct page ids or cache slots.
pub fn permutation(rng: &mut Rng, n: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..n as u32).collect();
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i + 1));
    }
    ids
}
