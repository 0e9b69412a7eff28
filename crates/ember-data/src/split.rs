//! A deterministic, seeded train/validation split.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::DataError;

/// Training and validation samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Split<T> {
    /// Samples to train on.
    pub train: Vec<T>,
    /// Held-out samples for validation.
    pub valid: Vec<T>,
}

/// Shuffles `items` with `seed` and holds out `valid_fraction` of them (at least one, and at
/// least one left to train on). The same items, fraction and seed always give the same split.
pub fn split_train_valid<T>(
    items: Vec<T>,
    valid_fraction: f64,
    seed: u64,
    what: &str,
) -> Result<Split<T>, DataError> {
    if items.len() < 2 {
        return Err(DataError::TooFewSamples {
            what: what.to_owned(),
            count: items.len(),
            needed: 2,
        });
    }
    let mut items = items;
    items.shuffle(&mut StdRng::seed_from_u64(seed));
    let n_valid =
        ((items.len() as f64 * valid_fraction).round() as usize).clamp(1, items.len() - 1);
    let train = items.split_off(n_valid);
    Ok(Split {
        train,
        valid: items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_and_complete() {
        let items: Vec<u32> = (0..100).collect();
        let a = split_train_valid(items.clone(), 0.1, 7, "x").unwrap();
        let b = split_train_valid(items.clone(), 0.1, 7, "x").unwrap();
        let c = split_train_valid(items.clone(), 0.1, 8, "x").unwrap();
        assert_eq!(a, b);
        assert_ne!(a.valid, c.valid);
        assert_eq!(a.valid.len(), 10);
        let mut all: Vec<u32> = a.train.iter().chain(&a.valid).copied().collect();
        all.sort();
        assert_eq!(all, items);
    }

    #[test]
    fn one_sample_cannot_be_split() {
        let err = split_train_valid(vec!["a"], 0.1, 0, "names.txt").unwrap_err();
        assert!(err.to_string().contains("names.txt has 1 sample"));
    }
}
