//! Shaders and the pipeline cache: the one place that turns WGSL into compute pipelines.
//!
//! A kernel is built from a [`Variant`] (a shader body composed with its flags, see
//! [`crate::shader`], plus the interface it keeps with its op) or, ad hoc, from a bare
//! [`Shader`] body. The composed module is created once per (body, flags); a pipeline is
//! specialised by WGSL `override` constants and cached under (body, flags, entry point,
//! constants), so each specialisation is compiled once per [`Gpu`] however many times an op
//! runs. Layouts come from the shader itself (`layout: None`); bindings follow one convention:
//! `@binding(0)` is the op's uniform parameter block and storage tensors follow from 1 in the
//! order the op lists them ([`KernelInterface`]). The crate's own bodies are built without
//! wgpu's loop bounding ([`CRATE_SHADER_CHECKS`]); an app's bodies keep every check.

use crate::error::Result;
use crate::runtime::Gpu;
use crate::shader::{Flags, KernelInterface, Variant};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use crate::shader::Shader;

/// The runtime checks of the crate's own bodies: all of wgpu's except loop bounding. That check
/// adds a counter and an exit to every loop so that a loop that never ends cannot be assumed
/// away by the driver's compiler; the counter also keeps the compiler from unrolling the loops
/// that index register arrays. On lavapipe (`bench --quick`, back to back) dropping it made the
/// selective scan 1.2× and the absorbed decode attention 1.25× faster; on a GPU it is one
/// integer add and compare per iteration less.
const CRATE_SHADER_CHECKS: wgpu::ShaderRuntimeChecks = {
    let mut checks = wgpu::ShaderRuntimeChecks::checked();
    checks.force_loop_bounding = false;
    checks
};

/// What [`Gpu::kernel`] builds from: a [`Variant`], or a bare [`Shader`] body (no flags and no
/// declared interface, so its dispatches are not checked against one: for ad-hoc kernels).
pub trait KernelSource {
    /// The body, its flags and the declared interface.
    fn parts(&self) -> (Shader, Flags, Option<KernelInterface>);
}

impl KernelSource for Shader {
    fn parts(&self) -> (Shader, Flags, Option<KernelInterface>) {
        (*self, Flags::NONE, None)
    }
}

impl KernelSource for Variant {
    fn parts(&self) -> (Shader, Flags, Option<KernelInterface>) {
        (self.shader, self.flags, Some(self.interface))
    }
}

/// A compiled, specialised compute pipeline plus what is needed to bind it.
#[derive(Debug)]
pub struct Kernel {
    /// Cache key, for labels and errors.
    pub label: String,
    /// The pipeline.
    pub pipeline: wgpu::ComputePipeline,
    /// Bind group 0's layout, derived from the shader.
    pub layout: wgpu::BindGroupLayout,
    /// Id of the [`Gpu`] that built it (a pipeline cannot run on another device).
    pub(crate) gpu: u64,
    /// The interface its op declared (`None` for a kernel built from a bare [`Shader`]).
    pub interface: Option<KernelInterface>,
}

impl Kernel {
    /// Storage binding `i` (0-based, as the op passes them) by its declared name where known.
    pub fn describe_binding(&self, i: usize) -> String {
        match &self.interface {
            Some(interface) => interface.describe_binding(i),
            None => format!("binding {}", i + 1),
        }
    }

    /// Check a dispatch's parameter block size and binding count against the declaration.
    pub(crate) fn check_dispatch(&self, params: usize, bindings: usize) -> Result<()> {
        match &self.interface {
            Some(interface) => interface.check_dispatch(&self.label, params, bindings),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    shader: &'static str,
    flags: Flags,
    entry: &'static str,
    constants: Vec<(String, u64)>,
    interface: Option<KernelInterface>,
}

/// Shader modules (one per composed variant) and pipelines, built once.
#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<(&'static str, Flags), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<Key, Arc<Kernel>>>,
}

impl Gpu {
    /// The pipeline for `source`'s `main` entry point specialised with `constants`
    /// (`override` name, value), compiled on first use and cached.
    pub fn kernel(
        &self,
        source: &impl KernelSource,
        constants: &[(&str, f64)],
    ) -> Result<Arc<Kernel>> {
        self.kernel_entry(source, "main", constants)
    }

    /// Like [`Gpu::kernel`] for another entry point.
    pub fn kernel_entry(
        &self,
        source: &impl KernelSource,
        entry: &'static str,
        constants: &[(&str, f64)],
    ) -> Result<Arc<Kernel>> {
        let (shader, flags, interface) = source.parts();
        let mut sorted: Vec<(String, u64)> = constants
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_bits()))
            .collect();
        sorted.sort();
        let key = Key {
            shader: shader.name,
            flags,
            entry,
            constants: sorted,
            interface,
        };
        if let Some(k) = self.pipelines.pipelines.lock().unwrap().get(&key) {
            return Ok(k.clone());
        }
        let name = shader.label(flags);
        let label = format!("{name}:{entry}{constants:?}");
        let module_key = (shader.name, flags);
        // Composing is cheap string work; it only happens when a pipeline is not cached yet.
        let wgsl = shader.compose(flags)?;
        let kernel = self.scoped(&format!("building pipeline {label}"), || {
            let module = {
                let mut modules = self.pipelines.modules.lock().unwrap();
                modules
                    .entry(module_key)
                    .or_insert_with(|| {
                        let desc = wgpu::ShaderModuleDescriptor {
                            label: Some(&name),
                            source: wgpu::ShaderSource::Wgsl(wgsl.into()),
                        };
                        if shader.embedded {
                            // SAFETY: the one check relaxed is loop bounding, which only
                            // guards against loops that never end; every loop in the crate's
                            // bodies ends (tests/shader_loops.rs). Bounds and division checks
                            // stay.
                            unsafe {
                                self.device()
                                    .create_shader_module_trusted(desc, CRATE_SHADER_CHECKS)
                            }
                        } else {
                            self.device().create_shader_module(desc)
                        }
                    })
                    .clone()
            };
            let pipeline =
                self.device()
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(&label),
                        layout: None,
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants,
                            zero_initialize_workgroup_memory: false,
                        },
                        cache: None,
                    });
            let layout = pipeline.get_bind_group_layout(0);
            Ok(Kernel {
                label: label.clone(),
                pipeline,
                layout,
                gpu: self.id(),
                interface,
            })
        });
        let kernel = match kernel {
            Ok(k) => Arc::new(k),
            Err(e) => {
                // A module that failed to compile must not stay cached.
                self.pipelines.modules.lock().unwrap().remove(&module_key);
                return Err(e);
            }
        };
        self.pipelines
            .pipelines
            .lock()
            .unwrap()
            .insert(key, kernel.clone());
        Ok(kernel)
    }

    /// How many pipelines are cached (for tests that check nothing is rebuilt per call).
    pub fn cached_pipelines(&self) -> usize {
        self.pipelines.pipelines.lock().unwrap().len()
    }
}
