//! Mamba-1 language models (transformers' `MambaForCausalLM`): config, weights from a Hugging
//! Face directory, and the model on the GPU.

pub mod config;

pub use config::MambaConfig;
pub mod weights;

pub use weights::{MambaLayerWeights, MambaWeights};
