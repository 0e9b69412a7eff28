//! Deterministic train/validation/test splits: shuffled, stratified by class, or by position,
//! written as sample indices so that a run can save and reproduce its split.

use std::path::Path;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::{json_file, DataError};

/// The format tag of a saved split.
pub const SPLIT_FORMAT: &str = "ember-split/1";

/// Training, validation and test samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Split<T> {
    /// Samples to train on.
    pub train: Vec<T>,
    /// Held-out samples for validation (model selection).
    pub valid: Vec<T>,
    /// Held-out samples for the final test; empty when no test fraction is asked for.
    pub test: Vec<T>,
}

/// How a split was made: which sample indices went where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitIndices {
    format: String,
    /// How the split was drawn: `shuffled`, `stratified` or `positional`.
    pub method: String,
    /// The seed (unused by `positional`).
    pub seed: u64,
    /// Number of samples split.
    pub total: usize,
    /// Indices of the training samples.
    pub train: Vec<usize>,
    /// Indices of the validation samples.
    pub valid: Vec<usize>,
    /// Indices of the test samples.
    pub test: Vec<usize>,
}

impl SplitIndices {
    fn new(method: &str, seed: u64, total: usize, parts: [Vec<usize>; 3]) -> Self {
        let [train, valid, test] = parts;
        Self {
            format: SPLIT_FORMAT.to_owned(),
            method: method.to_owned(),
            seed,
            total,
            train,
            valid,
            test,
        }
    }

    /// The samples of `items` (the ones that were split) in each part.
    pub fn apply<T: Clone>(&self, items: &[T]) -> Split<T> {
        assert_eq!(
            items.len(),
            self.total,
            "the split was made for other items"
        );
        let pick = |ids: &[usize]| ids.iter().map(|&i| items[i].clone()).collect();
        Split {
            train: pick(&self.train),
            valid: pick(&self.valid),
            test: pick(&self.test),
        }
    }

    /// Writes the split as JSON.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        json_file::save(self, path)
    }

    /// Reads a split written by [`Self::save`].
    pub fn load(path: &Path) -> Result<Self, DataError> {
        json_file::load(path, SPLIT_FORMAT, |s: &Self| &s.format)
    }
}

/// Held-out fractions of a split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fractions {
    /// Share held out for validation, in (0, 1).
    pub valid: f64,
    /// Share held out for testing, in [0, 1); `valid + test < 1`.
    pub test: f64,
}

impl Fractions {
    /// Validation only.
    pub fn valid(valid: f64) -> Self {
        Self { valid, test: 0.0 }
    }

    /// Sizes `(valid, test)` for `n` samples: each part rounded, at least one sample for
    /// validation (and for test when asked), at least one left to train on.
    fn sizes(&self, n: usize, what: &str) -> Result<(usize, usize), DataError> {
        let needed = if self.test > 0.0 { 3 } else { 2 };
        if n < needed {
            return Err(DataError::TooFewSamples {
                what: what.to_owned(),
                count: n,
                needed,
            });
        }
        let round = |f: f64| ((n as f64 * f).round() as usize).max(1);
        let valid = round(self.valid).min(n - needed + 1);
        let test = if self.test > 0.0 {
            round(self.test).min(n - valid - 1)
        } else {
            0
        };
        Ok((valid, test))
    }
}

/// Shuffles the indices `0..n` with `seed`; the first part is validation, then test, then
/// training. The same `n`, fractions and seed always give the same split.
pub fn shuffled_split(
    n: usize,
    fractions: Fractions,
    seed: u64,
    what: &str,
) -> Result<SplitIndices, DataError> {
    let (valid, test) = fractions.sizes(n, what)?;
    let mut ids: Vec<usize> = (0..n).collect();
    ids.shuffle(&mut StdRng::seed_from_u64(seed));
    let train = ids.split_off(valid + test);
    let test_ids = ids.split_off(valid);
    Ok(SplitIndices::new(
        "shuffled",
        seed,
        n,
        [train, ids, test_ids],
    ))
}

