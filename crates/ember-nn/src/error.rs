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
    /// Dropout must be a probability.
    #[error("model.dropout must be in [0, 1) (got {0})")]
    BadDropout(f64),
}
