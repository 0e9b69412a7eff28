//! Errors raised when a model configuration cannot be built.

use thiserror::Error;

/// A model configuration that cannot describe a valid network.
#[derive(Debug, Error, PartialEq)]
pub enum NnError {
    /// A size that must be positive is zero.
    #[error("model.{key} must be at least 1 (got 0)")]
    ZeroSize {
        /// The configuration key, e.g. `hidden_size`.
        key: &'static str,
    },
    /// `proj_size` must be smaller than `hidden_size`, as in PyTorch.
    #[error("model.proj_size ({proj_size}) must be smaller than model.hidden_size ({hidden_size}); use 0 for no projection")]
    ProjTooLarge {
        /// The requested projection size.
        proj_size: usize,
        /// The hidden size it must stay below.
        hidden_size: usize,
    },
    /// `proj_size` is an LSTM option only.
    #[error("model.proj_size is only supported by LSTM layers; set it to 0")]
    ProjUnsupported,
    /// A PyTorch tensor the layer needs is not in the file.
    #[error("tensor {0} is missing from the state_dict")]
    MissingTensor(String),
    /// A PyTorch tensor has the wrong shape for the configured layer.
    #[error("tensor {name} has shape {found:?}, but the config needs {expected:?}")]
    TensorShape {
        /// The tensor name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// Dropout masks given to a forward pass do not fit the model.
    #[error("the {what} dropout masks have shapes {found:?}, but the model needs {expected:?}")]
    MaskShapes {
        /// Which masks: `between-layer`, `weight-drop`, `embedding`, `input` or `output`.
        what: &'static str,
        /// The shapes the model and batch need, one per mask.
        expected: Vec<Vec<usize>>,
        /// The shapes given.
        found: Vec<Vec<usize>>,
    },
    /// Dropout must be a probability.
    #[error("model.dropout must be in [0, 1) (got {0})")]
    BadDropout(f64),
    /// A rate that must be a probability is not.
    #[error("model.{key} must be in [0, 1) (got {value})")]
    BadRate {
        /// The configuration key, e.g. `zoneout`.
        key: &'static str,
        /// The value given.
        value: f64,
    },
    /// Layer normalisation is for LSTM and GRU cells.
    #[error("model.layer_norm applies to LSTM and GRU layers only; set it to false or model.kind to lstm or gru")]
    LayerNormUnsupported,
    /// Zoneout of the cell state needs a cell that has one.
    #[error("model.zoneout_cell applies to LSTM layers only (GRU and RNN have no cell state); set it to 0 and use model.zoneout")]
    ZoneoutCellUnsupported,
    /// A tied head needs the body's output as wide as the embedding.
    #[error("model.tie_embeddings needs the recurrent output as wide as model.embed_dim ({embed_dim}), but it is {width}: set {fix}")]
    TiedWidths {
        /// The embedding width.
        embed_dim: usize,
        /// The body's output width (`hidden_size`, or `proj_size` when set).
        width: usize,
        /// The key to change, with its value.
        fix: String,
    },
}
