//! Mamba-2 language models (transformers' `Mamba2ForCausalLM`): config and weights from a Hugging
//! Face directory, and the model on the GPU. Its f64 CPU model is [`crate::reference::mamba2::Mamba2CpuModel`];
//! [`crate::models::load`] builds it from a directory.

pub mod config;
pub mod model;
pub mod weights;

pub use config::{InProjSplit, Mamba2Config};
pub use model::Mamba2GpuLm;
pub use weights::{Mamba2LayerWeights, Mamba2Weights};
