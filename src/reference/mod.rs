//! CPU references: plain Rust that mirrors each GPU kernel's math, accumulating in f64. The
//! conformance tests and `ssm-mla check` compare every kernel against these.

pub mod diagonal_scan;
pub mod fma_peak;
pub mod stream_copy;
