//! Problem shapes and their validation, shared by the GPU ops and the CPU references: each
//! kernel's sizes (such as [`selective_scan::ScanDims`]), how they are derived from the input
//! shapes, and the errors when inputs do not fit together. Nothing here touches the GPU, so the references run and the
//! checks are testable without a device. The op modules re-export these types, so
//! `ops::selective_scan::ScanDims` and `spec::selective_scan::ScanDims` are the same type.
//!
//! One file per kernel. When a size is read from one tensor and checked on another, a
//! disagreement names both tensors, their shapes and the dimension ([`Error::Mismatch`]).

pub mod absorbed_attention;
pub mod causal_conv1d;
pub mod diagonal_scan;
pub mod fma_peak;
pub mod latent_cache;
pub mod matmul;
pub mod mla;
pub mod moe;
pub mod selective_scan;
pub mod ssd_scan;
pub mod state_update;

use crate::error::{Error, Result};

/// A tensor's name and shape, as validation messages spell them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Named<'a> {
    pub(crate) name: &'a str,
    pub(crate) shape: &'a [usize],
}

/// Name a shape for validation.
pub(crate) fn named<'a>(name: &'a str, shape: &'a [usize]) -> Named<'a> {
    Named { name, shape }
}

impl<'a> Named<'a> {
    /// Error unless the tensor has `rank` dimensions (`spelled` is the expected shape, e.g.
    /// `"(Bt, D, L)"`).
    pub(crate) fn rank(self, rank: usize, spelled: impl Into<String>) -> Result<Self> {
        if self.shape.len() != rank {
            return Err(Error::shape(self.name, spelled, self.shape));
        }
        Ok(self)
    }

    /// Error unless axis `i` of this tensor equals axis `j` of `other`: the size `dim` is read
    /// from this tensor and checked on `other`.
    pub(crate) fn agree(self, i: usize, other: Named, j: usize, dim: &'static str) -> Result<()> {
        let (a, b) = (self.shape[i], other.shape[j]);
        if a != b {
            return Err(Error::mismatch(
                self.name,
                self.shape,
                other.name,
                other.shape,
                dim,
                a,
                b,
            ));
        }
        Ok(())
    }

    /// Error unless `other` has this tensor's shape: a rank error names `other` with
    /// `spelled`, a differing axis names both tensors and `dims[axis]`.
    pub(crate) fn same_shape(
        self,
        other: Named,
        spelled: &str,
        dims: &[&'static str],
    ) -> Result<()> {
        other.rank(
            self.shape.len(),
            format!("{spelled} = {:?} like `{}`", self.shape, self.name),
        )?;
        for (axis, dim) in dims.iter().enumerate() {
            self.agree(axis, other, axis, dim)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_name_both_tensors_and_the_dimension() {
        let u = named("u", &[2, 4, 9]);
        let delta = named("delta", &[2, 4, 10]);
        let msg = u
            .same_shape(delta, "(Bt, D, L)", &["Bt", "D", "L"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "tensors `u` (2, 4, 9) and `delta` (2, 4, 10) disagree on L: 9 vs 10"
        );
        let msg = u
            .same_shape(named("z", &[2, 4]), "(Bt, D, L)", &["Bt", "D", "L"])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("tensor `z`") && msg.contains("like `u`"),
            "{msg}"
        );
    }
}
