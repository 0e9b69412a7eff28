//! ember-nn: recurrent layers with PyTorch's semantics and the models built from them.
//!
//! - [`cell`]: the [`RecurrentCell`] trait that every cell implements.
//! - [`lstm`], [`gru`], [`rnn`]: the cells of `nn.LSTM` (with `proj_size`), `nn.GRU` and
//!   `nn.RNN`, with PyTorch's parameter names, shapes, gate order and initialisation.
//! - [`recurrent`]: stacking, directions, dropout and lengths for any cell ([`Lstm`], [`Gru`],
//!   [`Rnn`]), around [`recurrent::run_direction`], the one loop over time.
//! - [`layer`]: [`AnyRecurrent`], a layer whose cell is chosen at run time ([`CellKind`]).
//! - [`layer_norm`]: the norms of a LayerNorm LSTM or GRU cell ([`layer_norm::CellNorm`]).
//! - `affine`: `x Wᵀ + b` over all steps as one autodiff op (CPU, on `ember-kernels`): the
//!   input projections and the language model's head.
//! - [`fused`]: the LSTM, GRU and RNN recurrences as one autodiff op each, with a hand-written
//!   backward pass (CPU, on `ember-kernels`).
//! - `cube` (feature `cube`, on by default): the pointwise part of an LSTM, GRU or RNN step as one
//!   CubeCL kernel with a hand-written backward kernel (wgpu, and CUDA with `cuda`).
//! - [`clip`]: [`ClipGlobalNorm`], PyTorch's `clip_grad_norm_` around any optimizer.
//! - [`cross_entropy`]: the masked mean cross-entropy as one autodiff op (CPU, on
//!   `ember-kernels`); Burn's ops elsewhere.
//! - [`dropout`]: dropout as one autodiff op with Philox masks kept as bytes (CPU, on
//!   `ember-kernels`); Burn's `Dropout` elsewhere.
//! - [`packing`]: variable lengths as PyTorch packs them (sorted, shrinking active batch).
//! - [`torch`]: PyTorch `state_dict` names, to load and list parameters.
//! - [`scratch`]: the hand-written two-head teaching RNN.
//! - [`char_lm`]: the character language model (embedding → LSTM/GRU/RNN → linear head).
//! - [`regressor`]: the per-step series regressor (stacked layers or the scratch RNN).
//! - [`classifier`]: the sequence classifier (last valid step or masked mean).

pub mod adam;
mod affine;
pub mod cell;
pub mod char_lm;
pub mod classifier;
pub mod clip;
pub mod cross_entropy;
#[cfg(feature = "cube")]
mod cube;
pub mod dropout;
pub mod error;
pub mod fused;
pub mod gru;
pub mod layer;
pub mod layer_norm;
pub mod lstm;
pub mod packing;
pub mod recurrent;
pub mod regressor;
pub mod rnn;
pub mod scratch;
pub mod torch;

pub use adam::{FusedAdam, FusedAdamW};
pub use cell::{CellState, RecurrentCell, ZoneMasks};
pub use char_lm::{CharLm, CharLmConfig, DropMasks};
pub use classifier::{Pooling, SequenceClassifier, SequenceClassifierConfig};
pub use clip::ClipGlobalNorm;
pub use error::NnError;
pub use gru::GruCell;
pub use layer::{AnyRecurrent, AnyRecurrentRecord, CellKind};
pub use lstm::LstmCell;
pub use recurrent::{Gru, Lstm, Recurrent, RecurrentConfig, RecurrentState, Rnn, StackMasks};
pub use regressor::{BodyKind, SeriesBody, SeriesRegressor, SeriesRegressorConfig};
pub use rnn::{Nonlinearity, RnnCell};
pub use scratch::{ScratchRnn, ScratchRnnConfig};
pub use torch::{TorchParam, TorchTensors};
