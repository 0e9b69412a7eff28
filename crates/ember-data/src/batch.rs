//! Collation of token sequences into padded, masked batches.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;

/// The target written at padded positions: PyTorch's default `ignore_index`. It is negative,
/// so it can never be a token id or a class label; losses must skip it (ember's masked losses
/// do, through the mask).
pub const IGNORE_INDEX: i64 = -100;

/// Row-major `[rows, steps]` buffers of `fill`, with row `r` starting with `rows[r]`.
pub fn pad_rows<T: Copy>(rows: &[&[T]], steps: usize, fill: T) -> Vec<T> {
    let mut out = vec![fill; rows.len() * steps];
    for (r, row) in rows.iter().enumerate() {
        out[r * steps..r * steps + row.len()].copy_from_slice(row);
    }
    out
}

/// The `[batch, steps]` mask that is true at the first `lengths[b]` steps of each row.
pub fn length_mask<B: Backend>(
    lengths: &[usize],
    steps: usize,
    device: &B::Device,
) -> Tensor<B, 2, Bool> {
    let mut mask = vec![false; lengths.len() * steps];
    for (b, &len) in lengths.iter().enumerate() {
        mask[b * steps..b * steps + len].fill(true);
    }
    Tensor::from_data(TensorData::new(mask, [lengths.len(), steps]), device)
}

/// An integer tensor `[rows, steps]` from row-major ids.
pub fn int_tensor<B: Backend>(
    ids: Vec<i64>,
    rows: usize,
    steps: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(ids, [rows, steps]), device)
}

/// One training sequence: `<s>`, the characters, `</s>`. The model reads all but the last
/// token and predicts all but the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSequence {
    /// Token ids, at least two.
    pub tokens: Vec<usize>,
}

/// A padded batch of next-token prediction examples.
#[derive(Debug, Clone)]
pub struct SequenceBatch<B: Backend> {
    /// Input ids `[batch, seq]`, padded with the pad id.
    pub inputs: Tensor<B, 2, Int>,
    /// Target ids `[batch, seq]` (inputs shifted by one), padded with [`IGNORE_INDEX`].
    pub targets: Tensor<B, 2, Int>,
    /// `[batch, seq]`, true at valid (non-padded) steps.
    pub mask: Tensor<B, 2, Bool>,
    /// Valid steps of each sequence.
    pub lengths: Vec<usize>,
}

impl<B: Backend> SequenceBatch<B> {
    /// Number of valid target tokens in the batch.
    pub fn num_tokens(&self) -> usize {
        self.lengths.iter().sum()
    }
}

/// Pads each batch to its longest sequence.
#[derive(Debug, Clone)]
pub struct SequenceBatcher {
    pad_id: usize,
}

impl SequenceBatcher {
    /// A batcher that pads with `pad_id`.
    pub fn new(pad_id: usize) -> Self {
        Self { pad_id }
    }
}

impl<B: Backend> Batcher<B, TokenSequence, SequenceBatch<B>> for SequenceBatcher {
    fn batch(&self, items: Vec<TokenSequence>, device: &B::Device) -> SequenceBatch<B> {
        let lengths: Vec<usize> = items.iter().map(|s| s.tokens.len() - 1).collect();
        let steps = lengths.iter().copied().max().unwrap_or(0);
        let ids: Vec<Vec<i64>> = items
            .iter()
            .map(|s| s.tokens.iter().map(|&t| t as i64).collect())
            .collect();
        let inputs: Vec<&[i64]> = ids.iter().map(|t| &t[..t.len() - 1]).collect();
        let targets: Vec<&[i64]> = ids.iter().map(|t| &t[1..]).collect();
        let batch = items.len();
        SequenceBatch {
            inputs: int_tensor(
                pad_rows(&inputs, steps, self.pad_id as i64),
                batch,
                steps,
                device,
            ),
            targets: int_tensor(
                pad_rows(&targets, steps, IGNORE_INDEX),
                batch,
                steps,
                device,
            ),
            mask: length_mask(&lengths, steps, device),
            lengths,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn pads_shifts_and_masks() {
        let items = vec![
            TokenSequence {
                tokens: vec![1, 5, 6, 2],
            },
            TokenSequence {
                tokens: vec![1, 7, 2],
            },
        ];
        let b: SequenceBatch<NdArray> = SequenceBatcher::new(0).batch(items, &Default::default());
        assert_eq!(b.lengths, [3, 2]);
        assert_eq!(b.num_tokens(), 5);
        let ints = |t: Tensor<NdArray, 2, Int>| t.into_data().iter::<i64>().collect::<Vec<_>>();
        assert_eq!(ints(b.inputs), [1, 5, 6, 1, 7, 0]);
        assert_eq!(ints(b.targets), [5, 6, 2, 7, 2, IGNORE_INDEX]);
        let mask: Vec<bool> = b.mask.into_data().iter::<bool>().collect();
        assert_eq!(mask, [true, true, true, true, true, false]);
    }
}
