//! Recording and submitting GPU work, and timing it: the one place that encodes commands.
//!
//! Ops record dispatches into a [`Batch`]; nothing reaches the GPU until [`Batch::submit`] (or
//! [`Batch::run`], which also waits). So several ops, or many steps of one op, go out in one
//! submission. Consecutive dispatches share one compute pass (wgpu orders them and inserts the
//! barriers storage hazards need). All parameter blocks of a batch live in one uniform buffer at
//! aligned offsets, so a batch costs one small allocation however many dispatches it holds.
//!
//! Timing: [`Batch::run_timed`] brackets every pass with GPU timestamps when the device has
//! `TIMESTAMP_QUERY` and reports the span from the first pass's start to the last pass's end;
//! otherwise it reports wall-clock time around submit-and-wait. [`Timing::source`] says which.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::pipeline::Kernel;
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A storage binding: a whole tensor or a byte range of one.
#[derive(Clone, Debug)]
pub struct Binding {
    buffer: wgpu::Buffer,
    offset: u64,
    size: Option<NonZeroU64>,
}

impl Binding {
    /// Bytes `offset..offset+size` of a tensor's buffer (`offset` must be a multiple of the
    /// device's `min_storage_buffer_offset_alignment`).
    pub fn range(tensor: &Tensor, offset: u64, size: u64) -> Self {
        Self {
            buffer: tensor.buffer().clone(),
            offset,
            size: NonZeroU64::new(size),
        }
    }
}

impl From<&Tensor> for Binding {
    fn from(t: &Tensor) -> Self {
        Self {
            buffer: t.buffer().clone(),
            offset: 0,
            size: None,
        }
    }
}

enum Step {
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

/// Where a time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimingSource {
    /// GPU timestamp queries: device time of the passes alone.
    GpuTimestamps,
    /// Host wall clock around submit and wait: includes submission overhead.
    WallClock,
}

impl std::fmt::Display for TimingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimingSource::GpuTimestamps => "gpu-timestamps",
            TimingSource::WallClock => "wall-clock",
        })
    }
}

/// A measured duration.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Seconds.
    pub seconds: f64,
    /// How it was measured.
    pub source: TimingSource,
}

/// Timestamp query set and buffers, created on first timed run and reused.
pub(crate) struct TimestampSlots {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
}

const MAX_TIMED_PASSES: u32 = 64;

