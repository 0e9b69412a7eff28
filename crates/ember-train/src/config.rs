//! Experiment configuration: one TOML file per experiment, validated on load.

use std::path::{Path, PathBuf};

use ember_data::series::Missing;
use ember_nn::{BodyKind, CellKind, Nonlinearity, Pooling};
use serde::{Deserialize, Serialize};

use crate::schedule::ScheduleKind;
use crate::TrainError;

/// A whole experiment: what data, which model, how to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Name of the experiment; the default run directory is `runs/<name>`.
    pub name: String,
    /// The data to train on.
    pub data: DataConfig,
    /// The model.
    #[serde(default)]
    pub model: ModelConfig,
    /// The optimisation.
    #[serde(default)]
    pub train: TrainConfig,
}

/// What a data file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    /// One independent sample per line (names): `<s>` + characters + `</s>`.
    #[default]
    Lines,
    /// One continuous text (a corpus), newlines included, cut into chunks of `seq_len`.
    Text,
    /// A numeric time series: a CSV column, or generated sine waves (`path = "generated"`).
    Series,
    /// A directory with one `<class>.txt` file per class, one sample per line.
    Classes,
}

/// What a run learns, from its data kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Next-character prediction (`lines`, `text`): cross-entropy, perplexity, bits per char.
    Language,
    /// Series regression (`series`): mean squared error on standardised values, and MAE.
    Regression,
    /// Sequence classification (`classes`): cross-entropy and accuracy.
    Classification,
}

impl Task {
    /// How the task is named in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Language => "language-model",
            Self::Regression => "series-regression",
            Self::Classification => "classification",
        }
    }
}

/// What a series model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SeriesTarget {
    /// The value after each window; the loss reads the last step's output only.
    #[default]
    Last,
    /// The next value at every step (seq2seq); consecutive windows of one sequence, with the
    /// state carried from window to window when `data.stateful`.
    Sequence,
}

/// The `path = "generated"` series: noisy sine waves, one sequence each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratedSeries {
    /// Number of sequences (validation holds out `valid_fraction` of them).
    #[serde(default = "defaults::sequences")]
    pub sequences: usize,
    /// Values per sequence.
    #[serde(default = "defaults::length")]
    pub length: usize,
    /// Shortest period in steps.
    #[serde(default = "defaults::min_period")]
    pub min_period: f32,
    /// Longest period in steps.
    #[serde(default = "defaults::max_period")]
    pub max_period: f32,
    /// Standard deviation of the Gaussian noise.
    #[serde(default = "defaults::noise")]
    pub noise: f32,
}

impl Default for GeneratedSeries {
    fn default() -> Self {
        Self {
            sequences: defaults::sequences(),
            length: defaults::length(),
            min_period: defaults::min_period(),
            max_period: defaults::max_period(),
            noise: defaults::noise(),
        }
    }
}

/// The `path` that asks for generated sine waves instead of a file.
pub const GENERATED: &str = "generated";

/// The `[data]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// What the file holds: `lines` (one sample per line) or `text` (a continuous corpus).
    #[serde(default)]
    pub kind: DataKind,
    /// The data file, relative to the working directory.
    pub path: PathBuf,
    /// Share of the samples held out for validation.
    #[serde(default = "defaults::valid_fraction")]
    pub valid_fraction: f64,
    /// Group training samples of similar length into batches (less padding); batches are
    /// still drawn in random order.
    #[serde(default)]
    pub bucket_by_length: bool,
    /// Text only: characters per training chunk (the truncated-BPTT length).
    #[serde(default = "defaults::seq_len")]
    pub seq_len: usize,
    /// Text only: carry the hidden state, detached, from each chunk to the next one of the same
    /// stream (stateful truncated BPTT; `train.batch_size` parallel streams, reset at each
    /// epoch). `false` trains on shuffled independent chunks from a zero state.
    #[serde(default = "defaults::stateful")]
    pub stateful: bool,
    /// Series only: the CSV column to read, by its header name.
    #[serde(default)]
    pub column: String,
    /// Series only: `error` or `interpolate` for empty and `NA` cells.
    #[serde(default)]
    pub missing: Missing,
    /// Series only: steps per window.
    #[serde(default = "defaults::window")]
    pub window: usize,
    /// Series only: `last` (the value after each window) or `sequence` (every next value).
    #[serde(default)]
    pub target: SeriesTarget,
    /// Series only, with `path = "generated"`: the sine waves.
    #[serde(default)]
    pub generated: GeneratedSeries,
}

