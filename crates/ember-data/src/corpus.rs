//! A continuous text corpus (e.g. tiny Shakespeare) for character language models.
//!
//! Two ways to serve it:
//! - [`stream_chunks`]: stateful truncated BPTT, as PyTorch's `word_language_model` does. The
//!   text is cut into `batch_size` parallel streams, and chunk `k` holds steps
//!   `k·seq_len .. (k+1)·seq_len` of every stream, so a model can carry its hidden state
//!   (detached) from one chunk to the next. Serve the chunks in order, never shuffled.
//! - [`random_chunks`]: stateless training on non-overlapping chunks, in any (shuffled) order.

use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;

use crate::batch::{int_tensor, length_mask, SequenceBatch, TokenSequence};
use crate::split::{positional_split, Fractions};
use crate::{read_utf8, DataError, Vocab};

/// A text as one stream of character ids. Newlines are characters like any other.
#[derive(Debug, Clone, PartialEq)]
pub struct TextCorpus {
    /// The vocabulary of every character of the text.
    pub vocab: Vocab,
    /// The text's character ids.
    pub ids: Vec<usize>,
}

/// The parts of a corpus, cut by position: training text first, then validation, then test.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusSplit {
    /// Training ids.
    pub train: Vec<usize>,
    /// Validation ids.
    pub valid: Vec<usize>,
    /// Test ids (empty without a test fraction).
    pub test: Vec<usize>,
}

impl TextCorpus {
    /// Reads a UTF-8 text file; a missing, empty or non-UTF-8 file is an error naming it.
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let text = read_utf8(path)?;
        if text.trim().is_empty() {
            return Err(DataError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self::from_text(&text))
    }

    /// The corpus of the file `path` in a given vocabulary (a user's, for an imported model);
    /// characters outside it are one error that lists them.
    pub fn read_with(path: &Path, vocab: &Vocab) -> Result<Self, DataError> {
        let text = read_utf8(path)?;
        if text.trim().is_empty() {
            return Err(DataError::Empty {
                path: path.to_owned(),
            });
        }
        let ids = vocab.encode(&text).map_err(|e| match e {
            DataError::UnknownChars { chars } => DataError::UnknownCharsInFile {
                path: path.to_owned(),
                chars,
                samples: 1,
                total: 1,
            },
            other => other,
        })?;
        Ok(Self {
            vocab: vocab.clone(),
            ids,
        })
    }

    /// The corpus of `text`, with the vocabulary of its characters.
    pub fn from_text(text: &str) -> Self {
        let vocab = Vocab::from_texts([text]);
        let ids = vocab
            .encode(text)
            .expect("the vocabulary has every character");
        Self { vocab, ids }
    }

    /// Cuts the text by position: training, then validation, then test (like the separate
    /// train/valid/test files of PyTorch's word_language_model).
    pub fn split(&self, fractions: Fractions, what: &str) -> Result<CorpusSplit, DataError> {
        let s = positional_split(self.ids.len(), fractions, what)?;
        let part = |ids: &[usize]| match (ids.first(), ids.last()) {
            (Some(&a), Some(&b)) => self.ids[a..=b].to_vec(),
            _ => Vec::new(),
        };
        Ok(CorpusSplit {
            train: part(&s.train),
            valid: part(&s.valid),
            test: part(&s.test),
        })
    }
}

/// One truncated-BPTT step: `steps` consecutive positions of each of `streams` streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamChunk {
    /// Input ids, row-major `[streams, steps]`.
    pub inputs: Vec<usize>,
    /// Target ids (the next character of each input), row-major `[streams, steps]`.
    pub targets: Vec<usize>,
    /// Number of parallel streams (the batch size).
    pub streams: usize,
    /// Steps in this chunk (`seq_len`, or fewer for the last chunk).
    pub steps: usize,
    /// Whether this is the first chunk of the pass: the state starts from zeros here.
    pub first: bool,
}

/// Cuts `ids` into `streams` equal parallel streams (the remainder, fewer than `streams`
/// tokens, is dropped, as `batchify` does) and returns the chunks of up to `seq_len` steps in
/// order. Chunk `k+1` of a stream starts where chunk `k` ended: its first input is chunk `k`'s
/// last target.
pub fn stream_chunks(
    ids: &[usize],
    streams: usize,
    seq_len: usize,
    what: &str,
) -> Result<Vec<StreamChunk>, DataError> {
    if streams == 0 || seq_len == 0 {
        return Err(DataError::BadOption(format!(
            "{what}: batch size and sequence length must be at least 1 (got {streams} and {seq_len})"
        )));
    }
    let per_stream = ids.len() / streams;
    if per_stream < 2 {
        return Err(DataError::TooShortForStreams {
            what: what.to_owned(),
            len: ids.len(),
            streams,
        });
    }
    let stream = |b: usize| &ids[b * per_stream..(b + 1) * per_stream];
    let mut chunks = Vec::new();
    let mut start = 0;
    while start + 1 < per_stream {
        let steps = seq_len.min(per_stream - 1 - start);
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        for b in 0..streams {
            inputs.extend_from_slice(&stream(b)[start..start + steps]);
            targets.extend_from_slice(&stream(b)[start + 1..start + 1 + steps]);
        }
        chunks.push(StreamChunk {
            inputs,
            targets,
            streams,
            steps,
            first: start == 0,
        });
        start += steps;
    }
    Ok(chunks)
}