/// GPU work being recorded. Create with [`Gpu::batch`].
pub struct Batch<'g> {
    gpu: &'g Gpu,
    steps: Vec<Step>,
    params: Vec<u8>,
    uploads: Vec<u8>,
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

    /// Record a dispatch of an explicit grid (each dimension within the device limit).
    pub fn dispatch_grid<P: bytemuck::Pod>(
        &mut self,
        kernel: &Arc<Kernel>,
        params: &P,
        bindings: &[Binding],
        grid: [u32; 3],
    ) -> Result<()> {
        let max = self.gpu.limits().max_compute_workgroups_per_dimension;
        if grid.iter().any(|&g| g > max) {
            return Err(Error::Limit {
                what: format!("dispatch of {grid:?} workgroups for {}", kernel.label),
                detail: format!("max_compute_workgroups_per_dimension = {max}"),
            });
        }
        for b in bindings {
            let size = b
                .size
                .map(|s| s.get())
                .unwrap_or(b.buffer.size() - b.offset);
            if size > self.gpu.max_binding_bytes() {
                return Err(Error::Limit {
                    what: format!("a {size}-byte binding of {}", kernel.label),
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

    /// Record a copy of `size` bytes between tensors (offsets in bytes, multiples of 4).
    pub fn copy(
        &mut self,
        src: &Tensor,
        src_offset: u64,
        dst: &Tensor,
        dst_offset: u64,
        size: u64,
    ) {
        self.steps.push(Step::Copy {
            src: src.buffer().clone(),
            src_offset,
            dst: dst.buffer().clone(),
            dst_offset,
            size,
        });
    }

    /// Record a host-to-GPU write of `data` into `tensor` at element `offset`, ordered with the
    /// batch's other steps (unlike [`Gpu::write`], which lands before the whole submission). The
    /// bytes travel in one pooled upload buffer per batch, so a loop that writes small index
    /// tensors every step allocates nothing.
    pub fn write<T: bytemuck::Pod>(
        &mut self,
        tensor: &Tensor,
        offset: usize,
        data: &[T],
    ) -> Result<()> {
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

    fn passes(&self) -> u32 {
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

    fn encode(
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
                        let bind_group = self.gpu.reuse.bind_group(
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
    fn upload_params(&self) -> (Option<wgpu::Buffer>, Option<wgpu::Buffer>) {
        let stage = |bytes: &[u8], kind: PoolKind| {
            (!bytes.is_empty()).then(|| {
                let buffer = self
                    .gpu
                    .reuse
                    .take(self.gpu.device(), kind, bytes.len() as u64);
                // write_buffer wants a multiple of 4 bytes; every dtype here is 4 bytes wide.
                self.gpu.queue().write_buffer(&buffer, 0, bytes);
                buffer
            })
        };
        (
            stage(&self.params, PoolKind::Uniform),
            stage(&self.uploads, PoolKind::Upload),
        )
    }

    /// Submit the recorded work without waiting. Validation errors come back as [`Error::Gpu`].
    pub fn submit(self) -> Result<wgpu::SubmissionIndex> {
        let gpu = self.gpu;
        gpu.scoped("submitting GPU work", || {
            let (uniforms, uploads) = self.upload_params();
            let commands = self.encode(uniforms.as_ref(), uploads.as_ref(), None);
            let index = gpu.queue().submit([commands]);
            gpu.reuse
                .recycle_after_submit(gpu.queue(), uniforms, uploads);
            Ok(index)
        })
    }

    /// Submit and wait until the GPU has finished.
    pub fn run(self) -> Result<()> {
        let gpu = self.gpu;
        self.submit()?;
        gpu.wait()
    }

    /// Submit, wait and report how long the GPU took (see the module docs for the source).
    pub fn run_timed(self) -> Result<Timing> {
        let gpu = self.gpu;
        let passes = self.passes();
        if !gpu.has_timestamps() || passes == 0 || passes > MAX_TIMED_PASSES {
            let start = Instant::now();
            self.run()?;
            return Ok(Timing {
                seconds: start.elapsed().as_secs_f64(),
                source: TimingSource::WallClock,
            });
        }
        let mut slots = gpu.timestamps.lock().unwrap_or_else(|p| p.into_inner());
        let slots = match &mut *slots {
            Some(s) => s,
            empty => empty.insert(gpu.scoped("creating timestamp queries", || {
                let device = gpu.device();
                let bytes = 8 * 2 * MAX_TIMED_PASSES as u64;
                Ok(TimestampSlots {
                    query_set: device.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("timestamps"),
                        ty: wgpu::QueryType::Timestamp,
                        count: 2 * MAX_TIMED_PASSES,
                    }),
                    resolve: device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("timestamp resolve"),
                        size: bytes,
                        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                        mapped_at_creation: false,
                    }),
                    readback: device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("timestamp readback"),
                        size: bytes,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    }),
                })
            })?),
        };
        let count = 2 * passes;
        let bytes = 8 * count as u64;
        gpu.scoped("submitting timed GPU work", || {
            let (uniforms, uploads) = self.upload_params();
            let work = self.encode(uniforms.as_ref(), uploads.as_ref(), Some(&slots.query_set));
            let mut encoder =
                gpu.device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("resolve"),
                    });
            encoder.resolve_query_set(&slots.query_set, 0..count, &slots.resolve, 0);
            encoder.copy_buffer_to_buffer(&slots.resolve, 0, &slots.readback, 0, bytes);
            gpu.queue().submit([work, encoder.finish()]);
            gpu.reuse
                .recycle_after_submit(gpu.queue(), uniforms, uploads);
            Ok(())
        })?;
        let slice = slots.readback.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        gpu.wait()?;
        let map_error = |message: String| Error::Device {
            context: "reading timestamps".into(),
            message,
        };
        rx.recv()
            .map_err(|e| map_error(e.to_string()))?
            .map_err(|e| map_error(e.to_string()))?;
        let ticks: Vec<u64> = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| map_error(e.to_string()))?;
            bytemuck::pod_collect_to_vec(&view)
        };
        slots.readback.unmap();
        let first = ticks[0];
        let last = ticks[count as usize - 1];
        let ns = last.saturating_sub(first) as f64 * gpu.queue().get_timestamp_period() as f64;
        Ok(Timing {
            seconds: ns * 1e-9,
            source: TimingSource::GpuTimestamps,
        })
    }
}

