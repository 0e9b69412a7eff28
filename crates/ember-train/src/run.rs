//! Training a character model from a config into a run directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::module::AutodiffModule;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{Optimizer, SgdConfig};
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::LearningRateMetric;
use burn::train::{
    InferenceStep, Learner, LearningResult, SupervisedTraining, TrainOutput, TrainStep,
    TrainingStrategy,
};
use ember_data::bucket::{bucketed_batches, BatchedDataset, FlattenBatcher};
use ember_data::split::shuffled_split;
use ember_data::{
    random_chunks, read_lines, stream_chunks, ClassBatcher, Fractions, PaddingReport,
    SequenceBatcher, SeriesBatch, SeriesBatcher, SplitIndices, StreamBatcher, StreamChunk,
    TextCorpus, TokenSequence, Vocab,
};
use ember_nn::{ClipGlobalNorm, FusedAdam, FusedAdamW};

use crate::checkpoint::{
    read_best, BestCheckpoint, CheckpointKeeper, EpochRecord, BEST_BURNPACK, BEST_CHECKPOINT,
    BEST_JSON, CHECKPOINT_DIR, METRICS_CSV,
};
use crate::classification::{
    classifier_config, confusion_matrix, prepare_classes, recall_lines, write_confusion, ClassData,
    ClassifierModel, CLASSES_FILE, CONFUSION_FILE,
};
use crate::config::{DataKind, ExperimentConfig, OptimizerKind, Task};
use crate::divergence::{DivergenceGuard, Reference};
use crate::export::TORCH_NAMES_FILE;
use crate::lr_find::{RangeReport, RangeSpec, RangeTest};
use crate::metrics::{TokenMetric, TokenMetricKind};
use crate::model::{char_lm_config, load_module, recorder, LanguageModel, StreamLanguageModel};
use crate::output::TokenLossOutput;
use crate::plot::LOSS_SVG;
use crate::regression::{
    prepare_series, regressor_config, RegressionModel, SeriesData, WindowSet, SERIES_FILE,
};
use crate::renderer::PlainRenderer;
use crate::run_dir::write_model_files;
use crate::schedule::{Schedule, ScheduleKind};
use crate::strategy::{CarryStep, SaveModel};
use crate::strategy::{EpochLoop, LatestOnly, ResumeFrom};
use crate::TrainError;

/// File name of the config a run was trained with.
pub const CONFIG_FILE: &str = "config.toml";
/// File name of a run's vocabulary.
pub const VOCAB_FILE: &str = "vocab.json";
/// File name of a run's train/validation split (sample indices into the data file's lines).
pub const SPLIT_FILE: &str = "split.json";
/// Folder of burn-train's own logs in a run directory.
pub const LOG_DIR: &str = "logs";

/// How to run training, beyond the experiment config.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The run directory.
    pub artifacts: PathBuf,
    /// Show burn-train's TUI dashboard (else one plain line per epoch).
    pub tui: bool,
    /// Replace a run already in `artifacts`.
    pub overwrite: bool,
    /// Continue the run in `artifacts` from its last finished epoch (see [`resume_point`]).
    pub resume: bool,
}

/// Folder of the learner state (model, optimiser, schedule) of a run's latest epoch.
pub const STATE_DIR: &str = "logs/checkpoint";

/// The last finished epoch of the run in `dir`, if it can be resumed from it: its
/// `metrics.csv` row, `best.json` and learner state (`logs/checkpoint/{model,optim,scheduler}-N.mpk`)
/// must all be there.
pub fn resume_point(dir: &Path) -> Result<usize, TrainError> {
    let cannot = |reason: String| TrainError::CannotResume {
        dir: dir.to_owned(),
        reason,
    };
    if !dir.join(CONFIG_FILE).is_file() {
        return Err(cannot(format!(
            "it has no {CONFIG_FILE}: is it a run directory?"
        )));
    }
    let rows = crate::checkpoint::read_metrics(dir).map_err(|_| {
        cannot(format!(
            "it has no readable {METRICS_CSV}: no epoch finished"
        ))
    })?;
    let last = rows
        .last()
        .map(|r| r.epoch)
        .ok_or_else(|| cannot(format!("{METRICS_CSV} has no epoch")))?;
    read_best(dir)?;
    for part in ["model", "optim", "scheduler"] {
        let path = dir.join(STATE_DIR).join(format!("{part}-{last}.mpk"));
        if !path.is_file() {
            return Err(cannot(format!(
                "the learner state of epoch {last} ({}) is missing",
                path.display()
            )));
        }
    }
    Ok(last)
}

