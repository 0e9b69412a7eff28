//! Loading and evaluating series-regression and classification runs: their task's figures on
//! a file, or on the run's own validation split.

use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use ember_data::series::read_csv_column;
use ember_data::{ClassVocab, LabelledData, SeriesBatcher, Vocab};
use ember_nn::{SequenceClassifier, SeriesRegressor};

use crate::checkpoint::BEST_CHECKPOINT;
use crate::classification::{
    classifier_config, confusion_matrix, prepare_classes, recall_lines, CLASSES_FILE,
};
use crate::config::{ExperimentConfig, Task};
use crate::eval::EvalData;
use crate::output::LossAccumulator;
use crate::regression::{
    cut_windows, prepare_series, regressor_config, RegressionModel, SeriesInfo, WindowSet,
    SERIES_FILE,
};
use crate::run::{CONFIG_FILE, VOCAB_FILE};
use crate::run_dir::{self, load_weights, RunManifest};
use crate::TrainError;

/// The config of the run in `dir`, which must be of `task` for `command`.
pub fn run_config(
    dir: &Path,
    task: Task,
    command: &'static str,
) -> Result<ExperimentConfig, TrainError> {
    if !dir.join(BEST_CHECKPOINT).is_file() {
        return Err(TrainError::NoCheckpoint(dir.to_owned()));
    }
    let config = ExperimentConfig::load(&dir.join(CONFIG_FILE))?;
    if config.task() != task {
        return Err(TrainError::WrongTask {
            dir: dir.to_owned(),
            task: config.task().name(),
            command,
            wanted: task.name(),
        });
    }
    RunManifest::read(dir)?;
    Ok(config)
}

/// A trained series-regression run.
#[derive(Debug)]
pub struct SeriesRun<B: Backend> {
    /// The run directory.
    pub dir: PathBuf,
    /// Its config.
    pub config: ExperimentConfig,
    /// Its scaling and window (`series.json`).
    pub info: SeriesInfo,
    /// The model of `best.mpk`.
    pub model: SeriesRegressor<B>,
}

/// Loads the series run in `dir` for `command`.
pub fn load_series_run<B: Backend>(
    dir: &Path,
    command: &'static str,
    device: &B::Device,
) -> Result<SeriesRun<B>, TrainError> {
    let config = run_config(dir, Task::Regression, command)?;
    let info = SeriesInfo::load(&dir.join(SERIES_FILE))?;
    let model_config = run_dir::model_config(dir, || regressor_config(&config.model))?;
    let model = load_weights(
        model_config.init::<B>(device)?,
        &dir.join(BEST_CHECKPOINT),
        device,
    )?;
    Ok(SeriesRun {
        dir: dir.to_owned(),
        config,
        info,
        model,
    })
}

/// A series run's figures on some windows. Errors are in standardised units (the model's),
/// and in data units through the run's scale.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesEvalReport {
    /// What was evaluated.
    pub source: String,
    /// Number of predicted values.
    pub targets: usize,
    /// Mean squared error, standardised units.
    pub mse: f64,
    /// Mean absolute error, standardised units.
    pub mae: f64,
    /// The standard deviation of the training values (one standardised unit in data units).
    pub scale: f64,
    /// MSE of always predicting the training mean.
    pub mean_mse: f64,
    /// MSE of predicting each value by the previous one.
    pub persistence_mse: f64,
}

impl std::fmt::Display for SeriesEvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} targets: MSE {:.4}, MAE {:.4} (standardised); RMSE {:.4}, MAE {:.4} in data units; \
             mean predictor MSE {:.4}, persistence MSE {:.4}",
            self.source,
            self.targets,
            self.mse,
            self.mae,
            self.mse.sqrt() * self.scale,
            self.mae * self.scale,
            self.mean_mse,
            self.persistence_mse
        )
    }
}

