//! Strided windows of a tensor: how an op reads part of a tensor, or a tensor in another layout,
//! without a copy.
//!
//! A [`View`] is a tensor plus an element offset, a shape and one stride per dimension (in
//! elements): element (i0, i1, …) sits at `offset + Σ i_k · strides[k]` of the tensor's buffer.
//! Two things a model needs come out of it: a packed projection split without copies (Mamba's
//! in_proj output (T, 2·D_in) is x = columns 0..D_in and z = columns D_in..2·D_in, both views with
//! row stride 2·D_in), and one tensor read in either layout ((Bt, L, D) seen as (Bt, D, L) is a
//! permutation of strides). Views are plain host values; an op that accepts them binds the whole
//! buffer and passes offset and strides as uniforms, so the kernel computes addresses itself.
//! Only ops that say so take views; the rest take [`Tensor`]s (contiguous, row-major).

use crate::error::{Error, Result};
use crate::runtime::tensor::{DType, Tensor};

/// A strided window of a [`Tensor`] (see the module docs).
#[derive(Clone, Debug)]
pub struct View {
    tensor: Tensor,
    offset: usize,
    shape: Vec<usize>,
    strides: Vec<usize>,
}

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    strides
}

impl From<&Tensor> for View {
    fn from(tensor: &Tensor) -> Self {
        View {
            tensor: tensor.clone(),
            offset: 0,
            shape: tensor.shape().to_vec(),
            strides: contiguous_strides(tensor.shape()),
        }
    }
}

impl From<Tensor> for View {
    fn from(tensor: Tensor) -> Self {
        View::from(&tensor)
    }
}

impl Tensor {
    /// The whole tensor as a (contiguous) [`View`].
    pub fn view(&self) -> View {
        View::from(self)
    }
}

impl View {
    /// The tensor this view reads.
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// Element offset of element (0, 0, …) in the tensor.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Stride of each dimension, in elements.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Element type (the tensor's).
    pub fn dtype(&self) -> DType {
        self.tensor.dtype()
    }

    /// Number of elements in the view.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the view is the whole tensor in row-major order (an op may then use its
    /// contiguous fast path).
    pub fn is_whole(&self) -> bool {
        self.offset == 0
            && self.shape == self.tensor.shape()
            && self.strides == contiguous_strides(&self.shape)
    }

    /// Element index of the last element the view reaches, plus one (0 when empty).
    pub fn extent(&self) -> usize {
        if self.is_empty() {
            return 0;
        }
        self.offset
            + self
                .shape
                .iter()
                .zip(&self.strides)
                .map(|(n, s)| (n - 1) * s)
                .sum::<usize>()
            + 1
    }

    /// Elements `start .. start + len` of dimension `dim`.
    pub fn narrow(mut self, dim: usize, start: usize, len: usize) -> Result<View> {
        let size = *self.shape.get(dim).ok_or_else(|| {
            Error::invalid(format!(
                "view of shape {:?} has no dimension {dim}",
                self.shape
            ))
        })?;
        if start + len > size {
            return Err(Error::invalid(format!(
                "window {start}..{} of dimension {dim} exceeds the view's shape {:?}",
                start + len,
                self.shape
            )));
        }
        self.offset += start * self.strides[dim];
        self.shape[dim] = len;
        Ok(self)
    }

    /// Split the last dimension into consecutive pieces of `sizes` (which must add up to it):
    /// how a packed projection's output is taken apart.
    pub fn split_last(&self, sizes: &[usize]) -> Result<Vec<View>> {
        let last = self.shape.len().checked_sub(1).ok_or_else(|| {
            Error::invalid("cannot split the last dimension of a 0-dimensional view")
        })?;
        if sizes.iter().sum::<usize>() != self.shape[last] {
            return Err(Error::invalid(format!(
                "pieces {sizes:?} do not add up to the last dimension of shape {:?}",
                self.shape
            )));
        }
        let mut start = 0;
        let mut pieces = Vec::with_capacity(sizes.len());
        for &n in sizes {
            pieces.push(self.clone().narrow(last, start, n)?);
            start += n;
        }
        Ok(pieces)
    }