/// What a finished training run produced.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// The checkpoint in `best.mpk`.
    pub best: BestCheckpoint,
    /// Every epoch's figures.
    pub epochs: Vec<EpochRecord>,
    /// The baseline the run must beat.
    pub baseline: Baseline,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
}

/// The encoded, split dataset of a character model.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// The vocabulary of every character in the file.
    pub vocab: Vocab,
    /// Training sequences: lines, or a text's non-overlapping chunks.
    pub train: Vec<TokenSequence>,
    /// Validation sequences: lines, or a text's non-overlapping chunks.
    pub valid: Vec<TokenSequence>,
    /// For stateful text training: the parallel streams, chunk by chunk.
    pub streams: Option<TextStreams>,
    /// Which lines went where (lines only: a text is split by position), saved with the run.
    pub split: Option<SplitIndices>,
}

/// A text cut into parallel streams for stateful truncated BPTT.
#[derive(Debug, Clone)]
pub struct TextStreams {
    /// Training chunks, in order.
    pub train: Vec<StreamChunk>,
    /// Validation chunks, in order.
    pub valid: Vec<StreamChunk>,
}

/// A data file that does not exist is a config problem (`data.path`); other data errors pass
/// through.
pub(crate) fn missing_as_config_error(e: ember_data::DataError) -> TrainError {
    match e {
        ember_data::DataError::NotFound { path } => TrainError::DataFileMissing(path),
        other => other.into(),
    }
}

/// Streams for a text part of `len` tokens: `batch_size` of them, fewer when the part is too
/// short to give every stream two tokens.
pub fn stream_count(batch_size: usize, len: usize) -> usize {
    batch_size.min(len / 2).max(1)
}

/// Reads, encodes and splits the `[data]` of `config`, with the vocabulary of its characters.
pub fn prepare_data(config: &ExperimentConfig) -> Result<PreparedData, TrainError> {
    prepare_data_in(config, None)
}

/// [`prepare_data`] in a given vocabulary (an imported model's) when `vocab` is `Some`: the
/// data's characters must all be in it, and a line-per-sample file needs its start and end
/// tokens.
pub fn prepare_data_in(
    config: &ExperimentConfig,
    vocab: Option<&Vocab>,
) -> Result<PreparedData, TrainError> {
    let what = config.data.path.display().to_string();
    if config.data.kind == DataKind::Text {
        let corpus = match vocab {
            Some(v) => TextCorpus::read_with(&config.data.path, v),
            None => TextCorpus::read(&config.data.path),
        }
        .map_err(missing_as_config_error)?;
        let parts = corpus.split(Fractions::valid(config.data.valid_fraction), &what)?;
        let seq_len = config.data.seq_len;
        let streams = if config.data.stateful {
            let valid_what = format!("the validation part of {what}");
            let train_streams = config.train.batch_size;
            let valid_streams = stream_count(config.train.batch_size, parts.valid.len());
            Some(TextStreams {
                train: stream_chunks(&parts.train, train_streams, seq_len, &what)?,
                valid: stream_chunks(&parts.valid, valid_streams, seq_len, &valid_what)?,
            })
        } else {
            None
        };
        return Ok(PreparedData {
            vocab: corpus.vocab,
            train: random_chunks(&parts.train, seq_len)?,
            valid: random_chunks(&parts.valid, seq_len)?,
            streams,
            split: None,
        });
    }
    let lines = read_lines(&config.data.path).map_err(missing_as_config_error)?;
    let vocab = match vocab {
        Some(v) if !v.marks_lines() => {
            return Err(TrainError::BadOption(format!(
                "{what} holds one sample per line, and the vocabulary names no start and end token: pass --bos CHAR --eos CHAR (makemore's names models use --bos . --eos .)"
            )))
        }
        Some(v) => v.clone(),
        None => Vocab::from_texts(lines.iter().map(String::as_str)),
    };
    let sequences = vocab
        .encode_file_lines(&lines, &config.data.path)?
        .into_iter()
        .map(|tokens| TokenSequence { tokens })
        .collect::<Vec<_>>();
    let indices = shuffled_split(
        sequences.len(),
        Fractions::valid(config.data.valid_fraction),
        config.train.seed,
        &what,
    )?;
    let split = indices.apply(&sequences);
    Ok(PreparedData {
        vocab,
        train: split.train,
        valid: split.valid,
        streams: None,
        split: Some(indices),
    })
}

/// Validation loss (nats per token) of next-token prediction by training-set token frequencies
/// (add-one smoothed): the baseline any sequence model must beat.
pub fn unigram_loss(vocab_size: usize, train: &[TokenSequence], valid: &[TokenSequence]) -> f64 {
    let mut counts = vec![1.0f64; vocab_size];
    for s in train {
        for &t in &s.tokens[1..] {
            counts[t] += 1.0;
        }
    }
    let total: f64 = counts.iter().sum();
    let (mut nll, mut n) = (0.0, 0usize);
    for s in valid {
        for &t in &s.tokens[1..] {
            nll -= (counts[t] / total).ln();
            n += 1;
        }
    }
    nll / n as f64
}