impl DataConfig {
    /// Whether the series is generated rather than read from a file.
    pub fn is_generated(&self) -> bool {
        self.path.as_os_str() == GENERATED
    }
}

/// The `[model]` table of a character language model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The recurrent cell: `lstm`, `gru` or `rnn`; series models also take `scratch` (the
    /// hand-written two-head RNN, with `num_layers` shared layers).
    #[serde(default)]
    pub kind: BodyKind,
    /// Width of the character embedding.
    #[serde(default = "defaults::embed_dim")]
    pub embed_dim: usize,
    /// Hidden size of each recurrent layer.
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: usize,
    /// Number of stacked recurrent layers.
    #[serde(default = "defaults::num_layers")]
    pub num_layers: usize,
    /// LSTM only: project `h` to this width (PyTorch's `proj_size`); 0 means none.
    #[serde(default)]
    pub proj_size: usize,
    /// RNN only: `tanh` or `relu`.
    #[serde(default)]
    pub nonlinearity: Nonlinearity,
    /// Dropout between layers and before the output head.
    #[serde(default)]
    pub dropout: f64,
    /// Language models only: `dropout` as variational (locked) dropout, one mask per sequence
    /// and feature shared by every step (Gal & Ghahramani 2016, AWD-LSTM), instead of one per
    /// element: `y[t, b, f] = x[t, b, f] · m[b, f] / (1 − p)`.
    #[serde(default)]
    pub variational_dropout: bool,
    /// Language models only: embedding dropout, dropping whole rows of the embedding table
    /// (every occurrence of a character in a batch): `E'[v] = E[v] · m[v] / (1 − p)`.
    #[serde(default)]
    pub embed_dropout: f64,
    /// Language models only: variational dropout on the embeddings fed to the first layer, one
    /// mask per sequence: `x_t = E[token_t] · m / (1 − p)`.
    #[serde(default)]
    pub input_dropout: f64,
    /// Language models only: weight-drop (DropConnect) on every layer's recurrent weight, one
    /// mask per batch shared by every step: `W_hh' = W_hh · M / (1 − p)`.
    #[serde(default)]
    pub weight_drop: f64,
    /// Language models only: zoneout of every layer's `h` (Krueger et al. 2016): in training
    /// each unit keeps its previous value with this probability at each step,
    /// `h_t = m ⊙ h_{t−1} + (1 − m) ⊙ h̃_t`; in evaluation and sampling `m = p`.
    #[serde(default)]
    pub zoneout: f64,
    /// Language models with `kind = "lstm"` only: zoneout of every layer's cell state `c`, as
    /// `zoneout`.
    #[serde(default)]
    pub zoneout_cell: f64,
    /// Language models only: tied input and output embeddings (Press & Wolf 2017, AWD-LSTM):
    /// the output head's weight is the embedding table, `logits = h Eᵀ + b`. The recurrent
    /// output must be `embed_dim` wide: `hidden_size = embed_dim`, or for an LSTM
    /// `proj_size = embed_dim`.
    #[serde(default)]
    pub tie_embeddings: bool,
    /// `kind = "lstm"` or `"gru"` only: LayerNorm cells (Ba et al. 2016, as haste's
    /// LayerNormLSTM): each gate pre-activation's two products normalised over their `G·H`
    /// values with a gain, `gates = LN(x W_ihᵀ) ⊙ γ_ih + LN(h W_hhᵀ) ⊙ γ_hh + b`, and an
    /// LSTM's `h = o ⊙ tanh(LN(c) ⊙ γ_c + β_c)`.
    #[serde(default)]
    pub layer_norm: bool,
    /// Classifiers only: `last` (the last valid step) or `mean` (over the valid steps).
    #[serde(default)]
    pub pooling: Pooling,
}

