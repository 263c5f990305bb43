//! `stream_copy` in the suite: exact copies of ragged lengths, and the bandwidth benchmark.

use super::{BenchCase, CheckOutcome, CpuCase};
use crate::error::Result;
use crate::ops::stream_copy::StreamCopy;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::stream_copy::{Problem, TOLERANCE};
use std::sync::Arc;

/// Conformance cases: length 1, ragged, and past one workgroup's block; dst poisoned.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let op = StreamCopy::new(gpu)?;
    let mut out = Vec::new();
    for n in [1usize, 1021, 1024 * 4 * 3 + 5] {
        let p = Problem::random(rng, n);
        out.push(CheckOutcome::new(
            "stream_copy",
            format!("n={n} dst"),
            TOLERANCE,
            &p.run(gpu, &op).await?,
            &p.reference(),
        ));
    }
    Ok(out)
}

/// Benchmark cases: copies of 4 MiB (quick) up to 64 MiB, and (full) one of 216 KiB, which
/// moves the bytes of a one-token decode step at Mamba-1 sizes (state_update Bt = 1, D = 2048,
/// N = 16): the copy's own fraction of the roofline at a size where a dispatch's fixed cost
/// counts. The CPU side is a host memcpy.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    let sizes: &[usize] = if quick {
        &[1 << 20]
    } else {
        &[216 << 8, 1 << 20, 1 << 24]
    };
    let mut rng = Rng::new(0xC0B1);
    let mut cases = Vec::new();
    for &n in sizes {
        let op = StreamCopy::new(gpu)?;
        let p = Problem::random(&mut rng, n);
        let src = p.upload(gpu)?;
        let dst = gpu.empty(&[n], DType::F32)?;
        let g = gpu.clone();
        let mut host_dst: Vec<f32> = vec![0.0; n];
        cases.push(BenchCase {
            tokens: None,
            kernel: "stream_copy",
            size: if n * 4 >= 1 << 20 {
                format!("{} MiB", (n * 4) >> 20)
            } else {
                format!("{} KiB", (n * 4) >> 10)
            },
            cost: StreamCopy::cost(n),
            gpu: Box::new(move || {
                let mut batch = g.batch();
                op.record(&mut batch, &src, &dst)?;
                batch.run_timed()
            }),
            cpu: Some(Box::new(move || {
                host_dst.copy_from_slice(&p.data);
                std::hint::black_box(&host_dst);
            })),
        });
    }
    Ok(cases)
}

/// The CPU reference on 4 MiB, for the no-GPU main job.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let n = 1 << 20;
    let p = Problem::random(rng, n);
    vec![CpuCase {
        size: "4 MiB".into(),
        cost: StreamCopy::cost(n),
        run: Box::new(move || {
            std::hint::black_box(p.reference());
        }),
    }]
}
