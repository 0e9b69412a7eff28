//! The output of one training or validation step, and what metrics read from it.

use burn::prelude::*;
use burn::train::metric::ItemLazy;

/// The loss of one batch over its valid positions (tokens, time steps or sequences), with the
/// task's other figures.
#[derive(Debug)]
pub struct TokenLossOutput<B: Backend> {
    /// Mean loss over the valid positions (a one-element tensor that carries the graph in
    /// training): NLL in nats for language models and classifiers, squared error for regression.
    pub loss: Tensor<B, 1>,
    /// Number of valid (unmasked) positions.
    pub tokens: usize,
    abs_error: Option<Tensor<B, 1>>,
    correct: Option<Tensor<B, 1>>,
    value: Option<TokenLoss>,
    /// Wall time of the training step (forward, backward, optimiser), set by the epoch loop.
    pub seconds: Option<f64>,
}

impl<B: Backend> TokenLossOutput<B> {
    /// An output for `loss` averaged over `tokens` valid positions.
    pub fn new(loss: Tensor<B, 1>, tokens: usize) -> Self {
        Self {
            loss,
            tokens,
            abs_error: None,
            correct: None,
            value: None,
            seconds: None,
        }
    }

    /// Adds the mean absolute error over the same positions (regression).
    pub fn with_abs_error(mut self, mean_abs_error: Tensor<B, 1>) -> Self {
        self.abs_error = Some(mean_abs_error.detach());
        self
    }

    /// Adds the number of correct predictions among the positions (classification).
    pub fn with_correct(mut self, correct: Tensor<B, 1>) -> Self {
        self.correct = Some(correct.detach());
        self
    }

    /// The figures on the host, read from the device once.
    pub fn host(&mut self) -> TokenLoss {
        if let Some(value) = self.value {
            return value;
        }
        let read = |t: &Tensor<B, 1>| t.clone().into_scalar().elem::<f64>();
        let value = TokenLoss {
            mean_nll: read(&self.loss),
            tokens: self.tokens,
            mean_abs_error: self.abs_error.as_ref().map(read),
            correct: self.correct.as_ref().map(read),
            seconds: None,
        };
        self.value = Some(value);
        value
    }

    /// The mean loss as a number.
    pub fn mean_nll(&mut self) -> f64 {
        self.host().mean_nll
    }
}

/// A batch's figures on the host: what every ember metric reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLoss {
    /// Mean loss over the valid positions (NLL in nats, or squared error).
    pub mean_nll: f64,
    /// Number of valid positions.
    pub tokens: usize,
    /// Regression: mean absolute error over the valid positions.
    pub mean_abs_error: Option<f64>,
    /// Classification: correct predictions among the positions.
    pub correct: Option<f64>,
    /// Training: wall time of the step.
    pub seconds: Option<f64>,
}

impl TokenLoss {
    /// Share of correct predictions, when the task counts them.
    pub fn accuracy(&self) -> Option<f64> {
        self.correct.map(|c| c / self.tokens as f64)
    }
}

impl<B: Backend> ItemLazy for TokenLossOutput<B> {
    type ItemSync = TokenLoss;

    fn sync(mut self) -> TokenLoss {
        TokenLoss {
            seconds: self.seconds,
            ..self.host()
        }
    }
}

/// Position-weighted running means of an epoch's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossAccumulator {
    nll_sum: f64,
    abs_sum: Option<f64>,
    correct: Option<f64>,
    tokens: usize,
}

impl LossAccumulator {
    /// Adds a batch with mean loss `mean_nll` over `tokens` positions.
    pub fn add(&mut self, mean_nll: f64, tokens: usize) {
        self.nll_sum += mean_nll * tokens as f64;
        self.tokens += tokens;
    }

    /// Adds a batch's figures.
    pub fn add_item(&mut self, item: &TokenLoss) {
        self.add(item.mean_nll, item.tokens);
        if let Some(mae) = item.mean_abs_error {
            *self.abs_sum.get_or_insert(0.0) += mae * item.tokens as f64;
        }
        if let Some(c) = item.correct {
            *self.correct.get_or_insert(0.0) += c;
        }
    }

    /// Mean loss per position so far (NaN before any position).
    pub fn mean(&self) -> f64 {
        self.nll_sum / self.tokens as f64
    }

    /// Mean absolute error so far, when the batches carried it.
    pub fn mean_abs_error(&self) -> Option<f64> {
        self.abs_sum.map(|s| s / self.tokens as f64)
    }

    /// Share of correct predictions so far, when the batches counted them.
    pub fn accuracy(&self) -> Option<f64> {
        self.correct.map(|c| c / self.tokens as f64)
    }

    /// Positions seen so far.
    pub fn tokens(&self) -> usize {
        self.tokens
    }
}
