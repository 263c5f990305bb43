//! # ssm-mla
//!
//! Portable GPU kernels for two sequence-model building blocks — state-space-model scans (HiPPO,
//! Mamba's selective scan, diagonal S4D/S5 scans) and DeepSeek's Multi-head Latent Attention —
//! written in WGSL and run through wgpu on Vulkan, Metal, DX12 or GL. Every kernel has a CPU
//! reference in [`reference`](mod@reference) that mirrors its math in f64, and conformance tests compare the two.
//!
//! The host layer is small:
//! - [`Gpu`]: adapter from the environment (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`), device with the
//!   adapter's own limits and optional features, errors captured into [`Error`] (never the
//!   panicking default handler). Or adopt an app's own device with [`Gpu::from_device`].
//! - [`Tensor`]: a GPU-resident buffer with shape and dtype; ops chain without host round trips.
//! - [`Batch`]: records dispatches from any number of ops into one submission, and times it
//!   with GPU timestamps where offered ([`Timing`]).
//! - [`Gpu::kernel`]: pipelines built once, cached by shader variant and `override` constants.
//!   A variant is a WGSL body composed with flags (`#if VEC4`, `#include "…"`, see [`shader`])
//!   and the interface its op declares; [`shaders::ALL`] lists every variant the ops build.
//!
//! ```no_run
//! use ssm_mla::{Gpu, ops::stream_copy::stream_copy};
//! let gpu = Gpu::new()?;                       // honours WGPU_BACKEND / WGPU_ADAPTER_NAME
//! let x = gpu.upload_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let y = stream_copy(&gpu, &x)?;              // stays on the GPU
//! assert_eq!(gpu.read_f32(&y)?, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
//! # Ok::<(), ssm_mla::Error>(())
//! ```

#![warn(missing_docs)]

pub mod checkpoint;
mod clock;
pub mod compare;
mod config_fields;
pub mod deepseek;
pub mod error;
mod gpu_lm;
pub mod hippo;
pub mod io;
pub mod lm;
pub mod mamba;
pub mod mamba2;
pub mod mla;
pub mod models;
pub mod ops;
pub mod reference;
pub mod rng;
pub mod runtime;
pub mod shader;
pub mod shaders;
pub mod spec;
pub mod suite;
pub mod testing;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use compare::{compare, Comparison, Tolerance};
pub use error::{Error, Result};
pub use io::{HostTensor, IdTensor, SafeTensors};
pub use rng::Rng;
pub use runtime::{Batch, Binding, ResourceCounters, Timing, TimingSource};
pub use runtime::{DType, Element, Gpu, GpuOptions, Kernel, Shader, Tensor, View};
pub use shader::{Access, Flag, Flags, KernelInterface, Variant};
/// The wgpu this crate is built on, so apps adopt devices of the same version.
pub use wgpu;

/// The README's code blocks, compiled as doc tests so the API tour cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
