//! Timing: the adapter's ceilings (streaming copy, FMA), cache eviction between repeats, and
//! the measurement of one benchmark case against the ceilings.

use super::BenchCase;
use crate::clock::Instant;
use crate::error::Result;
use crate::ops::fma_peak::{FmaPeak, FmaPeakParams};
use crate::ops::stream_copy::StreamCopy;
use crate::runtime::{Gpu, Timing, TimingSource};
use crate::{DType, Tensor};
use std::sync::Arc;

/// The adapter's measured ceilings, the roofline the kernels are judged against: the best of several shapes of the streaming-copy
/// and FMA kernels (each shape's fastest repeat), measured in the same run as the kernels they
/// judge.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Ceilings {
    /// Streaming bandwidth, GB/s (10⁹ bytes: read + write).
    pub copy_gbps: f64,
    /// Which copy shape reached it.
    pub copy_shape: String,
    /// FMA throughput, GFLOP/s (an FMA is two FLOPs).
    pub fma_gflops: f64,
    /// Which FMA shape reached it.
    pub fma_shape: String,
    /// How the ceilings were timed.
    pub timing: String,
}

/// One benchmark result row.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRecord {
    /// Kernel name.
    pub kernel: String,
    /// Size label.
    pub size: String,
    /// GPU time, median over repeats, seconds.
    pub gpu_seconds: f64,
    /// Fastest repeat, seconds.
    pub gpu_min_seconds: f64,
    /// How many timed repeats.
    pub repeats: usize,
    /// `gpu-timestamps` or `wall-clock`.
    pub timing: String,
    /// Bytes that must move.
    pub bytes: u64,
    /// FLOPs.
    pub flops: u64,
    /// Achieved GB/s (bytes / median time).
    pub gbps: f64,
    /// Achieved GFLOP/s.
    pub gflops: f64,
    /// max(bytes / copy ceiling, FLOPs / FMA ceiling): the fastest this size could run.
    pub floor_seconds: f64,
    /// floor / median time: fraction of the roofline bound reached.
    pub roofline_fraction: f64,
    /// `memory` or `compute`: which term sets the floor.
    pub bound: String,
    /// CPU reference time on the same size (median), seconds, if it was run.
    pub cpu_seconds: Option<f64>,
    /// Host time per call outside the GPU's own time (record, submit, wait, timestamp
    /// readback): median of wall time − device time; only with GPU timestamps.
    pub host_overhead_seconds: Option<f64>,
    /// Tokens per second (tokens per run / median time), for whole-model entries.
    pub tokens_per_second: Option<f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct BenchPlan {
    /// Untimed runs first (pipeline JIT, caches, clocks).
    pub warmup: usize,
    /// Most timed repeats.
    pub max_repeats: usize,
    /// Fewest timed repeats.
    pub min_repeats: usize,
    /// Stop adding repeats once this much wall time was spent on one case.
    pub budget: std::time::Duration,
    /// A case whose first warm-up run takes longer than this is run once more, timed, and
    /// reported from that one run: a minutes-long case (a 4096-token prefill on a CPU device)
    /// then costs two runs instead of `warmup + min_repeats`.
    pub long_run: std::time::Duration,
    /// Run the CPU reference.
    pub cpu: bool,
}

impl BenchPlan {
    /// Short runs for `--quick` and the main job.
    pub fn quick() -> Self {
        Self {
            warmup: 1,
            max_repeats: 7,
            min_repeats: 3,
            budget: std::time::Duration::from_millis(1500),
            long_run: std::time::Duration::from_secs(30),
            cpu: true,
        }
    }

    /// Full runs for `ssm-mla bench`.
    pub fn full() -> Self {
        Self {
            warmup: 2,
            max_repeats: 25,
            min_repeats: 5,
            budget: std::time::Duration::from_secs(5),
            long_run: std::time::Duration::from_secs(60),
            cpu: true,
        }
    }
}

struct Timed {
    median: f64,
    min: f64,
    repeats: usize,
    source: TimingSource,
    /// Median of (wall time of the whole call − device time): recording, submission, waiting
    /// and readback overhead on the host. Only meaningful with GPU timestamps.
    host_overhead: Option<f64>,
}

