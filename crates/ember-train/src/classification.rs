//! Sequence classification: one text file per class, a stratified split, the trainable
//! wrapper (cross-entropy, accuracy), the majority-class baseline and the confusion matrix.

use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use ember_data::split::stratified_split;
use ember_data::{
    ClassBatch, ClassBatcher, ClassVocab, Fractions, LabelledData, LabelledSequence, SplitIndices,
    Vocab,
};
use ember_nn::{SequenceClassifier, SequenceClassifierConfig};

use crate::config::{ExperimentConfig, ModelConfig};
use crate::loss::masked_cross_entropy;
use crate::model::{save_module, stateless_carry, RecordFormat};
use crate::output::{LossAccumulator, TokenLossOutput};
use crate::run::missing_as_config_error;
use crate::strategy::SaveModel;
use crate::TrainError;

/// File name of a classification run's class names.
pub const CLASSES_FILE: &str = "classes.json";
/// File name of a classification run's validation confusion matrix.
pub const CONFUSION_FILE: &str = "confusion.csv";

/// Labelled sequences prepared for training.
#[derive(Debug, Clone)]
pub struct ClassData {
    /// Every character of the samples.
    pub vocab: Vocab,
    /// The class names (file stems), in id order.
    pub classes: ClassVocab,
    /// Training samples.
    pub train: Vec<LabelledSequence>,
    /// Validation samples.
    pub valid: Vec<LabelledSequence>,
    /// Which samples went where (stratified by class), saved with the run.
    pub split: SplitIndices,
}

impl ClassData {
    fn train_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.classes.len()];
        for s in &self.train {
            counts[s.label] += 1;
        }
        counts
    }

    /// Validation accuracy of always answering the most frequent training class.
    pub fn majority_accuracy(&self) -> f64 {
        let counts = self.train_counts();
        let majority = (0..counts.len()).max_by_key(|&c| counts[c]).unwrap_or(0);
        let hits = self.valid.iter().filter(|s| s.label == majority).count();
        hits as f64 / self.valid.len().max(1) as f64
    }

    /// Validation cross-entropy (nats) of answering the training class frequencies (add-one
    /// smoothed): the loss a model learns with no look at the sequence.
    pub fn prior_loss(&self) -> f64 {
        let counts = self.train_counts();
        let total = (self.train.len() + counts.len()) as f64;
        let nll: f64 = self
            .valid
            .iter()
            .map(|s| -((counts[s.label] + 1) as f64 / total).ln())
            .sum();
        nll / self.valid.len().max(1) as f64
    }
}

/// Reads the class directory of `config` and splits it, stratified by class.
pub fn prepare_classes(config: &ExperimentConfig) -> Result<ClassData, TrainError> {
    let data = LabelledData::read_dir(&config.data.path).map_err(missing_as_config_error)?;
    let samples = data.encode(&data.vocab)?;
    let split = stratified_split(
        &data.labels(),
        data.classes.names(),
        Fractions::valid(config.data.valid_fraction),
        config.train.seed,
    )?;
    let parts = split.apply(&samples);
    Ok(ClassData {
        vocab: data.vocab,
        classes: data.classes,
        train: parts.train,
        valid: parts.valid,
        split,
    })
}

/// The [`SequenceClassifierConfig`] of a `[model]` table.
pub fn classifier_config(
    model: &ModelConfig,
    vocab_size: usize,
    num_classes: usize,
) -> SequenceClassifierConfig {
    SequenceClassifierConfig::new(vocab_size, num_classes)
        .with_kind(model.cell())
        .with_embed_dim(model.embed_dim)
        .with_hidden_size(model.hidden_size)
        .with_num_layers(model.num_layers)
        .with_proj_size(model.proj_size)
        .with_nonlinearity(model.nonlinearity)
        .with_dropout(model.dropout)
        .with_pooling(model.pooling)
        .with_layer_norm(Some(model.layer_norm))
}

/// A [`SequenceClassifier`] with its objective: cross-entropy over the classes, and the number
/// of correct answers for accuracy.
#[derive(Module, Debug)]
pub struct ClassifierModel<B: Backend> {
    /// The model that is saved and shipped.
    pub model: SequenceClassifier<B>,
}

