//! Safetensors in and out: host tensors for the CLI and for apps that keep weights
//! and inputs in files. Reading keeps f16 and bf16 tensors as stored (their raw 16-bit words and
//! dtype, plus an f32 view widened exactly for code that computes in f32), reads f32 as is and
//! narrows f64 to f32; anything else is refused with an error naming the tensor. Writing goes to a temporary file that is renamed into place,
//! so a failed run never leaves a half-written output.

use crate::error::{Error, Result};
use crate::runtime::{DType, Gpu, Tensor};
use safetensors::{Dtype, SafeTensors as View};
use std::collections::BTreeMap;
use std::path::Path;

/// A tensor in host memory: row-major values with a shape, in the dtype it was stored in.
///
/// `data` is always the f32 view (exact for f16 and bf16, whose every value is an f32). A half
/// tensor (built by [`HostTensor::from_half`] or read from an F16/BF16 safetensors tensor) also
/// keeps its raw 16-bit words, which [`HostTensor::upload`] sends to the GPU unchanged. The
/// words are not recomputed from `data`: to change a half tensor's values, build a new one.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Elements, row-major, as f32 (widened from the stored words for a half tensor).
    pub data: Vec<f32>,
    /// The raw words and their dtype (F16 or BF16) for a half tensor; None for f32.
    half: Option<(DType, Vec<u16>)>,
}

impl HostTensor {
    /// An f32 tensor; `data.len()` must equal the product of `shape`.
    pub fn new(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        check_len(shape, data.len())?;
        Ok(Self {
            shape: shape.to_vec(),
            data,
            half: None,
        })
    }

    /// A half tensor of `dtype` (F16 or BF16) holding the raw words `words`; `words.len()` must
    /// equal the product of `shape`. The f32 view is the words widened exactly.
    pub fn from_half(shape: &[usize], dtype: DType, words: Vec<u16>) -> Result<Self> {
        if !dtype.is_half() {
            return Err(Error::DType {
                name: format!("HostTensor::from_half, shape {shape:?}"),
                expected: "f16 or bf16".into(),
                got: dtype.to_string(),
            });
        }
        check_len(shape, words.len())?;
        let data = words
            .iter()
            .map(|&w| dtype.half_to_f32(w).expect("a half dtype"))
            .collect();
        Ok(Self {
            shape: shape.to_vec(),
            data,
            half: Some((dtype, words)),
        })
    }

    /// `data` rounded to `dtype` (F32, F16 or BF16, round to nearest even): a half tensor for
    /// F16/BF16, an f32 one for F32 (whose values are then the widened f32 view).
    pub fn from_f32_as(shape: &[usize], dtype: DType, data: &[f32]) -> Result<Self> {
        match dtype {
            DType::F32 => Self::new(shape, data.to_vec()),
            DType::F16 | DType::BF16 => Self::from_half(
                shape,
                dtype,
                data.iter()
                    .map(|&x| dtype.half_bits(x).expect("a half dtype"))
                    .collect(),
            ),
            other => Err(Error::DType {
                name: format!("HostTensor::from_f32_as, shape {shape:?}"),
                expected: "f32, f16 or bf16".into(),
                got: other.to_string(),
            }),
        }
    }

    /// The storage dtype: F32, F16 or BF16.
    pub fn dtype(&self) -> DType {
        self.half.as_ref().map_or(DType::F32, |(d, _)| *d)
    }

    /// The raw 16-bit words of a half tensor (None for f32).
    pub fn half_words(&self) -> Option<&[u16]> {
        self.half.as_ref().map(|(_, w)| w.as_slice())
    }

    /// The values as f32 (the widened view of a half tensor); the same as `data`.
    pub fn to_f32(&self) -> &[f32] {
        &self.data
    }

    /// Upload in the stored dtype: a half tensor's raw words go to an F16/BF16 GPU tensor
    /// unchanged ([`Gpu::upload`] of `u16`), an f32 tensor to an F32 one.
    pub fn upload(&self, gpu: &Gpu) -> Result<Tensor> {
        match &self.half {
            Some((dtype, words)) => gpu.upload(&self.shape, *dtype, words),
            None => gpu.upload_f32(&self.shape, &self.data),
        }
    }

