//! DeepSeek-V2/V3 Multi-head Latent Attention: the config, the weights of one layer,
//! and the layer itself on the GPU and the CPU, with a paged latent cache for decoding.
//!
//! Per token, the layer computes q = q_b_proj(rmsnorm(q_a_proj(h))) (or q_proj(h)), the latent
//! c = rmsnorm(kv_a_proj_with_mqa(h)\[:d_c\]) and k_rope = rope(kv\[d_c:\]); it caches [c | k_rope]
//! (d_c + d_R values instead of H·(nope + d_R + v)) and attends in the absorbed form:
//! q_lat = W_UKᵀ q_nope, score_j = q_lat·c_j + q_rope·k_rope_j, o = o_proj(W_UV Σ_j p_j c_j).

pub mod config;
pub mod layer;
pub mod presets;
pub mod weights;

/// The layer on the CPU (the absorbed-form reference with a latent cache).
pub use config::{MlaConfig, Yarn};
pub use layer::{MlaCache, MlaLayer, MlaSeq};
pub use weights::{Linear, MlaWeights, QueryWeights};