impl<B: Backend> ClassifierModel<B> {
    /// The batch's mean cross-entropy and correct count, and the predicted classes.
    pub fn forward_predict(&self, batch: ClassBatch<B>) -> (TokenLossOutput<B>, Tensor<B, 1, Int>) {
        let rows = batch.lengths.len();
        let logits = self.model.forward(batch.inputs, &batch.lengths);
        let classes = logits.dims()[1];
        let predicted = logits.clone().argmax(1).reshape([rows]);
        let correct = predicted
            .clone()
            .equal(batch.labels.clone())
            .int()
            .sum()
            .float();
        let all = Tensor::<B, 2, Bool>::from_data(
            TensorData::new(vec![true; rows], [rows, 1]),
            &logits.device(),
        );
        let loss = masked_cross_entropy(
            logits.reshape([rows, 1, classes]),
            batch.labels.reshape([rows, 1]),
            all,
        );
        (
            TokenLossOutput::new(loss, rows).with_correct(correct),
            predicted,
        )
    }
}

impl<B: AutodiffBackend> TrainStep for ClassifierModel<B> {
    type Input = ClassBatch<B>;
    type Output = TokenLossOutput<B>;

    fn step(&self, batch: ClassBatch<B>) -> TrainOutput<TokenLossOutput<B>> {
        let out = self.forward_predict(batch).0;
        TrainOutput::new(self, out.loss.backward(), out)
    }
}

impl<B: Backend> InferenceStep for ClassifierModel<B> {
    type Input = ClassBatch<B>;
    type Output = TokenLossOutput<B>;

    fn step(&self, batch: ClassBatch<B>) -> TokenLossOutput<B> {
        self.forward_predict(batch).0
    }
}

stateless_carry!(ClassifierModel, ClassBatch);

impl<B: Backend> SaveModel for ClassifierModel<B> {
    fn save_model(&self, path: &Path, format: RecordFormat) -> Result<(), String> {
        save_module(&self.model, path, format)
    }
}

/// `matrix[actual][predicted]` counts of `model` on `samples`, in batches of `batch_size`,
/// with the loss and accuracy over them.
pub fn confusion_matrix<B: Backend>(
    model: &SequenceClassifier<B>,
    samples: &[LabelledSequence],
    num_classes: usize,
    pad_id: usize,
    batch_size: usize,
    device: &B::Device,
) -> (Vec<Vec<usize>>, LossAccumulator) {
    let batcher = ClassBatcher::new(pad_id);
    let wrapper = ClassifierModel {
        model: model.clone(),
    };
    let mut matrix = vec![vec![0usize; num_classes]; num_classes];
    let mut acc = LossAccumulator::default();
    for chunk in samples.chunks(batch_size.max(1)) {
        let batch = batcher.batch(chunk.to_vec(), device);
        let (mut out, predicted) = wrapper.forward_predict(batch);
        acc.add_item(&out.host());
        let predicted: Vec<i64> = predicted
            .into_data()
            .convert::<i64>()
            .to_vec()
            .expect("class ids");
        for (s, p) in chunk.iter().zip(predicted) {
            matrix[s.label][p as usize] += 1;
        }
    }
    (matrix, acc)
}

/// Writes `matrix` as CSV: a header `actual \ predicted,<class>...`, then one row per actual
/// class.
pub fn write_confusion(
    path: &Path,
    classes: &ClassVocab,
    matrix: &[Vec<usize>],
) -> Result<(), TrainError> {
    let mut writer = csv::Writer::from_path(path).map_err(|e| TrainError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    let mut rows = vec![std::iter::once("actual \\ predicted".to_owned())
        .chain(classes.names().iter().cloned())
        .collect::<Vec<_>>()];
    for (name, row) in classes.names().iter().zip(matrix) {
        rows.push(
            std::iter::once(name.clone())
                .chain(row.iter().map(usize::to_string))
                .collect(),
        );
    }
    rows.iter()
        .try_for_each(|r| writer.write_record(r))
        .and_then(|_| writer.flush().map_err(csv::Error::from))
        .map_err(|e| TrainError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })
}

/// Per-class recall lines ("Russian: 412/450 (91.6%)"), for the log.
pub fn recall_lines(classes: &ClassVocab, matrix: &[Vec<usize>]) -> Vec<String> {
    classes
        .names()
        .iter()
        .zip(matrix)
        .enumerate()
        .map(|(i, (name, row))| {
            let total: usize = row.iter().sum();
            format!(
                "{name}: {}/{total} ({:.1}%)",
                row[i],
                100.0 * row[i] as f64 / total.max(1) as f64
            )
        })
        .collect()
}