    /// Upload as `dtype` (F32, F16 or BF16): the stored words when `dtype` is the stored
    /// dtype, else the f32 view rounded to `dtype` (widening a half tensor to F32 is exact).
    pub fn upload_as(&self, gpu: &Gpu, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            self.upload(gpu)
        } else {
            gpu.upload_f32_as(&self.shape, dtype, &self.data)
        }
    }

    /// Error naming `name` unless the shape is exactly `shape` (`spelled` is the symbolic form,
    /// e.g. `"(Bt, D, L)"`).
    pub fn expect(&self, name: &str, spelled: &str, shape: &[usize]) -> Result<()> {
        if self.shape != shape {
            return Err(Error::shape(
                name,
                format!("{spelled} = {shape:?}"),
                &self.shape,
            ));
        }
        Ok(())
    }

    /// The same elements with another shape of the same element count.
    pub fn reshaped(&self, shape: &[usize]) -> Result<HostTensor> {
        check_len(shape, self.data.len())?;
        Ok(HostTensor {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

fn check_len(shape: &[usize], len: usize) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != len {
        return Err(Error::invalid(format!(
            "{len} values do not fill shape {shape:?} ({n} elements)"
        )));
    }
    Ok(())
}

/// Every tensor of a safetensors file: f32 and f16/bf16 as stored, f64 narrowed to f32.
#[derive(Clone, Debug, Default)]
pub struct SafeTensors {
    path: String,
    tensors: BTreeMap<String, HostTensor>,
    ids: BTreeMap<String, IdTensor>,
}

/// An integer tensor from a safetensors file (I32, I64, U32 or U8 as stored, held as i64):
/// token ids, sequence boundaries.
#[derive(Clone, Debug, PartialEq)]
pub struct IdTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: Vec<i64>,
}

impl IdTensor {
    /// A tensor of `shape` holding `data` (whose length must be the product of `shape`).
    pub fn new(shape: &[usize], data: Vec<i64>) -> Result<Self> {
        check_len(shape, data.len())?;
        Ok(Self {
            shape: shape.to_vec(),
            data,
        })
    }
}

impl SafeTensors {
    /// Read and convert every tensor of `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parse a safetensors image held in memory; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let view = View::deserialize(bytes).map_err(|e| Error::Format {
            path: origin.to_string(),
            message: format!("not a valid safetensors file: {e}"),
        })?;
        let mut tensors = BTreeMap::new();
        let mut ids = BTreeMap::new();
        for (name, t) in view.iter() {
            let raw = t.data();
            let ints: Option<Vec<i64>> = match t.dtype() {
                Dtype::I64 => Some(
                    raw.chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                        .collect(),
                ),
                Dtype::I32 => Some(
                    raw.chunks_exact(4)
                        .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64)
                        .collect(),
                ),
                Dtype::U32 => Some(
                    raw.chunks_exact(4)
                        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as i64)
                        .collect(),
                ),
                Dtype::U8 => Some(raw.iter().map(|&b| b as i64).collect()),
                _ => None,
            };
            if let Some(data) = ints {
                ids.insert(name.to_string(), IdTensor::new(t.shape(), data)?);
                continue;
            }
            let words = || -> Vec<u16> {
                raw.chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect()
            };
            let tensor = match t.dtype() {
                Dtype::F32 => HostTensor::new(
                    t.shape(),
                    raw.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                )?,
                Dtype::F16 => HostTensor::from_half(t.shape(), DType::F16, words())?,
                Dtype::BF16 => HostTensor::from_half(t.shape(), DType::BF16, words())?,
                Dtype::F64 => HostTensor::new(
                    t.shape(),
                    raw.chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                        .collect(),
                )?,
                other => {
                    return Err(Error::DType {
                        name: name.to_string(),
                        expected: "F32, F16, BF16, F64, or an integer type".into(),
                        got: format!("{other:?} (in {origin})"),
                    })
                }
            };
            tensors.insert(name.to_string(), tensor);
        }
        Ok(Self {
            path: origin.to_string(),
            tensors,
            ids,
        })
    }

    /// The integer tensor called `name` (token ids), or an error naming it and the file.
    pub fn get_ids(&self, name: &str) -> Result<&IdTensor> {
        self.ids.get(name).ok_or_else(|| {
            if self.tensors.contains_key(name) {
                Error::DType {
                    name: name.to_string(),
                    expected: "an integer type (I32 or I64)".into(),
                    got: "a floating-point tensor".into(),
                }
            } else {
                Error::MissingTensor {
                    name: name.to_string(),
                    context: self.missing_context(),
                }
            }
        })
    }

    /// The tensor called `name`, or an error naming it, the file (or "the in-memory
    /// safetensors" for one built or parsed without a name) and, when there are few, the
    /// tensors the file does have.
    pub fn get(&self, name: &str) -> Result<&HostTensor> {
        self.tensors.get(name).ok_or_else(|| {
            if self.ids.contains_key(name) {
                Error::DType {
                    name: name.to_string(),
                    expected: "F32, F16, BF16 or F64".into(),
                    got: "an integer tensor".into(),
                }
            } else {
                Error::MissingTensor {
                    name: name.to_string(),
                    context: self.missing_context(),
                }
            }
        })
    }

    /// Where a missing tensor was looked for, and what was there instead.
    fn missing_context(&self) -> String {
        /// Up to this many names are listed in full.
        const LIST: usize = 12;
        let origin = if self.path.is_empty() {
            "the in-memory safetensors".to_string()
        } else {
            self.path.clone()
        };
        let mut names: Vec<&str> = self.tensors.keys().map(|s| s.as_str()).collect();
        names.extend(self.ids.keys().map(|s| s.as_str()));
        names.sort_unstable();
        let have = match names.len() {
            0 => "it has no tensors".to_string(),
            n if n <= LIST => format!("it has: {}", names.join(", ")),
            n => format!("it has {n} tensors, e.g. {}, …", names[..LIST].join(", ")),
        };
        format!(" in {origin} ({have})")
    }

    /// The tensor called `name` if present.
    pub fn optional(&self, name: &str) -> Option<&HostTensor> {
        self.tensors.get(name)
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.tensors.keys().map(|s| s.as_str()).collect()
    }

    /// Move every tensor of `other` into this set (a sharded checkpoint's files into one); a
    /// name already present is an error naming both sources.
    pub fn absorb(&mut self, other: SafeTensors) -> Result<()> {
        for name in other.tensors.keys().chain(other.ids.keys()) {
            if self.tensors.contains_key(name) || self.ids.contains_key(name) {
                return Err(Error::Format {
                    path: other.path.clone(),
                    message: format!("tensor `{name}` is also in {}", self.path),
                });
            }
        }
        self.tensors.extend(other.tensors);
        self.ids.extend(other.ids);
        Ok(())
    }

    /// Name the set in error messages (e.g. the checkpoint directory of its files).
    pub fn set_origin(&mut self, origin: &str) {
        self.path = origin.to_string();
    }

    /// Add or replace a tensor (for building files in memory).
    pub fn insert(&mut self, name: &str, tensor: HostTensor) {
        self.tensors.insert(name.to_string(), tensor);
    }
}

