//! `diagonal_scan`: the diagonal complex LTI scan of S4D / S5, parallel in time.
//! `x_t = Λ̄ ⊙ x_{t−1} + B̄ u_t`, `y_t = 2·Re(C̃·x_t) + D·u_t`, with `(Λ̄, B̄)` the ZOH, bilinear or
//! Euler discretisation of `(Λ, B̃)` with the channel's step Δ, computed inside the kernel.
//!
//! Dtypes: `u` and `y` share u's dtype, f32, f16 or bf16 (halves widened on load, y rounded to
//! nearest even once, on store; the math is f32); the parameters are f32. A mismatch is an
//! [`Error::DType`] naming the tensor. With half y and N > 16 the row-sequential strategy would
//! round y once per pass of 16 modes, so the chunked one runs instead
//! ([`DiagonalScan::strategy_for_dtype`]).
//!
//! Layouts (row-major): `u`, `y` (Bt, H, L); `lambda`, `b`, `c` (H, N, 2), complex as
//! interleaved `[re, im]`; `dt` (H) the raw step Δ > 0 (not its logarithm: pass `exp(log_dt)`);
//! `d` (H). N ≤ [`MAX_MODES`] complex modes per channel (conjugate-pair convention: a real system
//! of size 2N). Seven storage buffers.
//!
//! One dispatch per call for any L, with one of two strategies ([`ScanStrategy`], shared with
//! the selective scan) taking the same bindings, inputs and outputs:
//!
//! - **row-sequential** (`shaders/ssm/diagonal_scan_rows.wgsl`): one invocation per (batch,
//!   channel) row discretises 16 modes at a time into registers and walks L sequentially (passes
//!   over blocks of 16 modes for larger N, later passes adding into y). No barriers, no shared
//!   memory; latency L dependent steps.
//! - **chunked parallel-in-time**: one workgroup per row walks the sequence in chunks of `WG·T`
//!   steps with a workgroup scan of complex pairs per mode and a carried prefix, so no workgroup
//!   waits on another (`shaders/ssm/diagonal_scan.wgsl`). The scan uses subgroup shuffles when
//!   the device has them (its `SUBGROUP` variant) and shared memory otherwise.
//!
//! [`ScanStrategy::Auto`] decides as for the selective scan
//! ([`ScanStrategy::resolve_sizes`] with rows = Bt·H, n = N): always row-sequential on a CPU
//! device, where every workgroup barrier is a fiber switch; on a GPU chunked only for few long
//! rows (`Bt·H·ceil(N/16) < 2048` and `L > 512`). Measured on lavapipe (release
//! `bench --quick`, GPU timestamps, Bt=1 H=256 L=256 N=16, ZOH, approximate: a CI job shared
//! the machine): before this strategy, chunked only, 27.3 ms GPU (f64 CPU reference 6.5 ms in
//! the same run); now row-sequential 1.3 ms vs chunked 17.2 ms in one run (reference 2.3 ms),
//! ~13× faster than the chunked scan. 8 modes per register block instead of 16 measured slower
//! (two passes at N = 16: 2.9 vs 30.7 ms chunked in a busier run). Both strategies are tested on
//! every device through [`DiagonalScan::with_strategy`].
//!
//! [`DiagonalSsmHost`] builds the inputs from a HiPPO-LegS diagonalisation or an S4D-Lin/Inv
//! initialisation ([`crate::hippo::diagonal`]).

use crate::error::{Error, Result};
use crate::hippo::Discretisation;
use crate::ops::scan_strategy::ScanStrategy;
use crate::ops::Cost;
use crate::runtime::Batch;
use crate::runtime::Gpu;
use crate::runtime::{DType, Tensor};
use crate::runtime::{Kernel, Shader};
use crate::shader::{wgsl, Access, Flag, Flags, KernelInterface, Variant};
use std::sync::Arc;

/// The chunked parallel-in-time body.
pub const SHADER: Shader = wgsl!("ssm/diagonal_scan");

/// The row-sequential body (one for every device; no subgroup operations).
pub const ROWS_SHADER: Shader = wgsl!("ssm/diagonal_scan_rows");

/// Invocations per workgroup of the chunked kernel.
pub const WG: u32 = 64;
/// Steps per invocation per chunk; a chunk is `WG·T` steps.
pub const T: u32 = 8;
/// Most complex modes per channel (workgroup memory holds the discretised modes).
pub const MAX_MODES: usize = 128;

