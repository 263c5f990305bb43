//! GPU-resident tensors and the one place bytes move between host and GPU.
//!
//! A [`Tensor`] is a storage buffer with a shape and a dtype; ops take and return tensors, so
//! chains of ops never touch the host. Buffers are padded to 16 bytes so kernels may read them as
//! `array<vec4<f32>>`. Readback goes through the runtime's pooled staging buffers instead of
//! allocating one per read.

use crate::error::{Error, Result};
use crate::runtime::pools::BufferKind;
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
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        4
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
            DType::I32 => "i32",
        })
    }
}

/// A tensor in GPU memory: row-major, contiguous.
#[derive(Clone, Debug)]
pub struct Tensor {
    buffer: wgpu::Buffer,
    shape: Vec<usize>,
    dtype: DType,
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
        })
    }

    /// A tensor holding `data` (row-major, `data.len()` must equal the shape's product).
    pub fn upload<T: bytemuck::Pod>(
        &self,
        shape: &[usize],
        dtype: DType,
        data: &[T],
    ) -> Result<Tensor> {
        let t = self.empty(shape, dtype)?;
        self.write(&t, data)?;
        Ok(t)
    }

    /// An f32 tensor holding `data`.
    pub fn upload_f32(&self, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        self.upload(shape, DType::F32, data)
    }

    /// A u32 tensor holding `data`.
    pub fn upload_u32(&self, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        self.upload(shape, DType::U32, data)
    }

    /// An f32 tensor filled with NaN: conformance tests poison outputs so that any element a
    /// kernel fails to write is caught.
    pub fn nan_f32(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        self.upload_f32(shape, &vec![f32::NAN; n])
    }

    /// Overwrite a tensor's contents with `data` (queued; ordered before later submissions).
    pub fn write<T: bytemuck::Pod>(&self, tensor: &Tensor, data: &[T]) -> Result<()> {
        if std::mem::size_of_val(data) as u64 != tensor.size_bytes() {
            return Err(Error::invalid(format!(
                "writing {} bytes into a tensor of shape {:?} ({} bytes)",
                std::mem::size_of_val(data),
                tensor.shape,
                tensor.size_bytes()
            )));
        }
        if data.is_empty() {
            return Ok(());
        }
        let bytes: &[u8] = bytemuck::cast_slice(data);
        // write_buffer needs a multiple of 4 bytes, which every dtype here satisfies.
        self.queue().write_buffer(&tensor.buffer, 0, bytes);
        Ok(())
    }

    /// Read a tensor back to the host (waits for all submitted work).
    pub fn read<T: bytemuck::Pod>(&self, tensor: &Tensor) -> Result<Vec<T>> {
        let bytes = tensor.size_bytes();
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.pools.take(self.device(), BufferKind::Staging, bytes);
        let result = self.scoped("reading a tensor back", || {
            let mut encoder =
                self.device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("readback"),
                    });
            encoder.copy_buffer_to_buffer(&tensor.buffer, 0, &staging, 0, bytes);
            self.queue().submit([encoder.finish()]);
            let slice = staging.slice(..bytes);
            let (tx, rx) = std::sync::mpsc::channel();
            slice.map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            self.wait()?;
            rx.recv()
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
                .map_err(|message| Error::Device {
                    context: "mapping a readback buffer".into(),
                    message,
                })?;
            let view = slice.get_mapped_range().map_err(|e| Error::Device {
                context: "mapping a readback buffer".into(),
                message: e.to_string(),
            })?;
            let out: Vec<T> = bytemuck::pod_collect_to_vec(&view);
            drop(view);
            staging.unmap();
            Ok(out)
        });
        if result.is_ok() {
            // Only a buffer known to be unmapped goes back to the pool.
            self.pools.give_back(BufferKind::Staging, staging);
        }
        result
    }

    /// Read an f32 tensor back.
    pub fn read_f32(&self, tensor: &Tensor) -> Result<Vec<f32>> {
        self.read(tensor)
    }
}