impl ModelConfig {
    /// The recurrent cell of a stacked model (LSTM for `scratch`, which validation keeps to
    /// series models).
    pub fn cell(&self) -> CellKind {
        self.kind.cell().unwrap_or_default()
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: BodyKind::default(),
            embed_dim: defaults::embed_dim(),
            hidden_size: defaults::hidden_size(),
            num_layers: defaults::num_layers(),
            proj_size: 0,
            nonlinearity: Nonlinearity::default(),
            dropout: 0.0,
            variational_dropout: false,
            embed_dropout: 0.0,
            input_dropout: 0.0,
            weight_drop: 0.0,
            zoneout: 0.0,
            zoneout_cell: 0.0,
            tie_embeddings: false,
            layer_norm: false,
            pooling: Pooling::default(),
        }
    }
}

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam with PyTorch's defaults (betas 0.9/0.999, eps 1e-8).
    #[default]
    Adam,
    /// AdamW with PyTorch's default weight decay 0.01.
    Adamw,
    /// SGD with `train.momentum` (PyTorch's `SGD(momentum=m)`, no dampening).
    Sgd,
}

/// The `[train]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set.
    #[serde(default = "defaults::epochs")]
    pub epochs: usize,
    /// Sequences per batch.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// The optimiser.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    #[serde(default = "defaults::learning_rate")]
    pub learning_rate: f64,
    /// Momentum of SGD (ignored by Adam and AdamW).
    #[serde(default = "defaults::momentum")]
    pub momentum: f64,
    /// How the learning rate moves: `constant`, `cosine`, `step` or `exponential`.
    #[serde(default)]
    pub schedule: ScheduleKind,
    /// Optimiser steps of linear warm-up to `learning_rate` (0: none).
    #[serde(default)]
    pub warmup_steps: usize,
    /// Floor of the cosine schedule.
    #[serde(default)]
    pub min_learning_rate: f64,
    /// Decay factor of the step and exponential schedules, in (0, 1].
    #[serde(default = "defaults::gamma")]
    pub gamma: f64,
    /// Epochs between decays of the step schedule.
    #[serde(default = "defaults::step_epochs")]
    pub step_epochs: usize,
    /// Clip the gradients' global L2 norm, over all parameters together, to this value, as
    /// PyTorch's `clip_grad_norm_(model.parameters(), grad_clip)` does; 0 disables it.
    #[serde(default = "defaults::grad_clip")]
    pub grad_clip: f64,
    /// Clip each parameter's gradient to this L2 norm on its own (Burn's
    /// `GradientClippingConfig::Norm`); 0 disables it. Set this or `grad_clip`, not both.
    #[serde(default)]
    pub grad_clip_per_param: f64,
    /// Seed for the split, the shuffling and the initial weights.
    #[serde(default = "defaults::seed")]
    pub seed: u64,
    /// Epoch checkpoints to keep besides the best one.
    #[serde(default = "defaults::keep_last")]
    pub keep_last: usize,
    /// Stop after this many epochs without a lower validation loss; 0 never stops early.
    #[serde(default)]
    pub patience: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: defaults::epochs(),
            batch_size: defaults::batch_size(),
            optimizer: OptimizerKind::default(),
            learning_rate: defaults::learning_rate(),
            momentum: defaults::momentum(),
            schedule: ScheduleKind::default(),
            warmup_steps: 0,
            min_learning_rate: 0.0,
            gamma: defaults::gamma(),
            step_epochs: defaults::step_epochs(),
            grad_clip: defaults::grad_clip(),
            grad_clip_per_param: 0.0,
            seed: defaults::seed(),
            keep_last: defaults::keep_last(),
            patience: 0,
        }
    }
}

mod defaults {
    pub fn valid_fraction() -> f64 {
        0.1
    }
    pub fn seq_len() -> usize {
        100
    }
    pub fn stateful() -> bool {
        true
    }
    pub fn window() -> usize {
        24
    }
    pub fn sequences() -> usize {
        32
    }
    pub fn length() -> usize {
        400
    }
    pub fn min_period() -> f32 {
        16.0
    }
    pub fn max_period() -> f32 {
        48.0
    }
    pub fn noise() -> f32 {
        0.05
    }
    pub fn embed_dim() -> usize {
        32
    }
    pub fn hidden_size() -> usize {
        128
    }
    pub fn num_layers() -> usize {
        1
    }
    pub fn epochs() -> usize {
        10
    }
    pub fn batch_size() -> usize {
        64
    }
    pub fn learning_rate() -> f64 {
        3e-3
    }
    pub fn momentum() -> f64 {
        0.9
    }
    pub fn gamma() -> f64 {
        0.5
    }
    pub fn step_epochs() -> usize {
        1
    }
    pub fn grad_clip() -> f64 {
        1.0
    }
    pub fn seed() -> u64 {
        42
    }
    pub fn keep_last() -> usize {
        2
    }
}

