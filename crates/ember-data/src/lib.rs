//! ember-data: every kind of sequence data ember trains on, batched without waste.
//!
//! - [`lines`]: a text file of one sample per line (e.g. names), read with clear errors.
//! - [`corpus`]: a continuous text, served as parallel streams for stateful truncated BPTT
//!   or as shuffled independent chunks.
//! - [`series`]: time series (a CSV column or generated sine waves) cut into windows for
//!   last-step, per-step, and state-carrying regression.
//! - [`labelled`]: labelled sequences for classification (one file per class).
//! - [`vocab`]: the character vocabulary with `<pad>`, `<s>` and `</s>` tokens, saved as JSON.
//! - [`split`]: seeded shuffled, stratified and positional train/validation/test splits.
//! - [`batch`]: collation into padded `[batch, seq]` tensors with a mask and lengths.
//! - [`bucket`]: length bucketing and the padding it saves.

pub mod batch;
pub mod bucket;
pub mod corpus;
pub mod error;
pub mod json_file;
pub mod labelled;
pub mod lines;
pub mod series;
pub mod split;
pub mod vocab;

pub use batch::{SequenceBatch, SequenceBatcher, TokenSequence, IGNORE_INDEX};
pub use bucket::{bucketed_batches, padding_fraction, random_batches, PaddingReport};
pub use corpus::{
    random_chunks, stream_chunks, StreamBatch, StreamBatcher, StreamChunk, TextCorpus,
};
pub use error::DataError;
pub use labelled::{ClassBatch, ClassBatcher, ClassVocab, LabelledData, LabelledSequence};
pub use lines::{read_lines, read_utf8};
pub use series::{SeriesBatch, SeriesBatcher, Standardizer, Window};
pub use split::{split_train_valid, Fractions, Split, SplitIndices};
pub use vocab::Vocab;
