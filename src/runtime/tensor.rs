//! GPU-resident tensors and the one place bytes move between host and GPU.
//!
//! A [`Tensor`] is a storage buffer with a shape and a dtype; ops take and return tensors, so
//! chains of ops never touch the host. Buffers are padded to 16 bytes so kernels may read them as
//! `array<vec4<f32>>`. Readback goes through the runtime's pooled staging buffers instead of
//! allocating one per read.
//!
//! Float tensors are stored as f32, f16 or bf16 ([`DType`]); kernels do their math in f32 and
//! widen half elements on load. Halves are uploaded from f32 ([`Gpu::upload_f32_as`], rounded to
//! nearest even) or as raw `u16` words ([`Gpu::upload`]) and read back widened to f32
//! ([`Gpu::read_f32`]) or as raw words (`read::<u16>`). An odd count of halves is fine: buffers
//! are padded to 16 bytes and the last word's unused half is zero.
//!
//! A tensor belongs to the [`Gpu`] that made it (it records the context's id), and every call that
//! moves bytes refuses a tensor of another context. Host data is typed: the host element type
//! ([`Element`]) must match the tensor's [`DType`], so an `f32` slice cannot land in a `u32`
//! tensor and a `u32` tensor cannot be read back as `f32`.

use crate::error::{Error, Result};
use crate::runtime::pools::BufferKind;
use crate::runtime::signal;
use crate::runtime::Gpu;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit unsigned integer (indices, block tables, lengths).
    U32,
    /// 32-bit signed integer (slot indices where -1 means "skip").
    I32,
    /// IEEE 754 binary16 (1 sign, 5 exponent, 10 mantissa bits): storage only, kernels widen
    /// to f32 on load. Host words are `u16`.
    F16,
    /// bfloat16 (the top half of an f32: 8 exponent, 7 mantissa bits): storage only, kernels
    /// widen to f32 on load. Host words are `u16`.
    BF16,
}

impl DType {
    /// Bytes per element (2 for the half types, which kernels address as pairs in u32 words).
    pub fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            _ => 4,
        }
    }

    /// Whether this is a 16-bit float storage type (F16 or BF16).
    pub fn is_half(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }

    /// Whether this is a float type (F32, F16, BF16).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Error naming tensor `name` unless this is a float type (F32, F16, BF16).
    pub fn expect_float(self, name: &str) -> Result<()> {
        if self.is_float() {
            return Ok(());
        }
        Err(Error::DType {
            name: name.into(),
            expected: "f32, f16 or bf16".into(),
            got: self.to_string(),
        })
    }

    /// The dtype of a name as the CLI spells it: `f32`, `f16` or `bf16`.
    pub fn parse_float(name: &str) -> Option<DType> {
        match name {
            "f32" => Some(DType::F32),
            "f16" => Some(DType::F16),
            "bf16" => Some(DType::BF16),
            _ => None,
        }
    }

    /// `x` rounded to this float dtype (round to nearest even) and widened back to f32: what a
    /// tensor of this dtype holds after [`Gpu::upload_f32_as`]. Identity for F32 (and the
    /// integer types, which hold no f32).
    pub fn round_f32(self, x: f32) -> f32 {
        match self {
            DType::F16 => half::f16::from_f32(x).to_f32(),
            DType::BF16 => half::bf16::from_f32(x).to_f32(),
            _ => x,
        }
    }

    /// The 16-bit word of `x` in this half dtype, rounded to nearest even (None for a dtype
    /// that is not F16 or BF16).
    pub fn half_bits(self, x: f32) -> Option<u16> {
        match self {
            DType::F16 => Some(half::f16::from_f32(x).to_bits()),
            DType::BF16 => Some(half::bf16::from_f32(x).to_bits()),
            _ => None,
        }
    }

    /// The f32 value of half word `w` of this dtype (exact: every f16 and bf16 is an f32);
    /// `None` for a dtype that is not F16 or BF16.
    pub fn half_to_f32(self, w: u16) -> Option<f32> {
        match self {
            DType::F16 => Some(half::f16::from_bits(w).to_f32()),
            DType::BF16 => Some(half::bf16::from_bits(w).to_f32()),
            _ => None,
        }
    }
}

mod sealed {
    /// Keeps [`super::Element`] closed to the types the kernels understand.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u32 {}
    impl Sealed for i32 {}
    impl Sealed for u16 {}
}

