//! The character vocabulary: ember's own (special tokens first, then every character of the
//! training text, sorted) or a user's (the `chars`/`itos` list or `stoi` map a PyTorch script
//! keeps: ids 0..V-1 in the user's order, no specials, one character optionally marking the
//! start and end of a line, as makemore's `.` does).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DataError;

/// The format tag of ember's own vocabulary files.
pub const VOCAB_FORMAT: &str = "ember-vocab/1";
/// The format tag of a user's vocabulary kept in a run directory.
pub const USER_VOCAB_FORMAT: &str = "ember-vocab/2";
/// Special tokens of ember's own vocabularies, with ids 0, 1 and 2.
pub const SPECIALS: [&str; 3] = ["<pad>", "<s>", "</s>"];

/// A character vocabulary. Ember's own: id 0 is `<pad>`, 1 is `<s>` (start), 2 is `</s>` (end),
/// and characters follow in sorted order. A user's ([`Vocab::from_user_file`]): the user's
/// characters with the user's ids, no specials, and `bos`/`eos` naming the character (if any)
/// that starts and ends a line. Characters are Unicode scalar values, so a multi-byte character
/// (`é`, `Ж`) is one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocab {
    format: String,
    specials: Vec<String>,
    chars: Vec<char>,
    /// A user's vocabulary: the id of the character that starts a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bos: Option<usize>,
    /// A user's vocabulary: the id of the character that ends a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eos: Option<usize>,
    /// Character → id, built from `chars`.
    #[serde(skip)]
    index: BTreeMap<char, usize>,
}