/// Validation loss (nats per token) of next-token prediction by the token before it, from
/// training-set pair counts, add-one smoothed (makemore's bigram model): the stronger baseline a
/// sequence model must beat.
pub fn bigram_loss(vocab_size: usize, train: &[TokenSequence], valid: &[TokenSequence]) -> f64 {
    let mut counts = vec![1.0f64; vocab_size * vocab_size];
    for s in train {
        for pair in s.tokens.windows(2) {
            counts[pair[0] * vocab_size + pair[1]] += 1.0;
        }
    }
    let totals: Vec<f64> = counts
        .chunks(vocab_size)
        .map(|row| row.iter().sum())
        .collect();
    let (mut nll, mut n) = (0.0, 0usize);
    for s in valid {
        for pair in s.tokens.windows(2) {
            nll -= (counts[pair[0] * vocab_size + pair[1]] / totals[pair[0]]).ln();
            n += 1;
        }
    }
    nll / n as f64
}

/// Refuses a directory that already holds a trained run, unless `overwrite`.
pub fn ensure_free(dir: &Path, overwrite: bool) -> Result<(), TrainError> {
    if dir.join(BEST_CHECKPOINT).exists() && !overwrite {
        return Err(TrainError::RunExists(dir.to_owned()));
    }
    Ok(())
}

/// Makes `dir` ready for a new run: refuses to touch an existing run unless `overwrite`;
/// removes the files an earlier run left (its checkpoints, metrics and logs, or what a run that
/// failed before its first checkpoint wrote), so none of them is mistaken for this run's.
fn prepare_dir(dir: &Path, overwrite: bool) -> Result<(), TrainError> {
    ensure_free(dir, overwrite)?;
    for f in [
        BEST_CHECKPOINT,
        BEST_BURNPACK,
        BEST_JSON,
        METRICS_CSV,
        LOSS_SVG,
        SPLIT_FILE,
        CONFUSION_FILE,
        CLASSES_FILE,
        SERIES_FILE,
        VOCAB_FILE,
        TORCH_NAMES_FILE,
    ] {
        if dir.join(f).exists() {
            std::fs::remove_file(dir.join(f)).map_err(TrainError::io(dir.join(f)))?;
        }
    }
    for d in [CHECKPOINT_DIR, LOG_DIR] {
        if dir.join(d).exists() {
            std::fs::remove_dir_all(dir.join(d)).map_err(TrainError::io(dir.join(d)))?;
        }
    }
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))
}

/// The prepared data of any task.
#[derive(Debug, Clone)]
pub enum TaskData {
    /// Lines or a text, for a character language model.
    Language(PreparedData),
    /// A windowed series, for a regressor.
    Series(SeriesData),
    /// Labelled sequences, for a classifier.
    Classes(ClassData),
}

impl From<PreparedData> for TaskData {
    fn from(data: PreparedData) -> Self {
        Self::Language(data)
    }
}

/// Reads, checks and splits the `[data]` of `config` for its task; bad data fails here, before
/// a run directory exists.
pub fn prepare(config: &ExperimentConfig) -> Result<TaskData, TrainError> {
    Ok(match config.task() {
        Task::Language => TaskData::Language(prepare_data(config)?),
        Task::Regression => TaskData::Series(prepare_series(config)?),
        Task::Classification => TaskData::Classes(prepare_classes(config)?),
    })
}

/// The figure a trained model must beat on the validation split.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// What predicts: `unigram`, `mean predictor`, `class prior`.
    pub name: &'static str,
    /// Its validation loss, in the run's loss units.
    pub valid_loss: f64,
    /// Classification: the accuracy of always answering the majority class.
    pub valid_accuracy: Option<f64>,
    /// The stronger baseline a trained model must also beat: the bigram model for language
    /// models, persistence (each value predicts the next) for series; none for classifiers.
    pub stronger: Option<Box<Baseline>>,
}

