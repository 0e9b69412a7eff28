//! Collation of token sequences into padded, masked batches.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;

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
    /// Target ids `[batch, seq]` (inputs shifted by one), padded with the pad id, which never
    /// occurs as a real target.
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
        let batch = items.len();
        let steps = lengths.iter().copied().max().unwrap_or(0);
        let pad = self.pad_id as i64;
        let mut inputs = vec![pad; batch * steps];
        let mut targets = vec![pad; batch * steps];
        let mut mask = vec![false; batch * steps];
        for (b, seq) in items.iter().enumerate() {
            for (t, w) in seq.tokens.windows(2).enumerate() {
                inputs[b * steps + t] = w[0] as i64;
                targets[b * steps + t] = w[1] as i64;
                mask[b * steps + t] = true;
            }
        }
        SequenceBatch {
            inputs: Tensor::from_data(TensorData::new(inputs, [batch, steps]), device),
            targets: Tensor::from_data(TensorData::new(targets, [batch, steps]), device),
            mask: Tensor::from_data(TensorData::new(mask, [batch, steps]), device),
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
        assert_eq!(ints(b.targets), [5, 6, 2, 7, 2, 0]);
        let mask: Vec<bool> = b.mask.into_data().iter::<bool>().collect();
        assert_eq!(mask, [true, true, true, true, true, false]);
    }
}
