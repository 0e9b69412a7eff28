//! Length bucketing: batches of similar lengths, so padding (and, with packed lengths, the
//! compute spent on it) shrinks.
//!
//! Samples are shuffled, cut into pools of `POOL_BATCHES` batches, sorted by length inside each
//! pool and cut into batches; the batch order is shuffled again. Batches stay random from
//! epoch to epoch while lengths inside a batch are close.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Batches per sorting pool.
pub const POOL_BATCHES: usize = 32;

/// Random batches of sample indices, without bucketing.
pub fn random_batches(n: usize, batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut ids: Vec<usize> = (0..n).collect();
    ids.shuffle(&mut StdRng::seed_from_u64(seed));
    ids.chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// Batches of sample indices grouped by `lengths` (see the module docs). Every index appears
/// in exactly one batch.
pub fn bucketed_batches(lengths: &[usize], batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ids: Vec<usize> = (0..lengths.len()).collect();
    ids.shuffle(&mut rng);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for pool in ids.chunks_mut(batch_size * POOL_BATCHES) {
        pool.sort_by_key(|&i| lengths[i]);
        batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// Share of padded positions when each batch is padded to its longest sample.
pub fn padding_fraction(lengths: &[usize], batches: &[Vec<usize>]) -> f64 {
    let (mut real, mut total) = (0usize, 0usize);
    for batch in batches {
        let longest = batch.iter().map(|&i| lengths[i]).max().unwrap_or(0);
        real += batch.iter().map(|&i| lengths[i]).sum::<usize>();
        total += longest * batch.len();
    }
    if total == 0 {
        0.0
    } else {
        1.0 - real as f64 / total as f64
    }
}

/// Padding with and without bucketing, for the same lengths, batch size and seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaddingReport {
    /// Padding fraction of random batches.
    pub random: f64,
    /// Padding fraction of bucketed batches.
    pub bucketed: f64,
}

impl PaddingReport {
    /// Measures both batchings.
    pub fn measure(lengths: &[usize], batch_size: usize, seed: u64) -> Self {
        Self {
            random: padding_fraction(lengths, &random_batches(lengths.len(), batch_size, seed)),
            bucketed: padding_fraction(lengths, &bucketed_batches(lengths, batch_size, seed)),
        }
    }
}

impl std::fmt::Display for PaddingReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "padding {:.1}% with random batches, {:.1}% with length bucketing",
            100.0 * self.random,
            100.0 * self.bucketed
        )
    }
}

/// A dataset whose items are whole batches (use a data loader batch size of 1 and
/// [`FlattenBatcher`]), for batchings a plain per-item loader cannot express.
#[derive(Debug, Clone)]
pub struct BatchedDataset<T> {
    batches: Vec<Vec<T>>,
}

impl<T> BatchedDataset<T> {
    /// A dataset of ready-made batches, served in this order unless the loader shuffles.
    pub fn from_batches(batches: Vec<Vec<T>>) -> Self {
        Self { batches }
    }
}

impl<T: Clone> BatchedDataset<T> {
    /// The batches of `items` given by `batches` (lists of indices).
    pub fn new(items: &[T], batches: &[Vec<usize>]) -> Self {
        Self {
            batches: batches
                .iter()
                .map(|b| b.iter().map(|&i| items[i].clone()).collect())
                .collect(),
        }
    }
}

impl<T: Clone + Send + Sync> Dataset<Vec<T>> for BatchedDataset<T> {
    fn get(&self, index: usize) -> Option<Vec<T>> {
        self.batches.get(index).cloned()
    }

    fn len(&self) -> usize {
        self.batches.len()
    }
}

/// Collates the one pre-formed batch a loader of [`BatchedDataset`] hands over with `inner`.
#[derive(Debug, Clone)]
pub struct FlattenBatcher<Bt> {
    inner: Bt,
}

impl<Bt> FlattenBatcher<Bt> {
    /// Wraps the item batcher `inner`.
    pub fn new(inner: Bt) -> Self {
        Self { inner }
    }
}

impl<B: Backend, I, O, Bt: Batcher<B, I, O>> Batcher<B, Vec<I>, O> for FlattenBatcher<Bt> {
    fn batch(&self, items: Vec<Vec<I>>, device: &B::Device) -> O {
        self.inner
            .batch(items.into_iter().flatten().collect(), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucketing_reduces_padding() {
        let lengths: Vec<usize> = (0..2000).map(|i| 2 + (i * 7919) % 15).collect();
        let report = PaddingReport::measure(&lengths, 32, 1);
        assert!(report.bucketed < report.random / 4.0, "{report}");
        assert!(report.to_string().starts_with("padding "));
    }
}
