//! Shaders and the pipeline cache: the one place that turns WGSL into compute pipelines.
//!
//! Every kernel is a [`Shader`] (a name and its WGSL source, embedded at build time). A pipeline
//! is specialised by WGSL `override` constants and cached under (shader name, entry point,
//! constants), so each specialisation is compiled once per [`Gpu`] however many times an op
//! runs. Layouts come from the shader itself (`layout: None`); bindings follow one convention:
//! `@binding(0)` is the op's uniform parameter block and storage tensors follow from 1 in the
//! order the op lists them.

use crate::error::Result;
use crate::runtime::Gpu;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A WGSL compute shader embedded in the crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shader {
    /// Path under `shaders/` without the extension, e.g. `"ssm/selective_scan"`.
    pub name: &'static str,
    /// The WGSL text.
    pub source: &'static str,
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
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    shader: &'static str,
    entry: &'static str,
    constants: Vec<(String, u64)>,
}

/// Shader modules and pipelines, built once.
#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<Key, Arc<Kernel>>>,
}

impl Gpu {
    /// The pipeline for `shader`'s `main` entry point specialised with `constants`
    /// (`override` name, value), compiled on first use and cached.
    pub fn kernel(&self, shader: &Shader, constants: &[(&str, f64)]) -> Result<Arc<Kernel>> {
        self.kernel_entry(shader, "main", constants)
    }

    /// Like [`Gpu::kernel`] for another entry point.
    pub fn kernel_entry(
        &self,
        shader: &Shader,
        entry: &'static str,
        constants: &[(&str, f64)],
    ) -> Result<Arc<Kernel>> {
        let mut sorted: Vec<(String, u64)> = constants
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_bits()))
            .collect();
        sorted.sort();
        let key = Key {
            shader: shader.name,
            entry,
            constants: sorted,
        };
        if let Some(k) = self.pipelines.pipelines.lock().unwrap().get(&key) {
            return Ok(k.clone());
        }
        let label = format!("{}:{}{:?}", shader.name, entry, constants);
        let kernel = self.scoped(&format!("building pipeline {label}"), || {
            let module = {
                let mut modules = self.pipelines.modules.lock().unwrap();
                modules
                    .entry(shader.name)
                    .or_insert_with(|| {
                        self.device()
                            .create_shader_module(wgpu::ShaderModuleDescriptor {
                                label: Some(shader.name),
                                source: wgpu::ShaderSource::Wgsl(shader.source.into()),
                            })
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
            })
        });
        let kernel = match kernel {
            Ok(k) => Arc::new(k),
            Err(e) => {
                // A module that failed to compile must not stay cached.
                self.pipelines.modules.lock().unwrap().remove(shader.name);
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
