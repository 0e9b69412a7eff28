//! ember-train: experiment configs, the burn-train learner set up for recurrent models,
//! checkpoints chosen by validation loss, and sampling from a trained run.
//!
//! - [`config`]: the TOML experiment config (`[data]`, `[model]`, `[train]`), validated on load.
//! - [`run`]: data preparation and the training entry point [`run::train`]; [`run_dir`]: what a
//!   run directory holds for other programs (`run.json`, `model.json`).
//! - [`strategy`]: the epoch loop (exact validation loss, checkpoint policy, NaN stop);
//!   [`divergence`]: the stop on a loss far above the baseline.
//! - [`checkpoint`]: per-epoch checkpoints, `best.mpk`, `metrics.csv`; [`plot`]: `loss.svg`.
//! - [`model`]: the language-model wrappers and their loss; [`loss`]: masked cross-entropy and
//!   masked regression errors.
//! - [`regression`]: series data, the regressor wrapper and its baselines.
//! - [`classification`]: labelled data, the classifier wrapper, accuracy and the confusion matrix.
//! - [`schedule`]: learning-rate schedules with warm-up; [`lr_find`]: the learning-rate range test.
//! - [`metrics`], [`output`], [`renderer`]: what the learner shows.
//! - [`sample`]: loading a run and generating text.
//! - [`eval`]: a trained run's loss, perplexity and bits/char on a file; [`task_eval`]: the
//!   same for series and classification runs; [`predict`]: autoregressive series forecasts;
//!   [`inspect`]: parameters per layer and the char-rnn rule of thumb.
//! - [`import`]: a PyTorch character model into a run directory; [`export`]: back to PyTorch.
//! - [`memory`]: the allocator setting of the programs that train.

pub mod checkpoint;
pub mod classification;
pub mod config;
pub mod divergence;
pub mod error;
pub mod eval;
pub mod export;
pub mod import;
pub mod inspect;
pub mod loss;
pub mod lr_find;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod output;
pub mod plot;
pub mod predict;
pub mod regression;
pub mod renderer;
pub mod run;
pub mod run_dir;
pub mod sample;
pub mod schedule;
pub mod strategy;
pub mod task_eval;

pub use config::ExperimentConfig;
pub use error::TrainError;
pub use eval::{eval_run, EvalData, EvalReport};
pub use run::{prepare, train, Baseline, TaskData, TrainOptions, TrainSummary};
pub use sample::{load_run, novelty, sample, sample_run, LoadedRun, Novelty, SampleOptions};
