//! Recording and submitting GPU work, and timing it: the one place that encodes commands.
//!
//! Ops record dispatches into a [`Batch`]; nothing reaches the GPU until [`Batch::submit`] (or
//! [`Batch::run`], which also waits). So several ops, or many steps of one op, go out in one
//! submission. Consecutive dispatches share one compute pass (wgpu orders them and inserts the
//! barriers storage hazards need). All parameter blocks of a batch live in one uniform buffer at
//! aligned offsets, so a batch costs one small allocation however many dispatches it holds.
//! Timing lives in [`crate::runtime::timing`] ([`Batch::run_timed`]).

use crate::error::{Error, Result};
use crate::runtime::{Binding, Element, Gpu, Kernel, Tensor};
use std::sync::Arc;

pub(super) enum Step {
    Dispatch {
        kernel: Arc<Kernel>,
        params_offset: u64,
        params_size: u64,
        bindings: Vec<Binding>,
        groups: [u32; 3],
    },
    Upload {
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    },
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    },
}

/// GPU work being recorded. Create with [`Gpu::batch`].
pub struct Batch<'g> {
    pub(super) gpu: &'g Gpu,
    pub(super) steps: Vec<Step>,
    pub(super) params: Vec<u8>,
    pub(super) uploads: Vec<u8>,
}

impl Gpu {
    /// Start recording GPU work.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            gpu: self,
            steps: Vec::new(),
            params: Vec::new(),
            uploads: Vec::new(),
        }
    }

    /// Split `groups` workgroups into a grid that respects the per-dimension limit. Shaders
    /// recover the linear index as `wg.x + wg.y * num_workgroups.x` and skip indices ≥ groups.
    pub fn grid(&self, groups: u32) -> Result<[u32; 3]> {
        let max = self.limits().max_compute_workgroups_per_dimension.max(1);
        if groups <= max {
            return Ok([groups.max(1), 1, 1]);
        }
        let y = groups.div_ceil(max);
        if y > max {
            return Err(Error::Limit {
                what: format!("{groups} workgroups"),
                detail: format!("more than {max}×{max} (max_compute_workgroups_per_dimension²)"),
            });
        }
        Ok([groups.div_ceil(y), y, 1])
    }
}

