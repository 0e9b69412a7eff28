//! Errors from configuring, training and sampling, each one line naming what to fix.

use std::path::PathBuf;
use thiserror::Error;

/// Why a run could not start, continue or be read back.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The config file could not be read.
    #[error("cannot read config {path}: {source}")]
    ConfigRead {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The config file is not a valid experiment.
    #[error("config {path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// The config's data file does not exist.
    #[error("data file {0} not found: check data.path in the config (relative paths start from the directory ember runs in)")]
    DataFileMissing(PathBuf),
    /// The data could not be used.
    #[error(transparent)]
    Data(#[from] ember_data::DataError),
    /// The model could not be built from the config.
    #[error(transparent)]
    Model(#[from] ember_nn::NnError),
    /// A run directory already holds a trained model.
    #[error("{0} already holds a trained run (best.mpk): choose another --artifacts DIR or pass --overwrite")]
    RunExists(PathBuf),
    /// A run directory has no checkpoint to load.
    #[error("{0} holds no checkpoint (best.mpk): train first with `ember train --artifacts {0}`")]
    NoCheckpoint(PathBuf),
    /// The learning-rate range test could not suggest a rate.
    #[error("lr-find: {0}")]
    RangeTest(String),
    /// A run cannot be resumed.
    #[error("cannot resume {dir}: {reason}")]
    CannotResume {
        /// The run directory.
        dir: PathBuf,
        /// What is missing or done.
        reason: String,
    },
    /// A command that needs a language model was given another kind of run.
    #[error("{dir} holds a {task} run; sample and eval read language-model runs (data.kind = \"lines\" or \"text\"); its figures are in {dir}/metrics.csv")]
    NotALanguageModel {
        /// The run directory.
        dir: PathBuf,
        /// What the run learned.
        task: &'static str,
    },
    /// A command was given a run of a task it does not handle.
    #[error("{dir} holds a {task} run; {command} reads {wanted} runs")]
    WrongTask {
        /// The run directory.
        dir: PathBuf,
        /// What the run learned.
        task: &'static str,
        /// The command.
        command: &'static str,
        /// The tasks the command reads.
        wanted: &'static str,
    },
    /// A checkpoint could not be loaded or does not fit the run's config.
    #[error("cannot load checkpoint {path}: {reason}")]
    BadCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file of the run directory could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The loss stopped being a finite number.
    #[error("{split} loss became {value} at epoch {epoch}, batch {batch}: lower train.learning_rate or set train.grad_clip; {kept}")]
    NonFiniteLoss {
        /// `train` or `valid`.
        split: &'static str,
        /// The loss value.
        value: f64,
        /// The epoch.
        epoch: usize,
        /// The batch within the epoch.
        batch: usize,
        /// What was kept on disk.
        kept: String,
    },
    /// The loss stayed far above what an untrained model scores (see [`crate::divergence`]).
    #[error("training diverged at epoch {epoch}: {why}; lower train.learning_rate (it is {learning_rate}) or set train.grad_clip; {kept}")]
    Diverged {
        /// The epoch.
        epoch: usize,
        /// How: which loss, the limit and the reference it comes from.
        why: String,
        /// The configured learning rate.
        learning_rate: f64,
        /// What was kept on disk.
        kept: String,
    },
    /// Sampling options that cannot work.
    #[error("{0}")]
    BadOption(String),
    /// A model the ONNX export cannot write, and why.
    #[error("ONNX export: {0}")]
    Onnx(String),
}

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
