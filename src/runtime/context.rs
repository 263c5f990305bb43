//! The GPU context: one adapter, one device and queue, the pipeline cache and the pools.
//!
//! The adapter comes from the environment like other wgpu tools: `WGPU_BACKEND` picks backends
//! (`vulkan`, `metal`, `dx12`, `gl`), `WGPU_ADAPTER_NAME` picks an adapter by a case-insensitive
//! substring of its name, `WGPU_POWER_PREF` picks high or low power. The device is created with
//! the adapter's own limits (not wgpu's low defaults) and with every optional feature that the
//! kernels can use and the adapter offers: `SHADER_F16`, `SUBGROUP`, `TIMESTAMP_QUERY`.
//! [`GpuOptions`] can turn any of those off, or lower limits, so that fallback paths are testable.
//!
//! [`Gpu::scoped`] wraps every call of the crate that can fail validation in error scopes, so that
//! a failure becomes an [`Error`] for the caller. wgpu's default uncaptured-error handler panics;
//! on a device the crate creates itself it installs one that records the message instead. A device
//! adopted with [`Gpu::from_device`] keeps the app's own handlers: the crate installs none there.
//!
//! Every context has a process-wide unique id, recorded in each [`crate::Tensor`] it makes, so
//! that a tensor of one context passed to another is refused ([`Error::ForeignTensor`]) instead of
//! silently reading or writing memory of another device.

use crate::error::{Error, Result};
use crate::runtime::pipelines::PipelineCache;
use crate::runtime::pools::{BufferKind, Pools};
use crate::runtime::signal;
use crate::runtime::timing::TimestampSlots;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Optional features and limits to withhold from the device, mainly to test fallback paths.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Do not request `SUBGROUP` even if offered (kernels use their shared-memory variant).
    pub disable_subgroups: bool,
    /// Do not request `SHADER_F16` even if offered.
    pub disable_f16: bool,
    /// Do not request `TIMESTAMP_QUERY` even if offered (timing falls back to the wall clock).
    pub disable_timestamps: bool,
    /// Cap `max_storage_buffer_binding_size` (bytes) below the adapter's, to exercise splitting.
    pub max_storage_binding: Option<u64>,
    /// Cap `max_compute_workgroups_per_dimension`, to exercise dispatch splitting.
    pub max_workgroups_per_dimension: Option<u32>,
}

/// The features this crate can make use of.
pub fn wanted_features() -> wgpu::Features {
    wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY
}

/// A GPU device with everything the ops need. `Send + Sync`: share it with `Arc` across threads.
pub struct Gpu {
    id: u64,
    adapter_info: wgpu::AdapterInfo,
    device: wgpu::Device,
    queue: wgpu::Queue,
    features: wgpu::Features,
    limits: wgpu::Limits,
    pub(crate) pipelines: PipelineCache,
    pub(crate) pools: Pools,
    pub(crate) timestamps: Mutex<Option<TimestampSlots>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    lost: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("id", &self.id)
            .field("adapter", &self.adapter_info.name)
            .field("backend", &self.adapter_info.backend)
            .field("features", &self.features)
            .finish()
    }
}

fn instance_from_env() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter the environment's backends offer (honours `WGPU_BACKEND`).
#[cfg(not(target_arch = "wasm32"))]
pub fn enumerate_adapters() -> Vec<wgpu::Adapter> {
    let instance = instance_from_env();
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    pollster::block_on(instance.enumerate_adapters(backends))
}

/// The adapter the environment asks for: `WGPU_ADAPTER_NAME` if set, else the default one.
/// Blocks; [`adapter_from_env_async`] is the same without blocking.
#[cfg(not(target_arch = "wasm32"))]
pub fn adapter_from_env() -> Result<wgpu::Adapter> {
    pollster::block_on(adapter_from_env_async())
}

/// The adapter the environment asks for, awaited: `WGPU_ADAPTER_NAME` if set, else the default
/// one. In a browser there is no environment and the one backend is WebGPU: this is the
/// adapter `navigator.gpu.requestAdapter()` gives.
pub async fn adapter_from_env_async() -> Result<wgpu::Adapter> {
    let instance = instance_from_env();
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        let adapters = instance.enumerate_adapters(backends).await;
        let needle = wanted.to_lowercase();
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&needle))
            .ok_or_else(|| {
                if names.is_empty() {
                    Error::NoAdapter {
                        detail: format!("WGPU_ADAPTER_NAME={wanted:?} but no adapter at all"),
                    }
                } else {
                    Error::AdapterNotFound {
                        wanted,
                        available: names.join(", "),
                    }
                }
            });
    }
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::from_env()
            .unwrap_or(wgpu::PowerPreference::HighPerformance),
        force_fallback_adapter: false,
        compatible_surface: None,
        apply_limit_buckets: false,
    };
    instance
        .request_adapter(&options)
        .await
        .map_err(|e| Error::NoAdapter {
            detail: format!(
                "backends {:?}: {e}",
                wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all())
            ),
        })
}

