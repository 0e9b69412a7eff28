//! The output of one training or validation step, and what metrics read from it.

use burn::prelude::*;
use burn::train::metric::ItemLazy;

/// The loss of one batch: the mean negative log-likelihood over its valid tokens.
#[derive(Debug)]
pub struct TokenLossOutput<B: Backend> {
    /// Mean NLL over the valid tokens (a one-element tensor that carries the graph in training).
    pub loss: Tensor<B, 1>,
    /// Number of valid (unmasked) tokens.
    pub tokens: usize,
    value: Option<f64>,
}

impl<B: Backend> TokenLossOutput<B> {
    /// An output for `loss` averaged over `tokens` valid tokens.
    pub fn new(loss: Tensor<B, 1>, tokens: usize) -> Self {
        Self {
            loss,
            tokens,
            value: None,
        }
    }

    /// The loss as a number, read from the device once.
    pub fn mean_nll(&mut self) -> f64 {
        *self
            .value
            .get_or_insert_with(|| self.loss.clone().into_scalar().elem::<f64>())
    }
}

/// A batch's loss on the host: what every ember metric reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLoss {
    /// Mean NLL in nats over the valid tokens.
    pub mean_nll: f64,
    /// Number of valid tokens.
    pub tokens: usize,
}

impl<B: Backend> ItemLazy for TokenLossOutput<B> {
    type ItemSync = TokenLoss;

    fn sync(mut self) -> TokenLoss {
        TokenLoss {
            mean_nll: self.mean_nll(),
            tokens: self.tokens,
        }
    }
}

/// Token-weighted running mean of the loss over an epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossAccumulator {
    nll_sum: f64,
    tokens: usize,
}

impl LossAccumulator {
    /// Adds a batch with mean NLL `mean_nll` over `tokens` tokens.
    pub fn add(&mut self, mean_nll: f64, tokens: usize) {
        self.nll_sum += mean_nll * tokens as f64;
        self.tokens += tokens;
    }

    /// Mean NLL per token so far (NaN before any token).
    pub fn mean(&self) -> f64 {
        self.nll_sum / self.tokens as f64
    }

    /// Tokens seen so far.
    pub fn tokens(&self) -> usize {
        self.tokens
    }
}