/// Counts of GPU objects the host layer has created, to check that steady-state loops allocate
/// nothing per step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceCounters {
    /// Bind groups created (a cache hit creates none).
    pub bind_groups_created: u64,
    /// Uniform buffers created (pooled buffers are reused).
    pub uniform_buffers_created: u64,
    /// Upload buffers created for [`Batch::write`] (pooled likewise).
    pub upload_buffers_created: u64,
}

#[derive(Clone, Copy)]
enum PoolKind {
    Uniform,
    Upload,
}

type BindKey = (
    usize,
    wgpu::Buffer,
    u64,
    u64,
    Vec<(wgpu::Buffer, u64, Option<u64>)>,
);

/// Per-device reuse of uniform buffers and bind groups, so that a loop that runs the same ops on
/// the same tensors (a decode loop) creates no GPU objects per step.
///
/// Uniform buffers return to the pool when the GPU has finished the submission that used them
/// (`on_submitted_work_done`). Bind groups are cached by (pipeline, uniform buffer and range,
/// storage bindings); the cache is bounded and is emptied when full, which also lets go of
/// tensors that only the cache still referenced.
#[derive(Default)]
pub(crate) struct Reuse {
    uniforms: Arc<Mutex<Vec<wgpu::Buffer>>>,
    uploads: Arc<Mutex<Vec<wgpu::Buffer>>>,
    bind_groups: Mutex<HashMap<BindKey, wgpu::BindGroup>>,
    counters: Mutex<ResourceCounters>,
}

impl Reuse {
    const MAX_BIND_GROUPS: usize = 512;
    const MAX_POOLED_BUFFERS: usize = 16;

    fn pool(&self, kind: PoolKind) -> &Arc<Mutex<Vec<wgpu::Buffer>>> {
        match kind {
            PoolKind::Uniform => &self.uniforms,
            PoolKind::Upload => &self.uploads,
        }
    }

    fn take(&self, device: &wgpu::Device, kind: PoolKind, bytes: u64) -> wgpu::Buffer {
        {
            let mut pool = self.pool(kind).lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = pool.iter().rposition(|b| b.size() >= bytes) {
                return pool.remove(i);
            }
        }
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let (label, usage) = match kind {
            PoolKind::Uniform => {
                counters.uniform_buffers_created += 1;
                ("params", wgpu::BufferUsages::UNIFORM)
            }
            PoolKind::Upload => {
                counters.upload_buffers_created += 1;
                ("uploads", wgpu::BufferUsages::COPY_SRC)
            }
        };
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.next_power_of_two().max(4096),
            usage: usage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn recycle_after_submit(
        &self,
        queue: &wgpu::Queue,
        uniforms: Option<wgpu::Buffer>,
        uploads: Option<wgpu::Buffer>,
    ) {
        if uniforms.is_none() && uploads.is_none() {
            return;
        }
        let (uniform_pool, upload_pool) = (Arc::clone(&self.uniforms), Arc::clone(&self.uploads));
        queue.on_submitted_work_done(move || {
            for (buffer, pool) in [(uniforms, uniform_pool), (uploads, upload_pool)] {
                if let Some(buffer) = buffer {
                    let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
                    if pool.len() < Self::MAX_POOLED_BUFFERS {
                        pool.push(buffer);
                    }
                }
            }
        });
    }

    fn bind_group(
        &self,
        device: &wgpu::Device,
        kernel: &Arc<Kernel>,
        uniforms: &wgpu::Buffer,
        params_offset: u64,
        params_size: u64,
        bindings: &[Binding],
    ) -> wgpu::BindGroup {
        let key: BindKey = (
            Arc::as_ptr(kernel) as usize,
            uniforms.clone(),
            params_offset,
            params_size,
            bindings
                .iter()
                .map(|b| (b.buffer.clone(), b.offset, b.size.map(|s| s.get())))
                .collect(),
        );
        let mut cache = self.bind_groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(group) = cache.get(&key) {
            return group.clone();
        }
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: uniforms,
                offset: params_offset,
                size: NonZeroU64::new(params_size),
            }),
        }];
        for (k, b) in bindings.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: k as u32 + 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &b.buffer,
                    offset: b.offset,
                    size: b.size,
                }),
            });
        }
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout,
            entries: &entries,
        });
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bind_groups_created += 1;
        if cache.len() >= Self::MAX_BIND_GROUPS {
            cache.clear();
        }
        cache.insert(key, group.clone());
        group
    }

    pub(crate) fn counters(&self) -> ResourceCounters {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }
}
