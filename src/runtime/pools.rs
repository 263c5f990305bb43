//! Reuse of GPU objects, with one policy for every kind, so that a loop that runs the same ops
//! on the same tensors (a decode loop) creates no GPU objects per step.
//!
//! Buffers: uniform parameter blocks, upload bytes for [`crate::Batch::write`] and mappable
//! readback staging buffers are each pooled by [`BufferKind`]. A request takes the smallest
//! pooled buffer of its kind that fits, else creates one rounded up to a power of two (at least
//! 4 KiB) so that slowly growing requests still hit the pool. A buffer comes back only once the
//! GPU is done with it (uniforms and uploads after their submission finishes, staging buffers
//! once unmapped); each kind keeps at most [`Pools::KEEP`] buffers and drops its smallest when
//! full, since large ones are the expensive ones to recreate.
//!
//! Bind groups are cached by (pipeline, uniform range, storage bindings). The cache is bounded
//! and emptied when full, which also lets go of tensors only the cache still referenced.

use crate::runtime::pipelines::Kernel;
use crate::runtime::Binding;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

/// What a pooled buffer is for; each kind is its own pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BufferKind {
    /// Parameter blocks of a batch (`UNIFORM | COPY_DST`).
    Uniform,
    /// Host bytes a batch copies into tensors (`COPY_SRC | COPY_DST`).
    Upload,
    /// Readback (`MAP_READ | COPY_DST`).
    Staging,
}

impl BufferKind {
    fn index(self) -> usize {
        self as usize
    }

    fn usage(self) -> wgpu::BufferUsages {
        wgpu::BufferUsages::COPY_DST
            | match self {
                BufferKind::Uniform => wgpu::BufferUsages::UNIFORM,
                BufferKind::Upload => wgpu::BufferUsages::COPY_SRC,
                BufferKind::Staging => wgpu::BufferUsages::MAP_READ,
            }
    }

    fn label(self) -> &'static str {
        match self {
            BufferKind::Uniform => "params",
            BufferKind::Upload => "uploads",
            BufferKind::Staging => "staging",
        }
    }
}

/// Counts of GPU objects the runtime has created, to check that steady-state loops allocate
/// nothing per step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceCounters {
    /// Bind groups created (a cache hit creates none).
    pub bind_groups_created: u64,
    /// Uniform buffers created (pooled buffers are reused).
    pub uniform_buffers_created: u64,
    /// Upload buffers created for [`crate::Batch::write`] (pooled likewise).
    pub upload_buffers_created: u64,
    /// Readback staging buffers created (pooled likewise).
    pub staging_buffers_created: u64,
}

type FreeList = Arc<Mutex<Vec<wgpu::Buffer>>>;

type BindKey = (
    usize,
    wgpu::Buffer,
    u64,
    u64,
    Vec<(wgpu::Buffer, u64, Option<u64>)>,
);

/// The runtime's pools (one per [`crate::Gpu`]).
#[derive(Default)]
pub(crate) struct Pools {
    free: [FreeList; 3],
    bind_groups: Mutex<HashMap<BindKey, wgpu::BindGroup>>,
    counters: Mutex<ResourceCounters>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pools {
    /// Buffers kept per kind.
    pub(crate) const KEEP: usize = 8;
    const MAX_BIND_GROUPS: usize = 512;

    /// A buffer of `kind` holding at least `bytes`: the smallest pooled one that fits, or a new
    /// one.
    pub(crate) fn take(&self, device: &wgpu::Device, kind: BufferKind, bytes: u64) -> wgpu::Buffer {
        {
            let mut free = lock(&self.free[kind.index()]);
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.size() >= bytes)
                .min_by_key(|(_, b)| b.size())
                .map(|(i, _)| i);
            if let Some(i) = best {
                return free.swap_remove(i);
            }
        }
        {
            let mut counters = lock(&self.counters);
            match kind {
                BufferKind::Uniform => counters.uniform_buffers_created += 1,
                BufferKind::Upload => counters.upload_buffers_created += 1,
                BufferKind::Staging => counters.staging_buffers_created += 1,
            }
        }
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(kind.label()),
            size: bytes.next_power_of_two().max(4096),
            usage: kind.usage(),
            mapped_at_creation: false,
        })
    }

    /// Return a buffer the GPU no longer uses (for staging: one that is unmapped).
    pub(crate) fn give_back(&self, kind: BufferKind, buffer: wgpu::Buffer) {
        Self::push(&self.free[kind.index()], buffer);
    }

    fn push(free: &FreeList, buffer: wgpu::Buffer) {
        let mut free = lock(free);
        free.push(buffer);
        if free.len() > Self::KEEP {
            free.sort_by_key(|b| std::cmp::Reverse(b.size()));
            free.truncate(Self::KEEP);
        }
    }

    /// Return `buffers` once the GPU has finished the work submitted so far.
    pub(crate) fn give_back_after_submit(
        &self,
        queue: &wgpu::Queue,
        buffers: Vec<(BufferKind, wgpu::Buffer)>,
    ) {
        if buffers.is_empty() {
            return;
        }
        let lists: Vec<(FreeList, wgpu::Buffer)> = buffers
            .into_iter()
            .map(|(kind, b)| (Arc::clone(&self.free[kind.index()]), b))
            .collect();
        queue.on_submitted_work_done(move || {
            for (free, buffer) in lists {
                Self::push(&free, buffer);
            }
        });
    }

    /// How many buffers of `kind` are pooled.
    pub(crate) fn pooled(&self, kind: BufferKind) -> usize {
        lock(&self.free[kind.index()]).len()
    }

    /// The bind group of `kernel` with its parameter block at `params_offset..+params_size` of
    /// `uniforms` (binding 0) and `bindings` from binding 1, cached.
    pub(crate) fn bind_group(
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
        let mut cache = lock(&self.bind_groups);
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
        lock(&self.counters).bind_groups_created += 1;
        if cache.len() >= Self::MAX_BIND_GROUPS {
            cache.clear();
        }
        cache.insert(key, group.clone());
        group
    }

    pub(crate) fn counters(&self) -> ResourceCounters {
        *lock(&self.counters)
    }
}
