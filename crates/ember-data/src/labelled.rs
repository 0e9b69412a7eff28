//! Labelled sequences for classification, e.g. surnames → language of origin.
//!
//! The data is a directory with one text file per class (`Russian.txt`, `Irish.txt`, ...),
//! one sample per line, as in PyTorch's name-classification tutorial.

use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::batch::{int_tensor, length_mask, pad_rows};
use crate::{json_file, read_lines, DataError, Vocab};

/// The format tag of a class list file.
pub const CLASSES_FORMAT: &str = "ember-classes/1";

/// The class names, in id order (sorted), saved as JSON beside a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassVocab {
    format: String,
    names: Vec<String>,
}

impl ClassVocab {
    /// Classes with these names; ids follow the sorted order.
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        names.dedup();
        Self {
            format: CLASSES_FORMAT.to_owned(),
            names,
        }
    }

    /// The class names, by id.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The id of class `name`.
    pub fn id(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.as_str().cmp(name)).ok()
    }

    /// Writes the class list as JSON.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        json_file::save(self, path)
    }

    /// Reads a class list written by [`Self::save`].
    pub fn load(path: &Path) -> Result<Self, DataError> {
        json_file::load(path, CLASSES_FORMAT, |c: &Self| &c.format)
    }
}

/// One sample: its characters (no start or end token) and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledSequence {
    /// Character ids, at least one.
    pub tokens: Vec<usize>,
    /// Class id.
    pub label: usize,
}

/// A labelled dataset read from a directory of class files.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledData {
    /// The characters of every sample.
    pub vocab: Vocab,
    /// The classes (file stems).
    pub classes: ClassVocab,
    /// The texts and their class ids, class by class, in file order.
    pub texts: Vec<(String, usize)>,
}

impl LabelledData {
    /// Reads every `*.txt` file of `dir` as one class; each must hold at least one sample
    /// (missing, empty and non-UTF-8 files are errors naming the file).
    pub fn read_dir(dir: &Path) -> Result<Self, DataError> {
        let entries = std::fs::read_dir(dir).map_err(|e| DataError::reading(dir, e))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| DataError::reading(dir, e))?.path();
            if path.extension().is_some_and(|e| e == "txt") {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(DataError::NoClasses {
                path: dir.to_owned(),
            });
        }
        files.sort();
        let stem = |p: &Path| {
            p.file_stem()
                .map_or(String::new(), |s| s.to_string_lossy().into_owned())
        };
        let classes = ClassVocab::new(files.iter().map(|p| stem(p)));
        let mut texts = Vec::new();
        for path in &files {
            let label = classes.id(&stem(path)).expect("every file is a class");
            texts.extend(read_lines(path)?.into_iter().map(|t| (t, label)));
        }
        let vocab = Vocab::from_texts(texts.iter().map(|(t, _)| t.as_str()));
        Ok(Self {
            vocab,
            classes,
            texts,
        })
    }

    /// Every sample encoded with `vocab` (unknown characters are an error listing them).
    pub fn encode(&self, vocab: &Vocab) -> Result<Vec<LabelledSequence>, DataError> {
        self.texts
            .iter()
            .map(|(text, label)| {
                Ok(LabelledSequence {
                    tokens: vocab.encode(text)?,
                    label: *label,
                })
            })
            .collect()
    }

    /// The class id of every sample, for a stratified split.
    pub fn labels(&self) -> Vec<usize> {
        self.texts.iter().map(|(_, l)| *l).collect()
    }

    /// The share of the most frequent class: the accuracy of always guessing it.
    pub fn majority_share(&self) -> f64 {
        let mut counts = vec![0usize; self.classes.len()];
        for (_, l) in &self.texts {
            counts[*l] += 1;
        }
        counts.into_iter().max().unwrap_or(0) as f64 / self.texts.len().max(1) as f64
    }
}

/// A padded batch of labelled sequences.
#[derive(Debug, Clone)]
pub struct ClassBatch<B: Backend> {
    /// Character ids `[batch, seq]`, padded with the pad id.
    pub inputs: Tensor<B, 2, Int>,
    /// `[batch, seq]`, true at real characters.
    pub mask: Tensor<B, 2, Bool>,
    /// Characters per sample.
    pub lengths: Vec<usize>,
    /// Class ids `[batch]`.
    pub labels: Tensor<B, 1, Int>,
}

/// Pads labelled sequences into a [`ClassBatch`].
#[derive(Debug, Clone)]
pub struct ClassBatcher {
    pad_id: usize,
}

impl ClassBatcher {
    /// A batcher that pads with `pad_id`.
    pub fn new(pad_id: usize) -> Self {
        Self { pad_id }
    }
}

impl<B: Backend> Batcher<B, LabelledSequence, ClassBatch<B>> for ClassBatcher {
    fn batch(&self, items: Vec<LabelledSequence>, device: &B::Device) -> ClassBatch<B> {
        let lengths: Vec<usize> = items.iter().map(|s| s.tokens.len()).collect();
        let steps = lengths.iter().copied().max().unwrap_or(0);
        let ids: Vec<Vec<i64>> = items
            .iter()
            .map(|s| s.tokens.iter().map(|&t| t as i64).collect())
            .collect();
        let rows: Vec<&[i64]> = ids.iter().map(Vec::as_slice).collect();
        let labels: Vec<i64> = items.iter().map(|s| s.label as i64).collect();
        ClassBatch {
            inputs: int_tensor(
                pad_rows(&rows, steps, self.pad_id as i64),
                items.len(),
                steps,
                device,
            ),
            mask: length_mask(&lengths, steps, device),
            lengths,
            labels: Tensor::from_data(TensorData::new(labels, [items.len()]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_file_stems_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Russian.txt"), "Abaev\nЖуков\n").unwrap();
        std::fs::write(dir.path().join("Irish.txt"), "Murphy\n").unwrap();
        std::fs::write(dir.path().join("README.md"), "ignored").unwrap();
        let data = LabelledData::read_dir(dir.path()).unwrap();
        assert_eq!(data.classes.names(), ["Irish", "Russian"]);
        assert_eq!(data.labels(), [0, 1, 1]);
        assert!((data.majority_share() - 2.0 / 3.0).abs() < 1e-12);
        let encoded = data.encode(&data.vocab).unwrap();
        assert_eq!(data.vocab.decode(&encoded[2].tokens), "Жуков");

        let path = dir.path().join("classes.json");
        data.classes.save(&path).unwrap();
        assert_eq!(ClassVocab::load(&path).unwrap(), data.classes);

        std::fs::write(dir.path().join("Empty.txt"), "\n").unwrap();
        let err = LabelledData::read_dir(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("Empty.txt holds no non-blank lines"),
            "{err}"
        );
        let err = LabelledData::read_dir(&dir.path().join("none")).unwrap_err();
        assert!(err.to_string().contains("none not found"), "{err}");
    }
}