impl<'g> Batch<'g> {
    /// The context this batch records for.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Record `groups` workgroups of `kernel` (split over x and y past the per-dimension limit),
    /// with `params` at binding 0 and `bindings` from binding 1.
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        kernel: &Arc<Kernel>,
        params: &P,
        bindings: &[Binding],
        groups: u32,
    ) -> Result<()> {
        let grid = self.gpu.grid(groups)?;
        self.dispatch_grid(kernel, params, bindings, grid)
    }

    /// Record a dispatch of an explicit grid (each dimension within the device limit). `params`
    /// and `bindings` must match the kernel's declared [`crate::shader::KernelInterface`].
    pub fn dispatch_grid<P: bytemuck::Pod>(
        &mut self,
        kernel: &Arc<Kernel>,
        params: &P,
        bindings: &[Binding],
        grid: [u32; 3],
    ) -> Result<()> {
        if kernel.gpu != self.gpu.id() {
            return Err(Error::ForeignKernel {
                kernel: kernel.label.clone(),
                kernel_gpu: kernel.gpu,
                gpu: self.gpu.id(),
            });
        }
        for (i, b) in bindings.iter().enumerate() {
            self.gpu.check_owner(b.gpu, || binding_name(kernel, i))?;
        }
        kernel.check_dispatch(std::mem::size_of::<P>(), bindings.len())?;
        let max = self.gpu.limits().max_compute_workgroups_per_dimension;
        if grid.iter().any(|&g| g > max) {
            return Err(Error::Limit {
                what: format!("dispatch of {grid:?} workgroups for {}", kernel.label),
                detail: format!("max_compute_workgroups_per_dimension = {max}"),
            });
        }
        for (i, b) in bindings.iter().enumerate() {
            let size = b
                .size
                .map(|s| s.get())
                .unwrap_or(b.buffer.size() - b.offset);
            if size > self.gpu.max_binding_bytes() {
                return Err(Error::Limit {
                    what: format!(
                        "the {size}-byte {} of {}",
                        kernel.describe_binding(i),
                        kernel.label
                    ),
                    detail: format!(
                        "max_storage_buffer_binding_size = {}",
                        self.gpu.max_binding_bytes()
                    ),
                });
            }
        }
        let align = self
            .gpu
            .limits()
            .min_uniform_buffer_offset_alignment
            .max(16) as usize;
        let offset = self.params.len().div_ceil(align) * align;
        let bytes = bytemuck::bytes_of(params);
        let size = bytes.len().max(16).div_ceil(16) * 16;
        self.params.resize(offset + size, 0);
        self.params[offset..offset + bytes.len()].copy_from_slice(bytes);
        self.steps.push(Step::Dispatch {
            kernel: kernel.clone(),
            params_offset: offset as u64,
            params_size: size as u64,
            bindings: bindings.to_vec(),
            groups: grid,
        });
        Ok(())
    }

    /// Record a copy of `size` bytes from `src` at byte `src_offset` to `dst` at byte
    /// `dst_offset`. Both tensors must be this batch's context's and distinct, offsets and size
    /// multiples of 4, and both ranges within the tensors' payload rounded up to whole 4-byte
    /// words (so the last word of a half tensor of odd length can be copied; other padding does
    /// not count); otherwise nothing is recorded and the error says which range is wrong.
    pub fn copy(
        &mut self,
        src: &Tensor,
        src_offset: u64,
        dst: &Tensor,
        dst_offset: u64,
        size: u64,
    ) -> Result<()> {
        for (name, t) in [("source", src), ("destination", dst)] {
            self.gpu.check_owner(t.gpu_id(), || {
                format!("the {name} tensor (shape {:?}) of Batch::copy", t.shape())
            })?;
        }
        if src_offset % 4 != 0 || dst_offset % 4 != 0 || size % 4 != 0 {
            return Err(Error::invalid(format!(
                "Batch::copy of {size} bytes from byte {src_offset} to byte {dst_offset}: offsets \
                 and size must be multiples of 4"
            )));
        }
        for (name, t, offset) in [
            ("source", src, src_offset),
            ("destination", dst, dst_offset),
        ] {
            if offset
                .checked_add(size)
                .is_none_or(|end| end > t.size_bytes().next_multiple_of(4))
            {
                return Err(Error::invalid(format!(
                    "Batch::copy of {size} bytes at byte {offset} of the {name} tensor: it holds \
                     {} bytes (shape {:?}, {})",
                    t.size_bytes(),
                    t.shape(),
                    t.dtype()
                )));
            }
        }
        if src.buffer() == dst.buffer() {
            return Err(Error::invalid(
                "Batch::copy within one tensor: source and destination must be different tensors",
            ));
        }
        if size == 0 {
            return Ok(());
        }
        self.steps.push(Step::Copy {
            src: src.buffer().clone(),
            src_offset,
            dst: dst.buffer().clone(),
            dst_offset,
            size,
        });
        Ok(())
    }

    /// Record a host-to-GPU write of `data` into `tensor` at element `offset`, ordered with the
    /// batch's other steps (unlike [`Gpu::write`], which lands before the whole submission). The
    /// bytes travel in one pooled upload buffer per batch, so a loop that writes small index
    /// tensors every step allocates nothing. The tensor must be this batch's context's and `T`
    /// its dtype's host element type.
    pub fn write<T: Element>(&mut self, tensor: &Tensor, offset: usize, data: &[T]) -> Result<()> {
        self.gpu.check_owner(tensor.gpu_id(), || {
            format!("tensor of shape {:?} given to Batch::write", tensor.shape())
        })?;
        tensor.expect_element::<T>("Batch::write", "")?;
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let elem = tensor.dtype().size();
        let dst_offset = (offset * elem) as u64;
        if std::mem::size_of::<T>() != elem || dst_offset + bytes.len() as u64 > tensor.size_bytes()
        {
            return Err(Error::invalid(format!(
                "writing {} bytes at element {offset} of a {} tensor of shape {:?}",
                bytes.len(),
                tensor.dtype(),
                tensor.shape()
            )));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let src_offset = self.uploads.len() as u64;
        self.uploads.extend_from_slice(bytes);
        self.steps.push(Step::Upload {
            src_offset,
            dst: tensor.buffer().clone(),
            dst_offset,
            size: bytes.len() as u64,
        });
        Ok(())
    }

    /// Number of dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Dispatch { .. }))
            .count()
    }
}

/// How a dispatch error names binding `index` (0-based in `bindings`) of `kernel`: by its
/// declared name where the kernel has an interface.
fn binding_name(kernel: &Kernel, index: usize) -> String {
    format!(
        "the tensor {} of kernel `{}`",
        kernel.describe_binding(index),
        kernel.label
    )
}
