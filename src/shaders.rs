//! The registry: every shader variant the ops build (a body under `shaders/` and the flags it is
//! composed with, see [`crate::shader`]) with the interface its op declares. It sits above the
//! ops (nothing below it imports it); the fragments bodies `#include` live with the composer.
//!
//! `tests/shader_portability.rs` composes each variant here and translates it for Vulkan, Metal
//! and DX12; it also walks `shaders/`, so a body missing here fails it. `tests/shader_contract.rs`
//! checks each variant's WGSL interface against its declaration.

use crate::ops::{
    absorbed_attention, causal_conv1d, diagonal_scan, fma_peak, latent_cache, matmul, rmsnorm,
};
use crate::ops::{rope, selective_scan, state_update, stream_copy};
use crate::shader::Variant;

/// Every variant the ops can build.
pub const ALL: &[Variant] = &[
    stream_copy::KERNEL,
    fma_peak::KERNEL,
    matmul::TILED,
    matmul::VEC4,
    matmul::TILED_HALF[0],
    matmul::TILED_HALF[1],
    matmul::TILED_HALF[2],
    matmul::VEC4_HALF[0],
    matmul::VEC4_HALF[1],
    matmul::VEC4_HALF[2],
    rmsnorm::SCALAR,
    rmsnorm::VEC4,
    rope::SCALAR,
    rope::VEC4,
    latent_cache::KERNEL,
    latent_cache::HALF[0],
    latent_cache::HALF[1],
    absorbed_attention::SCALAR,
    absorbed_attention::VEC4,
    absorbed_attention::SCALAR_HALF[0],
    absorbed_attention::SCALAR_HALF[1],
    absorbed_attention::SCALAR_HALF[2],
    absorbed_attention::VEC4_HALF[0],
    absorbed_attention::VEC4_HALF[1],
    absorbed_attention::VEC4_HALF[2],
    absorbed_attention::COMBINE,
    selective_scan::ROWS,
    selective_scan::CHUNKED,
    selective_scan::CHUNKED_SUBGROUP,
    state_update::KERNEL,
    state_update::HALF[0],
    state_update::HALF[1],
    state_update::HALF[2],
    diagonal_scan::CHUNKED,
    diagonal_scan::CHUNKED_SUBGROUP,
    diagonal_scan::ROWS,
    causal_conv1d::KERNEL,
    causal_conv1d::HALF[0],
    causal_conv1d::HALF[1],
    causal_conv1d::HALF[2],
];

/// The fragments bodies pull in with `#include "name"` (they belong to the composer).
pub use crate::shader::FRAGMENTS;
