//! The trainable wrapper around ember-nn's [`CharLm`]: loss, training and validation steps.

use burn::module::Module;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use ember_data::SequenceBatch;
use ember_nn::{CharLm, CharLmConfig};

use crate::config::ModelConfig;
use crate::loss::masked_cross_entropy;
use crate::output::TokenLossOutput;
use crate::strategy::SaveModel;

/// The recorder of every ember checkpoint: named MessagePack, full precision (`.mpk`).
pub fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

/// The [`CharLmConfig`] of a `[model]` table for a vocabulary of `vocab_size` tokens.
pub fn char_lm_config(model: &ModelConfig, vocab_size: usize) -> CharLmConfig {
    CharLmConfig::new(vocab_size)
        .with_kind(model.kind)
        .with_embed_dim(model.embed_dim)
        .with_hidden_size(model.hidden_size)
        .with_num_layers(model.num_layers)
        .with_proj_size(model.proj_size)
        .with_nonlinearity(model.nonlinearity)
        .with_dropout(model.dropout)
}

/// A [`CharLm`] with its training objective: masked next-token cross-entropy.
#[derive(Module, Debug)]
pub struct LanguageModel<B: Backend> {
    /// The model that is saved and shipped.
    pub lm: CharLm<B>,
}

impl<B: Backend> LanguageModel<B> {
    /// The mean cross-entropy over the batch's valid tokens.
    pub fn forward_loss(&self, batch: SequenceBatch<B>) -> TokenLossOutput<B> {
        let tokens = batch.num_tokens();
        let (logits, _) = self.lm.forward(batch.inputs, None);
        let loss = masked_cross_entropy(logits, batch.targets, batch.mask);
        TokenLossOutput::new(loss, tokens)
    }
}

impl<B: AutodiffBackend> TrainStep for LanguageModel<B> {
    type Input = SequenceBatch<B>;
    type Output = TokenLossOutput<B>;

    fn step(&self, batch: SequenceBatch<B>) -> TrainOutput<TokenLossOutput<B>> {
        let out = self.forward_loss(batch);
        TrainOutput::new(self, out.loss.backward(), out)
    }
}

impl<B: Backend> InferenceStep for LanguageModel<B> {
    type Input = SequenceBatch<B>;
    type Output = TokenLossOutput<B>;

    fn step(&self, batch: SequenceBatch<B>) -> TokenLossOutput<B> {
        self.forward_loss(batch)
    }
}

impl<B: Backend> SaveModel for LanguageModel<B> {
    fn save_model(&self, path: &std::path::Path) -> Result<(), String> {
        self.lm
            .clone()
            .save_file(path, &recorder())
            .map_err(|e| e.to_string())
    }
}
