//! `ssd_scan` in the suite: the Mamba-2 SSD scan against the f64 recurrence, and benchmarks at
//! Mamba-2 layer shapes next to the Mamba-1 selective scan at the same d_inner.

use super::{BenchCase, CheckOutcome, CpuCase, CpuRun};
use crate::error::Result;
use crate::ops::selective_scan::{BcLayout, SelectiveScan};
use crate::ops::ssd_scan::{SsdDims, SsdOptions, SsdScan, DEFAULT_CHUNK};
use crate::rng::Rng;
use crate::runtime::{DType, Gpu};
use crate::testing::selective_scan as mamba1;
use crate::testing::ssd_scan::{dims, Problem, ALL, MAMBA2, TOLERANCE};
use std::sync::Arc;

/// Conformance cases: every option at a ragged size (L < Q, D per channel, G = 2); Mamba-2's
/// options at L = 2·Q + 1 with N = 128; size 1 with no options.
pub async fn check_cases(gpu: &Arc<Gpu>, rng: &mut Rng) -> Result<Vec<CheckOutcome>> {
    let cases = [
        (dims(2, 13, 4, 8, 2, 16), ALL, 16),
        (dims(1, 129, 2, 16, 1, 128), MAMBA2, 64),
        (dims(1, 1, 1, 1, 1, 1), SsdOptions::default(), 16),
    ];
    let op = SsdScan::new(gpu)?;
    let mut outcomes = Vec::new();
    for (d, opts, q) in cases {
        let mut p = Problem::random(rng, d, opts);
        p.chunk_size = q;
        let want = p.reference()?;
        let (out, finals) = p.run(gpu, &op).await?;
        let label = format!(
            "Bt={} L={} H={} P={} G={} N={} Q={q}",
            d.batch, d.len, d.heads, d.head_dim, d.groups, d.n
        );
        for (name, got, reference) in [
            ("out", out, &want.out),
            ("final_states", finals, &want.final_states),
        ] {
            outcomes.push(CheckOutcome::new(
                "ssd_scan",
                format!("{label} {name}"),
                TOLERANCE,
                &got,
                reference,
            ));
        }
    }
    Ok(outcomes)
}

/// Mamba-2 layer shapes (130m, 370m, 2.7b: H = 24, 32, 80 heads of P = 64, N = 128, G = 1) at
/// L = 512, 4096 and 16384 (quick: 130m at L = 512 only).
fn bench_sizes(quick: bool) -> Vec<(&'static str, SsdDims)> {
    let models = [("130m", 24), ("370m", 32), ("2.7b", 80)];
    let lens: &[usize] = if quick { &[512] } else { &[512, 4096, 16384] };
    let models = if quick { &models[..1] } else { &models[..] };
    let mut sizes = Vec::new();
    for &(name, h) in models {
        for &l in lens {
            sizes.push((name, dims(1, l, h, 64, 1, 128)));
        }
    }
    sizes
}

fn size_label(model: &str, d: &SsdDims) -> String {
    format!(
        "mamba2-{model} Bt={} L={} H={} P={} N={} Q={DEFAULT_CHUNK}",
        d.batch, d.len, d.heads, d.head_dim, d.n
    )
}

/// Benchmark cases: the SSD scan at Mamba-2 shapes (Mamba-2's options, chunk size 256), each
/// followed by the Mamba-1 selective scan at the same d_inner = H·P with N = 16 (kernel
/// `selective_scan` in the table), so the two sit side by side.
pub fn bench_cases(gpu: &Arc<Gpu>, quick: bool) -> Result<Vec<BenchCase>> {
    let mut rng = Rng::new(0x55D0);
    let mut cases = Vec::new();
    for (model, d) in bench_sizes(quick) {
        let op = SsdScan::new(gpu)?;
        let mut p = Problem::random(&mut rng, d, MAMBA2);
        p.chunk_size = DEFAULT_CHUNK;
        let t = p.upload(gpu)?;
        let out = gpu.empty(&[d.batch, d.len, d.heads, d.head_dim], DType::F32)?;
        let finals = gpu.empty(&[d.batch, d.heads, d.head_dim, d.n], DType::F32)?;
        let g = gpu.clone();
        // The f64 recurrence does ~10⁸ state updates a second; skip it above 2^26.
        let cpu: Option<CpuRun> = (d.len * d.state_len() <= 1 << 26).then(|| {
            Box::new(move || {
                std::hint::black_box(p.reference().ok());
            }) as CpuRun
        });
        cases.push(BenchCase {
            tokens: None,
            kernel: "ssd_scan",
            size: size_label(model, &d),
            cost: SsdScan::cost(&d, MAMBA2, DEFAULT_CHUNK),
            gpu: Box::new(move || {
                let mut batch = g.batch();
                op.record(&mut batch, &t.inputs(), &out, &finals)?;
                batch.run_timed()
            }),
            cpu,
        });
        // Mamba-1 at the same d_inner, N = 16, (Bt, D, L) layout.
        let v = BcLayout::Grouped(1);
        let m1 = mamba1::dims(d.batch, d.heads * d.head_dim, d.len, 16, v, v);
        let scan = SelectiveScan::new(gpu)?;
        let p1 = mamba1::Problem::random(&mut rng, m1, mamba1::MAMBA);
        let t1 = p1.upload(gpu)?;
        let out1 = gpu.empty(&[m1.batch, m1.dim, m1.len], DType::F32)?;
        let last1 = gpu.empty(&[m1.batch, m1.dim, m1.n], DType::F32)?;
        let g1 = gpu.clone();
        cases.push(BenchCase {
            tokens: None,
            kernel: "selective_scan",
            size: format!(
                "mamba1 D={} N=16 L={} (d_inner of mamba2-{model})",
                m1.dim, m1.len
            ),
            cost: SelectiveScan::cost(&m1, mamba1::MAMBA),
            gpu: Box::new(move || {
                let mut batch = g1.batch();
                scan.record(&mut batch, &t1.inputs(), &out1, &last1)?;
                batch.run_timed()
            }),
            cpu: None,
        });
    }
    Ok(cases)
}

/// The CPU reference on a small size, for machines without a GPU.
pub fn cpu_cases(rng: &mut Rng) -> Vec<CpuCase> {
    let d = dims(1, 256, 8, 64, 1, 64);
    let p = Problem::random(rng, d, MAMBA2);
    vec![CpuCase {
        size: "Bt=1 L=256 H=8 P=64 N=64".to_string(),
        cost: SsdScan::cost(&d, MAMBA2, DEFAULT_CHUNK),
        run: Box::new(move || {
            std::hint::black_box(p.reference().ok());
        }),
    }]
}