/// A host element type that tensors are uploaded from and read back into, bit for bit.
///
/// Sealed: `f32` holds [`DType::F32`] elements, `u32` [`DType::U32`], `i32` [`DType::I32`],
/// `u16` the raw words of both half types ([`DType::F16`] and [`DType::BF16`]).
/// [`Element::is_raw_element_of`] is the one check every upload, write and read makes, so a new
/// storage type is one more impl here (e.g. raw 16-bit words for both half types), while
/// conversions (f32 data into a half tensor) belong in their own calls.
pub trait Element: bytemuck::Pod + sealed::Sealed {
    /// The dtype whose elements this type holds bit for bit.
    const DTYPE: DType;

    /// Whether values of this type are, bit for bit, the elements of a `dtype` tensor.
    fn is_raw_element_of(dtype: DType) -> bool {
        dtype == Self::DTYPE
    }
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}

impl Element for u32 {
    const DTYPE: DType = DType::U32;
}

impl Element for i32 {
    const DTYPE: DType = DType::I32;
}

impl Element for u16 {
    const DTYPE: DType = DType::F16;

    fn is_raw_element_of(dtype: DType) -> bool {
        dtype.is_half()
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
            DType::I32 => "i32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        })
    }
}

/// A tensor in GPU memory: row-major, contiguous. It belongs to the [`Gpu`] that made it.
#[derive(Clone, Debug)]
pub struct Tensor {
    buffer: wgpu::Buffer,
    shape: Vec<usize>,
    dtype: DType,
    gpu: u64,
}

impl Tensor {
    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Id of the [`Gpu`] that made this tensor ([`Gpu::id`]).
    pub fn gpu_id(&self) -> u64 {
        self.gpu
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of payload (without padding).
    pub fn size_bytes(&self) -> u64 {
        (self.len() * self.dtype.size()) as u64
    }

    /// The underlying buffer (usages STORAGE | COPY_SRC | COPY_DST).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Same buffer viewed with another shape of the same element count.
    pub fn reshaped(&self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(Error::invalid(format!(
                "cannot view a tensor of shape {:?} as {:?}",
                self.shape, shape
            )));
        }
        Ok(Tensor {
            buffer: self.buffer.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
            gpu: self.gpu,
        })
    }

    /// Error naming the tensor unless it has `dtype`.
    pub fn expect_dtype(&self, name: &str, dtype: DType) -> Result<()> {
        if self.dtype != dtype {
            return Err(Error::DType {
                name: name.into(),
                expected: dtype.to_string(),
                got: self.dtype.to_string(),
            });
        }
        Ok(())
    }

    /// Error unless host elements of type `T` are this tensor's elements; `op` names the call
    /// and `hint` (may be empty) says what to do instead.
    pub(crate) fn expect_element<T: Element>(&self, op: &str, hint: &str) -> Result<()> {
        expect_element::<T>(op, &self.shape, self.dtype, hint)
    }

    /// Error unless the tensor has exactly `shape` and `dtype`; `name` and `spelled` (e.g.
    /// `"(Bt, D, L)"`) go into the message.
    pub fn expect(&self, name: &str, spelled: &str, shape: &[usize], dtype: DType) -> Result<()> {
        self.expect_dtype(name, dtype)?;
        if self.shape != shape {
            return Err(Error::shape(
                name,
                format!("{spelled} = {shape:?}"),
                &self.shape,
            ));
        }
        Ok(())
    }
}

/// Error unless host elements of type `T` are the elements of a `dtype` tensor of `shape`, given
/// to call `op`; `hint` (may be empty) is appended to the tensor's dtype.
fn expect_element<T: Element>(op: &str, shape: &[usize], dtype: DType, hint: &str) -> Result<()> {
    if T::is_raw_element_of(dtype) {
        return Ok(());
    }
    Err(Error::DType {
        name: format!("{op} argument, shape {shape:?}"),
        expected: format!(
            "{} (the host elements are {})",
            T::DTYPE,
            std::any::type_name::<T>()
        ),
        got: format!("{dtype}{hint}"),
    })
}

fn padded(bytes: u64) -> u64 {
    bytes.max(16).div_ceil(16) * 16
}