impl ExperimentConfig {
    /// Reads and validates a config file; every problem is an error naming the file and key.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| TrainError::Config {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses and validates TOML text; the error is one line naming the key at fault.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: Self = toml::from_str(text).map_err(|e| one_line(text, &e))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The config with `key=value` overrides applied (`--set model.hidden_size=256`): dotted
    /// keys of the config's tables, values in TOML syntax (a value that is not TOML, such as
    /// `data.path=my.txt`, is taken as a string). The result is validated like a file; an
    /// unknown key or a value of the wrong type is one line naming the override.
    pub fn with_overrides(&self, sets: &[String]) -> Result<Self, String> {
        let mut root = toml::Value::try_from(self).map_err(|e| e.to_string())?;
        for set in sets {
            let (key, raw) = set.split_once('=').ok_or_else(|| {
                format!("--set {set:?}: expected KEY=VALUE, e.g. model.hidden_size=256")
            })?;
            let key = key.trim();
            let mut slot = &mut root;
            for (depth, part) in key.split('.').enumerate() {
                let table = slot.as_table_mut().ok_or_else(|| {
                    format!(
                        "--set {key}: {} is not a table",
                        key.split('.').take(depth).collect::<Vec<_>>().join(".")
                    )
                })?;
                let known: Vec<String> = table.keys().cloned().collect();
                slot = table.get_mut(part).ok_or_else(|| {
                    format!(
                        "--set {key}: unknown key {part:?}; the keys here are {}",
                        known.join(", ")
                    )
                })?;
            }
            if slot.is_table() {
                return Err(format!(
                    "--set {key}: name a key inside the table, e.g. {key}.{}",
                    slot.as_table()
                        .and_then(|t| t.keys().next())
                        .map_or("...", String::as_str)
                ));
            }
            *slot = toml_value(raw.trim());
        }
        let config: Self = root.try_into().map_err(|e: toml::de::Error| {
            format!("--set: {}", e.message().trim().replace('\n', " "))
        })?;
        config.validate()?;
        Ok(config)
    }

    /// What the run learns, from `data.kind`.
    pub fn task(&self) -> Task {
        match self.data.kind {
            DataKind::Lines | DataKind::Text => Task::Language,
            DataKind::Series => Task::Regression,
            DataKind::Classes => Task::Classification,
        }
    }

