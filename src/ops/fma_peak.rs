//! `fma_peak`: the arithmetic ceiling of the benchmarks. Each element runs 8 independent vec4
//! FMA chains for `iters` steps; see `shaders/common/fma_peak.wgsl`.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::Batch;
use crate::runtime::Gpu;
use crate::runtime::{DType, Tensor};
use crate::runtime::{Kernel, Shader};
use crate::shader::{wgsl, Access, Flags, KernelInterface, Variant};
use std::sync::Arc;

/// The WGSL body.
pub const SHADER: Shader = wgsl!("common/fma_peak");

/// Default workgroup size.
pub const WG: u32 = 256;

pub use crate::spec::fma_peak::FmaPeakParams;

/// A built FMA-peak op.
#[derive(Clone, Debug)]
pub struct FmaPeak {
    kernel: Arc<Kernel>,
    wg: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    n: u32,
    iters: u32,
    m: f32,
    c: f32,
}

/// What the kernel is passed: its `Uniforms`, then seed and out.
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[("seed", Access::Read), ("out", Access::ReadWrite)],
};

/// The kernel.
pub const KERNEL: Variant = SHADER.variant(Flags::NONE, INTERFACE);

impl FmaPeak {
    /// Build (or fetch from the cache) the pipeline.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Self::with_workgroup(gpu, WG)
    }

    /// Build with `wg` invocations per workgroup (the bench runner tries several).
    pub fn with_workgroup(gpu: &Gpu, wg: u32) -> Result<Self> {
        if wg == 0 || wg > 1024 {
            return Err(Error::invalid(format!("fma_peak workgroup size {wg}")));
        }
        Ok(Self {
            kernel: gpu.kernel(&KERNEL, &[("WG", wg as f64)])?,
            wg,
        })
    }

    /// Record out\[i\] = chains(seed\[i\]); `seed` and `out` are f32 of equal length.
    pub fn record(
        &self,
        batch: &mut Batch,
        seed: &Tensor,
        out: &Tensor,
        params: FmaPeakParams,
    ) -> Result<()> {
        seed.expect("seed", "(n)", &[seed.len()], DType::F32)?;
        out.expect("out", "(n) like seed", &[seed.len()], DType::F32)?;
        if params.iters % 8 != 0 {
            return Err(Error::invalid(format!(
                "fma_peak iters = {}: must be a multiple of 8 (the loop runs 8 steps per trip)",
                params.iters
            )));
        }
        if seed.is_empty() {
            return Err(Error::shape("seed", "(n) with n > 0", seed.shape()));
        }
        let n = u32::try_from(seed.len()).map_err(|_| Error::Limit {
            what: "fma_peak length".into(),
            detail: "more than 2^32 elements".into(),
        })?;
        let uniforms = Uniforms {
            n,
            iters: params.iters,
            m: params.m,
            c: params.c,
        };
        batch.dispatch(
            &self.kernel,
            &uniforms,
            &[seed.into(), out.into()],
            n.div_ceil(self.wg),
        )
    }

    /// FLOPs for `n` elements (8 chains × 4 lanes × 2 per FMA per step) and bytes moved.
    pub fn cost(n: usize, params: FmaPeakParams) -> Cost {
        Cost {
            bytes: 8 * n as u64,
            flops: n as u64 * params.iters as u64 * 8 * 4 * 2,
        }
    }
}
