//! GPU ops: each one is a `.wgsl` kernel under `shaders/` plus the host code that validates
//! shapes, builds (cached) pipelines and records dispatches into a [`crate::Batch`]. Every op has a
//! CPU reference of the same name in the `reference` module; the shapes both share, and their
//! validation, are in the `spec` module (re-exported here).

pub mod absorbed_attention;
pub mod causal_conv1d;
pub mod diagonal_scan;
pub mod embedding;
pub mod fma_peak;
pub mod latent_cache;
pub mod matmul;
pub mod moe;
pub mod rmsnorm;
pub mod rope;
pub mod scan_strategy;
pub mod selective_scan;
pub mod ssd_scan;
pub mod state_update;
pub mod stream_copy;

/// Work an op must do, for roofline accounting: bytes that must move (each input
/// read once, each output written once) and floating-point operations (an FMA is two; an exp, a
/// divide or a compare-and-select is one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Bytes read plus bytes written.
    pub bytes: u64,
    /// Floating-point operations.
    pub flops: u64,
}

use crate::error::Result;
use crate::runtime::{DType, Gpu};
use crate::shader::{Flag, Flags, Variant};

/// The storage flags of a half-capable kernel's stored tensor, in registry order: f16 in u32
/// words, native f16, bf16. With the plain (f32) variant these are every storage variant.
pub const HALF_STORAGE: [Flags; 3] = [
    Flags::of(&[Flag::F16]),
    Flags::of(&[Flag::F16, Flag::NativeF16]),
    Flags::of(&[Flag::Bf16]),
];

/// `v` composed additionally with each of [`HALF_STORAGE`]'s flags.
pub const fn half_variants(v: Variant) -> [Variant; 3] {
    [
        v.shader
            .variant(v.flags.union(HALF_STORAGE[0]), v.interface),
        v.shader
            .variant(v.flags.union(HALF_STORAGE[1]), v.interface),
        v.shader
            .variant(v.flags.union(HALF_STORAGE[2]), v.interface),
    ]
}

/// The flags of a kernel's *second* stored role (see `shaders/common/storage.wgsl`'s `_b`
/// accessors), in the order of [`HALF_STORAGE`]: f16 in u32 words, native f16, bf16.
pub const HALF_STORAGE_B: [Flags; 3] = [
    Flags::of(&[Flag::F16B]),
    Flags::of(&[Flag::F16B, Flag::NativeF16B]),
    Flags::of(&[Flag::Bf16B]),
];

/// `v` composed additionally with each of [`HALF_STORAGE_B`]'s flags (the second role half,
/// the first as `v` has it).
pub const fn half_variants_b(v: Variant) -> [Variant; 3] {
    [
        v.shader
            .variant(v.flags.union(HALF_STORAGE_B[0]), v.interface),
        v.shader
            .variant(v.flags.union(HALF_STORAGE_B[1]), v.interface),
        v.shader
            .variant(v.flags.union(HALF_STORAGE_B[2]), v.interface),
    ]
}

/// `v` composed additionally with both roles in the same half dtype, in [`HALF_STORAGE`] order.
pub const fn half_variants_both(v: Variant) -> [Variant; 3] {
    let [a, b, c] = half_variants(v);
    [
        a.shader
            .variant(a.flags.union(HALF_STORAGE_B[0]), a.interface),
        b.shader
            .variant(b.flags.union(HALF_STORAGE_B[1]), b.interface),
        c.shader
            .variant(c.flags.union(HALF_STORAGE_B[2]), c.interface),
    ]
}

const fn with(v: Variant, flags: Flags) -> Variant {
    v.shader.variant(v.flags.union(flags), v.interface)
}

/// `v` with every (second role, first role) storage pair whose second role is half: for each of
/// f16 in u32 words, native f16 and bf16 as the second role, the first role f32, f16 (bound as
/// the second role's f16 is) or bf16. A device binds f16 natively for both roles or for
/// neither, so native f16 never meets packed f16 in one variant.
pub const fn half_b_variants(v: Variant) -> [Variant; 10] {
    let [f16, f16n, bf16] = HALF_STORAGE;
    let [f16_b, f16n_b, bf16_b] = HALF_STORAGE_B;
    [
        with(v, f16_b),
        with(v, f16_b.union(f16)),
        with(v, f16_b.union(bf16)),
        with(v, f16n_b),
        with(v, f16n_b.union(f16n)),
        with(v, f16n_b.union(bf16)),
        with(v, bf16_b),
        with(v, bf16_b.union(f16)),
        with(v, bf16_b.union(f16n)),
        with(v, bf16_b.union(bf16)),
    ]
}

/// [`storage_flags`] for a kernel's second stored role: none for f32, `F16_B` (plus
/// `NATIVE_F16_B` where the device has `SHADER_F16`) for f16, `BF16_B` for bf16.
pub fn storage_flags_b(gpu: &Gpu, name: &str, dtype: DType) -> Result<Flags> {
    dtype.expect_float(name)?;
    Ok(match dtype {
        DType::F16 if gpu.has_f16() => HALF_STORAGE_B[1],
        DType::F16 => HALF_STORAGE_B[0],
        DType::BF16 => HALF_STORAGE_B[2],
        _ => Flags::NONE,
    })
}

/// Whether kernels may share loaded values across subgroups of at least 8 invocations by
/// broadcast or shuffle (the `SUBGROUP` variants of `selective_scan`, `state_update` and the MoE
/// experts): on CPU adapters with subgroups only. On llvmpipe each storage load instruction is
/// a loop over the SIMD lanes, so one load shared by the subgroup saves 7; a GPU serves those
/// same-address loads from cache already.
pub(crate) fn shares_loads_by_subgroup(gpu: &Gpu) -> bool {
    let info = gpu.adapter_info();
    info.device_type == wgpu::DeviceType::Cpu && gpu.has_subgroups() && info.subgroup_min_size >= 8
}

/// Threads a CPU device runs workgroups on: llvmpipe starts one per CPU of this machine (4
/// where the count is unknown, as in a browser).
pub(crate) fn cpu_threads() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get())
}

/// K for `common/grid`'s interleave: the contiguous shares a CPU device splits a dispatch's
/// workgroups into (one per thread); 1 on a GPU, which schedules workgroups dynamically.
pub(crate) fn grid_shares(gpu: &Gpu) -> usize {
    if gpu.adapter_info().device_type == wgpu::DeviceType::Cpu {
        cpu_threads()
    } else {
        1
    }
}

/// The storage flags for a stored tensor of `dtype` on `gpu`: none for f32, `F16` (plus
/// `NATIVE_F16` where the device has `SHADER_F16`) for f16, `BF16` for bf16. `name` names the
/// tensor in the error for a dtype that is not a float.
pub fn storage_flags(gpu: &Gpu, name: &str, dtype: DType) -> Result<Flags> {
    dtype.expect_float(name)?;
    Ok(match dtype {
        DType::F16 if gpu.has_f16() => HALF_STORAGE[1],
        DType::F16 => HALF_STORAGE[0],
        DType::BF16 => HALF_STORAGE[2],
        _ => Flags::NONE,
    })
}