/// The per-channel SSM parameters on the GPU: `lambda`, `b`, `c` (H, N, 2), `dt`, `d` (H).
#[derive(Clone, Debug)]
pub struct DiagonalSsmTensors {
    /// Continuous-time modes Λ (H, N, 2).
    pub lambda: Tensor,
    /// Input projection B̃ (H, N, 2).
    pub b: Tensor,
    /// Output projection C̃ (H, N, 2).
    pub c: Tensor,
    /// Raw step Δ per channel (H).
    pub dt: Tensor,
    /// Feed-through D per channel (H).
    pub d: Tensor,
}

impl DiagonalSsmTensors {
    /// (H, N) after checking every tensor's dtype and shape.
    pub fn dims(&self) -> Result<(usize, usize)> {
        for (name, t) in [
            ("lambda", &self.lambda),
            ("b", &self.b),
            ("c", &self.c),
            ("dt", &self.dt),
            ("d", &self.d),
        ] {
            t.expect_dtype(name, DType::F32)?;
        }
        let (h, n) = self.shapes().dims()?;
        if n > MAX_MODES {
            return Err(Error::shape(
                "lambda",
                format!("(H, N, 2) with N ≤ {MAX_MODES}"),
                self.lambda.shape(),
            ));
        }
        Ok((h, n))
    }

    /// The shapes of the five tensors.
    pub fn shapes(&self) -> SsmShapes<'_> {
        SsmShapes {
            lambda: self.lambda.shape(),
            b: self.b.shape(),
            c: self.c.shape(),
            dt: self.dt.shape(),
            d: self.d.shape(),
        }
    }
}

pub use crate::spec::diagonal_scan::{DiagonalSsmHost, Dims, SsmShapes};

