//! The one place that times GPU work.
//!
//! [`Batch::run_timed`] brackets every compute pass with GPU timestamps when the device has
//! `TIMESTAMP_QUERY` and reports the span from the first pass's start to the last pass's end;
//! otherwise it reports wall-clock time around submit-and-wait. [`Timing::source`] says which,
//! so a table never mixes device time with host time unknowingly.
//!
//! [`Batch::run_timed_async`] is the one implementation; [`Batch::run_timed`] blocks on it
//! natively. A browser cannot block, so there `run_timed` only submits and reports the
//! submission's host time: await `run_timed_async`, or time around [`crate::Gpu::wait_async`].

use crate::clock::Instant;
use crate::error::{Error, Result};
use crate::runtime::signal;
use crate::runtime::Batch;

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

impl Batch<'_> {
    /// Submit, wait and report how long the GPU took (see the module docs for the source).
    pub fn run_timed(self) -> Result<Timing> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            pollster::block_on(self.run_timed_async())
        }
        #[cfg(target_arch = "wasm32")]
        {
            let start = Instant::now();
            self.submit()?;
            Ok(Timing {
                seconds: start.elapsed().as_secs_f64(),
                source: TimingSource::WallClock,
            })
        }
    }

    /// [`Batch::run_timed`] awaited: GPU timestamps where granted, else the wall clock around
    /// submitting and awaiting completion.
    pub async fn run_timed_async(self) -> Result<Timing> {
        let gpu = self.gpu;
        let passes = self.passes();
        if !gpu.has_timestamps() || passes == 0 || passes > MAX_TIMED_PASSES {
            let start = Instant::now();
            self.submit()?;
            gpu.wait_async().await?;
            return Ok(Timing {
                seconds: start.elapsed().as_secs_f64(),
                source: TimingSource::WallClock,
            });
        }
        // The slots are taken out of the context for the awaited part (a lock is not held
        // across an await) and put back after; a concurrent timed run makes its own.
        let taken = gpu
            .timestamps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let slots = match taken {
            Some(s) => s,
            None => gpu.scoped("creating timestamp queries", || {
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
            })?,
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
            super::submit::recycle(gpu, uniforms, uploads);
            Ok(())
        })?;
        let (tx, rx) = signal::channel();
        gpu.scoped("reading timestamps", || {
            slots
                .readback
                .slice(..bytes)
                .map_async(wgpu::MapMode::Read, move |r| tx.send(r));
            Ok(())
        })?;
        gpu.wait()?;
        let map_error = |message: String| Error::Device {
            context: "reading timestamps".into(),
            message,
        };
        rx.await
            .ok_or_else(|| map_error("the map callback was dropped".into()))?
            .map_err(|e| map_error(e.to_string()))?;
        let ticks: Vec<u64> = {
            let view = slots
                .readback
                .slice(..bytes)
                .get_mapped_range()
                .map_err(|e| map_error(e.to_string()))?;
            bytemuck::pod_collect_to_vec(&view)
        };
        slots.readback.unmap();
        *gpu.timestamps.lock().unwrap_or_else(|p| p.into_inner()) = Some(slots);
        let first = ticks[0];
        let last = ticks[count as usize - 1];
        let ns = last.saturating_sub(first) as f64 * gpu.queue().get_timestamp_period() as f64;
        Ok(Timing {
            seconds: ns * 1e-9,
            source: TimingSource::GpuTimestamps,
        })
    }
}
