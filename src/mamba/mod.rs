//! Mamba-1 language models (transformers' `MambaForCausalLM`): config, weights from a Hugging
//! Face directory, and the model on the GPU. Its f64 CPU twin is
//! [`crate::reference::mamba::MambaCpuModel`]; [`crate::models::load`] builds either from a
//! directory.

pub mod config;
pub mod model;
pub mod weights;

pub use config::MambaConfig;
pub use model::MambaGpuLm;
pub use weights::{MambaLayerWeights, MambaWeights};