/// Trains the model of `config` on `data` (from [`prepare`], or a [`PreparedData`]), on
/// backend `B` and device `device`.
///
/// The run directory receives `config.toml`, the task's data files (`vocab.json`,
/// `split.json`, `classes.json`, `series.json`), `checkpoints/epoch-NNN-valid-L.mpk`,
/// `best.mpk` + `best.json`, `metrics.csv`, `loss.svg` (and `confusion.csv` for classifiers),
/// and burn-train's logs under `logs/`.
pub fn train<B: AutodiffBackend>(
    config: &ExperimentConfig,
    data: impl Into<TaskData>,
    options: &TrainOptions,
    device: B::Device,
) -> Result<TrainSummary, TrainError> {
    let dir = &options.artifacts;
    if options.resume {
        let done = resume_point(dir)?;
        if done >= config.train.epochs {
            return Err(TrainError::CannotResume {
                dir: dir.clone(),
                reason: format!(
                    "all {} epochs are done; pass --epochs N with N > {done} to train further",
                    config.train.epochs
                ),
            });
        }
    } else {
        prepare_dir(dir, options.overwrite)?;
    }
    let (fitted, baseline) = run_task::<B>(config, data.into(), options, device, &Mode::Train)?;
    let Fitted::Trained(outcome) = fitted else {
        unreachable!("training trains")
    };
    let best = read_best(dir)?;
    Ok(TrainSummary {
        dir: dir.clone(),
        best,
        epochs: outcome.0,
        baseline,
        stopped_early: outcome.1,
    })
}

/// Runs the learning-rate range test of `spec` on the model and training data of `config`
/// (see [`crate::lr_find`]); `options.artifacts` receives `lr_find.csv` and `lr_find.svg`.
pub fn lr_find<B: AutodiffBackend>(
    config: &ExperimentConfig,
    data: impl Into<TaskData>,
    options: &TrainOptions,
    device: B::Device,
    spec: RangeSpec,
) -> Result<RangeReport, TrainError> {
    spec.validate().map_err(TrainError::RangeTest)?;
    let dir = &options.artifacts;
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let mode = Mode::RangeTest(spec);
    let (fitted, _) = run_task::<B>(config, data.into(), options, device, &mode)?;
    let Fitted::Probed(report) = fitted else {
        unreachable!("a range test probes")
    };
    report.write(dir)?;
    Ok(report)
}

/// Writes the run's config and data files, builds the task's model and loaders, and trains
/// it (or probes learning rates) by `mode`.
fn run_task<B: AutodiffBackend>(
    config: &ExperimentConfig,
    data: TaskData,
    options: &TrainOptions,
    device: B::Device,
    mode: &Mode,
) -> Result<(Fitted, Baseline), TrainError> {
    let dir = &options.artifacts;
    std::fs::write(dir.join(CONFIG_FILE), config.to_toml())
        .map_err(TrainError::io(dir.join(CONFIG_FILE)))?;
    B::seed(&device, config.train.seed);
    match data {
        TaskData::Language(data) => train_language::<B>(config, data, options, device, mode),
        TaskData::Series(data) => train_series::<B>(config, data, options, device, mode),
        TaskData::Classes(data) => train_classes::<B>(config, data, options, device, mode),
    }
}

/// Training, or a learning-rate range test.
#[derive(Debug, Clone)]
enum Mode {
    /// Train by the config: epochs, validation, checkpoints.
    Train,
    /// Sweep the learning rate over training batches.
    RangeTest(RangeSpec),
}

/// What [`fit`] did.
enum Fitted {
    /// Trained: the epochs and whether early stopping ended them.
    Trained(FitOutcome),
    /// Probed learning rates.
    Probed(RangeReport),
}

/// The epochs a run completed and whether early stopping ended it.
type FitOutcome = (Vec<EpochRecord>, bool);

