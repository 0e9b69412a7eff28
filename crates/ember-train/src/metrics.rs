//! Learner metrics over valid positions only: loss, perplexity, bits per character, mean
//! absolute error and accuracy.

use std::sync::Arc;

use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};

use crate::output::TokenLoss;

impl Adaptor<TokenLoss> for TokenLoss {
    fn adapt(&self) -> TokenLoss {
        *self
    }
}

/// What a [`TokenMetric`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenMetricKind {
    /// Mean NLL in nats per valid token.
    Loss,
    /// `exp(mean NLL)`.
    Perplexity,
    /// `mean NLL / ln 2`.
    BitsPerChar,
    /// Regression: mean absolute error over the valid steps.
    MeanAbsError,
    /// Classification: share of correct predictions.
    Accuracy,
    /// Valid positions (tokens, time steps, sequences) per second of training step.
    TokensPerSecond,
}

/// A token-weighted metric: batches count by their number of valid tokens, so padding never
/// enters the figure; perplexity is `exp` of the token-weighted mean loss so far.
#[derive(Clone)]
pub struct TokenMetric {
    kind: TokenMetricKind,
    name: MetricName,
    state: NumericMetricState,
    nll_sum: f64,
    tokens: usize,
    /// Positions and step seconds timed since the epoch began.
    timed: (usize, f64),
}

impl TokenMetric {
    /// A metric of the given kind.
    pub fn new(kind: TokenMetricKind) -> Self {
        let name = match kind {
            TokenMetricKind::Loss => "Loss",
            TokenMetricKind::Perplexity => "Perplexity",
            TokenMetricKind::BitsPerChar => "Bits per char",
            TokenMetricKind::MeanAbsError => "MAE",
            TokenMetricKind::Accuracy => "Accuracy",
            // Metric names become file names under logs/: no slash.
            TokenMetricKind::TokensPerSecond => "Tokens per second",
        };
        Self {
            kind,
            name: Arc::new(name.to_owned()),
            state: NumericMetricState::new(),
            nll_sum: 0.0,
            tokens: 0,
            timed: (0, 0.0),
        }
    }

    fn transform(&self, nll: f64) -> f64 {
        match self.kind {
            TokenMetricKind::Perplexity => nll.exp(),
            TokenMetricKind::BitsPerChar => nll / std::f64::consts::LN_2,
            _ => nll,
        }
    }

    /// The batch's value of this metric, before any transform.
    fn read(&self, item: &TokenLoss) -> f64 {
        match self.kind {
            TokenMetricKind::MeanAbsError => item.mean_abs_error.unwrap_or(f64::NAN),
            TokenMetricKind::Accuracy => item.accuracy().map_or(f64::NAN, |a| a * 100.0),
            _ => item.mean_nll,
        }
    }

    fn unit(&self) -> Option<&'static str> {
        match self.kind {
            TokenMetricKind::BitsPerChar => Some("bpc"),
            TokenMetricKind::Accuracy => Some("%"),
            _ => None,
        }
    }
}

impl TokenMetric {
    /// Throughput: the batch's positions over its step time (forward, backward, optimiser).
    fn update_rate(&mut self, item: &TokenLoss) -> SerializedEntry {
        let format = FormatOptions::new(self.name()).precision(0);
        let seconds = item.seconds.unwrap_or(f64::NAN).max(1e-9);
        if seconds.is_finite() {
            self.timed = (self.timed.0 + item.tokens, self.timed.1 + seconds);
        }
        self.state
            .update(item.tokens as f64 / seconds, item.tokens, format)
    }
}

impl Metric for TokenMetric {
    type Input = TokenLoss;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: self.unit().map(str::to_owned),
            higher_is_better: self.kind == TokenMetricKind::Accuracy,
        }
        .into()
    }

    fn update(&mut self, item: &TokenLoss, _meta: &MetricMetadata) -> SerializedEntry {
        if self.kind == TokenMetricKind::TokensPerSecond {
            return self.update_rate(item);
        }
        self.nll_sum += item.mean_nll * item.tokens as f64;
        self.tokens += item.tokens;
        let mut format = FormatOptions::new(self.name()).precision(3);
        if let Some(unit) = self.unit() {
            format = format.unit(unit);
        }
        let entry = self
            .state
            .update(self.transform(self.read(item)), item.tokens, format);
        if self.kind == TokenMetricKind::Perplexity {
            // The state averages per-batch perplexities; the epoch figure is exp(mean loss).
            let running = self.transform(self.nll_sum / self.tokens as f64);
            let batch = self.transform(item.mean_nll);
            return SerializedEntry::new(
                format!("epoch {running:.3} - batch {batch:.3}"),
                entry.serialized,
            );
        }
        entry
    }

    fn clear(&mut self) {
        self.state.reset();
        self.nll_sum = 0.0;
        self.tokens = 0;
        self.timed = (0, 0.0);
    }
}

impl Numeric for TokenMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        match self.kind {
            TokenMetricKind::Perplexity => NumericEntry::Aggregated {
                aggregated_value: self.transform(self.nll_sum / self.tokens as f64),
                count: self.tokens,
            },
            TokenMetricKind::TokensPerSecond => NumericEntry::Aggregated {
                aggregated_value: self.timed.0 as f64 / self.timed.1.max(1e-9),
                count: self.timed.0,
            },
            _ => self.state.running_value(),
        }
    }
}
