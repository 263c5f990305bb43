//! `stream_copy`: dst = src, as fast as the device streams memory. It is the bandwidth ceiling of
//! the benchmarks and the simplest end-to-end check of the host layer.
//!
//! Tensors larger than one storage binding are copied in several dispatches over aligned byte
//! ranges, so the op works up to `max_buffer_size`.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::Gpu;
use crate::runtime::Tensor;
use crate::runtime::{Batch, Binding};
use crate::runtime::{Kernel, Shader};
use crate::shader::{wgsl, Access, Flags, KernelInterface, Variant};
use std::sync::Arc;

/// The WGSL body.
pub const SHADER: Shader = wgsl!("common/stream_copy");

/// What the kernel is passed: a 16-byte parameter block `[n_vec4, 0, 0, 0]`, then src and dst.
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<[u32; 4]>(),
    bindings: &[("src", Access::Read), ("dst", Access::ReadWrite)],
};

/// The kernel.
pub const KERNEL: Variant = SHADER.variant(Flags::NONE, INTERFACE);

/// Default workgroup size.
pub const WG: u32 = 256;
/// Default vec4 elements per invocation.
pub const PER_THREAD: u32 = 4;

/// A built stream-copy op.
#[derive(Clone, Debug)]
pub struct StreamCopy {
    kernel: Arc<Kernel>,
    wg: u32,
    per_thread: u32,
}

impl StreamCopy {
    /// Build (or fetch from the cache) the pipeline with the default shape.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Self::with_shape(gpu, WG, PER_THREAD)
    }

    /// Build with `wg` invocations per workgroup, each copying `per_thread` vec4s (1..=16).
    /// The bench runner tries several shapes and keeps the fastest as the bandwidth ceiling.
    pub fn with_shape(gpu: &Gpu, wg: u32, per_thread: u32) -> Result<Self> {
        if !(1..=16).contains(&per_thread) || wg == 0 || wg > 1024 {
            return Err(Error::invalid(format!(
                "stream_copy shape wg={wg} per_thread={per_thread}: need 1..=1024 and 1..=16"
            )));
        }
        let kernel = gpu.kernel(
            &KERNEL,
            &[("WG", wg as f64), ("PER_THREAD", per_thread as f64)],
        )?;
        Ok(Self {
            kernel,
            wg,
            per_thread,
        })
    }

    /// Record dst ← src. Both must have the same element count and dtype.
    pub fn record(&self, batch: &mut Batch, src: &Tensor, dst: &Tensor) -> Result<()> {
        if src.len() != dst.len() || src.dtype() != dst.dtype() {
            return Err(Error::shape(
                "dst",
                format!("{} elements of {} like src", src.len(), src.dtype()),
                dst.shape(),
            ));
        }
        if src.is_empty() {
            return Ok(());
        }
        let gpu = batch.gpu();
        // Buffers are padded to 16 bytes, so whole vec4s can be copied.
        let total = src.size_bytes().div_ceil(16) * 16;
        let align = gpu.limits().min_storage_buffer_offset_alignment as u64;
        let chunk = (gpu.max_binding_bytes() / align.max(16)) * align.max(16);
        let chunk = chunk.min(16 * (u32::MAX / 2) as u64);
        let mut offset = 0;
        while offset < total {
            let size = chunk.min(total - offset);
            let n_vec4 = (size / 16) as u32;
            let groups = n_vec4.div_ceil(self.wg * self.per_thread);
            batch.dispatch(
                &self.kernel,
                &[n_vec4, 0, 0, 0],
                &[
                    Binding::range(src, offset, size),
                    Binding::range(dst, offset, size),
                ],
                groups,
            )?;
            offset += size;
        }
        Ok(())
    }

    /// Bytes moved and FLOPs for `elements` f32 values.
    pub fn cost(elements: usize) -> Cost {
        Cost {
            bytes: 2 * 4 * elements as u64,
            flops: 0,
        }
    }
}

/// Copy a tensor into a new one and wait.
pub fn stream_copy(gpu: &Gpu, src: &Tensor) -> Result<Tensor> {
    let op = StreamCopy::new(gpu)?;
    let dst = gpu.empty(src.shape(), src.dtype())?;
    let mut batch = gpu.batch();
    op.record(&mut batch, src, &dst)?;
    batch.run()?;
    Ok(dst)
}
