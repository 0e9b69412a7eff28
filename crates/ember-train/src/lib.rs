//! ember-train: experiment configs, the burn-train learner set up for recurrent models,
//! checkpoints chosen by validation loss, and sampling from a trained run.
//!
//! - [`config`]: the TOML experiment config (`[data]`, `[model]`, `[train]`), validated on load.
//! - [`run`]: data preparation and the training entry point [`run::train`].
//! - [`strategy`]: the epoch loop (exact validation loss, checkpoint policy, NaN stop).
//! - [`checkpoint`]: per-epoch checkpoints, `best.mpk`, `metrics.csv`; [`plot`]: `loss.svg`.
//! - [`model`]: the language-model wrappers and their loss; [`loss`]: masked cross-entropy and
//!   masked regression errors.
//! - [`regression`]: series data, the regressor wrapper and its baselines.
//! - [`classification`]: labelled data, the classifier wrapper, accuracy and the confusion matrix.
//! - [`schedule`]: learning-rate schedules with warm-up; [`lr_find`]: the learning-rate range test.
//! - [`metrics`], [`output`], [`renderer`]: what the learner shows.
//! - [`sample`]: loading a run and generating text.
//! - [`eval`]: a trained run's loss, perplexity and bits/char on a file.
//! - [`import`]: a PyTorch character model into a run directory; [`export`]: back to PyTorch.

pub mod checkpoint;
pub mod classification;
pub mod config;
pub mod error;
pub mod eval;
pub mod export;
pub mod import;
pub mod loss;
pub mod lr_find;
pub mod metrics;
pub mod model;
pub mod output;
pub mod plot;
pub mod regression;
pub mod renderer;
pub mod run;
pub mod sample;
pub mod schedule;
pub mod strategy;

pub use config::ExperimentConfig;
pub use error::TrainError;
pub use eval::{eval_run, EvalData, EvalReport};
pub use run::{prepare, train, Baseline, TaskData, TrainOptions, TrainSummary};
pub use sample::{load_run, sample, sample_run, LoadedRun, SampleOptions};