    /// The same elements with dimensions reordered: dimension k of the result is dimension
    /// `order[k]` of this view (e.g. `[0, 2, 1]` sees (Bt, L, D) as (Bt, D, L)).
    pub fn permute(&self, order: &[usize]) -> Result<View> {
        let mut seen = vec![false; self.shape.len()];
        if order.len() != self.shape.len()
            || order
                .iter()
                .any(|&k| k >= seen.len() || std::mem::replace(&mut seen[k], true))
        {
            return Err(Error::invalid(format!(
                "{order:?} is not a permutation of the {} dimensions of shape {:?}",
                self.shape.len(),
                self.shape
            )));
        }
        Ok(View {
            tensor: self.tensor.clone(),
            offset: self.offset,
            shape: order.iter().map(|&k| self.shape[k]).collect(),
            strides: order.iter().map(|&k| self.strides[k]).collect(),
        })
    }

    /// Insert a dimension of size 1 at `dim` (so a (L, D) view serves as (1, L, D)).
    pub fn unsqueeze(&self, dim: usize) -> Result<View> {
        if dim > self.shape.len() {
            return Err(Error::invalid(format!(
                "cannot insert dimension {dim} into shape {:?}",
                self.shape
            )));
        }
        let mut v = self.clone();
        v.shape.insert(dim, 1);
        v.strides.insert(dim, 0);
        Ok(v)
    }

    /// Any strided window of `tensor` (PyTorch's `as_strided`): element (i0, i1, …) at
    /// `offset + Σ i_k · strides[k]`. Strides may repeat elements (0 broadcasts a dimension);
    /// ops that write through a view refuse such overlap. Error unless `shape` and `strides`
    /// have one entry per dimension and every element lies inside the tensor.
    pub fn as_strided(
        tensor: &Tensor,
        offset: usize,
        shape: &[usize],
        strides: &[usize],
    ) -> Result<View> {
        let v = View {
            tensor: tensor.clone(),
            offset,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
        };
        if shape.len() != strides.len() || v.extent() > tensor.len() {
            return Err(Error::invalid(format!(
                "view of shape {shape:?}, strides {strides:?} at offset {offset} does not fit a \
                 tensor of shape {:?}",
                tensor.shape()
            )));
        }
        Ok(v)
    }

    /// Error naming the view unless it has exactly `shape` and `dtype`; `spelled` (e.g.
    /// `"(T, D)"`) goes into the message.
    pub fn expect(&self, name: &str, spelled: &str, shape: &[usize], dtype: DType) -> Result<()> {
        self.tensor.expect_dtype(name, dtype)?;
        if self.shape != shape {
            return Err(Error::shape(
                name,
                format!("{spelled} = {shape:?}"),
                &self.shape,
            ));
        }
        Ok(())
    }

    /// The offset and strides as u32 uniforms, or a Limit error naming the view when an index
    /// does not fit in 32 bits.
    pub fn index_u32(&self, name: &str) -> Result<(u32, Vec<u32>)> {
        let fit = |x: usize| {
            u32::try_from(x).map_err(|_| Error::Limit {
                what: format!("view `{name}`"),
                detail: format!("element index {x} needs more than 32 bits"),
            })
        };
        fit(self.extent())?;
        let strides = self
            .strides
            .iter()
            .map(|&s| fit(s))
            .collect::<Result<_>>()?;
        Ok((fit(self.offset)?, strides))
    }
}

#[cfg(test)]
mod tests {
    use super::contiguous_strides;

    #[test]
    fn row_major_strides() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[5]), vec![1]);
        assert!(contiguous_strides(&[]).is_empty());
    }
}
