//! Random inputs of `embedding`: a table of a storage dtype and token ids, shared by the test,
//! the suite and the bench.

use crate::error::Result;
use crate::io::HostTensor;
use crate::ops::embedding::Embedding;
use crate::rng::Rng;
use crate::runtime::{DType, Gpu, Tensor};

/// One lookup: `ids` (T) into `table` (vocab, hidden).
#[derive(Clone, Debug)]
pub struct Problem {
    /// Token ids, each < vocab.
    pub ids: Vec<u32>,
    /// The table, N(0, 1) values rounded to its dtype.
    pub table: HostTensor,
}

impl Problem {
    /// `tokens` random ids into a random `vocab` × `hidden` table stored as `dtype`.
    pub fn random(rng: &mut Rng, vocab: usize, hidden: usize, tokens: usize, dtype: DType) -> Self {
        let vals = rng.normal_vec(vocab * hidden, 0.0, 1.0);
        Self {
            ids: (0..tokens).map(|_| rng.below(vocab) as u32).collect(),
            table: HostTensor::from_f32_as(&[vocab, hidden], dtype, &vals).expect("a float dtype"),
        }
    }

    /// Width of a row.
    pub fn hidden(&self) -> usize {
        self.table.shape[1]
    }

    /// The f64 reference output (T, hidden).
    pub fn reference(&self) -> Vec<f64> {
        crate::reference::embedding::embedding(&self.ids, self.table.to_f32(), self.hidden())
            .expect("ids drawn inside the vocabulary")
    }

    /// Upload ids and table; a NaN-poisoned output (T, hidden).
    pub fn upload(&self, gpu: &Gpu) -> Result<(Tensor, Tensor, Tensor)> {
        Ok((
            Embedding::upload_ids(gpu, &self.ids, self.table.shape[0])?,
            self.table.upload(gpu)?,
            gpu.nan_f32(&[self.ids.len(), self.hidden()])?,
        ))
    }

    /// Run on the GPU and read the output back.
    pub async fn run(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let (ids, table, out) = self.upload(gpu)?;
        let mut batch = gpu.batch();
        Embedding::record(&mut batch, &ids, &table, &out)?;
        batch.run()?;
        gpu.read_f32_async(&out).await
    }
}
