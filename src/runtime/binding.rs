//! [`Binding`]: what a dispatch binds at one storage slot, a whole tensor or a byte range of one.

use crate::runtime::Tensor;
use std::num::NonZeroU64;

/// A storage binding: a whole tensor or a byte range of one. It remembers which [`crate::Gpu`] made
/// the tensor, so a dispatch on another context is refused.
#[derive(Clone, Debug)]
pub struct Binding {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) size: Option<NonZeroU64>,
    pub(crate) gpu: u64,
}

impl Binding {
    /// Bytes `offset..offset+size` of a tensor's buffer (`offset` must be a multiple of the
    /// device's `min_storage_buffer_offset_alignment`).
    pub fn range(tensor: &Tensor, offset: u64, size: u64) -> Self {
        Self {
            buffer: tensor.buffer().clone(),
            offset,
            size: NonZeroU64::new(size),
            gpu: tensor.gpu_id(),
        }
    }
}

impl From<&Tensor> for Binding {
    fn from(t: &Tensor) -> Self {
        Self {
            buffer: t.buffer().clone(),
            offset: 0,
            size: None,
            gpu: t.gpu_id(),
        }
    }
}