/// Cuts `ids` into non-overlapping chunks of `seq_len` predictions each (the last one may be
/// shorter): chunk `k` is `ids[k·seq_len ..= (k+1)·seq_len]`, so every position after the
/// first is a target exactly once. Shuffle them freely: no state crosses chunks.
pub fn random_chunks(ids: &[usize], seq_len: usize) -> Result<Vec<TokenSequence>, DataError> {
    if seq_len == 0 {
        return Err(DataError::BadOption(
            "sequence length must be at least 1".into(),
        ));
    }
    Ok((0..ids.len().saturating_sub(1))
        .step_by(seq_len)
        .map(|start| TokenSequence {
            tokens: ids[start..(start + seq_len + 1).min(ids.len())].to_vec(),
        })
        .collect())
}

/// A truncated-BPTT batch: every row is valid at every step.
#[derive(Debug, Clone)]
pub struct StreamBatch<B: Backend> {
    /// Inputs, targets, an all-true mask and full lengths, `[streams, steps]`.
    pub batch: SequenceBatch<B>,
    /// Whether the model's state must start from zeros (first chunk of a pass).
    pub first: bool,
}

/// Turns one [`StreamChunk`] into tensors (use it with a data loader batch size of 1).
#[derive(Debug, Clone, Default)]
pub struct StreamBatcher;

impl<B: Backend> Batcher<B, StreamChunk, StreamBatch<B>> for StreamBatcher {
    fn batch(&self, items: Vec<StreamChunk>, device: &B::Device) -> StreamBatch<B> {
        let [chunk]: [StreamChunk; 1] = items
            .try_into()
            .expect("stream chunks are served one per batch (data loader batch size 1)");
        let ints = |v: &[usize]| v.iter().map(|&t| t as i64).collect::<Vec<_>>();
        let (rows, steps) = (chunk.streams, chunk.steps);
        let lengths = vec![steps; rows];
        StreamBatch {
            batch: SequenceBatch {
                inputs: int_tensor(ints(&chunk.inputs), rows, steps, device),
                targets: int_tensor(ints(&chunk.targets), rows, steps, device),
                mask: length_mask(&lengths, steps, device),
                lengths,
            },
            first: chunk.first,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_contiguous_columns_of_the_text() {
        let ids: Vec<usize> = (0..26).collect();
        // 3 streams of 8 (2 dropped): 0..8, 8..16, 16..24; seq_len 3 → steps 3, 3, 1.
        let chunks = stream_chunks(&ids, 3, 3, "t").unwrap();
        assert_eq!(
            chunks.iter().map(|c| c.steps).collect::<Vec<_>>(),
            [3, 3, 1]
        );
        assert_eq!(chunks[0].inputs, [0, 1, 2, 8, 9, 10, 16, 17, 18]);
        assert_eq!(chunks[0].targets, [1, 2, 3, 9, 10, 11, 17, 18, 19]);
        assert_eq!(chunks[2].inputs, [6, 14, 22]);
        assert_eq!(chunks[2].targets, [7, 15, 23]);
        assert!(chunks[0].first && !chunks[1].first);
    }

    #[test]
    fn too_short_text_is_an_error() {
        let err = stream_chunks(&[1, 2, 3], 2, 4, "tiny.txt").unwrap_err();
        assert!(
            err.to_string().starts_with("tiny.txt has 3 tokens"),
            "{err}"
        );
    }

    #[test]
    fn corpus_splits_by_position_and_keeps_newlines() {
        let c = TextCorpus::from_text("ab\nba\nab\nba\nab\n");
        assert!(c.vocab.chars().contains(&'\n'));
        let s = c.split(Fractions::valid(0.2), "t").unwrap();
        assert_eq!(s.train.len() + s.valid.len(), 15);
        assert_eq!([s.train.clone(), s.valid.clone()].concat(), c.ids);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TextCorpus::read(&dir.path().join("none.txt")).unwrap_err();
        assert!(missing.to_string().starts_with(&format!(
            "{} not found",
            dir.path().join("none.txt").display()
        )));
        std::fs::write(dir.path().join("blank.txt"), " \n\n").unwrap();
        let empty = TextCorpus::read(&dir.path().join("blank.txt")).unwrap_err();
        assert!(matches!(empty, DataError::Empty { .. }), "{empty}");
        std::fs::write(dir.path().join("latin1.txt"), b"caf\xe9").unwrap();
        let bytes = TextCorpus::read(&dir.path().join("latin1.txt")).unwrap_err();
        assert!(
            matches!(bytes, DataError::NotUtf8 { offset: 3, .. }),
            "{bytes}"
        );
    }

    #[test]
    fn random_chunks_cover_every_target_once() {
        let ids: Vec<usize> = (0..11).collect();
        let chunks = random_chunks(&ids, 4).unwrap();
        let lens: Vec<usize> = chunks.iter().map(|c| c.tokens.len()).collect();
        assert_eq!(lens, [5, 5, 3]);
        let targets: Vec<usize> = chunks.iter().flat_map(|c| c.tokens[1..].to_vec()).collect();
        assert_eq!(targets, (1..11).collect::<Vec<_>>());
    }
}
