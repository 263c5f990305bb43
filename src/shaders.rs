//! Every embedded shader, for tools that want to list or pre-build them. The portability test
//! does not rely on this list: it walks `shaders/` itself, so a file missing here still gets
//! checked.

use crate::runtime::Shader;

/// All kernels of the crate.
pub const ALL: &[Shader] = &[
    crate::ops::stream_copy::SHADER,
    crate::ops::fma_peak::SHADER,
    crate::ops::matmul::SHADER,
    crate::ops::matmul::VEC4_SHADER,
    crate::ops::rmsnorm::SHADER,
    crate::ops::rmsnorm::VEC4_SHADER,
    crate::ops::rope::SHADER,
    crate::ops::rope::VEC4_SHADER,
    crate::ops::latent_cache::SHADER,
    crate::ops::absorbed_attention::SHADER,
    crate::ops::absorbed_attention::COMBINE_SHADER,
    crate::ops::absorbed_attention::VEC4_SHADER,
    crate::ops::selective_scan::SHADER,
    crate::ops::selective_scan::CHUNKED_SHADER,
    crate::ops::selective_scan::CHUNKED_SUBGROUP_SHADER,
    crate::ops::state_update::SHADER,
    crate::ops::diagonal_scan::SHADER,
    crate::ops::diagonal_scan::SHADER_SUBGROUP,
    crate::ops::diagonal_scan::ROWS_SHADER,
];
