//! Safetensors in and out: host tensors for the CLI and for apps that keep weights
//! and inputs in files. Reading converts f32, f16, bf16 and f64 to f32; anything else is refused
//! with an error naming the tensor. Writing goes to a temporary file that is renamed into place,
//! so a failed run never leaves a half-written output.

use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors as View};
use std::collections::BTreeMap;
use std::path::Path;

/// A tensor in host memory: row-major f32 with a shape.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor; `data.len()` must equal the product of `shape`.
    pub fn new(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::invalid(format!(
                "{} values do not fill shape {shape:?} ({n} elements)",
                data.len()
            )));
        }
        Ok(Self {
            shape: shape.to_vec(),
            data,
        })
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

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Every tensor of a safetensors file, converted to f32.
#[derive(Clone, Debug, Default)]
pub struct SafeTensors {
    path: String,
    tensors: BTreeMap<String, HostTensor>,
}

fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exp = ((bits >> 10) & 0x1f) as u32;
    let mant = (bits & 0x3ff) as u32;
    let value = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: renormalise.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (m << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(value)
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
        for (name, t) in view.iter() {
            let raw = t.data();
            let data: Vec<f32> = match t.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
                    .collect(),
                Dtype::F64 => raw
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                    .collect(),
                other => {
                    return Err(Error::DType {
                        name: name.to_string(),
                        expected: "F32, F16, BF16 or F64".into(),
                        got: format!("{other:?} (in {origin})"),
                    })
                }
            };
            tensors.insert(name.to_string(), HostTensor::new(t.shape(), data)?);
        }
        Ok(Self {
            path: origin.to_string(),
            tensors,
        })
    }

    /// The tensor called `name`, or an error naming it, the file (or "the in-memory
    /// safetensors" for one built or parsed without a name) and, when there are few, the
    /// tensors the file does have.
    pub fn get(&self, name: &str) -> Result<&HostTensor> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            context: self.missing_context(),
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
        let names: Vec<&str> = self.tensors.keys().map(|s| s.as_str()).collect();
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

    /// Add or replace a tensor (for building files in memory).
    pub fn insert(&mut self, name: &str, tensor: HostTensor) {
        self.tensors.insert(name.to_string(), tensor);
    }
}

/// Serialise `tensors` as f32 safetensors bytes.
pub fn to_safetensors_bytes(tensors: &[(&str, &HostTensor)]) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            (
                name.to_string(),
                bytemuck::cast_slice::<f32, u8>(&t.data).to_vec(),
                t.shape.clone(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, data, shape)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::invalid(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::invalid(e.to_string()))
}

/// Write `tensors` as an f32 safetensors file, atomically (temporary file, then rename).
pub fn write_safetensors(path: &Path, tensors: &[(&str, &HostTensor)]) -> Result<()> {
    let bytes = to_safetensors_bytes(tensors)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, &bytes).map_err(io)?;
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