impl Gpu {
    /// The default adapter from the environment, with all useful features and the adapter's limits.
    /// Blocks until the device exists; [`Gpu::new_async`] is the same without blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Self> {
        Self::with_options(&GpuOptions::default())
    }

    /// Like [`Gpu::new`], withholding the features and limits that `options` names.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_options(options: &GpuOptions) -> Result<Self> {
        pollster::block_on(Self::with_options_async(options))
    }

    /// Create the device on a given adapter (blocks; see [`Gpu::from_adapter_async`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_adapter(adapter: &wgpu::Adapter, options: &GpuOptions) -> Result<Self> {
        pollster::block_on(Self::from_adapter_async(adapter, options))
    }

    /// [`Gpu::new`] awaited: the only way in a browser, where nothing may block.
    pub async fn new_async() -> Result<Self> {
        Self::with_options_async(&GpuOptions::default()).await
    }

    /// [`Gpu::with_options`] awaited.
    pub async fn with_options_async(options: &GpuOptions) -> Result<Self> {
        let adapter = adapter_from_env_async().await?;
        Self::from_adapter_async(&adapter, options).await
    }

    /// Create the device on a given adapter, awaited. Features are those of
    /// [`wanted_features`] the adapter grants (a browser's WebGPU offers f16 and timestamps at
    /// most, never wgpu's subgroups), limits the adapter's own, less what `options` withholds.
    pub async fn from_adapter_async(adapter: &wgpu::Adapter, options: &GpuOptions) -> Result<Self> {
        let info = adapter.get_info();
        let mut features = adapter.features() & wanted_features();
        if options.disable_subgroups {
            features.remove(wgpu::Features::SUBGROUP);
        }
        if options.disable_f16 {
            features.remove(wgpu::Features::SHADER_F16);
        }
        if options.disable_timestamps {
            features.remove(wgpu::Features::TIMESTAMP_QUERY);
        }
        let mut limits = adapter.limits();
        if let Some(cap) = options.max_storage_binding {
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        if let Some(cap) = options.max_workgroups_per_dimension {
            limits.max_compute_workgroups_per_dimension =
                limits.max_compute_workgroups_per_dimension.min(cap);
        }
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("ssm-mla"),
            required_features: features,
            required_limits: limits,
            ..Default::default()
        };
        let (device, queue) =
            adapter
                .request_device(&descriptor)
                .await
                .map_err(|e| Error::RequestDevice {
                    adapter: info.name.clone(),
                    message: e.to_string(),
                })?;
        Ok(Self::adopt(device, queue, info, true))
    }

    /// Adopt a device and queue the application already owns. The crate uses whatever features
    /// and limits that device was created with; kernels pick their fallback paths accordingly.
    /// The device's uncaptured-error handler and device-lost callback stay the app's own: the
    /// crate's work runs inside error scopes, so its errors come back as [`Error`]s and the app's
    /// handler sees only the app's errors. A lost device shows up as a failing call.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let info = device.adapter_info();
        Self::adopt(device, queue, info, false)
    }

    /// Wrap `device`; `owned` says whether the crate created it and so may install its
    /// (non-panicking) uncaptured-error handler and its device-lost callback.
    fn adopt(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter_info: wgpu::AdapterInfo,
        owned: bool,
    ) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let uncaptured = Arc::new(Mutex::new(None::<String>));
        let lost = Arc::new(Mutex::new(None::<String>));
        if owned {
            let sink = uncaptured.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| e.to_string());
            }));
            let lost_sink = lost.clone();
            device.set_device_lost_callback(move |reason, message| {
                let mut slot = lost_sink.lock().unwrap_or_else(|p| p.into_inner());
                *slot = Some(format!("{reason:?}: {message}"));
            });
        }
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            features: device.features(),
            limits: device.limits(),
            adapter_info,
            device,
            queue,
            pipelines: PipelineCache::default(),
            pools: Pools::default(),
            timestamps: Mutex::new(None),
            uncaptured,
            lost,
        }
    }

    /// This context's process-wide unique id (recorded in every tensor it makes).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Error naming tensor `name` unless this context made it ([`Error::ForeignTensor`]).
    pub fn expect_own(&self, name: &str, tensor: &crate::Tensor) -> Result<()> {
        self.check_owner(tensor.gpu_id(), || format!("tensor `{name}`"))
    }

    /// Error unless `owner` is this context's id; `what` names the tensor in the message.
    pub(crate) fn check_owner(&self, owner: u64, what: impl FnOnce() -> String) -> Result<()> {
        if owner != self.id {
            return Err(Error::ForeignTensor {
                tensor: what(),
                tensor_gpu: owner,
                gpu: self.id,
            });
        }
        Ok(())
    }

    /// The wgpu device (for apps that mix their own work with this crate's).
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Adapter name, backend, driver, device type.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.adapter_info
    }

    /// Features the device was created with.
    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    /// Limits the device was created with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Whether kernels may use subgroup operations.
    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }

    /// Whether kernels may use f16 arithmetic and storage.
    pub fn has_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    /// Whether GPU timestamps are available for timing.
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// One line describing the adapter: name, backend, device type, driver.
    pub fn describe(&self) -> String {
        describe_adapter(&self.adapter_info)
    }

    /// Run `f` inside validation and out-of-memory error scopes; a captured error (or one that
    /// reached the uncaptured handler, or a lost device) becomes an [`Error`] naming `context`.
    ///
    /// In a browser the scopes' verdicts arrive later through the event loop and nothing may
    /// wait for them here: the verdicts are collected in the background and an error among them
    /// is returned by the next awaited call ([`Gpu::scoped_async`], so every readback).
    pub fn scoped<T>(&self, context: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            pollster::block_on(self.scoped_async(context, f))
        }
        #[cfg(target_arch = "wasm32")]
        {
            self.check_lost(context)?;
            let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let value = f();
            let (validation, oom) = (validation.pop(), oom.pop());
            let sink = self.uncaptured.clone();
            let what = context.to_string();
            wasm_bindgen_futures::spawn_local(async move {
                let message = match (validation.await, oom.await) {
                    (Some(e), _) => Some(format!("{what}: {e}")),
                    (None, Some(_)) => Some(format!("{what}: out of GPU memory")),
                    (None, None) => None,
                };
                if let Some(message) = message {
                    let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
                    slot.get_or_insert(message);
                }
            });
            self.take_uncaptured(context)?;
            value
        }
    }

    /// [`Gpu::scoped`] with the scopes' verdicts awaited: `f` runs synchronously, then the
    /// validation and out-of-memory scopes are popped and any captured error is returned.
    /// Natively the verdicts are ready at once; in a browser this is where errors of earlier,
    /// unawaited calls surface too.
    pub async fn scoped_async<T>(&self, context: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.check_lost(context)?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let (validation, oom) = (validation.pop(), oom.pop());
        let validation_error = validation.await;
        let oom_error = oom.await;
        if let Some(e) = validation_error {
            return Err(Error::Gpu {
                context: context.to_string(),
                message: e.to_string(),
            });
        }
        if oom_error.is_some() {
            return Err(Error::OutOfMemory {
                context: context.to_string(),
            });
        }
        self.take_uncaptured(context)?;
        self.check_lost(context)?;
        value
    }

    /// An error that reached the uncaptured handler since the last check, as an [`Error::Gpu`].
    fn take_uncaptured(&self, context: &str) -> Result<()> {
        let uncaptured = self
            .uncaptured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match uncaptured {
            Some(message) => Err(Error::Gpu {
                context: context.to_string(),
                message,
            }),
            None => Ok(()),
        }
    }

    fn check_lost(&self, context: &str) -> Result<()> {
        match self.lost.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(message) => Err(Error::Device {
                context: context.to_string(),
                message: format!("device lost ({message})"),
            }),
            None => Ok(()),
        }
    }

    /// Block until all submitted work is done. In a browser the device advances on its own and
    /// nothing may block: this returns at once there, and [`Gpu::wait_async`] waits.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Device {
                context: "waiting for the GPU".into(),
                message: e.to_string(),
            })
    }

    /// Wait until all submitted work is done, without blocking: natively this polls the device
    /// like [`Gpu::wait`]; in a browser it awaits the queue's `onSubmittedWorkDone`.
    pub async fn wait_async(&self) -> Result<()> {
        let (tx, rx) = signal::channel();
        self.queue.on_submitted_work_done(move || tx.send(()));
        self.wait()?;
        rx.await.ok_or_else(|| Error::Device {
            context: "waiting for the GPU".into(),
            message: "the queue dropped its completion callback".into(),
        })
    }

    /// Bind groups and uniform buffers created so far (a steady-state loop adds none).
    pub fn resource_counters(&self) -> crate::runtime::ResourceCounters {
        self.pools.counters()
    }

    /// How many readback staging buffers are pooled for reuse.
    pub fn pooled_staging_buffers(&self) -> usize {
        self.pools.pooled(BufferKind::Staging)
    }

    /// Largest storage binding in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }
}

/// One line for an adapter: name, backend, device type, driver.
pub fn describe_adapter(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} ({:?}, {:?}, driver {} {})",
        info.name, info.backend, info.device_type, info.driver, info.driver_info
    )
}