fn train_language<B: AutodiffBackend>(
    config: &ExperimentConfig,
    data: PreparedData,
    options: &TrainOptions,
    device: B::Device,
    mode: &Mode,
) -> Result<(Fitted, Baseline), TrainError> {
    let model_config = char_lm_config(&config.model, data.vocab.len());
    let dir = &options.artifacts;
    data.vocab.save(&dir.join(VOCAB_FILE))?;
    write_model_files(dir, Task::Language, "CharLm", &model_config)?;
    if let Some(split) = &data.split {
        split.save(&dir.join(SPLIT_FILE))?;
    }
    let lengths: Vec<usize> = data.train.iter().map(|s| s.tokens.len() - 1).collect();
    if config.data.kind == DataKind::Lines {
        tracing::info!(
            "batches of {}: {}{}",
            config.train.batch_size,
            PaddingReport::measure(&lengths, config.train.batch_size, config.train.seed),
            if config.data.bucket_by_length {
                " (bucketing is on)"
            } else {
                " (set data.bucket_by_length = true to bucket)"
            }
        );
    }
    let unigram = unigram_loss(data.vocab.len(), &data.train, &data.valid);
    let bigram = bigram_loss(data.vocab.len(), &data.train, &data.valid);
    let text = config.data.kind == DataKind::Text;
    let unit = if text { "characters" } else { "sequences" };
    let count = |s: &[TokenSequence]| {
        if text {
            s.iter().map(|c| c.tokens.len() - 1).sum()
        } else {
            s.len()
        }
    };
    tracing::info!(
        "{} training and {} validation {unit}, vocabulary of {} tokens; unigram baseline {:.4}, \
         bigram {:.4}",
        count(&data.train),
        count(&data.valid),
        data.vocab.len(),
        unigram,
        bigram
    );
    let baseline = Baseline {
        name: "unigram",
        valid_loss: unigram,
        valid_accuracy: None,
        stronger: Some(Box::new(Baseline {
            name: "bigram",
            valid_loss: bigram,
            valid_accuracy: None,
            stronger: None,
        })),
    };
    let reference = Reference::worse_of(
        Reference {
            name: "the unigram baseline".into(),
            loss: unigram,
        },
        Reference {
            name: "a uniform guess over the vocabulary".into(),
            loss: (data.vocab.len() as f64).ln(),
        },
    );

    let lm = model_config.init::<B>(&device)?;
    let outcome = match data.streams {
        Some(streams) => {
            tracing::info!(
                "stateful truncated BPTT: {} streams, {} training chunks of up to {} steps per epoch",
                config.train.batch_size,
                streams.train.len(),
                config.data.seq_len
            );
            let steps_per_epoch = streams.train.len();
            let loader_train = DataLoaderBuilder::new(StreamBatcher)
                .batch_size(1)
                .build(InMemDataset::new(streams.train));
            let loader_valid = DataLoaderBuilder::new(StreamBatcher)
                .batch_size(1)
                .build(InMemDataset::new(streams.valid));
            let model = StreamLanguageModel { lm };
            let loaders = (loader_train, loader_valid);
            fit(
                config,
                options,
                device,
                model,
                loaders,
                Plan {
                    steps_per_epoch,
                    reference: reference.clone(),
                },
                mode,
            )?
        }
        None => {
            let batcher = SequenceBatcher::new(data.vocab.pad_id());
            let mut steps_per_epoch = data.train.len().div_ceil(config.train.batch_size);
            let loader_train = if config.data.bucket_by_length {
                let batches =
                    bucketed_batches(&lengths, config.train.batch_size, config.train.seed);
                steps_per_epoch = batches.len();
                DataLoaderBuilder::new(FlattenBatcher::new(batcher.clone()))
                    .batch_size(1)
                    .shuffle(config.train.seed)
                    .build(BatchedDataset::new(&data.train, &batches))
            } else {
                DataLoaderBuilder::new(batcher.clone())
                    .batch_size(config.train.batch_size)
                    .shuffle(config.train.seed)
                    .build(InMemDataset::new(data.train))
            };
            let loader_valid = DataLoaderBuilder::new(batcher)
                .batch_size(config.train.batch_size)
                .build(InMemDataset::new(data.valid));
            let model = LanguageModel { lm };
            let loaders = (loader_train, loader_valid);
            fit(
                config,
                options,
                device,
                model,
                loaders,
                Plan {
                    steps_per_epoch,
                    reference,
                },
                mode,
            )?
        }
    };
    Ok((outcome, baseline))
}

/// A loader of series windows: independent windows in batches of `batch_size` (shuffled with
/// `shuffle`), or ready-made consecutive batches in order. Returns it with its batch count.
fn window_loader<B: Backend>(
    set: WindowSet,
    batch_size: usize,
    shuffle: Option<u64>,
) -> (Arc<dyn DataLoader<B, SeriesBatch<B>>>, usize) {
    match set {
        WindowSet::Independent(windows) => {
            let steps = windows.len().div_ceil(batch_size);
            let mut builder = DataLoaderBuilder::new(SeriesBatcher).batch_size(batch_size);
            if let Some(seed) = shuffle {
                builder = builder.shuffle(seed);
            }
            (builder.build(InMemDataset::new(windows)), steps)
        }
        WindowSet::Consecutive(batches) => {
            let steps = batches.len();
            let loader = DataLoaderBuilder::new(FlattenBatcher::new(SeriesBatcher))
                .batch_size(1)
                .build(BatchedDataset::from_batches(batches));
            (loader, steps)
        }
    }
}

