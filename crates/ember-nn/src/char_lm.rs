//! The character language model: token embedding → stacked LSTM → linear head over the vocabulary.

use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;

use crate::recurrent::{Lstm, RecurrentConfig, RecurrentState};
use crate::NnError;

/// Configuration of a [`CharLm`].
#[derive(Config, Debug, PartialEq)]
pub struct CharLmConfig {
    /// Number of tokens, special tokens included.
    pub vocab_size: usize,
    /// Width of the token embedding.
    #[config(default = 32)]
    pub embed_dim: usize,
    /// LSTM hidden size.
    #[config(default = 128)]
    pub hidden_size: usize,
    /// Number of stacked LSTM layers.
    #[config(default = 1)]
    pub num_layers: usize,
    /// Dropout between LSTM layers and before the head, in training only.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl CharLmConfig {
    /// Builds the model; an impossible size is an error naming the key.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<CharLm<B>, NnError> {
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("embed_dim", self.embed_dim),
        ] {
            if v == 0 {
                return Err(NnError::ZeroSize { key });
            }
        }
        let lstm: Lstm<B> = RecurrentConfig::new(self.embed_dim, self.hidden_size)
            .with_num_layers(self.num_layers)
            .with_dropout(self.dropout)
            .with_batch_first(true)
            .init(device)?;
        Ok(CharLm {
            embedding: EmbeddingConfig::new(self.vocab_size, self.embed_dim).init(device),
            head: LinearConfig::new(lstm.output_size(), self.vocab_size).init(device),
            lstm,
            dropout: DropoutConfig::new(self.dropout).init(),
        })
    }
}

/// A character-level language model: `logits = head(dropout(lstm(embedding(tokens))))`.
#[derive(Module, Debug)]
pub struct CharLm<B: Backend> {
    /// Token embedding, `[vocab, embed_dim]`.
    pub embedding: Embedding<B>,
    /// The recurrent body.
    pub lstm: Lstm<B>,
    dropout: Dropout,
    /// Projection to next-token logits.
    pub head: Linear<B>,
}

impl<B: Backend> CharLm<B> {
    /// Next-token logits `[batch, seq, vocab]` for `tokens` `[batch, seq]`, from `state`
    /// (zeros when `None`), and the state after the last step.
    ///
    /// Sequences padded at the end need no lengths here: a unidirectional LSTM's outputs at
    /// valid steps never depend on later padding, and the loss masks the padded steps.
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        state: Option<RecurrentState<B>>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        let x = self.embedding.forward(tokens);
        let (h, state) = self.lstm.forward(x, None, state);
        (self.head.forward(self.dropout.forward(h)), state)
    }
}