    /// The config as TOML, as saved in a run directory.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serialises")
    }

    /// Checks values that parse but cannot train.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.contains(['/', '\\']) {
            return Err(format!(
                "name {:?} must be a non-empty file name",
                self.name
            ));
        }
        if !(self.data.valid_fraction > 0.0 && self.data.valid_fraction < 1.0) {
            return Err(format!(
                "data.valid_fraction must be in (0, 1), got {}",
                self.data.valid_fraction
            ));
        }
        self.validate_task()?;
        let m = &self.model;
        for (key, v) in [
            ("data.seq_len", self.data.seq_len),
            ("data.window", self.data.window),
            ("model.embed_dim", m.embed_dim),
            ("model.hidden_size", m.hidden_size),
            ("model.num_layers", m.num_layers),
            ("train.epochs", self.train.epochs),
            ("train.batch_size", self.train.batch_size),
        ] {
            if v == 0 {
                return Err(format!("{key} must be at least 1, got 0"));
            }
        }
        if m.zoneout_cell > 0.0 && m.kind != BodyKind::Lstm {
            return Err(format!(
                "model.zoneout_cell applies to kind = \"lstm\" only (\"{}\" has no cell state): remove it, or use model.zoneout",
                m.kind
            ));
        }
        if m.layer_norm && !matches!(m.kind, BodyKind::Lstm | BodyKind::Gru) {
            return Err(format!(
                "model.layer_norm applies to kind = \"lstm\" or \"gru\" only, not \"{}\": remove it",
                m.kind
            ));
        }
        if m.proj_size > 0 && m.kind != BodyKind::Lstm {
            return Err(format!(
                "model.proj_size applies to kind = \"lstm\" only, not \"{}\": remove it",
                m.kind
            ));
        }
        if m.proj_size >= m.hidden_size && m.proj_size > 0 {
            return Err(format!(
                "model.proj_size must be smaller than model.hidden_size ({}), got {}",
                m.hidden_size, m.proj_size
            ));
        }
        if m.nonlinearity != Nonlinearity::Tanh && m.kind != BodyKind::Rnn {
            return Err(format!(
                "model.nonlinearity applies to kind = \"rnn\" only, not \"{}\": remove it",
                m.kind
            ));
        }
        let width = if m.proj_size > 0 {
            m.proj_size
        } else {
            m.hidden_size
        };
        if m.tie_embeddings && width != m.embed_dim {
            let key = if m.kind == BodyKind::Lstm {
                "proj_size"
            } else {
                "hidden_size"
            };
            return Err(ember_nn::NnError::TiedWidths {
                embed_dim: m.embed_dim,
                width,
                fix: format!("model.{key} = {}", m.embed_dim),
            }
            .to_string());
        }
        for (key, p) in [
            ("dropout", m.dropout),
            ("embed_dropout", m.embed_dropout),
            ("input_dropout", m.input_dropout),
            ("weight_drop", m.weight_drop),
            ("zoneout", m.zoneout),
            ("zoneout_cell", m.zoneout_cell),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("model.{key} must be in [0, 1), got {p}"));
            }
        }
        if !(self.train.learning_rate > 0.0 && self.train.learning_rate.is_finite()) {
            return Err(format!(
                "train.learning_rate must be positive, got {}",
                self.train.learning_rate
            ));
        }
        let t = &self.train;
        if !(0.0..1.0).contains(&t.momentum) {
            return Err(format!(
                "train.momentum must be in [0, 1), got {}",
                t.momentum
            ));
        }
        if !(t.gamma > 0.0 && t.gamma <= 1.0) {
            return Err(format!("train.gamma must be in (0, 1], got {}", t.gamma));
        }
        if t.step_epochs == 0 {
            return Err("train.step_epochs must be at least 1, got 0".into());
        }
        if !(t.min_learning_rate >= 0.0 && t.min_learning_rate < t.learning_rate) {
            return Err(format!(
                "train.min_learning_rate must be in [0, train.learning_rate), got {}",
                t.min_learning_rate
            ));
        }
        for (key, value) in [
            ("grad_clip", t.grad_clip),
            ("grad_clip_per_param", t.grad_clip_per_param),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(format!(
                    "train.{key} must be >= 0 (0 disables it), got {value}"
                ));
            }
        }
        if t.grad_clip > 0.0 && t.grad_clip_per_param > 0.0 {
            return Err(format!(
                "train.grad_clip ({}, the global norm) and train.grad_clip_per_param ({}) are both set: \
                 keep one and set the other to 0",
                t.grad_clip, t.grad_clip_per_param
            ));
        }
        Ok(())
    }
}