fn train_series<B: AutodiffBackend>(
    config: &ExperimentConfig,
    data: SeriesData,
    options: &TrainOptions,
    device: B::Device,
    mode: &Mode,
) -> Result<(Fitted, Baseline), TrainError> {
    data.info.save(&options.artifacts.join(SERIES_FILE))?;
    let model_config = regressor_config(&config.model);
    write_model_files(
        &options.artifacts,
        Task::Regression,
        "SeriesRegressor",
        &model_config,
    )?;
    let mean = data.mean_baseline();
    let persistence = data.persistence_baseline();
    let scale = data.info.standardizer;
    tracing::info!(
        "{} training and {} validation values ({} and {} targets), window {}, standardised \
         (mean {:.4}, std {:.4}); validation MSE of the mean predictor {:.4}, of persistence {:.4}",
        data.sizes.0,
        data.sizes.1,
        data.train.targets(),
        data.valid.targets(),
        data.info.window,
        scale.mean,
        scale.std,
        mean,
        persistence
    );
    let model = RegressionModel::new(model_config.init::<B>(&device)?, config);
    let batch_size = config.train.batch_size;
    let (loader_train, steps) = window_loader::<B>(data.train, batch_size, Some(config.train.seed));
    let (loader_valid, _) = window_loader::<B::InnerBackend>(data.valid, batch_size, None);
    let outcome = fit(
        config,
        options,
        device,
        model,
        (loader_train, loader_valid),
        Plan {
            steps_per_epoch: steps,
            reference: Reference::worse_of(
                Reference {
                    name: "the mean predictor's validation MSE".into(),
                    loss: mean,
                },
                Reference {
                    name: "the mean predictor's training MSE (standardised)".into(),
                    loss: 1.0,
                },
            ),
        },
        mode,
    )?;
    let baseline = Baseline {
        name: "mean predictor",
        valid_loss: mean,
        valid_accuracy: None,
        stronger: Some(Box::new(Baseline {
            name: "persistence",
            valid_loss: persistence,
            valid_accuracy: None,
            stronger: None,
        })),
    };
    Ok((outcome, baseline))
}

fn train_classes<B: AutodiffBackend>(
    config: &ExperimentConfig,
    data: ClassData,
    options: &TrainOptions,
    device: B::Device,
    mode: &Mode,
) -> Result<(Fitted, Baseline), TrainError> {
    let dir = &options.artifacts;
    data.vocab.save(&dir.join(VOCAB_FILE))?;
    data.classes.save(&dir.join(CLASSES_FILE))?;
    data.split.save(&dir.join(SPLIT_FILE))?;
    let baseline = Baseline {
        name: "class prior",
        valid_loss: data.prior_loss(),
        valid_accuracy: Some(data.majority_accuracy()),
        stronger: None,
    };
    tracing::info!(
        "{} training and {} validation sequences in {} classes, vocabulary of {} tokens; \
         majority-class accuracy {:.1}%, class-prior loss {:.4}",
        data.train.len(),
        data.valid.len(),
        data.classes.len(),
        data.vocab.len(),
        100.0 * baseline.valid_accuracy.unwrap_or(0.0),
        baseline.valid_loss
    );
    let model_config = classifier_config(&config.model, data.vocab.len(), data.classes.len());
    write_model_files(
        dir,
        Task::Classification,
        "SequenceClassifier",
        &model_config,
    )?;
    let model = ClassifierModel {
        model: model_config.init::<B>(&device)?,
    };
    let batcher = ClassBatcher::new(data.vocab.pad_id());
    let batch_size = config.train.batch_size;
    let steps = data.train.len().div_ceil(batch_size);
    let loader_train = DataLoaderBuilder::new(batcher.clone())
        .batch_size(batch_size)
        .shuffle(config.train.seed)
        .build(InMemDataset::new(data.train));
    let loader_valid = DataLoaderBuilder::new(batcher)
        .batch_size(batch_size)
        .build(InMemDataset::new(data.valid.clone()));
    let outcome = fit(
        config,
        options,
        device.clone(),
        model,
        (loader_train, loader_valid),
        Plan {
            steps_per_epoch: steps,
            reference: Reference::worse_of(
                Reference {
                    name: "the class prior".into(),
                    loss: baseline.valid_loss,
                },
                Reference {
                    name: "a uniform guess over the classes".into(),
                    loss: (data.classes.len() as f64).ln(),
                },
            ),
        },
        mode,
    )?;
    if matches!(outcome, Fitted::Probed(_)) {
        return Ok((outcome, baseline));
    }
    let best = load_module(
        model_config.init::<B::InnerBackend>(&device)?,
        &dir.join(BEST_CHECKPOINT),
        &device,
    )?;
    let (matrix, _) = confusion_matrix(
        &best,
        &data.valid,
        data.classes.len(),
        data.vocab.pad_id(),
        batch_size,
        &device,
    );
    write_confusion(&dir.join(CONFUSION_FILE), &data.classes, &matrix)?;
    tracing::info!(
        "best.mpk on validation, per class (correct/total): {}; confusion matrix in {}",
        recall_lines(&data.classes, &matrix).join(", "),
        dir.join(CONFUSION_FILE).display()
    );
    Ok((outcome, baseline))
}