impl Gpu {
    /// An uninitialised-content tensor (contents are zero on creation in wgpu).
    pub fn empty(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let elements: usize = shape.iter().product();
        let bytes = padded((elements * dtype.size()) as u64);
        if bytes > self.limits().max_buffer_size {
            return Err(Error::Limit {
                what: format!("a tensor of shape {shape:?}"),
                detail: format!(
                    "{bytes} bytes > max_buffer_size {}",
                    self.limits().max_buffer_size
                ),
            });
        }
        let buffer = self.scoped("allocating a tensor", || {
            Ok(self.device().create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }))
        })?;
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
            dtype,
            gpu: self.id(),
        })
    }

    /// A tensor holding `data` (row-major, `data.len()` must equal the shape's product; `T`
    /// must be `dtype`'s host element type, see [`Element`]). Nothing is allocated on error.
    pub fn upload<T: Element>(&self, shape: &[usize], dtype: DType, data: &[T]) -> Result<Tensor> {
        expect_element::<T>("Gpu::upload", shape, dtype, "")?;
        let elements: usize = shape.iter().product();
        if data.len() != elements {
            return Err(Error::invalid(format!(
                "uploading {} values into a tensor of shape {shape:?} ({elements} elements)",
                data.len()
            )));
        }
        let t = self.empty(shape, dtype)?;
        self.write_bytes(&t, bytemuck::cast_slice(data))?;
        Ok(t)
    }

    /// An f32 tensor holding `data`.
    pub fn upload_f32(&self, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        self.upload(shape, DType::F32, data)
    }

    /// A float tensor of `dtype` (F32, F16 or BF16) holding `data` rounded to it (round to
    /// nearest even, see [`DType::round_f32`]). Other dtypes are an [`Error::DType`].
    pub fn upload_f32_as(&self, shape: &[usize], dtype: DType, data: &[f32]) -> Result<Tensor> {
        match dtype {
            DType::F32 => self.upload_f32(shape, data),
            DType::F16 | DType::BF16 => {
                let words: Vec<u16> = data
                    .iter()
                    .map(|&x| dtype.half_bits(x).expect("a half dtype"))
                    .collect();
                self.upload(shape, dtype, &words)
            }
            other => Err(Error::DType {
                name: format!("Gpu::upload_f32_as target, shape {shape:?}"),
                expected: "f32, f16 or bf16".into(),
                got: other.to_string(),
            }),
        }
    }

    /// A float tensor of `dtype` (F32, F16 or BF16) filled with NaN (see [`Gpu::nan_f32`]).
    pub fn nan_as(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        self.upload_f32_as(shape, dtype, &vec![f32::NAN; n])
    }

    /// A u32 tensor holding `data`.
    pub fn upload_u32(&self, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        self.upload(shape, DType::U32, data)
    }

    /// An i32 tensor holding `data`.
    pub fn upload_i32(&self, shape: &[usize], data: &[i32]) -> Result<Tensor> {
        self.upload(shape, DType::I32, data)
    }

    /// An f32 tensor filled with NaN: conformance tests poison outputs so that any element a
    /// kernel fails to write is caught.
    pub fn nan_f32(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        self.upload_f32(shape, &vec![f32::NAN; n])
    }

    /// Overwrite a tensor's contents with `data` (queued; ordered before later submissions).
    /// The tensor must be this context's, `T` its dtype's host type and `data` exactly its size.
    pub fn write<T: Element>(&self, tensor: &Tensor, data: &[T]) -> Result<()> {
        self.check_owner(tensor.gpu, || {
            format!("tensor of shape {:?} given to Gpu::write", tensor.shape)
        })?;
        tensor.expect_element::<T>("Gpu::write", "")?;
        if std::mem::size_of_val(data) as u64 != tensor.size_bytes() {
            return Err(Error::invalid(format!(
                "writing {} bytes into a tensor of shape {:?} ({} bytes)",
                std::mem::size_of_val(data),
                tensor.shape,
                tensor.size_bytes()
            )));
        }
        self.write_bytes(tensor, bytemuck::cast_slice(data))
    }

    /// Queue `bytes` (already checked against the tensor) into the tensor's buffer.
    fn write_bytes(&self, tensor: &Tensor, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.scoped("writing a tensor", || {
            // write_buffer needs a multiple of 4 bytes: an odd count of halves is padded with a
            // zero word half (the buffer itself is padded to 16 bytes).
            if bytes.len() % 4 == 0 {
                self.queue().write_buffer(&tensor.buffer, 0, bytes);
            } else {
                let mut padded = bytes.to_vec();
                padded.resize(bytes.len().next_multiple_of(4), 0);
                self.queue().write_buffer(&tensor.buffer, 0, &padded);
            }
            Ok(())
        })
    }

    /// Read a tensor back to the host (waits for all submitted work). The tensor must be this
    /// context's and `T` its dtype's host type. Blocks: in a browser use [`Gpu::read_async`].
    pub fn read<T: Element>(&self, tensor: &Tensor) -> Result<Vec<T>> {
        blocking(self.read_as(tensor, "Gpu::read"), "Gpu::read")
    }

    /// [`Gpu::read`] awaited: the readback path every target shares (the blocking readers wrap
    /// it), and the only one in a browser, where a buffer maps from the event loop.
    pub async fn read_async<T: Element>(&self, tensor: &Tensor) -> Result<Vec<T>> {
        self.read_as(tensor, "Gpu::read_async").await
    }

    async fn read_as<T: Element>(&self, tensor: &Tensor, op: &str) -> Result<Vec<T>> {
        self.check_owner(tensor.gpu, || {
            format!("tensor of shape {:?} given to {op}", tensor.shape)
        })?;
        let reader = match tensor.dtype {
            DType::F32 | DType::F16 | DType::BF16 => "read_f32",
            DType::U32 => "read_u32",
            DType::I32 => "read_i32",
        };
        tensor.expect_element::<T>(op, &format!(" (read it with {reader})"))?;
        let payload = tensor.size_bytes();
        if payload == 0 {
            return Ok(Vec::new());
        }
        // Copies move multiples of 4 bytes; an odd count of halves reads one padding half more.
        let bytes = payload.next_multiple_of(4);
        let map_error = |message: String| Error::Device {
            context: "mapping a readback buffer".into(),
            message,
        };
        let (staging, mapped) = self
            .scoped_async("reading a tensor back", || {
                let staging = self.pools.take(self.device(), BufferKind::Staging, bytes);
                let mut encoder =
                    self.device()
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("readback"),
                        });
                encoder.copy_buffer_to_buffer(&tensor.buffer, 0, &staging, 0, bytes);
                self.queue().submit([encoder.finish()]);
                let (tx, rx) = signal::channel();
                staging
                    .slice(..bytes)
                    .map_async(wgpu::MapMode::Read, move |r| tx.send(r));
                Ok((staging, rx))
            })
            .await?;
        // Natively the poll runs the map callback; in a browser it returns at once and the
        // mapping resolves from the event loop while this task awaits it.
        self.wait()?;
        mapped
            .await
            .ok_or_else(|| map_error("the map callback was dropped".into()))?
            .map_err(|e| map_error(e.to_string()))?;
        let out: Vec<T> = {
            let view = staging
                .slice(..bytes)
                .get_mapped_range()
                .map_err(|e| map_error(e.to_string()))?;
            bytemuck::pod_collect_to_vec(&view[..payload as usize])
        };
        staging.unmap();
        // Only a buffer known to be unmapped goes back to the pool.
        self.pools.give_back(BufferKind::Staging, staging);
        Ok(out)
    }

    /// Read a float tensor back as f32: an f32 tensor bit for bit, an F16 or BF16 tensor
    /// widened exactly from its half words (read those with `read::<u16>`). [`Error::DType`]
    /// for an integer dtype. Blocks: in a browser use [`Gpu::read_f32_async`].
    pub fn read_f32(&self, tensor: &Tensor) -> Result<Vec<f32>> {
        blocking(self.read_f32_async(tensor), "Gpu::read_f32")
    }

    /// [`Gpu::read_f32`] awaited.
    pub async fn read_f32_async(&self, tensor: &Tensor) -> Result<Vec<f32>> {
        if tensor.dtype.is_half() {
            let words: Vec<u16> = self.read_as(tensor, "read_f32").await?;
            let dtype = tensor.dtype;
            return Ok(words
                .into_iter()
                .map(|w| dtype.half_to_f32(w).expect("a half dtype"))
                .collect());
        }
        self.read_as(tensor, "read_f32").await
    }

    /// Read a u32 tensor back ([`Error::DType`] for any other dtype). Blocks.
    pub fn read_u32(&self, tensor: &Tensor) -> Result<Vec<u32>> {
        blocking(self.read_as(tensor, "read_u32"), "Gpu::read_u32")
    }

    /// [`Gpu::read_u32`] awaited.
    pub async fn read_u32_async(&self, tensor: &Tensor) -> Result<Vec<u32>> {
        self.read_as(tensor, "read_u32").await
    }

    /// Read an i32 tensor back ([`Error::DType`] for any other dtype). Blocks.
    pub fn read_i32(&self, tensor: &Tensor) -> Result<Vec<i32>> {
        blocking(self.read_as(tensor, "read_i32"), "Gpu::read_i32")
    }

    /// [`Gpu::read_i32`] awaited.
    pub async fn read_i32_async(&self, tensor: &Tensor) -> Result<Vec<i32>> {
        self.read_as(tensor, "read_i32").await
    }
}

/// Run an awaited GPU call to completion on the calling thread: natively by blocking (the
/// device is polled inside, so it always finishes); in a browser, where blocking would hang
/// the page, an error that names the awaited twin to call instead.
pub(crate) fn blocking<T>(
    call: impl std::future::Future<Output = Result<T>>,
    name: &str,
) -> Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = name;
        pollster::block_on(call)
    }
    #[cfg(target_arch = "wasm32")]
    {
        drop(call);
        Err(Error::Device {
            context: name.to_string(),
            message: format!(
                "a browser cannot block for the GPU: await {name}_async (or the call's async twin)"
            ),
        })
    }
}
