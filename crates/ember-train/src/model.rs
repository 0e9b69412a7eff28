//! The trainable wrappers around ember-nn's [`CharLm`]: loss, training and validation steps,
//! for independent sequences ([`LanguageModel`]) and for the parallel streams of stateful
//! truncated BPTT ([`StreamLanguageModel`]).

use burn::module::Module;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use ember_data::{SequenceBatch, StreamBatch};
use ember_nn::{CharLm, CharLmConfig, RecurrentState};

use crate::config::ModelConfig;
use crate::loss::masked_cross_entropy_time_major;
use crate::output::TokenLossOutput;
use crate::strategy::{CarryStep, SaveModel};

/// `CarryStep` for a model that carries nothing between batches: each batch is one `step`.
macro_rules! stateless_carry {
    ($model:ident, $batch:ident) => {
        impl<B: burn::tensor::backend::AutodiffBackend>
            $crate::strategy::CarryStep<$batch<B>, burn::train::TrainOutput<TokenLossOutput<B>>>
            for $model<B>
        {
            type Carry = ();

            fn step_carry(
                &self,
                batch: $batch<B>,
                _: Option<()>,
            ) -> (burn::train::TrainOutput<TokenLossOutput<B>>, Option<()>) {
                (burn::train::TrainStep::step(self, batch), None)
            }
        }

        impl<B: Backend> $crate::strategy::CarryStep<$batch<B>, TokenLossOutput<B>> for $model<B> {
            type Carry = ();

            fn step_carry(
                &self,
                batch: $batch<B>,
                _: Option<()>,
            ) -> (TokenLossOutput<B>, Option<()>) {
                (burn::train::InferenceStep::step(self, batch), None)
            }
        }
    };
}
pub(crate) use stateless_carry;

/// The recorder of every ember checkpoint: named MessagePack, full precision (`.mpk`).
pub fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

/// The [`CharLmConfig`] of a `[model]` table for a vocabulary of `vocab_size` tokens.
pub fn char_lm_config(model: &ModelConfig, vocab_size: usize) -> CharLmConfig {
    CharLmConfig::new(vocab_size)
        .with_kind(model.cell())
        .with_embed_dim(model.embed_dim)
        .with_hidden_size(model.hidden_size)
        .with_num_layers(model.num_layers)
        .with_proj_size(model.proj_size)
        .with_nonlinearity(model.nonlinearity)
        .with_dropout(model.dropout)
        .with_variational(Some(model.variational_dropout))
        .with_embed_dropout(Some(model.embed_dropout))
        .with_input_dropout(Some(model.input_dropout))
        .with_weight_drop(Some(model.weight_drop))
        .with_zoneout(Some(model.zoneout))
        .with_zoneout_cell(Some(model.zoneout_cell))
        .with_tie_embeddings(Some(model.tie_embeddings))
        .with_layer_norm(Some(model.layer_norm))
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
        let (logits, _) = self.lm.forward_time_major(batch.inputs, None, None);
        let loss = masked_cross_entropy_time_major(logits, batch.targets, batch.mask);
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

stateless_carry!(LanguageModel, SequenceBatch);

impl<B: Backend> SaveModel for LanguageModel<B> {
    fn save_model(&self, path: &std::path::Path, format: RecordFormat) -> Result<(), String> {
        save_module(&self.lm, path, format)
    }
}

/// The file formats a model is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// Burn's named MessagePack record at full precision (`.mpk`, [`recorder`]): what Burn
    /// 0.21 apps load with `Module::load_file`, and what ember itself reads.
    Mpk,
    /// burn-store's Burnpack (`.bpk`): what Burn 0.22+ apps load, since they no longer read
    /// `.mpk`. Tensor paths are the module's field paths, as in the `.mpk` record.
    Burnpack,
}

/// Metadata key of the run format in a Burnpack file.
pub const BURNPACK_FORMAT_KEY: &str = "ember.format";

