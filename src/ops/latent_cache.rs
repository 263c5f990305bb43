//! `latent_cache`: the paged MLA latent KV cache and the kernel that appends rows to it.
//!
//! Per token the cache keeps one latent row of W = d_c + d_R floats, `[c | k_rope]`: c is the
//! compressed KV (after `kv_a_layernorm`, d_c = kv_lora_rank) and k_rope the rotated shared rope
//! key (d_R = qk_rope_head_dim) — 576 floats instead of 2·H·128 for plain multi-head attention.
//! Rows live in fixed-size pages: `data` is (num_blocks, block_size, W); a sequence owns the pages
//! its block-table row lists, and its token at position p is at slot
//! `block_table[p / block_size] * block_size + p % block_size` (see [`slots_for`]).
//!
//! Append: `data[slots[t]] = latent[t]` for each of T rows; a slot ≥ num_blocks·block_size (for
//! example `u32::MAX`) skips the row. Slots must be distinct.
//!
//! The cache may be stored as f32, f16 or bf16 ([`LatentCache::with_dtype`]): the rows arrive in
//! f32 and are rounded on store (bf16 to nearest even; f16 by `pack2x16float`, which WGSL lets
//! round to either neighbour). A bf16 cache at DeepSeek widths (W = 576) takes 1152 bytes per
//! token, f32 2304. Half rows of odd width are written with atomics on their u32 words; where
//! W % 4 = 0 ([`VEC4`], one workgroup per row, 4 values per invocation) an invocation owns whole
//! words.

use crate::error::{Error, Result};
use crate::ops::Cost;
use crate::runtime::Batch;
use crate::runtime::Gpu;
use crate::runtime::{DType, Tensor};
use crate::runtime::{Kernel, Shader};
use crate::shader::{wgsl, Access, Flag, Flags, KernelInterface, Variant};
use std::sync::Arc;

/// The WGSL body (append).
pub const SHADER: Shader = wgsl!("mla/latent_cache");

/// Paged latent KV cache: `data` is (num_blocks, block_size, d_c + d_R); block b, offset o holds
/// one token's [c (d_c, after kv_a_layernorm) | k_rope (d_R, already rotated)].
#[derive(Clone, Debug)]
pub struct LatentCache {
    /// The pages, f32, f16 or bf16 (num_blocks, block_size, d_c + d_r).
    pub data: Tensor,
    /// Number of pages.
    pub num_blocks: usize,
    /// Tokens per page.
    pub block_size: usize,
    /// Width of the compressed KV part c (kv_lora_rank).
    pub d_c: usize,
    /// Width of the rope key part (qk_rope_head_dim).
    pub d_r: usize,
}

impl LatentCache {
    /// Allocate a zeroed f32 cache of `num_blocks` pages of `block_size` tokens.
    pub fn new(
        gpu: &Gpu,
        num_blocks: usize,
        block_size: usize,
        d_c: usize,
        d_r: usize,
    ) -> Result<Self> {
        Self::with_dtype(gpu, num_blocks, block_size, d_c, d_r, DType::F32)
    }

    /// Allocate a zeroed cache stored as `dtype` (F32, F16 or BF16).
    pub fn with_dtype(
        gpu: &Gpu,
        num_blocks: usize,
        block_size: usize,
        d_c: usize,
        d_r: usize,
        dtype: DType,
    ) -> Result<Self> {
        dtype.expect_float("latent cache")?;
        if num_blocks == 0 || block_size == 0 || d_c == 0 {
            return Err(Error::invalid(format!(
                "latent cache needs num_blocks, block_size and d_c > 0 \
                 (got {num_blocks}, {block_size}, {d_c})"
            )));
        }
        let fits = num_blocks
            .checked_mul(block_size)
            .and_then(|n| n.checked_mul(d_c + d_r))
            .is_some_and(|n| n <= u32::MAX as usize);
        if !fits {
            return Err(Error::Limit {
                what: format!("a latent cache of {num_blocks}×{block_size}×{}", d_c + d_r),
                detail: "more than 2^32 elements".into(),
            });
        }
        let data = gpu.empty(&[num_blocks, block_size, d_c + d_r], dtype)?;
        Ok(Self {
            data,
            num_blocks,
            block_size,
            d_c,
            d_r,
        })
    }

    /// The storage dtype of the pages.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Bytes per token: W times the dtype's size (1152 for bf16 at W = 576).
    pub fn bytes_per_token(&self) -> usize {
        self.width() * self.dtype().size()
    }

    /// Latent row width W = d_c + d_r.
    pub fn width(&self) -> usize {
        self.d_c + self.d_r
    }

    /// Number of token slots (num_blocks · block_size).
    pub fn num_slots(&self) -> usize {
        self.num_blocks * self.block_size
    }
}

