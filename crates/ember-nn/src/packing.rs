//! Variable-length batches the way PyTorch packs them: sort by length, and at each step run the
//! cell only on the sequences that are still going.

use burn::prelude::*;
use burn::tensor::BasicOps;

/// A batch's lengths, sorted longest first, with the permutation to and from that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packing {
    /// `order[i]`: the original batch index of sorted row `i`.
    order: Vec<usize>,
    /// Number of sequences with a valid step `t`, for each `t` (non-increasing).
    active: Vec<usize>,
}

impl Packing {
    /// Sorts `lengths` (each in `1..=steps`) longest first, stably.
    ///
    /// # Panics
    /// If a length is 0 or longer than `steps`, as `pack_padded_sequence` refuses them too.
    pub fn new(lengths: &[usize], steps: usize) -> Self {
        assert!(
            lengths.iter().all(|&l| (1..=steps).contains(&l)),
            "every length must be in 1..={steps}, got {lengths:?}"
        );
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&b| std::cmp::Reverse(lengths[b]));
        let active = (0..steps)
            .map(|t| lengths.iter().filter(|&&l| l > t).count())
            .collect();
        Self { order, active }
    }

    /// Number of sequences still running at step `t`; they are sorted rows `0..n`.
    pub fn active_at(&self, t: usize) -> usize {
        self.active[t]
    }

    /// Whether the batch is already sorted longest first.
    pub fn is_sorted(&self) -> bool {
        self.order.iter().enumerate().all(|(i, &b)| i == b)
    }

    /// Reorders `dim` of `x` from the original batch order into sorted order.
    pub fn sort<B: Backend, const D: usize, K: BasicOps<B>>(
        &self,
        x: Tensor<B, D, K>,
        dim: usize,
    ) -> Tensor<B, D, K> {
        self.permute(x, dim, &self.order)
    }

    /// Reorders `dim` of `x` from sorted order back into the original batch order.
    pub fn unsort<B: Backend, const D: usize>(&self, x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
        let mut inverse = vec![0; self.order.len()];
        for (i, &b) in self.order.iter().enumerate() {
            inverse[b] = i;
        }
        self.permute(x, dim, &inverse)
    }

    fn permute<B: Backend, const D: usize, K: BasicOps<B>>(
        &self,
        x: Tensor<B, D, K>,
        dim: usize,
        index: &[usize],
    ) -> Tensor<B, D, K> {
        if self.is_sorted() {
            return x;
        }
        let device = x.device();
        let index: Vec<i64> = index.iter().map(|&i| i as i64).collect();
        let len = index.len();
        x.select(
            dim,
            Tensor::from_data(TensorData::new(index, [len]), &device),
        )
    }
}

/// Each sequence's output at its last valid step: `[batch, features]` from `outputs`
/// `[batch, seq, features]`, where sequence `b` has `lengths[b]` (1..=seq) valid steps.
pub fn last_valid_steps<B: Backend>(outputs: Tensor<B, 3>, lengths: &[usize]) -> Tensor<B, 2> {
    let [batch, steps, width] = outputs.dims();
    if lengths.iter().all(|&l| l == steps) {
        return outputs
            .slice(s![.., steps - 1..steps])
            .reshape([batch, width]);
    }
    let last: Vec<i64> = lengths.iter().map(|&l| l as i64 - 1).collect();
    let index = Tensor::<B, 1, Int>::from_data(TensorData::new(last, [batch]), &outputs.device())
        .reshape([batch, 1, 1])
        .repeat_dim(2, width);
    outputs.gather(1, index).reshape([batch, width])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_longest_first_and_counts_active_rows() {
        let p = Packing::new(&[2, 4, 3], 4);
        assert_eq!(p.order, [1, 2, 0]);
        assert_eq!(
            (0..4).map(|t| p.active_at(t)).collect::<Vec<_>>(),
            [3, 3, 2, 1]
        );
        assert!(!p.is_sorted());
        assert!(Packing::new(&[3, 3, 1], 3).is_sorted());
    }

    #[test]
    #[should_panic(expected = "every length must be in 1..=4")]
    fn zero_length_is_refused() {
        Packing::new(&[0, 4], 4);
    }
}
