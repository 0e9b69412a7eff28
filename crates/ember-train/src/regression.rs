//! Series regression: the data (a CSV column or generated sine waves, standardised and cut into
//! windows), the trainable wrapper with its masked squared-error loss, and the baselines.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use ember_data::series::{
    consecutive_batches, consecutive_windows, last_step_windows, read_csv_column, sine_waves,
    SineSpec,
};
use ember_data::split::{positional_split, shuffled_split};
use ember_data::{Fractions, SeriesBatch, Standardizer, Window};
use ember_nn::packing::last_valid_steps;
use ember_nn::{RecurrentState, SeriesRegressor, SeriesRegressorConfig};
use serde::{Deserialize, Serialize};

use crate::config::{ExperimentConfig, ModelConfig, SeriesTarget};
use crate::loss::masked_regression_errors;
use crate::model::{save_module, RecordFormat};
use crate::output::TokenLossOutput;
use crate::run::missing_as_config_error;
use crate::strategy::{CarryStep, SaveModel};
use crate::TrainError;

/// File name of a series run's scaling and windowing (needed to predict in data units).
pub const SERIES_FILE: &str = "series.json";
/// The format tag of [`SeriesInfo`].
pub const SERIES_FORMAT: &str = "ember-series/1";

/// What a series run needs besides its weights: how values were scaled and windowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesInfo {
    /// Always [`SERIES_FORMAT`].
    pub format: String,
    /// The scaling fitted on the training values: the model reads and predicts
    /// `(value - mean) / std`.
    pub standardizer: Standardizer,
    /// Steps per window.
    pub window: usize,
    /// What the model predicts.
    pub target: SeriesTarget,
}

/// Windows as the loader serves them.
#[derive(Debug, Clone)]
pub enum WindowSet {
    /// Independent windows, batched (and, for training, shuffled) by the loader.
    Independent(Vec<Window>),
    /// Ready-made batches in order: row `b` of batch `k + 1` continues row `b` of batch `k`
    /// (stateful seq2seq).
    Consecutive(Vec<Vec<Window>>),
}

impl WindowSet {
    fn windows(&self) -> Box<dyn Iterator<Item = &Window> + '_> {
        match self {
            Self::Independent(w) => Box::new(w.iter()),
            Self::Consecutive(b) => Box::new(b.iter().flatten()),
        }
    }

    /// Number of target values.
    pub fn targets(&self) -> usize {
        self.windows().map(|w| w.target.len()).sum()
    }
}

/// A series prepared for training.
#[derive(Debug, Clone)]
pub struct SeriesData {
    /// Scaling and windowing, saved with the run.
    pub info: SeriesInfo,
    /// Training windows.
    pub train: WindowSet,
    /// Validation windows.
    pub valid: WindowSet,
    /// Values in the training and validation parts (data units, before windowing).
    pub sizes: (usize, usize),
}

impl SeriesInfo {
    /// Writes the info to `path`.
    pub fn save(&self, path: &std::path::Path) -> Result<(), TrainError> {
        Ok(ember_data::json_file::save(self, path)?)
    }

    /// Reads the info written by [`SeriesInfo::save`].
    pub fn load(path: &std::path::Path) -> Result<Self, TrainError> {
        Ok(ember_data::json_file::load(
            path,
            SERIES_FORMAT,
            |i: &Self| i.format.as_str(),
        )?)
    }
}

impl SeriesData {
    /// Validation MSE (standardised units) of always predicting the training mean: the
    /// baseline a regressor must beat.
    pub fn mean_baseline(&self) -> f64 {
        self.valid.mean_baseline()
    }

    /// Validation MSE of predicting each value by the one before it (persistence).
    pub fn persistence_baseline(&self) -> f64 {
        self.valid.persistence_baseline()
    }
}

impl WindowSet {
    /// MSE (standardised units) of always predicting the training mean, 0.
    pub fn mean_baseline(&self) -> f64 {
        let (sum, n) = self
            .windows()
            .flat_map(|w| &w.target)
            .fold((0.0, 0usize), |(s, n), &t| (s + (t as f64).powi(2), n + 1));
        sum / n.max(1) as f64
    }

    /// MSE of predicting each value by the one before it (persistence).
    pub fn persistence_baseline(&self) -> f64 {
        let (mut sum, mut n) = (0.0, 0usize);
        for w in self.windows() {
            let offset = w.input.len() - w.target.len();
            for (i, &t) in w.target.iter().enumerate() {
                sum += (t as f64 - w.input[offset + i] as f64).powi(2);
                n += 1;
            }
        }
        sum / n.max(1) as f64
    }
}