/// Host helper: the slots of positions start..start+count of a sequence with this block table row.
/// Errors if the row has too few blocks for position start + count − 1.
pub fn slots_for(
    block_table_row: &[u32],
    block_size: usize,
    start: usize,
    count: usize,
) -> Result<Vec<u32>> {
    if block_size == 0 {
        return Err(Error::invalid("block_size must be > 0"));
    }
    let end = start + count;
    if end > block_table_row.len() * block_size {
        return Err(Error::shape(
            "block_table",
            format!(
                "a row of at least {} blocks of {block_size} for positions {start}..{end}",
                end.div_ceil(block_size)
            ),
            &[block_table_row.len()],
        ));
    }
    Ok((start..end)
        .map(|p| block_table_row[p / block_size] * block_size as u32 + (p % block_size) as u32)
        .collect())
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    rows: u32,
    w: u32,
    num_slots: u32,
    _pad: u32,
}

/// What the append kernel is passed: its `Uniforms`, then latent, slots and the cache data.
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[
        ("latent", Access::Read),
        ("slots", Access::Read),
        ("data", Access::ReadWrite),
    ],
};

/// The append kernel.
pub const KERNEL: Variant = SHADER.variant(Flags::NONE, INTERFACE);

/// The append kernel into an f16 cache and into a bf16 cache (u32 words and atomics in both: no
/// native-f16 variant, a store of one half is not a store of a WGSL type).
pub const HALF: [Variant; 2] = [
    SHADER.variant(crate::ops::HALF_STORAGE[0], INTERFACE),
    SHADER.variant(crate::ops::HALF_STORAGE[2], INTERFACE),
];

/// Four elements per invocation where W % 4 = 0 (every MLA width): latent read as vec4, the
/// cache written in quads (whole u32 words for halves, no atomics).
pub const VEC4: Variant = SHADER.variant(Flags::of(&[Flag::Vec4]), INTERFACE);

/// [`VEC4`] into an f16 and into a bf16 cache, as [`HALF`].
pub const VEC4_HALF: [Variant; 2] = [
    SHADER.variant(crate::ops::HALF_STORAGE[0].union(VEC4.flags), INTERFACE),
    SHADER.variant(crate::ops::HALF_STORAGE[2].union(VEC4.flags), INTERFACE),
];

/// The append kernel: writes T latent rows into the cache at given slots.
#[derive(Clone, Debug)]
pub struct LatentCacheAppend {
    kernel: Arc<Kernel>,
}

impl LatentCacheAppend {
    /// Build (or fetch from the cache) the pipeline.
    pub fn new(gpu: &Gpu) -> Result<Self> {
        Ok(Self {
            kernel: gpu.kernel(&KERNEL, &[])?,
        })
    }

    /// latent: (T, d_c + d_R) rows; slots: (T) u32 absolute slot = block * block_size + offset.
    /// Slots ≥ num_blocks·block_size are skipped. T = 0 records nothing.
    pub fn record(
        &self,
        batch: &mut Batch,
        cache: &LatentCache,
        latent: &Tensor,
        slots: &Tensor,
    ) -> Result<()> {
        let w = cache.width();
        latent.expect_dtype("latent", DType::F32)?;
        slots.expect_dtype("slots", DType::U32)?;
        let dtype = cache.dtype();
        dtype.expect_float("cache.data")?;
        let vec4 = w % 4 == 0;
        let kernel = match (dtype, vec4) {
            (DType::F16, false) => batch.gpu().kernel(&HALF[0], &[])?,
            (DType::BF16, false) => batch.gpu().kernel(&HALF[1], &[])?,
            (DType::F16, true) => batch.gpu().kernel(&VEC4_HALF[0], &[])?,
            (DType::BF16, true) => batch.gpu().kernel(&VEC4_HALF[1], &[])?,
            (_, true) => batch.gpu().kernel(&VEC4, &[])?,
            (_, false) => self.kernel.clone(),
        };
        cache.data.expect(
            "cache.data",
            "(num_blocks, block_size, d_c + d_R)",
            &[cache.num_blocks, cache.block_size, w],
            dtype,
        )?;
        let t = crate::spec::latent_cache::append_rows(
            cache.data.shape(),
            latent.shape(),
            slots.shape(),
        )?;
        if t == 0 {
            return Ok(());
        }
        u32::try_from(t * w).map_err(|_| Error::Limit {
            what: format!("appending {t} latent rows"),
            detail: "more than 2^32 elements".into(),
        })?;
        let uniforms = Uniforms {
            rows: t as u32,
            w: w as u32,
            num_slots: cache.num_slots() as u32,
            _pad: 0,
        };
        // A workgroup per row (over x and y past 65535 rows).
        let grid = batch.gpu().grid(t as u32)?;
        batch.dispatch_grid(
            &kernel,
            &uniforms,
            &[latent.into(), slots.into(), (&cache.data).into()],
            grid,
        )
    }

    /// Bytes moved (f32 latent and slots read, rows written at the width of the cache's
    /// `dtype`) for T rows of width W; no FLOPs.
    pub fn cost(t: usize, w: usize, dtype: DType) -> Cost {
        Cost {
            bytes: (4 * (t * w + t) + dtype.size() * t * w) as u64,
            flops: 0,
        }
    }
}