/// The loader of a model's training batches.
type TrainBatches<B, M> = Arc<dyn DataLoader<B, <M as TrainStep>::Input>>;
/// The loader of a model's validation batches.
type ValidBatches<B, M> = Arc<
    dyn DataLoader<
        <B as AutodiffBackend>::InnerBackend,
        <<M as AutodiffModule<B>>::InnerModule as InferenceStep>::Input,
    >,
>;

/// What [`fit`] needs to know of the task's data.
struct Plan {
    /// Training batches per epoch.
    steps_per_epoch: usize,
    /// What the divergence guard measures the loss against.
    reference: Reference,
}

/// Trains `model` with the config's optimiser.
fn fit<B, M>(
    config: &ExperimentConfig,
    options: &TrainOptions,
    device: B::Device,
    model: M,
    loaders: (TrainBatches<B, M>, ValidBatches<B, M>),
    Plan {
        steps_per_epoch,
        reference,
    }: Plan,
    mode: &Mode,
) -> Result<Fitted, TrainError>
where
    B: AutodiffBackend,
    M: TrainStep<Output = TokenLossOutput<B>>
        + AutodiffModule<B>
        + std::fmt::Display
        + SaveModel
        + CarryStep<<M as TrainStep>::Input, TrainOutput<TokenLossOutput<B>>>
        + 'static,
    M::InnerModule: InferenceStep<Output = TokenLossOutput<B::InnerBackend>>
        + CarryStep<<M::InnerModule as InferenceStep>::Input, TokenLossOutput<B::InnerBackend>>,
{
    // Per parameter (Burn's clipping, inside the optimizer) or global (PyTorch's
    // `clip_grad_norm_`, around it); the config allows one of them.
    let clip = (config.train.grad_clip_per_param > 0.0).then_some(GradientClippingConfig::Norm(
        config.train.grad_clip_per_param as f32,
    ));
    let global = (config.train.grad_clip > 0.0).then_some(config.train.grad_clip as f32);
    let t = &config.train;
    let schedule = Schedule {
        kind: t.schedule,
        base: t.learning_rate,
        min: t.min_learning_rate,
        gamma: t.gamma,
        step_epochs: t.step_epochs,
        warmup_steps: t.warmup_steps,
        steps_per_epoch,
        total_steps: steps_per_epoch * t.epochs,
        taken: 0,
    };
    let schedule = match mode {
        Mode::Train => schedule,
        Mode::RangeTest(spec) => Schedule {
            kind: ScheduleKind::RangeTest,
            base: spec.min_lr,
            gamma: spec.ratio(),
            warmup_steps: 0,
            total_steps: spec.steps,
            ..schedule
        },
    };
    let run = (config, options, device, schedule, mode, reference);
    match config.train.optimizer {
        OptimizerKind::Adam => {
            // Burn's Adam (PyTorch's ε), one pass per parameter on the CPU backends.
            let optim = ClipGlobalNorm::new(FusedAdam::new(0.9, 0.999, 1e-8).init(clip), global);
            launch(run, model, optim, loaders)
        }
        OptimizerKind::Adamw => {
            let optim =
                ClipGlobalNorm::new(FusedAdamW::new(0.9, 0.999, 1e-8, 1e-2).init(clip), global);
            launch(run, model, optim, loaders)
        }
        OptimizerKind::Sgd => {
            let momentum = (t.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(t.momentum)
                    .with_dampening(0.0)
            });
            let optim = SgdConfig::new()
                .with_momentum(momentum)
                .with_gradient_clipping(clip)
                .init();
            let optim = ClipGlobalNorm::new(optim, global);
            launch(run, model, optim, loaders)
        }
    }
}