impl ExperimentConfig {
    /// Checks the keys that belong to one data kind only.
    fn validate_task(&self) -> Result<(), String> {
        let d = &self.data;
        let kind = match d.kind {
            DataKind::Lines => "lines",
            DataKind::Text => "text",
            DataKind::Series => "series",
            DataKind::Classes => "classes",
        };
        let series = d.kind == DataKind::Series;
        if self.model.kind == BodyKind::Scratch && !series {
            return Err(format!(
                "model.kind = \"scratch\" is a series model: use it with data.kind = \"series\", not \"{kind}\""
            ));
        }
        if d.bucket_by_length && !matches!(d.kind, DataKind::Lines) {
            return Err(format!(
                "data.bucket_by_length applies to kind = \"lines\" only, not \"{kind}\": remove it"
            ));
        }
        let language = matches!(d.kind, DataKind::Lines | DataKind::Text);
        for (key, on) in [
            ("variational_dropout", self.model.variational_dropout),
            ("embed_dropout", self.model.embed_dropout > 0.0),
            ("input_dropout", self.model.input_dropout > 0.0),
            ("weight_drop", self.model.weight_drop > 0.0),
            ("zoneout", self.model.zoneout > 0.0),
            ("zoneout_cell", self.model.zoneout_cell > 0.0),
            ("tie_embeddings", self.model.tie_embeddings),
        ] {
            if on && !language {
                return Err(format!(
                    "model.{key} applies to language models (data.kind = \"lines\" or \"text\") only, not \"{kind}\": remove it"
                ));
            }
        }
        if self.model.pooling != Pooling::Last && d.kind != DataKind::Classes {
            return Err(format!(
                "model.pooling applies to data.kind = \"classes\" only, not \"{kind}\": remove it"
            ));
        }
        if !series {
            if !d.column.is_empty() {
                return Err(format!(
                    "data.column applies to data.kind = \"series\" only, not \"{kind}\": remove it"
                ));
            }
            if d.is_generated() {
                return Err(format!(
                    "data.path = \"generated\" applies to data.kind = \"series\" only, not \"{kind}\""
                ));
            }
            return Ok(());
        }
        if d.is_generated() {
            let g = &d.generated;
            if !d.column.is_empty() {
                return Err("data.column names a CSV column, but data.path = \"generated\": remove one of them".into());
            }
            if g.sequences < 2 {
                return Err(format!(
                    "data.generated.sequences must be at least 2 (one to validate on), got {}",
                    g.sequences
                ));
            }
            if g.length <= d.window {
                return Err(format!(
                    "data.generated.length ({}) must be longer than data.window ({})",
                    g.length, d.window
                ));
            }
            if !(g.min_period > 0.0 && g.min_period <= g.max_period) {
                return Err(format!(
                    "data.generated.min_period must be in (0, max_period = {}], got {}",
                    g.max_period, g.min_period
                ));
            }
            if !(g.noise >= 0.0 && g.noise.is_finite()) {
                return Err(format!(
                    "data.generated.noise must be >= 0, got {}",
                    g.noise
                ));
            }
        } else if d.column.is_empty() {
            return Err(format!(
                "data.column is missing: name the CSV column of {} to read (or set data.path = \"generated\")",
                d.path.display()
            ));
        }
        Ok(())
    }
}

