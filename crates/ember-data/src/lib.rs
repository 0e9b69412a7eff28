//! ember-data: text datasets, character vocabularies and padded, masked batches.
//!
//! - [`lines`]: a text file of one sample per line (e.g. names), read with clear errors.
//! - [`vocab`]: the character vocabulary with `<pad>`, `<s>` and `</s>` tokens, saved as JSON.
//! - [`split`]: a deterministic, seeded train/validation split.
//! - [`batch`]: collation into padded `[batch, seq]` tensors with a mask and lengths.

pub mod batch;
pub mod error;
pub mod lines;
pub mod split;
pub mod vocab;

pub use batch::{SequenceBatch, SequenceBatcher, TokenSequence};
pub use error::DataError;
pub use lines::read_lines;
pub use split::{split_train_valid, Split};
pub use vocab::Vocab;
