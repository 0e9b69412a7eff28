//! ember-nn: recurrent layers with PyTorch semantics and the models built from them.
//!
//! - [`cell`]: the per-step math of one recurrent cell ([`cell::RecurrentCell`]) and the
//!   one driver that runs any cell over time, with optional per-sequence lengths.
//! - [`lstm`]: a stacked LSTM layer shaped like `torch.nn.LSTM` (gate order i, f, g, o).
//! - [`char_lm`]: the character language model (embedding → LSTM → linear head).

pub mod cell;
pub mod char_lm;
pub mod error;
pub mod lstm;

pub use char_lm::{CharLm, CharLmConfig};
pub use error::NnError;
pub use lstm::{Lstm, LstmConfig, LstmState};