/// Natively a run's [`Timing`] is complete when the run returns. In a browser a run only
/// submits (`Batch::run_timed` cannot block there): it is awaited here and timed by the wall
/// clock from `wall`, its start.
async fn finish(gpu: &Gpu, timing: Timing, wall: Instant) -> Result<Timing> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (gpu, wall);
        Ok(timing)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = timing;
        gpu.wait_async().await?;
        Ok(Timing {
            seconds: wall.elapsed().as_secs_f64(),
            source: TimingSource::WallClock,
        })
    }
}

/// Natively a flush has finished when it returns; in a browser it is awaited here, so that it
/// is not timed with the next run.
async fn settle(gpu: &Gpu) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    gpu.wait_async().await?;
    #[cfg(not(target_arch = "wasm32"))]
    let _ = gpu;
    Ok(())
}

async fn timed_median(
    gpu: &Gpu,
    run: &mut dyn FnMut() -> Result<Timing>,
    plan: &BenchPlan,
    mut between: Option<&mut CacheFlush>,
) -> Result<Timed> {
    let mut min_repeats = plan.min_repeats;
    for _ in 0..plan.warmup {
        let wall = Instant::now();
        let t = run()?;
        finish(gpu, t, wall).await?;
        if wall.elapsed() > plan.long_run {
            min_repeats = 1;
            break;
        }
    }
    let start = Instant::now();
    let mut times = Vec::new();
    let mut overheads = Vec::new();
    let mut source = TimingSource::WallClock;
    while times.len() < plan.max_repeats
        && (times.len() < min_repeats || start.elapsed() < plan.budget)
    {
        if let Some(flush) = between.as_deref_mut() {
            flush.run()?;
            settle(gpu).await?;
        }
        let wall = Instant::now();
        let t = run()?;
        let t = finish(gpu, t, wall).await?;
        overheads.push((wall.elapsed().as_secs_f64() - t.seconds).max(0.0));
        source = t.source;
        times.push(t.seconds);
    }
    let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let repeats = times.len();
    Ok(Timed {
        median: median(&mut times),
        min,
        repeats,
        source,
        host_overhead: (source == TimingSource::GpuTimestamps).then(|| median(&mut overheads)),
    })
}

/// Measure the copy and FMA ceilings, trying several kernel shapes and keeping the best.
/// Awaited (natively, block on it): in a browser each run is awaited.
pub async fn measure_ceilings(gpu: &Arc<Gpu>, quick: bool) -> Result<Ceilings> {
    let plan = BenchPlan {
        cpu: false,
        min_repeats: 5,
        max_repeats: 9,
        ..BenchPlan::quick()
    };
    // Large enough to leave every cache: 64 MiB (16 MiB in quick mode), capped by the binding.
    let bytes = if quick { 16 << 20 } else { 64 << 20 };
    let n = (bytes.min(gpu.max_binding_bytes() as usize) / 4) & !3;
    let src = gpu.upload_f32(&[n], &vec![1.5f32; n])?;
    let dst = gpu.empty(&[n], DType::F32)?;
    let mut best_copy = (0.0f64, String::new(), String::new());
    for (wg, per_thread) in [
        (256, 1),
        (256, 2),
        (256, 4),
        (256, 8),
        (128, 4),
        (64, 4),
        (64, 16),
    ] {
        let op = StreamCopy::with_shape(gpu, wg, per_thread)?;
        let mut run = || {
            let mut batch = gpu.batch();
            op.record(&mut batch, &src, &dst)?;
            batch.run_timed()
        };
        // A ceiling is what the device can do: the fastest repeat, not the median.
        let timed = timed_median(gpu, &mut run, &plan, None).await?;
        let (t, source) = (timed.min, timed.source);
        let gbps = StreamCopy::cost(n).bytes as f64 / t / 1e9;
        if gbps > best_copy.0 {
            best_copy = (
                gbps,
                format!("wg={wg} vec4/inv={per_thread}"),
                source.to_string(),
            );
        }
    }
    let params = FmaPeakParams {
        iters: if quick { 256 } else { 1024 },
        ..Default::default()
    };
    let elements = 1 << 16;
    let seed = gpu.upload_f32(&[elements], &vec![0.25f32; elements])?;
    let out = gpu.empty(&[elements], DType::F32)?;
    let mut best_fma = (0.0f64, String::new());
    for wg in [64, 256] {
        let op = FmaPeak::with_workgroup(gpu, wg)?;
        let mut run = || {
            let mut batch = gpu.batch();
            op.record(&mut batch, &seed, &out, params)?;
            batch.run_timed()
        };
        let t = timed_median(gpu, &mut run, &plan, None).await?.min;
        let gflops = FmaPeak::cost(elements, params).flops as f64 / t / 1e9;
        if gflops > best_fma.0 {
            best_fma = (gflops, format!("wg={wg} 8×vec4 chains"));
        }
    }
    Ok(Ceilings {
        copy_gbps: best_copy.0,
        copy_shape: best_copy.1,
        fma_gflops: best_fma.0,
        fma_shape: best_fma.1,
        timing: best_copy.2,
    })
}