impl Vocab {
    /// Ember's vocabulary of every character appearing in `texts`.
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let set: BTreeSet<char> = texts.into_iter().flat_map(str::chars).collect();
        Self::indexed(Self {
            format: VOCAB_FORMAT.to_owned(),
            specials: SPECIALS.iter().map(|s| s.to_string()).collect(),
            chars: set.into_iter().collect(),
            bos: None,
            eos: None,
            index: BTreeMap::new(),
        })
    }

    /// A user's vocabulary: `chars` in id order (id `i` is `chars[i]`), with `bos` and `eos`
    /// the characters that start and end a line (the same one for makemore's `.`), if any.
    pub fn from_user(
        chars: Vec<char>,
        bos: Option<char>,
        eos: Option<char>,
    ) -> Result<Self, String> {
        let mut seen = BTreeSet::new();
        if let Some(c) = chars.iter().find(|c| !seen.insert(**c)) {
            return Err(format!("{c:?} has two ids"));
        }
        let id = |role: &str, c: Option<char>| {
            c.map(|c| {
                chars.iter().position(|&x| x == c).ok_or(format!(
                    "the {role} character {c:?} is not in the vocabulary"
                ))
            })
            .transpose()
        };
        let (bos, eos) = (id("start", bos)?, id("end", eos)?);
        Ok(Self::indexed(Self {
            format: USER_VOCAB_FORMAT.to_owned(),
            specials: Vec::new(),
            chars,
            bos,
            eos,
            index: BTreeMap::new(),
        }))
    }

    fn indexed(mut self) -> Self {
        let first = self.specials.len();
        self.index = self
            .chars
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, first + i))
            .collect();
        self
    }

    /// Whether lines can be encoded as sequences: ember's vocabulary has `<s>` and `</s>`; a
    /// user's needs its start and end characters named.
    pub fn marks_lines(&self) -> bool {
        !self.is_user() || (self.bos.is_some() && self.eos.is_some())
    }

    /// Whether this is a user's vocabulary (no specials, the user's ids).
    pub fn is_user(&self) -> bool {
        self.specials.is_empty()
    }

    /// Number of tokens, specials included.
    pub fn len(&self) -> usize {
        self.specials.len() + self.chars.len()
    }

    /// Whether the vocabulary has no characters (only the special tokens).
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The id that pads a batch: `<pad>`, or 0 in a user's vocabulary (padded positions are
    /// masked out, so any id serves).
    pub fn pad_id(&self) -> usize {
        0
    }

    /// Id of the start-of-line token: `<s>`, or a user's start character (0 when none is set).
    pub fn bos_id(&self) -> usize {
        if self.is_user() {
            self.bos.unwrap_or(0)
        } else {
            1
        }
    }

    /// Id of the end-of-line token: `</s>`, or a user's end character (0 when none is set).
    pub fn eos_id(&self) -> usize {
        if self.is_user() {
            self.eos.unwrap_or(0)
        } else {
            2
        }
    }

    /// Whether sampling may draw `id`: never `<pad>` or `<s>` (nor `</s>` for `continuous`
    /// text); in a user's vocabulary every character but a start character distinct from the
    /// end one (and, for `continuous` text, the end character).
    pub fn drawable(&self, id: usize, continuous: bool) -> bool {
        if !self.is_user() {
            return id != self.pad_id()
                && id != self.bos_id()
                && !(continuous && id == self.eos_id());
        }
        let start_only = self.bos == Some(id) && self.bos != self.eos;
        !(start_only || (continuous && self.eos == Some(id)))
    }

    /// The characters, in id order (ember's: the first has id 3; a user's: from id 0).
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The ids of `text`'s characters; unknown characters are an error that lists them all.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>, DataError> {
        let mut unknown = Vec::new();
        let ids: Vec<usize> = text
            .chars()
            .filter_map(|c| match self.index.get(&c) {
                Some(&id) => Some(id),
                None => {
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
        id.checked_sub(self.specials.len())
            .and_then(|i| self.chars.get(i).copied())
    }

    /// The text of `ids`, skipping special tokens and a user's start and end characters.
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter()
            .filter(|&&id| Some(id) != self.bos && Some(id) != self.eos)
            .filter_map(|&id| self.char_of(id))
            .collect()
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
        match vocab.format.as_str() {
            VOCAB_FORMAT => {
                if vocab.specials != SPECIALS {
                    return Err(bad(format!(
                        "special tokens are {:?}, expected {SPECIALS:?}",
                        vocab.specials
                    )));
                }
                if !vocab.chars.windows(2).all(|w| w[0] < w[1]) {
                    return Err(bad("characters are not sorted and unique".into()));
                }
                if vocab.bos.is_some() || vocab.eos.is_some() {
                    return Err(bad("bos and eos belong to a user's vocabulary".into()));
                }
                Ok(Self::indexed(vocab))
            }
            USER_VOCAB_FORMAT if vocab.specials.is_empty() => {
                let role = |id: Option<usize>| id.map(|i| vocab.chars.get(i).copied().ok_or(i));
                let (bos, eos) = match (role(vocab.bos).transpose(), role(vocab.eos).transpose()) {
                    (Ok(b), Ok(e)) => (b, e),
                    (Err(i), _) | (_, Err(i)) => {
                        return Err(bad(format!("id {i} is past the vocabulary's end")))
                    }
                };
                Self::from_user(vocab.chars, bos, eos).map_err(bad)
            }
            other => Err(bad(format!(
                "format is {other:?}, expected {VOCAB_FORMAT:?} or {USER_VOCAB_FORMAT:?} without specials"
            ))),
        }
    }

    /// Reads a vocabulary as a PyTorch user keeps it: a JSON list of tokens in id order (the
    /// `chars`/`itos` list), a JSON object token → id (the `stoi` map, ids 0..V-1 each once), or
    /// a vocabulary ember wrote. `bos`/`eos` name the character that starts and ends a line
    /// (makemore's `.` is both); ember's own vocabulary has its specials and takes neither.
    pub fn from_user_file(
        path: &Path,
        bos: Option<char>,
        eos: Option<char>,
    ) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::reading(path, e))?;
        let bad = |reason: String| DataError::BadVocab {
            path: path.to_owned(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let one_char = |token: &str| {
            let mut it = token.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => Ok(c),
                _ => Err(bad(format!(
                    "token {token:?} is not one character: ember's models read characters"
                ))),
            }
        };
        let chars: Vec<char> = match &value {
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| match v.as_str() {
                    Some(token) => one_char(token),
                    None => Err(bad(format!(
                        "{v} is not a string: a list holds the tokens in id order"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            serde_json::Value::Object(map) if !map.contains_key("format") => {
                let mut slots: Vec<Option<char>> = vec![None; map.len()];
                for (token, id) in map {
                    let id = id
                        .as_u64()
                        .map(|i| i as usize)
                        .filter(|&i| i < map.len())
                        .ok_or_else(|| bad(format!(
                            "{token:?} maps to {id}: a token → id map needs the ids 0..{} each once",
                            map.len()
                        )))?;
                    if slots[id].replace(one_char(token)?).is_some() {
                        return Err(bad(format!("id {id} has two tokens")));
                    }
                }
                slots
                    .into_iter()
                    .map(|c| c.expect("n ids below n, each once"))
                    .collect()
            }
            _ => {
                if bos.is_some() || eos.is_some() {
                    return Err(bad(
                        "--bos/--eos are for a list or map vocabulary: ember's own has <s> and </s>".into(),
                    ));
                }
                return Self::load(path);
            }
        };
        Self::from_user(chars, bos, eos).map_err(bad)
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

    /// Writes `json` to a temporary file and reads it as a user's vocabulary.
    fn user(json: &str, bos: Option<char>, eos: Option<char>) -> Result<Vocab, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vocab.json");
        std::fs::write(&p, json).unwrap();
        Vocab::from_user_file(&p, bos, eos).map_err(|e| e.to_string())
    }

    #[test]
    fn a_users_list_or_map_keeps_the_users_ids() {
        let list = user(r#"["\n", " ", "b", "a"]"#, None, None).unwrap();
        let map = user(r#"{"a": 3, "\n": 0, "b": 2, " ": 1}"#, None, None).unwrap();
        assert_eq!(list, map);
        assert!(list.is_user() && !list.marks_lines());
        assert_eq!(list.len(), 4);
        assert_eq!(list.encode("ab\n").unwrap(), vec![3, 2, 0]);
        assert_eq!(list.decode(&[3, 2, 0, 1]), "ab\n ");
        // With no start or end character, every token may be drawn.
        assert!((0..4).all(|id| list.drawable(id, true) && list.drawable(id, false)));
        let err = list.encode("abc").unwrap_err().to_string();
        assert!(err.contains("'c'"), "{err}");
    }

    #[test]
    fn makemores_dot_starts_and_ends_a_line() {
        let v = user(r#"[".", "a", "b"]"#, Some('.'), Some('.')).unwrap();
        assert!(v.marks_lines());
        assert_eq!(v.encode_line("ab").unwrap(), vec![0, 1, 2, 0]);
        assert_eq!(v.decode(&[0, 1, 2, 0]), "ab");
        // The dot ends a name, so sampling must be able to draw it.
        assert!(v.drawable(0, false));
        let split = user(r#"["<", ">", "a"]"#, Some('<'), Some('>')).unwrap();
        assert_eq!((split.bos_id(), split.eos_id()), (0, 1));
        assert!(!split.drawable(0, false) && split.drawable(1, false));
        assert!(
            !split.drawable(1, true),
            "continuous text never draws the end"
        );
    }

    #[test]
    fn a_user_vocabulary_round_trips_through_the_run_directory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vocab.json");
        let v = user(r#"[".", "z", "a"]"#, Some('.'), Some('.')).unwrap();
        v.save(&p).unwrap();
        assert_eq!(Vocab::load(&p).unwrap(), v);
        assert_eq!(Vocab::from_user_file(&p, None, None).unwrap(), v);
        let ember = Vocab::from_texts(["zoë"]);
        ember.save(&p).unwrap();
        assert_eq!(Vocab::from_user_file(&p, None, None).unwrap(), ember);
        let err = Vocab::from_user_file(&p, Some('z'), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--bos/--eos"), "{err}");
    }

    #[test]
    fn bad_user_vocabularies_say_what_is_wrong() {
        for (json, bos, want) in [
            (r#"["a", "bc"]"#, None, "not one character"),
            (r#"["a", "a"]"#, None, "two ids"),
            (r#"{"a": 0, "b": 0}"#, None, "two tokens"),
            (r#"{"a": 0, "b": 5}"#, None, "ids 0..2"),
            (r#"["a", 1]"#, None, "not a string"),
            (r#"["a", "b"]"#, Some('.'), "start character '.'"),
            ("3", None, "not a vocabulary ember reads"),
        ] {
            let err = user(json, bos, None).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
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
