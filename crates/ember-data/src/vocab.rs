//! The character vocabulary: special tokens first, then every character of the training text.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DataError;

/// The format tag written into every vocabulary file.
pub const VOCAB_FORMAT: &str = "ember-vocab/1";
/// Special tokens, with ids 0, 1 and 2.
pub const SPECIALS: [&str; 3] = ["<pad>", "<s>", "</s>"];

/// A character vocabulary: id 0 is `<pad>`, 1 is `<s>` (start), 2 is `</s>` (end), and
/// characters follow in sorted order. Characters are Unicode scalar values, so a multi-byte
/// character (`é`, `Ж`) is one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocab {
    format: String,
    specials: Vec<String>,
    chars: Vec<char>,
}

impl Vocab {
    /// The vocabulary of every character appearing in `texts`.
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let set: BTreeSet<char> = texts.into_iter().flat_map(str::chars).collect();
        Self {
            format: VOCAB_FORMAT.to_owned(),
            specials: SPECIALS.iter().map(|s| s.to_string()).collect(),
            chars: set.into_iter().collect(),
        }
    }

    /// Number of tokens, specials included.
    pub fn len(&self) -> usize {
        SPECIALS.len() + self.chars.len()
    }

    /// Whether the vocabulary has no characters (only the special tokens).
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Id of the padding token.
    pub fn pad_id(&self) -> usize {
        0
    }

    /// Id of the start-of-sequence token.
    pub fn bos_id(&self) -> usize {
        1
    }

    /// Id of the end-of-sequence token.
    pub fn eos_id(&self) -> usize {
        2
    }

    /// The characters, in id order (the first has id 3).
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The ids of `text`'s characters; unknown characters are an error that lists them all.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>, DataError> {
        let mut unknown = Vec::new();
        let ids: Vec<usize> = text
            .chars()
            .filter_map(|c| match self.chars.binary_search(&c) {
                Ok(i) => Some(i + SPECIALS.len()),
                Err(_) => {
                    if !unknown.contains(&c) {
                        unknown.push(c);
                    }
                    None
                }
            })
            .collect();
        if unknown.is_empty() {
            Ok(ids)
        } else {
            Err(DataError::UnknownChars { chars: unknown })
        }
    }

    /// `<s>`, the ids of `text`, `</s>`: one training sequence.
    pub fn encode_line(&self, text: &str) -> Result<Vec<usize>, DataError> {
        let mut ids = vec![self.bos_id()];
        ids.extend(self.encode(text)?);
        ids.push(self.eos_id());
        Ok(ids)
    }

    /// [`Self::encode_line`] for every sample of the file `path`; the error lists every
    /// unknown character in the file and how many samples hold one.
    pub fn encode_file_lines(
        &self,
        lines: &[String],
        path: &Path,
    ) -> Result<Vec<Vec<usize>>, DataError> {
        let (mut chars, mut samples) = (Vec::new(), 0);
        let mut encoded = Vec::with_capacity(lines.len());
        for line in lines {
            match self.encode_line(line) {
                Ok(ids) => encoded.push(ids),
                Err(DataError::UnknownChars { chars: unknown }) => {
                    samples += 1;
                    for c in unknown {
                        if !chars.contains(&c) {
                            chars.push(c);
                        }
                    }
                }
                Err(other) => return Err(other),
            }
        }
        if samples > 0 {
            return Err(DataError::UnknownCharsInFile {
                path: path.to_owned(),
                chars,
                samples,
                total: lines.len(),
            });
        }
        Ok(encoded)
    }

    /// The character of `id`, or `None` for a special token or an id out of range.
    pub fn char_of(&self, id: usize) -> Option<char> {
        id.checked_sub(SPECIALS.len())
            .and_then(|i| self.chars.get(i).copied())
    }

    /// The text of `ids`, skipping special tokens.
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter().filter_map(|&id| self.char_of(id)).collect()
    }

    /// Writes the vocabulary as JSON.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let json = serde_json::to_string_pretty(self).expect("a vocabulary always serialises");
        std::fs::write(path, json).map_err(|source| DataError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a vocabulary written by [`Vocab::save`].
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::reading(path, e))?;
        let bad = |reason: String| DataError::BadVocab {
            path: path.to_owned(),
            reason,
        };
        let vocab: Self = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if vocab.format != VOCAB_FORMAT {
            return Err(bad(format!(
                "format is {:?}, expected {VOCAB_FORMAT:?}",
                vocab.format
            )));
        }
        if vocab.specials != SPECIALS {
            return Err(bad(format!(
                "special tokens are {:?}, expected {SPECIALS:?}",
                vocab.specials
            )));
        }
        if !vocab.chars.windows(2).all(|w| w[0] < w[1]) {
            return Err(bad("characters are not sorted and unique".into()));
        }
        Ok(vocab)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_round_trip_and_specials() {
        let v = Vocab::from_texts(["émile", "Жанна", "anna"]);
        // é m i l e, Ж а н (Cyrillic), a n: ten distinct characters plus three specials.
        assert_eq!(v.len(), 13);
        let ids = v.encode_line("Жé").unwrap();
        assert_eq!(ids.len(), 4);
        assert_eq!((ids[0], ids[3]), (v.bos_id(), v.eos_id()));
        assert_eq!(v.decode(&ids), "Жé");
    }

    #[test]
    fn unknown_characters_are_listed_once() {
        let v = Vocab::from_texts(["abc"]);
        let err = v.encode("abxqx").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown character(s) 'x', 'q': the model's vocabulary does not contain them"
        );
    }

    #[test]
    fn unknown_characters_of_a_file_are_counted() {
        let v = Vocab::from_texts(["abc"]);
        let lines: Vec<String> = ["ab", "aé", "cab", "zé"].map(String::from).to_vec();
        let err = v
            .encode_file_lines(&lines, Path::new("eval.txt"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "eval.txt: 2 of 4 sample(s) hold unknown character(s) 'é', 'z': the model's vocabulary does not contain them; remove them from the file or train a model on data that has them"
        );
        let ok = v
            .encode_file_lines(&lines[..1], Path::new("eval.txt"))
            .unwrap();
        assert_eq!(ok, vec![v.encode_line("ab").unwrap()]);
    }

    #[test]
    fn save_load_round_trip_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vocab.json");
        let v = Vocab::from_texts(["zoë"]);
        v.save(&p).unwrap();
        assert_eq!(Vocab::load(&p).unwrap(), v);
        std::fs::write(&p, "{\"chars\": 3}").unwrap();
        assert!(matches!(Vocab::load(&p), Err(DataError::BadVocab { .. })));
    }
}