impl DiagonalSsmHost {
    /// Upload to the GPU.
    pub fn upload(&self, gpu: &Gpu) -> Result<DiagonalSsmTensors> {
        let shape = [self.channels, self.modes, 2];
        Ok(DiagonalSsmTensors {
            lambda: gpu.upload_f32(&shape, &self.lambda)?,
            b: gpu.upload_f32(&shape, &self.b)?,
            c: gpu.upload_f32(&shape, &self.c)?,
            dt: gpu.upload_f32(&[self.channels], &self.dt)?,
            d: gpu.upload_f32(&[self.channels], &self.d)?,
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    rows: u32,
    channels: u32,
    len: u32,
    modes: u32,
    method: u32,
    _pad: [u32; 3],
}

/// What all three kernels are passed: their `Uniforms`, then u, the SSM's tensors and y.
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[
        ("u", Access::Read),
        ("lambda", Access::Read),
        ("b_tilde", Access::Read),
        ("c_tilde", Access::Read),
        ("dt", Access::Read),
        ("d_skip", Access::Read),
        ("y", Access::ReadWrite),
    ],
};

/// The chunked kernel with a shared-memory workgroup scan (any device).
pub const CHUNKED: Variant = SHADER.variant(Flags::NONE, INTERFACE);

/// The chunked kernel with a subgroup workgroup scan (devices with `SUBGROUP`).
pub const CHUNKED_SUBGROUP: Variant = SHADER.variant(Flags::of(&[Flag::Subgroup]), INTERFACE);

/// The row-sequential kernel.
pub const ROWS: Variant = ROWS_SHADER.variant(Flags::NONE, INTERFACE);

/// [`CHUNKED`] with half u and y, in [`crate::ops::HALF_STORAGE`] order: f16 in u32 words,
/// native f16, bf16.
pub const CHUNKED_HALF: [Variant; 3] = crate::ops::half_variants(CHUNKED);

/// [`CHUNKED_SUBGROUP`] with half u and y, in [`crate::ops::HALF_STORAGE`] order.
pub const CHUNKED_SUBGROUP_HALF: [Variant; 3] = crate::ops::half_variants(CHUNKED_SUBGROUP);

/// [`ROWS`] reading u and writing y 4 steps per access (f32, L % 4 = 0): what CPU adapters run
/// on such rows, where every access is a loop over the SIMD lanes.
pub const ROWS_VEC4: Variant = ROWS_SHADER.variant(Flags::of(&[Flag::Vec4]), INTERFACE);

/// [`ROWS`] with half u and y, in [`crate::ops::HALF_STORAGE`] order.
pub const ROWS_HALF: [Variant; 3] = crate::ops::half_variants(ROWS);

/// Modes the row-sequential kernel holds in registers per pass (`NB` in its WGSL).
const ROW_MODES: usize = 16;

fn method_code(method: Discretisation) -> u32 {
    match method {
        Discretisation::Zoh => 0,
        Discretisation::Bilinear => 1,
        Discretisation::ForwardEuler => 2,
        Discretisation::BackwardEuler => 3,
    }
}

/// Rows per workgroup of the row-sequential kernel: 64, or 16 when 64 would leave fewer than 16
/// workgroups (small workgroups keep a CPU device's threads busy at small sizes).
fn rows_per_workgroup(rows: usize) -> usize {
    if rows >= 64 * 16 {
        64
    } else {
        16
    }
}

/// A built diagonal-scan op: the chunked pipeline and the row-sequential ones (two workgroup
/// sizes), and the strategy to pick between them.
#[derive(Clone, Debug)]
pub struct DiagonalScan {
    kernel: Arc<Kernel>,
    rows: Arc<Kernel>,
    rows_small: Arc<Kernel>,
    subgroups: bool,
    strategy: ScanStrategy,
    device: wgpu::DeviceType,
}

impl DiagonalScan {
    /// Build (or fetch from the cache) the pipelines with [`ScanStrategy::Auto`].
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Self::with_strategy(gpu, ScanStrategy::Auto)
    }

    /// Build (or fetch from the cache) the pipelines for `strategy`: the row-sequential kernel
    /// and the chunked one (its subgroup variant when the device has subgroups and the workgroup
    /// holds whole subgroups, else the shared-memory one).
    pub fn with_strategy(gpu: &Gpu, strategy: ScanStrategy) -> Result<Self> {
        let info = gpu.adapter_info();
        let max_sg = info.subgroup_max_size.max(1);
        let subgroups = gpu.has_subgroups() && max_sg <= WG && WG % max_sg == 0;
        let chunked = if subgroups {
            &CHUNKED_SUBGROUP
        } else {
            &CHUNKED
        };
        let kernel = gpu.kernel(chunked, &[("WG", WG as f64), ("T", T as f64)])?;
        Ok(Self {
            kernel,
            rows: gpu.kernel(&ROWS, &[("WG", 64.0)])?,
            rows_small: gpu.kernel(&ROWS, &[("WG", 16.0)])?,
            subgroups,
            strategy,
            device: info.device_type,
        })
    }

    /// Whether the row-sequential kernel runs f32 rows of `len` steps as [`ROWS_VEC4`]: on CPU
    /// devices, for L % 4 = 0 (u and y are bound whole, so every row starts on a vec4).
    pub fn rows_read_vec4(&self, len: usize) -> bool {
        self.device == wgpu::DeviceType::Cpu && len % 4 == 0
    }

    /// The strategy this op was built with (possibly `Auto`).
    pub fn strategy(&self) -> ScanStrategy {
        self.strategy
    }

    /// The concrete strategy a call with these sizes records (never `Auto`).
    pub fn strategy_for(&self, dims: Dims) -> ScanStrategy {
        self.strategy.resolve_sizes(
            dims.batch * dims.channels,
            dims.modes,
            dims.len,
            self.device,
        )
    }

    /// The concrete strategy a call with these sizes and u of `dtype` records (never `Auto`):
    /// [`Self::strategy_for`], except that half y with N > 16 always runs chunked (the
    /// row-sequential kernel adds its passes of 16 modes in y, which would round y to the half
    /// once per pass; the chunked kernel sums all N in registers and rounds once).
    pub fn strategy_for_dtype(&self, dims: Dims, dtype: DType) -> ScanStrategy {
        if dtype.is_half() && dims.modes > ROW_MODES {
            return ScanStrategy::ChunkedParallel;
        }
        self.strategy_for(dims)
    }

    /// Whether the chunked strategy runs its subgroup variant (the row-sequential kernel needs
    /// no subgroup operations).
    pub fn uses_subgroups(&self) -> bool {
        self.subgroups
    }

    /// Record `y ← scan(u)` with `method` (any of the four; ZOH and bilinear are the usual ones).
    /// `u`, `y`: (Bt, H, L), L ≥ 1.
    pub fn record(
        &self,
        batch: &mut Batch,
        u: &Tensor,
        ssm: &DiagonalSsmTensors,
        y: &Tensor,
        method: Discretisation,
    ) -> Result<()> {
        let (h, n) = ssm.dims()?;
        let dims = Dims::from_shapes(u.shape(), &ssm.shapes())?;
        let (bt, l) = (dims.batch, dims.len);
        let act = u.dtype();
        act.expect_float("u")?;
        if y.dtype() != act {
            return Err(Error::DType {
                name: "y".into(),
                expected: format!("{act} (u's dtype)"),
                got: y.dtype().to_string(),
            });
        }
        u.expect("u", "(Bt, H, L)", &[bt, h, l], act)?;
        y.expect("y", "(Bt, H, L) like u", &[bt, h, l], act)?;
        let rows = bt * h;
        if u.len() > u32::MAX as usize || rows > u32::MAX as usize {
            return Err(Error::Limit {
                what: format!("a diagonal scan of shape {:?}", u.shape()),
                detail: "more than 2^32 elements".into(),
            });
        }
        // Half u and y: the variant of the same body with the storage flags (cached).
        let gpu = batch.gpu();
        let storage = crate::ops::storage_flags(gpu, "u", act)?;
        let half = storage != Flags::NONE;
        let (kernel, groups) = match self.strategy_for_dtype(dims, act) {
            ScanStrategy::ChunkedParallel if half => {
                let base = if self.subgroups {
                    CHUNKED_SUBGROUP
                } else {
                    CHUNKED
                };
                let v = SHADER.variant(base.flags.union(storage), INTERFACE);
                (gpu.kernel(&v, &[("WG", WG as f64), ("T", T as f64)])?, rows)
            }
            ScanStrategy::ChunkedParallel => (self.kernel.clone(), rows),
            _ => {
                let w = rows_per_workgroup(rows);
                let k = match (half, w) {
                    (false, _) if self.rows_read_vec4(l) => {
                        gpu.kernel(&ROWS_VEC4, &[("WG", w as f64)])?
                    }
                    (true, _) => gpu.kernel(
                        &ROWS_SHADER.variant(storage, INTERFACE),
                        &[("WG", w as f64)],
                    )?,
                    (false, 64) => self.rows.clone(),
                    (false, _) => self.rows_small.clone(),
                };
                (k, rows.div_ceil(w))
            }
        };
        let uniforms = Uniforms {
            rows: rows as u32,
            channels: h as u32,
            len: l as u32,
            modes: n as u32,
            method: method_code(method),
            _pad: [0; 3],
        };
        batch.dispatch(
            &kernel,
            &uniforms,
            &[
                u.into(),
                (&ssm.lambda).into(),
                (&ssm.b).into(),
                (&ssm.c).into(),
                (&ssm.dt).into(),
                (&ssm.d).into(),
                y.into(),
            ],
            groups as u32,
        )
    }

    /// Bytes (u, y and the parameters once) and FLOPs of the sequential recurrence: per step
    /// and mode a complex multiply-add (8) and `2·Re(C̃·x)` accumulated (4), per step `D·u` (2);
    /// discretisation per (h, n) ≈ 20. The chunked parallel scan does about twice the recurrence's
    /// work; the row-sequential walk does exactly it.
    pub fn cost(dims: Dims) -> Cost {
        Self::cost_as(dims, DType::F32)
    }

    /// [`Self::cost`] with u and y of `dtype`, counted at their real width (the parameters at 4
    /// bytes).
    pub fn cost_as(dims: Dims, dtype: DType) -> Cost {
        let Dims {
            batch,
            channels,
            len,
            modes,
        } = dims;
        let elements = (batch * channels * len) as u64;
        Cost {
            bytes: dtype.size() as u64 * 2 * elements
                + 4 * (6 * (channels * modes) as u64 + 2 * channels as u64),
            flops: elements * (12 * modes as u64 + 2) + 20 * (channels * modes) as u64,
        }
    }
}

/// Run the scan once on fresh tensors and read `y` back (convenience for examples and the CLI).
pub fn diagonal_scan(
    gpu: &Gpu,
    u: &Tensor,
    ssm: &DiagonalSsmTensors,
    method: Discretisation,
) -> Result<Tensor> {
    let op = DiagonalScan::new(gpu)?;
    let y = gpu.empty(u.shape(), u.dtype())?;
    let mut batch = gpu.batch();
    op.record(&mut batch, u, ssm, &y, method)?;
    batch.run()?;
    Ok(y)
}
