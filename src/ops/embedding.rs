//! `embedding`: the residual stream of a language model from token ids, out (T, H) f32 =
//! rows `ids` of the table (vocab, H) stored as f32, f16 or bf16 (widened exactly). The ids
//! live on the GPU (u32, uploaded by the caller or written by a sampler), so a forward pass
//! needs no host round trip; the host checks them against the vocabulary when it uploads them
//! ([`Embedding::upload_ids`]).

use crate::error::{Error, Result};
use crate::ops::{storage_flags, Cost};
use crate::runtime::{Batch, DType, Gpu, Shader, Tensor};
use crate::shader::{wgsl, Access, Flags, KernelInterface, Variant};

/// The WGSL body.
pub const SHADER: Shader = wgsl!("lm/embedding");

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Uniforms {
    n: u32,
    hidden: u32,
    pad: [u32; 2],
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

/// The kernel with an f32 table.
pub const KERNEL: Variant = SHADER.variant(Flags::NONE, INTERFACE);

/// The kernel with a half table, in [`crate::ops::HALF_STORAGE`] order.
pub const HALF: [Variant; 3] = crate::ops::half_variants(KERNEL);

const WG: usize = 256;

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

    /// Record out ← table[ids]. `ids` (T) u32, `table` (vocab, H) f32/f16/bf16, `out` (T, H)
    /// f32 (a (T·H) view of a larger tensor is not accepted: out is the whole tensor).
    pub fn record(batch: &mut Batch, ids: &Tensor, table: &Tensor, out: &Tensor) -> Result<()> {
        ids.expect_dtype("ids", DType::U32)?;
        let [_, hidden] = table.shape()[..] else {
            return Err(Error::shape("table", "(vocab, H)", table.shape()));
        };
        let t = ids.len();
        out.expect("out", "(T, H)", &[t, hidden], DType::F32)?;
        if t == 0 {
            return Ok(());
        }
        let n = u32::try_from(t * hidden).map_err(|_| Error::Limit {
            what: format!("embedding output of {t}×{hidden} elements"),
            detail: "the kernel indexes with 32-bit integers".into(),
        })?;
        let gpu = batch.gpu();
        let max_bind = gpu.max_binding_bytes();
        if table.size_bytes() > max_bind {
            return Err(Error::Limit {
                what: format!(
                    "embedding table of shape {:?} ({})",
                    table.shape(),
                    table.dtype()
                ),
                detail: format!(
                    "max_storage_buffer_binding_size = {max_bind}; store it as f16/bf16 or on a \
                     device with a larger binding limit"
                ),
            });
        }
        let storage = storage_flags(gpu, "table", table.dtype())?;
        let kernel = gpu.kernel(&SHADER.variant(storage, INTERFACE), &[])?;
        let groups = u32::try_from((t * hidden).div_ceil(WG)).expect("n fits in u32");
        batch.dispatch(
            &kernel,
            &Uniforms {
                n,
                hidden: hidden as u32,
                pad: [0; 2],
            },
            &[ids.into(), table.into(), out.into()],
            groups,
        )
    }

    /// Bytes moved for T tokens of width H with a table of `dtype` (ids, rows read, out written).
    pub fn cost(tokens: usize, hidden: usize, dtype: DType) -> Cost {
        Cost {
            bytes: (tokens * 4 + tokens * hidden * (dtype.size() + 4)) as u64,
            flops: 0,
        }
    }
}