/// Writes `module` to `path` in `format` (replacing the file; the path is used as given, no
/// extension is added).
pub fn save_module<B: Backend, M: Module<B>>(
    module: &M,
    path: &std::path::Path,
    format: RecordFormat,
) -> Result<(), String> {
    match format {
        RecordFormat::Mpk => module
            .clone()
            .save_file(path, &recorder())
            .map_err(|e| e.to_string()),
        RecordFormat::Burnpack => {
            let mut store = BurnpackStore::from_file(path)
                .auto_extension(false)
                .overwrite(true)
                .metadata(BURNPACK_FORMAT_KEY, crate::run_dir::RUN_FORMAT);
            module.save_into(&mut store).map_err(|e| e.to_string())
        }
    }
}

/// Loads the weights at `path` into `fresh`, a module built from the same config (so every
/// shape matches).
pub fn load_module<B: Backend, M: Module<B>>(
    fresh: M,
    path: &std::path::Path,
    device: &B::Device,
) -> Result<M, crate::TrainError> {
    fresh
        .load_file(path.to_path_buf(), &recorder(), device)
        .map_err(|e| crate::TrainError::BadCheckpoint {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// A [`CharLm`] trained on parallel text streams with its state carried from each chunk to the
/// next (stateful truncated BPTT).
#[derive(Module, Debug)]
pub struct StreamLanguageModel<B: Backend> {
    /// The model that is saved and shipped.
    pub lm: CharLm<B>,
}

impl<B: Backend> StreamLanguageModel<B> {
    /// The mean cross-entropy of a chunk and the state after it; the state starts from zeros
    /// at the first chunk of a pass, else from `state`.
    pub fn forward_loss(
        &self,
        batch: StreamBatch<B>,
        state: Option<RecurrentState<B>>,
    ) -> (TokenLossOutput<B>, RecurrentState<B>) {
        let state = if batch.first { None } else { state };
        let b = batch.batch;
        let tokens = b.num_tokens();
        let (logits, state) = self.lm.forward_time_major(b.inputs, None, state);
        let loss = masked_cross_entropy_time_major(logits, b.targets, b.mask);
        (TokenLossOutput::new(loss, tokens), state)
    }
}

impl<B: AutodiffBackend> TrainStep for StreamLanguageModel<B> {
    type Input = StreamBatch<B>;
    type Output = TokenLossOutput<B>;

    /// A chunk from a zero state (the epoch loop carries state through [`CarryStep`]).
    fn step(&self, batch: StreamBatch<B>) -> TrainOutput<TokenLossOutput<B>> {
        <Self as CarryStep<_, TrainOutput<_>>>::step_carry(self, batch, None).0
    }
}

impl<B: Backend> InferenceStep for StreamLanguageModel<B> {
    type Input = StreamBatch<B>;
    type Output = TokenLossOutput<B>;

    fn step(&self, batch: StreamBatch<B>) -> TokenLossOutput<B> {
        self.forward_loss(batch, None).0
    }
}

impl<B: AutodiffBackend> CarryStep<StreamBatch<B>, TrainOutput<TokenLossOutput<B>>>
    for StreamLanguageModel<B>
{
    type Carry = RecurrentState<B>;

    fn step_carry(
        &self,
        batch: StreamBatch<B>,
        carry: Option<RecurrentState<B>>,
    ) -> (TrainOutput<TokenLossOutput<B>>, Option<RecurrentState<B>>) {
        let (out, state) = self.forward_loss(batch, carry);
        let grads = out.loss.backward();
        (TrainOutput::new(self, grads, out), Some(state.detach()))
    }
}

impl<B: Backend> CarryStep<StreamBatch<B>, TokenLossOutput<B>> for StreamLanguageModel<B> {
    type Carry = RecurrentState<B>;

    fn step_carry(
        &self,
        batch: StreamBatch<B>,
        carry: Option<RecurrentState<B>>,
    ) -> (TokenLossOutput<B>, Option<RecurrentState<B>>) {
        let (out, state) = self.forward_loss(batch, carry);
        (out, Some(state))
    }
}

impl<B: Backend> SaveModel for StreamLanguageModel<B> {
    fn save_model(&self, path: &std::path::Path, format: RecordFormat) -> Result<(), String> {
        save_module(&self.lm, path, format)
    }
}
