//! CPU references: plain Rust that mirrors each GPU kernel's math, accumulating in f64. The
//! conformance tests and `ssm-mla check` compare every kernel against these.

pub mod fma_peak;
pub mod selective_scan;
pub mod state_update;
pub mod stream_copy;
