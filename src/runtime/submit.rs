//! Turning a recorded [`Batch`] into commands and submitting them: all parameter blocks go into
//! one pooled uniform buffer and all in-order writes into one pooled upload buffer; consecutive
//! dispatches share one compute pass (wgpu inserts the barriers storage hazards need); bind
//! groups come from the pools' bounded cache. Everything runs inside [`Gpu::scoped`], so a
//! validation error comes back as an [`crate::Error`].

use crate::error::Result;
use crate::runtime::batch::Step;
use crate::runtime::pools::BufferKind;
use crate::runtime::{Batch, Gpu};

impl Batch<'_> {
    pub(super) fn passes(&self) -> u32 {
        let mut passes = 0;
        let mut in_pass = false;
        for s in &self.steps {
            match s {
                Step::Dispatch { .. } if !in_pass => {
                    passes += 1;
                    in_pass = true
                }
                Step::Dispatch { .. } => {}
                Step::Copy { .. } | Step::Upload { .. } => in_pass = false,
            }
        }
        passes
    }

    pub(super) fn encode(
        &self,
        uniforms: Option<&wgpu::Buffer>,
        uploads: Option<&wgpu::Buffer>,
        timestamps: Option<&wgpu::QuerySet>,
    ) -> wgpu::CommandBuffer {
        let device = self.gpu.device();
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("batch"),
        });
        let mut pass_index = 0u32;
        let mut i = 0;
        while i < self.steps.len() {
            match &self.steps[i] {
                Step::Upload {
                    src_offset,
                    dst,
                    dst_offset,
                    size,
                } => {
                    let src = uploads.expect("an upload step has upload bytes");
                    encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size);
                    i += 1;
                }
                Step::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    size,
                } => {
                    encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size);
                    i += 1;
                }
                Step::Dispatch { .. } => {
                    let timestamp_writes = timestamps.map(|qs| wgpu::ComputePassTimestampWrites {
                        query_set: qs,
                        beginning_of_pass_write_index: Some(2 * pass_index),
                        end_of_pass_write_index: Some(2 * pass_index + 1),
                    });
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes,
                    });
                    while let Some(Step::Dispatch {
                        kernel,
                        params_offset,
                        params_size,
                        bindings,
                        groups,
                    }) = self.steps.get(i)
                    {
                        let uniforms = uniforms.expect("a dispatch records params");
                        let bind_group = self.gpu.pools.bind_group(
                            device,
                            kernel,
                            uniforms,
                            *params_offset,
                            *params_size,
                            bindings,
                        );
                        pass.set_pipeline(&kernel.pipeline);
                        pass.set_bind_group(0, &bind_group, &[]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        i += 1;
                    }
                    pass_index += 1;
                }
            }
        }
        encoder.finish()
    }

    /// Copy all parameter blocks into a pooled uniform buffer and all recorded writes into a
    /// pooled upload buffer (both queued before the submit).
    pub(super) fn upload_params(&self) -> (Option<wgpu::Buffer>, Option<wgpu::Buffer>) {
        let stage = |bytes: &[u8], kind: BufferKind| {
            (!bytes.is_empty()).then(|| {
                let buffer = self
                    .gpu
                    .pools
                    .take(self.gpu.device(), kind, bytes.len() as u64);
                // write_buffer wants a multiple of 4 bytes; every dtype here is 4 bytes wide.
                self.gpu.queue().write_buffer(&buffer, 0, bytes);
                buffer
            })
        };
        (
            stage(&self.params, BufferKind::Uniform),
            stage(&self.uploads, BufferKind::Upload),
        )
    }

    /// Submit the recorded work without waiting. Validation errors come back as [`crate::Error::Gpu`].
    pub fn submit(self) -> Result<wgpu::SubmissionIndex> {
        let gpu = self.gpu;
        gpu.scoped("submitting GPU work", || {
            let (uniforms, uploads) = self.upload_params();
            let commands = self.encode(uniforms.as_ref(), uploads.as_ref(), None);
            let index = gpu.queue().submit([commands]);
            recycle(gpu, uniforms, uploads);
            Ok(index)
        })
    }

    /// Submit and wait until the GPU has finished. In a browser this cannot wait and only
    /// submits (work runs in order, so a later readback sees it): await [`Batch::run_async`]
    /// to know it finished.
    pub fn run(self) -> Result<()> {
        let gpu = self.gpu;
        self.submit()?;
        gpu.wait()
    }

    /// Submit and await the GPU's completion without blocking.
    pub async fn run_async(self) -> Result<()> {
        let gpu = self.gpu;
        self.submit()?;
        gpu.wait_async().await
    }
}
/// Give a submission's uniform and upload buffers back to the pools once the GPU is done.
pub(super) fn recycle(gpu: &Gpu, uniforms: Option<wgpu::Buffer>, uploads: Option<wgpu::Buffer>) {
    let buffers = [
        (BufferKind::Uniform, uniforms),
        (BufferKind::Upload, uploads),
    ]
    .into_iter()
    .filter_map(|(kind, b)| b.map(|b| (kind, b)))
    .collect();
    gpu.pools.give_back_after_submit(gpu.queue(), buffers);
}