/// Reads (or generates), splits, standardises and windows the series of `config`.
///
/// A CSV column is split by position: validation is its last `valid_fraction` of values, and
/// each validation target keeps the window of values before it. Generated waves are split by
/// sequence. The scaling is fitted on the training values only.
pub fn prepare_series(config: &ExperimentConfig) -> Result<SeriesData, TrainError> {
    let d = &config.data;
    let window = d.window;
    let what = d.path.display().to_string();
    let (train, valid): (Vec<Vec<f32>>, Vec<Vec<f32>>) = if d.is_generated() {
        let g = &d.generated;
        let waves = sine_waves(&SineSpec {
            sequences: g.sequences,
            length: g.length,
            min_period: g.min_period,
            max_period: g.max_period,
            noise: g.noise,
            seed: config.train.seed,
        });
        let split = shuffled_split(
            waves.len(),
            Fractions::valid(d.valid_fraction),
            config.train.seed,
            "the generated sequences",
        )?
        .apply(&waves);
        (split.train, split.valid)
    } else {
        let values =
            read_csv_column(&d.path, &d.column, d.missing).map_err(missing_as_config_error)?;
        let split = positional_split(values.len(), Fractions::valid(d.valid_fraction), &what)?;
        let start = split.valid[0];
        let context = match d.target {
            SeriesTarget::Last => window,
            SeriesTarget::Sequence => 1,
        };
        if start <= window {
            return Err(ember_data::DataError::WindowTooLong {
                what: format!("the training part of {what}"),
                len: start,
                window,
            }
            .into());
        }
        (
            vec![values[..start].to_vec()],
            vec![values[start - context..].to_vec()],
        )
    };
    let all_train: Vec<f32> = train.iter().flatten().copied().collect();
    let standardizer = Standardizer::fit(&all_train);
    let scale = |parts: &[Vec<f32>]| -> Vec<Vec<f32>> {
        parts.iter().map(|p| standardizer.apply(p)).collect()
    };
    let (train_scaled, valid_scaled) = (scale(&train), scale(&valid));
    let sizes = (all_train.len(), valid.iter().map(Vec::len).sum::<usize>());
    let cut = |parts: &[Vec<f32>], part: &str| {
        let what = format!("the {part} part of {what}");
        let batch_size = config.train.batch_size;
        cut_windows(
            parts,
            d.target,
            window,
            d.stateful.then_some(batch_size),
            &what,
        )
    };
    Ok(SeriesData {
        info: SeriesInfo {
            format: SERIES_FORMAT.to_owned(),
            standardizer,
            window,
            target: d.target,
        },
        train: cut(&train_scaled, "training")?,
        valid: cut(&valid_scaled, "validation")?,
        sizes,
    })
}

/// Cuts standardised sequences into the windows a series model of `target` reads: for
/// [`SeriesTarget::Last`], every `window` values with the next one as target; for
/// [`SeriesTarget::Sequence`], consecutive windows with their values shifted by one as targets,
/// batched in order for stateful models (`stateful_batch`: rows per batch).
pub fn cut_windows(
    parts: &[Vec<f32>],
    target: SeriesTarget,
    window: usize,
    stateful_batch: Option<usize>,
    what: &str,
) -> Result<WindowSet, TrainError> {
    match target {
        SeriesTarget::Last => {
            let mut all = Vec::new();
            for p in parts {
                all.extend(last_step_windows(p, window, what)?);
            }
            Ok(WindowSet::Independent(all))
        }
        SeriesTarget::Sequence => {
            let per_sequence = parts
                .iter()
                .map(|p| consecutive_windows(p, window.min(p.len().saturating_sub(1)).max(1), what))
                .collect::<Result<Vec<_>, _>>()?;
            match stateful_batch {
                Some(batch_size) => Ok(WindowSet::Consecutive(consecutive_batches(
                    per_sequence,
                    batch_size,
                ))),
                None => Ok(WindowSet::Independent(
                    per_sequence.into_iter().flatten().collect(),
                )),
            }
        }
    }
}