/// Evaluates a series run on `data`: a CSV file holding the run's `data.column` (read whole,
/// scaled with the run's scale and windowed as in training), or the run's validation split.
pub fn eval_series<B: Backend>(
    run: &SeriesRun<B>,
    data: &EvalData,
    batch_size: usize,
    device: &B::Device,
) -> Result<SeriesEvalReport, TrainError> {
    let d = &run.config.data;
    let (source, windows) = match data {
        EvalData::File(path) => {
            if d.column.is_empty() {
                return Err(TrainError::BadOption(format!(
                    "{} was trained on generated waves and its config names no data.column to read \
                     from {}: use `ember predict --input {} --column NAME`",
                    run.dir.display(),
                    path.display(),
                    path.display()
                )));
            }
            let values = read_csv_column(path, &d.column, d.missing)?;
            let scaled = run.info.standardizer.apply(&values);
            let what = path.display().to_string();
            let set = cut_windows(
                &[scaled],
                run.info.target,
                run.info.window,
                d.stateful.then_some(1),
                &what,
            )?;
            (what, set)
        }
        EvalData::RunValidation => {
            let prepared = prepare_series(&run.config)?;
            if prepared.info != run.info {
                return Err(TrainError::BadOption(format!(
                    "{} has changed since training (its scaling differs from {}): pass --data FILE",
                    d.path.display(),
                    run.dir.join(SERIES_FILE).display()
                )));
            }
            (
                format!("validation split of {}", d.path.display()),
                prepared.valid,
            )
        }
    };
    let wrapper = RegressionModel::new(run.model.clone(), &run.config);
    let mut acc = LossAccumulator::default();
    let mut add = |out: &mut crate::output::TokenLossOutput<B>| acc.add_item(&out.host());
    match &windows {
        WindowSet::Independent(all) => {
            for chunk in all.chunks(batch_size.max(1)) {
                let batch = SeriesBatcher.batch(chunk.to_vec(), device);
                add(&mut wrapper.forward_loss(batch, None).0);
            }
        }
        WindowSet::Consecutive(batches) => {
            let mut state = None;
            for rows in batches {
                let batch = SeriesBatcher.batch(rows.clone(), device);
                let (mut out, next) = wrapper.forward_loss(batch, state.take());
                state = Some(next);
                add(&mut out);
            }
        }
    }
    Ok(SeriesEvalReport {
        source,
        targets: acc.tokens(),
        mse: acc.mean(),
        mae: acc.mean_abs_error().unwrap_or(f64::NAN),
        scale: run.info.standardizer.std as f64,
        mean_mse: windows.mean_baseline(),
        persistence_mse: windows.persistence_baseline(),
    })
}

/// A trained classification run.
#[derive(Debug)]
pub struct ClassRun<B: Backend> {
    /// The run directory.
    pub dir: PathBuf,
    /// Its config.
    pub config: ExperimentConfig,
    /// Its characters.
    pub vocab: Vocab,
    /// Its classes.
    pub classes: ClassVocab,
    /// The model of `best.mpk`.
    pub model: SequenceClassifier<B>,
}

/// Loads the classification run in `dir` for `command`.
pub fn load_class_run<B: Backend>(
    dir: &Path,
    command: &'static str,
    device: &B::Device,
) -> Result<ClassRun<B>, TrainError> {
    let config = run_config(dir, Task::Classification, command)?;
    let vocab = Vocab::load(&dir.join(VOCAB_FILE))?;
    let classes = ClassVocab::load(&dir.join(CLASSES_FILE))?;
    let model_config = run_dir::model_config(dir, || {
        classifier_config(&config.model, vocab.len(), classes.len())
    })?;
    let model = load_weights(
        model_config.init::<B>(device)?,
        &dir.join(BEST_CHECKPOINT),
        device,
    )?;
    Ok(ClassRun {
        dir: dir.to_owned(),
        config,
        vocab,
        classes,
        model,
    })
}

/// A classification run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassEvalReport {
    /// What was evaluated.
    pub source: String,
    /// Number of samples.
    pub samples: usize,
    /// Mean cross-entropy, nats.
    pub loss: f64,
    /// Share of correct answers.
    pub accuracy: f64,
    /// Per-class recall lines.
    pub recall: Vec<String>,
}

impl std::fmt::Display for ClassEvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} samples: loss {:.4} nats, accuracy {:.1}%\nper class (correct/total): {}",
            self.source,
            self.samples,
            self.loss,
            100.0 * self.accuracy,
            self.recall.join(", ")
        )
    }
}

/// Evaluates a classification run on `data`: a directory of class files (`<class>.txt`, one
/// sample per line, class names those of the run), or the run's validation split.
pub fn eval_classes<B: Backend>(
    run: &ClassRun<B>,
    data: &EvalData,
    batch_size: usize,
    device: &B::Device,
) -> Result<ClassEvalReport, TrainError> {
    let (source, samples) = match data {
        EvalData::File(path) => {
            let read = LabelledData::read_dir(path)?;
            let mut samples = read.encode(&run.vocab).map_err(|e| {
                TrainError::BadOption(format!(
                    "{}: {e}; the run's vocabulary cannot read them",
                    path.display()
                ))
            })?;
            for s in &mut samples {
                let name = &read.classes.names()[s.label];
                s.label = run.classes.id(name).ok_or_else(|| {
                    TrainError::BadOption(format!(
                        "{}: class {name:?} is not one the run learned ({})",
                        path.display(),
                        run.classes.names().join(", ")
                    ))
                })?;
            }
            (path.display().to_string(), samples)
        }
        EvalData::RunValidation => {
            let prepared = prepare_classes(&run.config)?;
            if prepared.vocab != run.vocab || prepared.classes != run.classes {
                return Err(TrainError::BadOption(format!(
                    "{} has changed since training (other characters or classes): pass --data DIR",
                    run.config.data.path.display()
                )));
            }
            (
                format!("validation split of {}", run.config.data.path.display()),
                prepared.valid,
            )
        }
    };
    let (matrix, acc) = confusion_matrix(
        &run.model,
        &samples,
        run.classes.len(),
        run.vocab.pad_id(),
        batch_size,
        device,
    );
    Ok(ClassEvalReport {
        source,
        samples: samples.len(),
        loss: acc.mean(),
        accuracy: acc.accuracy().unwrap_or(f64::NAN),
        recall: recall_lines(&run.classes, &matrix),
    })
}
