//! The runtime: everything between an op and wgpu, in one module.
//!
//! - [`context`]: [`Gpu`], one adapter, device and queue from the environment (or adopted from
//!   an app), GPU errors captured into [`crate::Error`] by error scopes;
//! - [`tensor`]: [`Tensor`] (a storage buffer with shape, dtype and the identity of its device),
//!   uploads and readback; [`view`]: [`View`], a strided window of a tensor that ops accept
//!   where they say so (split a packed projection, read another layout) without copies;
//! - [`pipelines`]: compute pipelines built once per composed shader variant and cached;
//! - [`batch`]: [`Batch`], the one place that records GPU work (dispatches of a kernel with a
//!   uniform block and [`Binding`]s, copies, in-order writes), checked before anything is
//!   recorded; `submit` encodes and submits it;
//! - [`timing`]: the one place that times ([`Timing`], GPU timestamps or wall clock);
//! - `pools`: the one reuse policy for uniform, upload and staging buffers and bind groups.
//!
//! Ops are built on this module; nothing here knows about any op.

pub mod batch;
mod binding;
pub mod context;
pub mod pipelines;
pub(crate) mod pools;
pub(crate) mod signal;
mod submit;
pub mod tensor;
pub mod timing;
pub mod view;

pub use batch::Batch;
pub use binding::Binding;
#[cfg(not(target_arch = "wasm32"))]
pub use context::{adapter_from_env, enumerate_adapters};
pub use context::{adapter_from_env_async, describe_adapter, wanted_features};
pub use context::{Gpu, GpuOptions};
pub use pipelines::{Kernel, Shader};
pub use pools::ResourceCounters;
pub use tensor::{DType, Element, Tensor};
pub use timing::{Timing, TimingSource};
pub use view::View;