/// Evicts caches between timed repeats: an untimed streaming copy of 64 MiB (capped by the
/// binding limit), larger than any GPU L2 or CPU L3 that a software device runs from. A case
/// repeated on the same inputs then starts cold each time, as if its inputs were fresh.
pub struct CacheFlush {
    op: StreamCopy,
    gpu: Arc<Gpu>,
    src: Tensor,
    dst: Tensor,
}

impl CacheFlush {
    /// Allocate the flush buffers on `gpu`.
    pub fn new(gpu: &Arc<Gpu>) -> Result<Self> {
        let n = ((64usize << 20).min(gpu.max_binding_bytes() as usize) / 4) & !3;
        Ok(Self {
            op: StreamCopy::new(gpu)?,
            gpu: gpu.clone(),
            src: gpu.empty(&[n], DType::F32)?,
            dst: gpu.empty(&[n], DType::F32)?,
        })
    }

    fn run(&mut self) -> Result<()> {
        let mut batch = self.gpu.batch();
        self.op.record(&mut batch, &self.src, &self.dst)?;
        batch.run()
    }

    /// Evict host caches too (for the CPU reference's repeats): stream through the same amount
    /// of host memory.
    fn run_host(&mut self, scratch: &mut Vec<u8>) {
        scratch.resize(64 << 20, 0);
        for chunk in scratch.chunks_mut(4096) {
            chunk[0] = chunk[0].wrapping_add(1);
        }
        std::hint::black_box(&scratch);
    }
}

/// Run one case per `plan` and judge it against `ceilings`; `flush` (if any) evicts caches
/// before every timed repeat of the GPU run and of the CPU reference. Awaited (natively, block
/// on it): in a browser each run of `case` on `gpu` is awaited.
pub async fn measure(
    gpu: &Gpu,
    case: &mut BenchCase,
    ceilings: &Ceilings,
    plan: &BenchPlan,
    mut flush: Option<&mut CacheFlush>,
) -> Result<BenchRecord> {
    let timed = timed_median(gpu, &mut case.gpu, plan, flush.as_deref_mut()).await?;
    let (t, t_min, repeats, source) = (timed.median, timed.min, timed.repeats, timed.source);
    let mem_floor = case.cost.bytes as f64 / (ceilings.copy_gbps * 1e9);
    let flop_floor = case.cost.flops as f64 / (ceilings.fma_gflops * 1e9);
    let floor = mem_floor.max(flop_floor);
    let cpu_seconds = match (&mut case.cpu, plan.cpu) {
        (Some(cpu), true) => {
            let mut times = Vec::new();
            let start = Instant::now();
            let mut scratch = Vec::new();
            while times.len() < 3 && (times.is_empty() || start.elapsed() < plan.budget) {
                if let Some(flush) = flush.as_deref_mut() {
                    flush.run_host(&mut scratch);
                }
                let t0 = Instant::now();
                cpu();
                times.push(t0.elapsed().as_secs_f64());
            }
            Some(median(&mut times))
        }
        _ => None,
    };
    Ok(BenchRecord {
        kernel: case.kernel.to_string(),
        size: case.size.clone(),
        gpu_seconds: t,
        gpu_min_seconds: t_min,
        repeats,
        timing: source.to_string(),
        bytes: case.cost.bytes,
        flops: case.cost.flops,
        gbps: case.cost.bytes as f64 / t / 1e9,
        gflops: case.cost.flops as f64 / t / 1e9,
        floor_seconds: floor,
        roofline_fraction: floor / t,
        bound: if mem_floor >= flop_floor {
            "memory"
        } else {
            "compute"
        }
        .to_string(),
        cpu_seconds,
        host_overhead_seconds: timed.host_overhead,
        tokens_per_second: case.tokens.map(|n| n as f64 / t),
    })
}