/// Serialise `tensors` as safetensors bytes, each in its stored dtype (F32, F16 or BF16).
pub fn to_safetensors_bytes(tensors: &[(&str, &HostTensor)]) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Dtype, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let (dtype, data) = match &t.half {
                Some((d, w)) => (
                    if *d == DType::F16 {
                        Dtype::F16
                    } else {
                        Dtype::BF16
                    },
                    w.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                None => (
                    Dtype::F32,
                    t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
            };
            (name.to_string(), dtype, data, t.shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, dtype, data, shape)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::invalid(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::invalid(e.to_string()))
}

/// Write integer tensors (as I64) to a safetensors file, atomically: an input_ids file.
pub fn write_id_tensors(path: &Path, tensors: &[(&str, &IdTensor)]) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let data = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name.to_string(), data, t.shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, data, shape)| {
            safetensors::tensor::TensorView::new(Dtype::I64, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::invalid(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| Error::invalid(e.to_string()))?;
    write_bytes_atomically(path, &bytes)
}

/// Write `tensors` as a safetensors file (each tensor in its stored dtype), atomically (temporary file, then rename).
pub fn write_safetensors(path: &Path, tensors: &[(&str, &HostTensor)]) -> Result<()> {
    write_bytes_atomically(path, &to_safetensors_bytes(tensors)?)
}

fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_covers_normal_subnormal_and_special_values() {
        let f16_to_f32 = |w| DType::F16.half_to_f32(w).unwrap();
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn round_trip_and_errors() {
        let a = HostTensor::new(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let b = HostTensor::new(&[1], vec![-7.5]).unwrap();
        let bytes = to_safetensors_bytes(&[("a", &a), ("b", &b)]).unwrap();
        let file = SafeTensors::from_bytes(&bytes, "mem").unwrap();
        assert_eq!(file.get("a").unwrap(), &a);
        assert_eq!(file.get("b").unwrap(), &b);
        assert_eq!(file.names(), vec!["a", "b"]);
        let err = file.get("c").unwrap_err().to_string();
        assert!(err.contains("`c`") && err.contains("mem"), "{err}");
        assert!(a.expect("a", "(2, 3)", &[3, 2]).is_err());
        assert!(HostTensor::new(&[2], vec![1.0]).is_err());
        assert!(SafeTensors::from_bytes(b"not safetensors", "junk").is_err());
    }

    #[test]
    fn id_tensors_round_trip() {
        let dir = std::env::temp_dir().join(format!("ssm-mla-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ids.safetensors");
        let ids = IdTensor::new(&[2, 3], vec![0, 5, 129279, 7, 1, 2]).unwrap();
        write_id_tensors(&path, &[("input_ids", &ids)]).unwrap();
        let file = SafeTensors::read(&path).unwrap();
        assert_eq!(file.get_ids("input_ids").unwrap(), &ids);
        assert!(file.get("input_ids").is_err());
        let err = file.get_ids("other").unwrap_err().to_string();
        assert!(err.contains("input_ids"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn half_tensors_keep_their_words() {
        let vals = [1.0f32, -0.3, 65504.0, 1e-6];
        for dtype in [DType::F16, DType::BF16] {
            let t = HostTensor::from_f32_as(&[2, 2], dtype, &vals).unwrap();
            assert_eq!(t.dtype(), dtype);
            let words = t.half_words().unwrap().to_vec();
            let want: Vec<f32> = vals.iter().map(|&x| dtype.round_f32(x)).collect();
            assert_eq!(t.to_f32(), want.as_slice());
            let bytes = to_safetensors_bytes(&[("w", &t)]).unwrap();
            let back = SafeTensors::from_bytes(&bytes, "mem").unwrap();
            let w = back.get("w").unwrap();
            assert_eq!(w.dtype(), dtype);
            assert_eq!(w.half_words().unwrap(), words.as_slice());
            assert_eq!(w, &t);
        }
        assert!(HostTensor::from_half(&[2], DType::F32, vec![0, 0]).is_err());
        assert!(HostTensor::from_half(&[3], DType::BF16, vec![0, 0]).is_err());
        assert_eq!(
            HostTensor::new(&[1], vec![2.0]).unwrap().dtype(),
            DType::F32
        );
    }

    #[test]
    fn writes_atomically() {
        let dir = std::env::temp_dir().join(format!("ssm-mla-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let a = HostTensor::new(&[3], vec![1.0, 2.0, 3.0]).unwrap();
        write_safetensors(&path, &[("a", &a)]).unwrap();
        assert_eq!(SafeTensors::read(&path).unwrap().get("a").unwrap(), &a);
        let missing = dir.join("no/such/dir/t.safetensors");
        assert!(write_safetensors(&missing, &[("a", &a)]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