/// The [`SeriesRegressorConfig`] of a `[model]` table: one value in, one value out per step.
pub fn regressor_config(model: &ModelConfig) -> SeriesRegressorConfig {
    SeriesRegressorConfig::new()
        .with_body(model.kind)
        .with_hidden_size(model.hidden_size)
        .with_num_layers(model.num_layers)
        .with_proj_size(model.proj_size)
        .with_nonlinearity(model.nonlinearity)
        .with_dropout(model.dropout)
        .with_layer_norm(Some(model.layer_norm))
}

/// A [`SeriesRegressor`] with its training objective: masked mean squared error on the last
/// step (`last_step`) or on every valid step, with the state carried from window to window
/// of a sequence when `stateful`.
#[derive(Module, Debug)]
pub struct RegressionModel<B: Backend> {
    /// The model that is saved and shipped.
    pub model: SeriesRegressor<B>,
    last_step: bool,
    stateful: bool,
}

impl<B: Backend> RegressionModel<B> {
    /// Wraps `model` for the series target of `config`.
    pub fn new(model: SeriesRegressor<B>, config: &ExperimentConfig) -> Self {
        Self {
            model,
            last_step: config.data.target == SeriesTarget::Last,
            stateful: config.data.stateful && config.data.target == SeriesTarget::Sequence,
        }
    }

    /// The batch's mean squared and absolute errors and the state after it; the state starts
    /// from zeros at a sequence's first window (and always, unless stateful).
    pub fn forward_loss(
        &self,
        batch: SeriesBatch<B>,
        state: Option<RecurrentState<B>>,
    ) -> (TokenLossOutput<B>, RecurrentState<B>) {
        let state = if batch.first || !self.stateful {
            None
        } else {
            state
        };
        let steps = batch.inputs.dims()[1];
        let ragged = batch.lengths.iter().any(|&l| l != steps);
        let lengths = ragged.then_some(batch.lengths.as_slice());
        let (y, state) = self.model.forward(batch.inputs, lengths, state);
        let (y, positions) = if self.last_step {
            let rows = batch.lengths.len();
            let last = last_valid_steps(y, &batch.lengths);
            let width = last.dims()[1];
            (last.reshape([rows, 1, width]), rows)
        } else {
            (y, batch.lengths.iter().sum())
        };
        let (mse, mae) = masked_regression_errors(y, batch.targets, batch.mask);
        (
            TokenLossOutput::new(mse, positions).with_abs_error(mae),
            state,
        )
    }
}

impl<B: AutodiffBackend> TrainStep for RegressionModel<B> {
    type Input = SeriesBatch<B>;
    type Output = TokenLossOutput<B>;

    fn step(&self, batch: SeriesBatch<B>) -> TrainOutput<TokenLossOutput<B>> {
        <Self as CarryStep<_, TrainOutput<_>>>::step_carry(self, batch, None).0
    }
}

impl<B: Backend> InferenceStep for RegressionModel<B> {
    type Input = SeriesBatch<B>;
    type Output = TokenLossOutput<B>;

    fn step(&self, batch: SeriesBatch<B>) -> TokenLossOutput<B> {
        self.forward_loss(batch, None).0
    }
}

impl<B: AutodiffBackend> CarryStep<SeriesBatch<B>, TrainOutput<TokenLossOutput<B>>>
    for RegressionModel<B>
{
    type Carry = RecurrentState<B>;

    fn step_carry(
        &self,
        batch: SeriesBatch<B>,
        carry: Option<RecurrentState<B>>,
    ) -> (TrainOutput<TokenLossOutput<B>>, Option<RecurrentState<B>>) {
        let (out, state) = self.forward_loss(batch, carry);
        let grads = out.loss.backward();
        let next = self.stateful.then(|| state.detach());
        (TrainOutput::new(self, grads, out), next)
    }
}

impl<B: Backend> CarryStep<SeriesBatch<B>, TokenLossOutput<B>> for RegressionModel<B> {
    type Carry = RecurrentState<B>;

    fn step_carry(
        &self,
        batch: SeriesBatch<B>,
        carry: Option<RecurrentState<B>>,
    ) -> (TokenLossOutput<B>, Option<RecurrentState<B>>) {
        let (out, state) = self.forward_loss(batch, carry);
        (out, self.stateful.then_some(state))
    }
}

impl<B: Backend> SaveModel for RegressionModel<B> {
    fn save_model(&self, path: &std::path::Path, format: RecordFormat) -> Result<(), String> {
        save_module(&self.model, path, format)
    }
}
