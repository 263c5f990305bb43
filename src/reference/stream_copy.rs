//! CPU reference of `stream_copy`: the identity.

/// dst = src.
pub fn stream_copy(src: &[f32]) -> Vec<f64> {
    src.iter().map(|&x| x as f64).collect()
}
