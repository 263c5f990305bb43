//! DeepSeek-V2/V3 language models (transformers' `DeepseekV2ForCausalLM`,
//! `DeepseekV3ForCausalLM`): MLA attention, dense SwiGLU MLPs in the first layers and the
//! mixture of experts after them. Config and weights from a Hugging Face directory; the f64 CPU
//! model is [`crate::reference::deepseek::DeepseekCpuModel`], which [`crate::models::load`]
//! builds from a directory; the GPU model is [`DeepseekGpuLm`].

pub mod config;
pub mod model;
pub mod presets;
pub mod weights;

pub use config::{DeepseekConfig, DeepseekVersion};
pub use model::DeepseekGpuLm;
pub use weights::{DeepseekLayerWeights, DeepseekMlp, DeepseekWeights};