fn launch<B, M, O>(
    (config, options, device, schedule, mode, reference): (
        &ExperimentConfig,
        &TrainOptions,
        B::Device,
        Schedule,
        &Mode,
        Reference,
    ),
    model: M,
    optim: O,
    (loader_train, loader_valid): (TrainBatches<B, M>, ValidBatches<B, M>),
) -> Result<Fitted, TrainError>
where
    B: AutodiffBackend,
    M: TrainStep<Output = TokenLossOutput<B>>
        + AutodiffModule<B>
        + std::fmt::Display
        + SaveModel
        + CarryStep<<M as TrainStep>::Input, TrainOutput<TokenLossOutput<B>>>
        + 'static,
    M::InnerModule: InferenceStep<Output = TokenLossOutput<B::InnerBackend>>
        + CarryStep<<M::InnerModule as InferenceStep>::Input, TokenLossOutput<B::InnerBackend>>,
    O: Optimizer<M, B> + 'static,
{
    let task = config.task();
    let shown: &[TokenMetricKind] = match task {
        Task::Language => &[
            TokenMetricKind::Loss,
            TokenMetricKind::Perplexity,
            TokenMetricKind::BitsPerChar,
        ],
        Task::Regression => &[TokenMetricKind::Loss, TokenMetricKind::MeanAbsError],
        Task::Classification => &[TokenMetricKind::Loss, TokenMetricKind::Accuracy],
    };
    let mut training =
        SupervisedTraining::new(options.artifacts.join(LOG_DIR), loader_train, loader_valid);
    for &kind in shown {
        training = training
            .metric_train_numeric(TokenMetric::new(kind))
            .metric_valid_numeric(TokenMetric::new(kind));
    }
    let mut training = training
        .metric_train_numeric(TokenMetric::new(TokenMetricKind::TokensPerSecond))
        .metric_train_numeric(LearningRateMetric::new())
        .with_application_logger(None)
        .num_epochs(config.train.epochs);
    if !options.tui {
        training = training.renderer(PlainRenderer::default());
    }
    if let Mode::RangeTest(spec) = mode {
        let strategy = Arc::new(RangeTest::new(spec.steps));
        let training = training
            .with_training_strategy(TrainingStrategy::Custom(strategy.clone()))
            .num_epochs(1);
        let LearningResult { model: _, renderer } =
            training.launch(Learner::new(model, optim, schedule));
        drop(renderer);
        let (points, diverged) = strategy.take();
        return RangeReport::from_points(points, diverged).map(Fitted::Probed);
    }

    let dir = &options.artifacts;
    let (keeper, resume) = if options.resume {
        let keeper = CheckpointKeeper::resume(dir, config.train.keep_last)?;
        let epoch = resume_point(dir)?;
        let best = keeper.best().map_or(epoch, |b| b.epoch);
        let resume = ResumeFrom {
            epoch,
            since_best: epoch - best,
            state_dir: dir.join(STATE_DIR),
        };
        (keeper, Some(resume))
    } else {
        (CheckpointKeeper::new(dir, config.train.keep_last), None)
    };
    let patience = (config.train.patience > 0).then_some(config.train.patience);
    let guard = (DivergenceGuard::new(reference), config.train.learning_rate);
    let strategy = Arc::new(EpochLoop::<B>::new(
        device, task, keeper, patience, resume, guard,
    ));
    let training = training
        .with_file_checkpointer(recorder())
        .with_checkpointing_strategy(LatestOnly)
        .with_training_strategy(TrainingStrategy::Custom(strategy.clone()));
    let LearningResult { model: _, renderer } =
        training.launch(Learner::new(model, optim, schedule));
    drop(renderer);
    let outcome = strategy.take_outcome();
    match outcome.error {
        Some(e) => Err(e),
        None => Ok(Fitted::Trained((outcome.epochs, outcome.stopped_early))),
    }
}

/// Mean NLL per token (nats) of `model` over stream chunks in order, carrying the state from
/// each chunk to the next (the way a stateful text model is validated).
pub fn evaluate_streams<B: burn::prelude::Backend>(
    model: &ember_nn::CharLm<B>,
    chunks: &[StreamChunk],
    device: &B::Device,
) -> f64 {
    use burn::data::dataloader::batcher::Batcher;
    let wrapper = StreamLanguageModel { lm: model.clone() };
    let mut acc = crate::output::LossAccumulator::default();
    let mut state = None;
    for chunk in chunks {
        let batch = StreamBatcher.batch(vec![chunk.clone()], device);
        let (mut out, next) = wrapper.forward_loss(batch, state.take());
        state = Some(next);
        acc.add(out.mean_nll(), out.tokens);
    }
    acc.mean()
}

/// Mean NLL per valid token (nats) of `model` on `data`, in batches of `batch_size`.
pub fn evaluate<B: burn::prelude::Backend>(
    model: &ember_nn::CharLm<B>,
    data: &[TokenSequence],
    pad_id: usize,
    batch_size: usize,
    device: &B::Device,
) -> f64 {
    use burn::data::dataloader::batcher::Batcher;
    let batcher = SequenceBatcher::new(pad_id);
    let wrapper = LanguageModel { lm: model.clone() };
    let mut acc = crate::output::LossAccumulator::default();
    for chunk in data.chunks(batch_size.max(1)) {
        let batch = batcher.batch(chunk.to_vec(), device);
        let mut out = wrapper.forward_loss(batch);
        acc.add(out.mean_nll(), out.tokens);
    }
    acc.mean()
}