/// Splits every class on its own, so each part has the classes in the same proportions.
/// `labels[i]` is sample `i`'s class; `class_names` name them for errors. Every class needs
/// two samples (three with a test part).
pub fn stratified_split(
    labels: &[usize],
    class_names: &[String],
    fractions: Fractions,
    seed: u64,
) -> Result<SplitIndices, DataError> {
    let mut parts: [Vec<usize>; 3] = Default::default();
    for (class, name) in class_names.iter().enumerate() {
        let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        let what = format!("class {name:?}");
        let split = shuffled_split(
            members.len(),
            fractions,
            seed.wrapping_add(class as u64),
            &what,
        )
        .map_err(|_| DataError::ClassTooSmall {
            class: name.clone(),
            count: members.len(),
            needed: if fractions.test > 0.0 { 3 } else { 2 },
        })?;
        for (part, ids) in parts
            .iter_mut()
            .zip([&split.train, &split.valid, &split.test])
        {
            part.extend(ids.iter().map(|&i| members[i]));
        }
    }
    for part in &mut parts {
        part.shuffle(&mut StdRng::seed_from_u64(seed));
    }
    Ok(SplitIndices::new("stratified", seed, labels.len(), parts))
}

/// Splits `0..n` by position: the first part trains, then validation, then test. For
/// continuous text and time series, where a shuffled split would leak neighbours.
pub fn positional_split(
    n: usize,
    fractions: Fractions,
    what: &str,
) -> Result<SplitIndices, DataError> {
    let (valid, test) = fractions.sizes(n, what)?;
    let train_end = n - valid - test;
    Ok(SplitIndices::new(
        "positional",
        0,
        n,
        [
            (0..train_end).collect(),
            (train_end..train_end + valid).collect(),
            (train_end + valid..n).collect(),
        ],
    ))
}

/// Shuffles `items` with `seed` and holds out `valid_fraction` of them (at least one, and at
/// least one left to train on). The same items, fraction and seed always give the same split.
pub fn split_train_valid<T: Clone>(
    items: Vec<T>,
    valid_fraction: f64,
    seed: u64,
    what: &str,
) -> Result<Split<T>, DataError> {
    Ok(shuffled_split(items.len(), Fractions::valid(valid_fraction), seed, what)?.apply(&items))
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
        assert!(a.test.is_empty());
        let mut all: Vec<u32> = a.train.iter().chain(&a.valid).copied().collect();
        all.sort();
        assert_eq!(all, items);
    }

    #[test]
    fn one_sample_cannot_be_split() {
        let err = split_train_valid(vec!["a"], 0.1, 0, "names.txt").unwrap_err();
        assert!(err.to_string().contains("names.txt has 1 sample"));
    }

    #[test]
    fn three_way_split_saves_and_loads() {
        let split = shuffled_split(
            50,
            Fractions {
                valid: 0.1,
                test: 0.2,
            },
            3,
            "x",
        )
        .unwrap();
        assert_eq!(
            (split.valid.len(), split.test.len(), split.train.len()),
            (5, 10, 35)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("split.json");
        split.save(&path).unwrap();
        assert_eq!(SplitIndices::load(&path).unwrap(), split);
        std::fs::write(&path, "{}").unwrap();
        assert!(SplitIndices::load(&path).is_err());
    }

    #[test]
    fn stratified_keeps_every_class_in_every_part() {
        let labels: Vec<usize> = (0..60).map(|i| usize::from(i % 3 == 0)).collect();
        let names = vec!["a".to_owned(), "b".to_owned()];
        let split = stratified_split(&labels, &names, Fractions::valid(0.25), 1).unwrap();
        let count = |ids: &[usize], c: usize| ids.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!((count(&split.valid, 0), count(&split.valid, 1)), (10, 5));
        let mut all: Vec<usize> = [split.train, split.valid, split.test].concat();
        all.sort();
        assert_eq!(all, (0..60).collect::<Vec<_>>());
    }

    #[test]
    fn a_class_of_one_sample_is_named() {
        let names = vec!["Korean".to_owned(), "Irish".to_owned()];
        let err = stratified_split(&[0, 0, 1], &names, Fractions::valid(0.2), 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "class \"Irish\" has 1 sample(s); a stratified split needs at least 2 per class: add samples or remove the class"
        );
    }

    #[test]
    fn positional_split_keeps_order() {
        let s = positional_split(
            10,
            Fractions {
                valid: 0.2,
                test: 0.1,
            },
            "x",
        )
        .unwrap();
        assert_eq!(s.train, (0..7).collect::<Vec<_>>());
        assert_eq!(s.valid, [7, 8]);
        assert_eq!(s.test, [9]);
    }
}