/// `raw` as a TOML value (`256`, `0.5`, `true`, `"x"`), or as a string when it is not one.
fn toml_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// A TOML error on one line: "line 3: unknown field `x`, expected one of ...".
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"t\"\n[data]\npath = \"x.txt\"\n";

    #[test]
    fn defaults_fill_missing_tables() {
        let c = ExperimentConfig::parse(MINIMAL).unwrap();
        assert_eq!(c.model, ModelConfig::default());
        assert_eq!(c.train, TrainConfig::default());
        assert_eq!(ExperimentConfig::parse(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn overrides_are_applied_and_validated() {
        let c = ExperimentConfig::parse(MINIMAL).unwrap();
        let sets = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = c
            .with_overrides(&sets(&[
                "model.hidden_size=256",
                "data.path=my file.txt",
                "model.kind=\"gru\"",
                "train.learning_rate = 0.01",
            ]))
            .unwrap();
        assert_eq!(o.model.hidden_size, 256);
        assert_eq!(o.data.path, PathBuf::from("my file.txt"));
        assert_eq!(o.model.kind, BodyKind::Gru);
        assert_eq!(o.train.learning_rate, 0.01);
        let err = c
            .with_overrides(&sets(&["model.hiden_size=3"]))
            .unwrap_err();
        assert!(
            err.starts_with(
                "--set model.hiden_size: unknown key \"hiden_size\"; the keys here are "
            ),
            "{err}"
        );
        assert!(err.contains("hidden_size"), "{err}");
        let err = c
            .with_overrides(&sets(&["model.hidden_size=big"]))
            .unwrap_err();
        assert!(
            err.starts_with("--set: invalid type: string \"big\""),
            "{err}"
        );
        let err = c
            .with_overrides(&sets(&["train.batch_size=0"]))
            .unwrap_err();
        assert_eq!(err, "train.batch_size must be at least 1, got 0");
        let err = c.with_overrides(&sets(&["model"])).unwrap_err();
        assert!(err.contains("expected KEY=VALUE"), "{err}");
        let err = c.with_overrides(&sets(&["model=1"])).unwrap_err();
        assert!(err.contains("name a key inside the table"), "{err}");
    }

    #[test]
    fn task_keys_are_checked_against_the_data_kind() {
        let series = "name = \"s\"\n[data]\nkind = \"series\"\npath = \"x.csv\"\n";
        let err = ExperimentConfig::parse(series).unwrap_err();
        assert!(err.starts_with("data.column is missing"), "{err}");
        let ok = ExperimentConfig::parse(&format!("{series}column = \"v\"\n")).unwrap();
        assert_eq!(ok.task(), Task::Regression);
        let err = ExperimentConfig::parse(&format!("{MINIMAL}[model]\nkind = \"scratch\"\n"))
            .unwrap_err();
        assert!(
            err.starts_with("model.kind = \"scratch\" is a series model"),
            "{err}"
        );
        let err = ExperimentConfig::parse(&format!("{MINIMAL}[model]\npooling = \"mean\"\n"))
            .unwrap_err();
        assert!(
            err.starts_with("model.pooling applies to data.kind = \"classes\""),
            "{err}"
        );
        let err = ExperimentConfig::parse(&format!("{MINIMAL}column = \"v\"\n")).unwrap_err();
        assert!(err.starts_with("data.column applies to"), "{err}");
        let err = ExperimentConfig::parse(&format!(
            "{series}column = \"v\"\n[model]\nembed_dropout = 0.1\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("model.embed_dropout applies to language models"),
            "{err}"
        );
        let err = ExperimentConfig::parse(&format!("{MINIMAL}[model]\ninput_dropout = 1.0\n"))
            .unwrap_err();
        assert!(
            err.starts_with("model.input_dropout must be in [0, 1)"),
            "{err}"
        );
        let awd = ExperimentConfig::parse(&format!(
            "{MINIMAL}[model]\nvariational_dropout = true\nembed_dropout = 0.1\ninput_dropout = 0.2\n"
        ))
        .unwrap();
        assert_eq!(
            (
                awd.model.variational_dropout,
                awd.model.embed_dropout,
                awd.model.input_dropout
            ),
            (true, 0.1, 0.2)
        );
        let zoned = ExperimentConfig::parse(&format!(
            "{MINIMAL}[model]\nzoneout = 0.05\nzoneout_cell = 0.25\n"
        ))
        .unwrap();
        assert_eq!(
            (zoned.model.zoneout, zoned.model.zoneout_cell),
            (0.05, 0.25)
        );
        let err = ExperimentConfig::parse(&format!(
            "{MINIMAL}[model]\nkind = \"gru\"\nzoneout_cell = 0.25\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("model.zoneout_cell applies to kind = \"lstm\" only"),
            "{err}"
        );
        let err =
            ExperimentConfig::parse(&format!("{MINIMAL}[model]\nzoneout = 1.5\n")).unwrap_err();
        assert!(err.starts_with("model.zoneout must be in [0, 1)"), "{err}");
        let err =
            ExperimentConfig::parse(&format!("{series}column = \"v\"\n[model]\nzoneout = 0.1\n"))
                .unwrap_err();
        assert!(
            err.starts_with("model.zoneout applies to language models"),
            "{err}"
        );
        let normed = ExperimentConfig::parse(&format!(
            "{MINIMAL}[model]\nkind = \"gru\"\nlayer_norm = true\n"
        ))
        .unwrap();
        assert!(normed.model.layer_norm);
        let err = ExperimentConfig::parse(&format!(
            "{MINIMAL}[model]\nkind = \"rnn\"\nlayer_norm = true\n"
        ))
        .unwrap_err();
        assert_eq!(
            err,
            "model.layer_norm applies to kind = \"lstm\" or \"gru\" only, not \"rnn\": remove it"
        );
        let tied = ExperimentConfig::parse(&format!(
            "{MINIMAL}[model]\nembed_dim = 16\nhidden_size = 32\nproj_size = 16\ntie_embeddings = true\n"
        ))
        .unwrap();
        assert!(tied.model.tie_embeddings);
        let err = ExperimentConfig::parse(&format!(
            "{MINIMAL}[model]\nembed_dim = 16\nhidden_size = 32\ntie_embeddings = true\n"
        ))
        .unwrap_err();
        assert_eq!(
            err,
            "model.tie_embeddings needs the recurrent output as wide as model.embed_dim (16), but it is 32: set model.proj_size = 16"
        );
        let err = ExperimentConfig::parse(&format!(
            "{MINIMAL}[model]\nkind = \"gru\"\nembed_dim = 16\nhidden_size = 32\ntie_embeddings = true\n"
        ))
        .unwrap_err();
        assert!(err.ends_with("set model.hidden_size = 16"), "{err}");
        let err = ExperimentConfig::parse(&format!(
            "{series}column = \"v\"\n[model]\ntie_embeddings = true\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("model.tie_embeddings applies to language models"),
            "{err}"
        );
        let generated = "name = \"g\"\n[data]\nkind = \"series\"\npath = \"generated\"\n";
        let g = ExperimentConfig::parse(generated).unwrap();
        assert!(g.data.is_generated());
        let err = ExperimentConfig::parse(&format!(
            "{generated}window = 10\n[data.generated]\nlength = 10\n"
        ))
        .unwrap_err();
        assert_eq!(
            err,
            "data.generated.length (10) must be longer than data.window (10)"
        );
        let err = ExperimentConfig::parse(&format!("{generated}[data.generated]\nperiod = 3\n"))
            .unwrap_err();
        assert!(err.contains("unknown field `period`"), "{err}");
        let classes = ExperimentConfig::parse(
            "name = \"c\"\n[data]\nkind = \"classes\"\npath = \"d\"\n[model]\npooling = \"mean\"\n",
        )
        .unwrap();
        assert_eq!(
            (classes.task(), classes.model.pooling),
            (Task::Classification, Pooling::Mean)
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err =
            ExperimentConfig::parse(&format!("{MINIMAL}[model]\nhiden_size = 3\n")).unwrap_err();
        assert!(err.contains("unknown field `hiden_size`"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn impossible_values_are_named() {
        let err =
            ExperimentConfig::parse(&format!("{MINIMAL}[train]\nbatch_size = 0\n")).unwrap_err();
        assert_eq!(err, "train.batch_size must be at least 1, got 0");
        let err = ExperimentConfig::parse(&format!("{MINIMAL}[model]\nkind = \"transformer\"\n"))
            .unwrap_err();
        assert!(err.contains("unknown variant `transformer`"), "{err}");
        let err = ExperimentConfig::parse(&format!(
            "{MINIMAL}[model]\nhidden_size = 8\nproj_size = 8\n"
        ))
        .unwrap_err();
        assert_eq!(
            err,
            "model.proj_size must be smaller than model.hidden_size (8), got 8"
        );
        let err = ExperimentConfig::parse(&format!(
            "{MINIMAL}[model]\nkind = \"gru\"\nproj_size = 2\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("model.proj_size applies to kind = \"lstm\""),
            "{err}"
        );
        let err = ExperimentConfig::parse(&format!("{MINIMAL}[model]\nnonlinearity = \"relu\"\n"))
            .unwrap_err();
        assert!(
            err.starts_with("model.nonlinearity applies to kind = \"rnn\""),
            "{err}"
        );
        let err = ExperimentConfig::parse(&format!("{MINIMAL}[train]\ngamma = 0\n")).unwrap_err();
        assert_eq!(err, "train.gamma must be in (0, 1], got 0");
        let sgd = ExperimentConfig::parse(&format!(
            "{MINIMAL}[train]\noptimizer = \"sgd\"\nschedule = \"cosine\"\nwarmup_steps = 5\n"
        ))
        .unwrap();
        assert_eq!(
            (sgd.train.optimizer, sgd.train.schedule),
            (OptimizerKind::Sgd, ScheduleKind::Cosine)
        );
        let ok = ExperimentConfig::parse(&format!(
            "{MINIMAL}[model]\nkind = \"rnn\"\nnonlinearity = \"relu\"\n"
        ))
        .unwrap();
        assert_eq!(ok.model.nonlinearity, Nonlinearity::Relu);
    }

    #[test]
    fn one_gradient_clip_at_a_time() {
        let both = ExperimentConfig::parse(&format!(
            "{MINIMAL}[train]\ngrad_clip = 1.0\ngrad_clip_per_param = 0.5\n"
        ))
        .unwrap_err();
        assert!(
            both.starts_with(
                "train.grad_clip (1, the global norm) and train.grad_clip_per_param (0.5)"
            ) && !both.contains('\n'),
            "{both}"
        );
        let per_param = ExperimentConfig::parse(&format!(
            "{MINIMAL}[train]\ngrad_clip = 0\ngrad_clip_per_param = 0.5\n"
        ))
        .unwrap();
        assert_eq!(per_param.train.grad_clip_per_param, 0.5);
        let err = ExperimentConfig::parse(&format!("{MINIMAL}[train]\ngrad_clip_per_param = -1\n"))
            .unwrap_err();
        assert_eq!(
            err,
            "train.grad_clip_per_param must be >= 0 (0 disables it), got -1"
        );
    }
}
