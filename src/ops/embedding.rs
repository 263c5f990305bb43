//! `embedding`: the residual stream of a language model from token ids, out (T, H) f32 =
//! rows `ids` of the table (vocab, H) stored as f32, f16 or bf16 (widened exactly). The ids
//! live on the GPU (u32, uploaded by the caller or written by a sampler), so a forward pass
//! needs no host round trip; the host checks them against the vocabulary when it uploads them
//! ([`Embedding::upload_ids`]).
//!
//! One workgroup per token walks its row ([`VEC4`] four elements per invocation where H % 4 = 0,
//! else one), so no index is divided by H: on a CPU device a division by a run-time value is a
//! scalar divide per lane, and two per element (the flat index's token and column) had set
//! lavapipe's time.

use crate::error::{Error, Result};
use crate::ops::{storage_flags, Cost};
use crate::runtime::{Batch, DType, Gpu, Shader, Tensor};
use crate::shader::{wgsl, Access, Flag, Flags, KernelInterface, Variant};

/// The WGSL body.
pub const SHADER: Shader = wgsl!("lm/embedding");

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    tokens: u32,
    hidden: u32,
    row0: u32,
    rows: u32,
}

/// What the kernel is passed: `Uniforms`, the ids, the table and out.
pub const INTERFACE: KernelInterface = KernelInterface {
    params: std::mem::size_of::<Uniforms>(),
    bindings: &[
        ("ids", Access::Read),
        ("table", Access::Read),
        ("out", Access::ReadWrite),
    ],
};

/// The kernel with an f32 table, one element per invocation (any H).
pub const KERNEL: Variant = SHADER.variant(Flags::NONE, INTERFACE);

/// The kernel with a half table, in [`crate::ops::HALF_STORAGE`] order.
pub const HALF: [Variant; 3] = crate::ops::half_variants(KERNEL);

/// Four elements per invocation, the table read in quads and out written as vec4: H % 4 = 0
/// (every model's width).
pub const VEC4: Variant = SHADER.variant(Flags::of(&[Flag::Vec4]), INTERFACE);

/// [`VEC4`] with a half table, in [`crate::ops::HALF_STORAGE`] order.
pub const VEC4_HALF: [Variant; 3] = crate::ops::half_variants(VEC4);

/// The embedding lookup (stateless: pipelines come from the device's cache).
#[derive(Clone, Copy, Debug, Default)]
pub struct Embedding;

impl Embedding {
    /// Upload token ids as a (T) u32 tensor, refusing any id ≥ `vocab`.
    pub fn upload_ids(gpu: &Gpu, ids: &[u32], vocab: usize) -> Result<Tensor> {
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::invalid(format!(
                "token id {bad} is outside the vocabulary (vocab_size {vocab})"
            )));
        }
        gpu.upload_u32(&[ids.len()], ids)
    }

    /// Record out ← table\[ids\]. `ids` (T) u32, `table` (vocab, H) f32/f16/bf16, `out` (T, H)
    /// f32 (the whole tensor).
    pub fn record(batch: &mut Batch, ids: &Tensor, table: &Tensor, out: &Tensor) -> Result<()> {
        Self::record_chunks(batch, ids, &[(0, table)], out)
    }

    /// Record out ← table\[ids\] for a table kept as row chunks `(first row, chunk (rows, H))`
    /// that together cover the vocabulary once (see [`split_rows`]): how a table larger than one
    /// storage binding is looked up. One dispatch per chunk.
    pub fn record_chunks(
        batch: &mut Batch,
        ids: &Tensor,
        chunks: &[(usize, &Tensor)],
        out: &Tensor,
    ) -> Result<()> {
        ids.expect_dtype("ids", DType::U32)?;
        let Some((_, first)) = chunks.first() else {
            return Err(Error::invalid("embedding: no table chunks"));
        };
        let [_, hidden] = first.shape()[..] else {
            return Err(Error::shape("table", "(vocab, H)", first.shape()));
        };
        let t = ids.len();
        out.expect("out", "(T, H)", &[t, hidden], DType::F32)?;
        u32::try_from(t * hidden).map_err(|_| Error::Limit {
            what: format!("embedding output of {t}×{hidden} elements"),
            detail: "the kernel indexes with 32-bit integers".into(),
        })?;
        let gpu = batch.gpu();
        // A workgroup per token (over x and y past 65535 of them).
        let vec4 = hidden % 4 == 0;
        let grid = gpu.grid(u32::try_from(t).expect("t · H fits in u32"))?;
        let max_bind = gpu.max_binding_bytes();
        for (row0, table) in chunks {
            let [rows, h] = table.shape()[..] else {
                return Err(Error::shape("table", "(rows, H)", table.shape()));
            };
            if h != hidden || table.dtype() != first.dtype() {
                return Err(Error::shape(
                    "table",
                    format!("(rows, {hidden}) chunks of one dtype"),
                    table.shape(),
                ));
            }
            if table.size_bytes() > max_bind {
                return Err(Error::Limit {
                    what: format!(
                        "embedding table of shape {:?} ({})",
                        table.shape(),
                        table.dtype()
                    ),
                    detail: format!(
                        "max_storage_buffer_binding_size = {max_bind}: split it with \
                         embedding::split_rows"
                    ),
                });
            }
            if t == 0 {
                continue;
            }
            let mut flags = storage_flags(gpu, "table", table.dtype())?;
            if vec4 {
                flags = flags.union(VEC4.flags);
            }
            let kernel = gpu.kernel(&SHADER.variant(flags, INTERFACE), &[])?;
            batch.dispatch_grid(
                &kernel,
                &Uniforms {
                    tokens: t as u32,
                    hidden: hidden as u32,
                    row0: *row0 as u32,
                    rows: rows as u32,
                },
                &[ids.into(), (*table).into(), out.into()],
                grid,
            )?;
        }
        Ok(())
    }

    /// Bytes moved for T tokens of width H with a table of `dtype` (ids, rows read, out written).
    pub fn cost(tokens: usize, hidden: usize, dtype: DType) -> Cost {
        Cost {
            bytes: (tokens * 4 + tokens * hidden * (dtype.size() + 4)) as u64,
            flops: 0,
        }
    }
}

/// Upload a (rows, width) host matrix as row chunks that each fit one storage binding on `gpu`:
/// `(first row, chunk)` pairs, one chunk when the whole matrix fits. An embedding table or an LM
/// head (vocab × hidden) at real model sizes exceeds 128 MiB in f32.
pub fn split_rows(
    gpu: &Gpu,
    m: &crate::io::HostTensor,
    dtype: DType,
) -> Result<Vec<(usize, Tensor)>> {
    let [rows, width] = m.shape[..] else {
        return Err(Error::shape("matrix", "(rows, width)", &m.shape));
    };
    let row_bytes = (width * dtype.size()).max(1) as u64;
    // Chunks of an even number of rows keep half tables word-aligned.
    let per = ((gpu.max_binding_bytes() / row_bytes) as usize / 2 * 2).max(1);
    if per >= rows {
        return Ok(vec![(0, m.upload_as(gpu, dtype)?)]);
    }
    let mut chunks = Vec::new();
    let mut r0 = 0;
    while r0 < rows {
        let r1 = rows.min(r0 + per);
        let part = crate::io::HostTensor::from_f32_as(
            &[r1 - r0, width],
            dtype,
            &m.to_f32()[r0 * width..r1 * width],
        )?;
        chunks.push((r0, part.upload_as(gpu, dtype)?));
        r0 = r1;
    }
    Ok(chunks)
}
