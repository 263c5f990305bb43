//! Mamba-2 language models (transformers' `Mamba2ForCausalLM`): config and weights from a Hugging
//! Face directory. Its f64 CPU model is [`crate::reference::mamba2::Mamba2CpuModel`];
//! [`crate::models::load`] builds it from a directory.

pub mod config;
pub mod weights;

pub use config::{InProjSplit, Mamba2Config};
pub use weights::{Mamba2LayerWeights, Mamba2Weights};
