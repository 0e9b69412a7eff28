//! The sequence classifier: token embedding → stacked LSTM, GRU or RNN over the valid steps →
//! pooled over time → linear head over the classes.

use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::dropout::dropout;
use crate::layer::{AnyRecurrent, CellKind};
use crate::packing::last_valid_steps;
use crate::recurrent::RecurrentConfig;
use crate::rnn::Nonlinearity;
use crate::NnError;

/// How a [`SequenceClassifier`] summarises a sequence (`pooling = "last"` in a config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The output at each sequence's last valid step (`h_n` of a packed sequence).
    #[default]
    Last,
    /// The mean of the outputs over the valid steps.
    Mean,
}

/// Configuration of a [`SequenceClassifier`].
#[derive(Config, Debug, PartialEq)]
pub struct SequenceClassifierConfig {
    /// Number of tokens, special tokens included.
    pub vocab_size: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Width of the token embedding.
    #[config(default = 32)]
    pub embed_dim: usize,
    /// The recurrent cell.
    #[config(default = "CellKind::Lstm")]
    pub kind: CellKind,
    /// Recurrent hidden size.
    #[config(default = 128)]
    pub hidden_size: usize,
    /// Number of stacked recurrent layers.
    #[config(default = 1)]
    pub num_layers: usize,
    /// LSTM only: projection size of `h` (0 means none).
    #[config(default = 0)]
    pub proj_size: usize,
    /// RNN only: `tanh` or `relu`.
    #[config(default = "Nonlinearity::Tanh")]
    pub nonlinearity: Nonlinearity,
    /// Dropout between recurrent layers and before the head, in training only.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Last valid step or mean over the valid steps.
    #[config(default = "Pooling::Last")]
    pub pooling: Pooling,
    /// LSTM and GRU only: LayerNorm cells (see [`crate::layer_norm`]). An option, so that a
    /// `model.json` written before it still loads: `None` means off.
    pub layer_norm: Option<bool>,
}

impl SequenceClassifierConfig {
    /// Builds the model; an impossible size is an error naming the key.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<SequenceClassifier<B>, NnError> {
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("num_classes", self.num_classes),
            ("embed_dim", self.embed_dim),
        ] {
            if v == 0 {
                return Err(NnError::ZeroSize { key });
            }
        }
        let body = RecurrentConfig::new(self.embed_dim, self.hidden_size)
            .with_num_layers(self.num_layers)
            .with_proj_size(self.proj_size)
            .with_nonlinearity(self.nonlinearity)
            .with_dropout(self.dropout)
            .with_layer_norm(self.layer_norm.unwrap_or(false))
            .with_batch_first(true)
            .init_any(self.kind, device)?;
        Ok(SequenceClassifier {
            embedding: EmbeddingConfig::new(self.vocab_size, self.embed_dim).init(device),
            head: LinearConfig::new(body.output_size(), self.num_classes).init(device),
            body,
            dropout: DropoutConfig::new(self.dropout).init(),
            mean_pool: self.pooling == Pooling::Mean,
        })
    }
}

/// A sequence classifier.
///
/// ```text
/// h_1 … h_L = body(embedding(tokens))     packed: padded steps are never computed
/// z = h_L            (pooling = last)     the last valid step
/// z = mean_t h_t     (pooling = mean)     over the L valid steps
/// logits = W dropout(z) + b
/// ```
#[derive(Module, Debug)]
pub struct SequenceClassifier<B: Backend> {
    /// Token embedding, `[vocab, embed_dim]`.
    pub embedding: Embedding<B>,
    /// The recurrent body.
    pub body: AnyRecurrent<B>,
    dropout: Dropout,
    /// Projection to class logits.
    pub head: Linear<B>,
    mean_pool: bool,
}

impl<B: Backend> SequenceClassifier<B> {
    /// Class logits `[batch, classes]` for `tokens` `[batch, seq]` padded at the end, where
    /// sequence `b` has `lengths[b]` (1..=seq) valid tokens.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>, lengths: &[usize]) -> Tensor<B, 2> {
        let device = tokens.device();
        let x = self.embedding.forward(tokens);
        let (h, _) = self.body.forward(x, Some(lengths), None);
        let [batch, _, width] = h.dims();
        let pooled = if self.mean_pool {
            // Packed outputs are zero at padded steps, so the sum covers the valid ones only.
            // Times `1 / length`, not divided by it: Burn differentiates a division through
            // `recip`, which NdArray approximates (to about 4e-4) on most of a buffer.
            let scales: Vec<f32> = lengths.iter().map(|&l| 1.0 / l.max(1) as f32).collect();
            let scales =
                Tensor::<B, 1>::from_floats(scales.as_slice(), &device).reshape([batch, 1]);
            h.sum_dim(1).reshape([batch, width]) * scales
        } else {
            last_valid_steps(h, lengths)
        };
        self.head.forward(dropout(&self.dropout, pooled))
    }

    /// The pooling over time.
    pub fn pooling(&self) -> Pooling {
        if self.mean_pool {
            Pooling::Mean
        } else {
            Pooling::Last
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    fn logits(model: &SequenceClassifier<NdArray>, rows: &[&[i64]]) -> Vec<f32> {
        let device = Default::default();
        let steps = rows.iter().map(|r| r.len()).max().unwrap();
        let lengths: Vec<usize> = rows.iter().map(|r| r.len()).collect();
        let mut ids = Vec::new();
        for r in rows {
            ids.extend(r.iter().copied());
            ids.extend(std::iter::repeat_n(0i64, steps - r.len()));
        }
        let tokens = Tensor::<NdArray, 2, Int>::from_data(
            TensorData::new(ids, [rows.len(), steps]),
            &device,
        );
        model
            .forward(tokens, &lengths)
            .into_data()
            .to_vec()
            .unwrap()
    }

    #[test]
    fn padding_never_changes_a_sequence_logits() {
        // With plain and with LayerNorm cells.
        for (pooling, layer_norm) in [
            (Pooling::Last, None),
            (Pooling::Mean, None),
            (Pooling::Last, Some(true)),
            (Pooling::Mean, Some(true)),
        ] {
            let model = SequenceClassifierConfig::new(6, 3)
                .with_hidden_size(8)
                .with_pooling(pooling)
                .with_layer_norm(layer_norm)
                .init::<NdArray>(&Default::default())
                .unwrap();
            assert_eq!(model.pooling(), pooling);
            assert_eq!(model.body.layer_norm(), layer_norm.is_some());
            let alone = logits(&model, &[&[1, 2]]);
            let padded = logits(&model, &[&[1, 2], &[3, 4, 5, 1]]);
            for (a, b) in alone.iter().zip(&padded[..3]) {
                assert!((a - b).abs() < 1e-5, "{pooling:?}: {alone:?} vs {padded:?}");
            }
        }
    }
}
