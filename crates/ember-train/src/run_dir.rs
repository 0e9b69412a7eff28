//! What a run directory holds for other programs: the model's own config (`model.json`, the
//! ember-nn `Config` that rebuilds it) and a manifest (`run.json`) naming the format version,
//! the record format and precision, and the Burn version that wrote the weights.
//!
//! A run directory of format [`RUN_FORMAT`]:
//!
//! | file | what |
//! |---|---|
//! | `run.json` | this manifest ([`RunManifest`]) |
//! | `config.toml` | the experiment config, overrides merged |
//! | `model.json` | the model's ember-nn config (`CharLmConfig`, `SeriesRegressorConfig` or `SequenceClassifierConfig`; Burn `Config::load`) |
//! | `best.mpk` | weights of the best epoch: `NamedMpkFileRecorder<FullPrecisionSettings>`, f32, Burn 0.21 |
//! | `best.bpk` | the same weights as Burnpack (burn-store), for Burn 0.22+ |
//! | `vocab.json` | characters (language and classification runs): `<pad>`=0, `<s>`=1, `</s>`=2, then `chars` |
//! | `classes.json`, `series.json`, `split.json` | class names; series scaling and window; the data split |
//! | `best.json`, `metrics.csv`, `loss.svg`, `train.log` | which epoch is best, per-epoch figures |

use std::path::Path;

use burn::config::Config;
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::config::Task;
use crate::TrainError;

/// Format version of a run directory. A change that old readers cannot follow raises it.
pub const RUN_FORMAT: &str = "ember-run/1";
/// File name of the manifest.
pub const RUN_FILE: &str = "run.json";
/// File name of the model's ember-nn config.
pub const MODEL_FILE: &str = "model.json";
/// The Burn version whose record format `best.mpk` is in.
pub const BURN_VERSION: &str = "0.21.0";

/// The manifest of a run directory (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// Always [`RUN_FORMAT`].
    pub format: String,
    /// The ember version that wrote the run.
    pub ember_version: String,
    /// The Burn version of the records.
    pub burn_version: String,
    /// `language`, `regression` or `classification`.
    pub task: String,
    /// The ember-nn module in the weight files (`CharLm`, `SeriesRegressor`,
    /// `SequenceClassifier`), built from `model.json`.
    pub module: String,
    /// The weight files: `best.mpk` (Burn named MessagePack) and `best.bpk` (Burnpack).
    pub weights: Vec<String>,
    /// Float precision of the stored weights.
    pub precision: String,
}

impl RunManifest {
    /// The manifest of a run of `task` whose model is the ember-nn `module`.
    pub fn new(task: Task, module: &str) -> Self {
        Self {
            format: RUN_FORMAT.to_owned(),
            ember_version: env!("CARGO_PKG_VERSION").to_owned(),
            burn_version: BURN_VERSION.to_owned(),
            task: task.name().to_owned(),
            module: module.to_owned(),
            weights: vec![
                crate::checkpoint::BEST_CHECKPOINT.to_owned(),
                crate::checkpoint::BEST_BURNPACK.to_owned(),
            ],
            precision: "f32".to_owned(),
        }
    }

    /// Reads `run.json` of `dir`; a run written before manifests existed gives `None`.
    pub fn read(dir: &Path) -> Result<Option<Self>, TrainError> {
        let path = dir.join(RUN_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let manifest: Self =
            ember_data::json_file::load(&path, RUN_FORMAT, |m: &Self| m.format.as_str()).map_err(
                |e| TrainError::BadCheckpoint {
                    path: path.clone(),
                    reason: format!("{e} (written by another ember version?)"),
                },
            )?;
        Ok(Some(manifest))
    }
}

/// Writes `model.json` (the model's config) and `run.json` into the run directory `dir`.
pub fn write_model_files<C: Config>(
    dir: &Path,
    task: Task,
    module: &str,
    model: &C,
) -> Result<(), TrainError> {
    let model_path = dir.join(MODEL_FILE);
    model
        .save(&model_path)
        .map_err(TrainError::io(&model_path))?;
    ember_data::json_file::save(&RunManifest::new(task, module), &dir.join(RUN_FILE))?;
    Ok(())
}

/// Shapes of every float parameter, in visiting order.
struct Shapes(Vec<Vec<usize>>);

impl<B: Backend> ModuleVisitor<B> for Shapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().dims().to_vec());
    }
}

/// Shapes of every float parameter of `module`, in visiting order.
pub fn parameter_shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<usize>> {
    let mut s = Shapes(Vec::new());
    module.visit(&mut s);
    s.0
}

/// Loads the `.mpk` weights at `path` into `fresh` (a module built from the run's config),
/// checking that every tensor has the shape the config gives: Burn itself loads mismatched
/// shapes without a word and fails at the first matmul.
pub fn load_weights<B: Backend, M: Module<B>>(
    fresh: M,
    path: &Path,
    device: &B::Device,
) -> Result<M, TrainError> {
    if !path.is_file() {
        let dir = path.parent().unwrap_or(Path::new("."));
        return Err(TrainError::NoCheckpoint(dir.to_owned()));
    }
    let expected = parameter_shapes(&fresh);
    let model = crate::model::load_module(fresh, path, device)?;
    let found = parameter_shapes(&model);
    if found != expected {
        return Err(TrainError::BadCheckpoint {
            path: path.to_owned(),
            reason: format!(
                "tensor shapes {found:?} do not match the run's model.json ({expected:?})"
            ),
        });
    }
    Ok(model)
}

/// The model config of the run in `dir`: `model.json` when the run has one, else what
/// `from_config` derives from `config.toml` (runs written before `model.json` existed).
pub fn model_config<C: Config>(
    dir: &Path,
    from_config: impl FnOnce() -> C,
) -> Result<C, TrainError> {
    let path = dir.join(MODEL_FILE);
    if !path.exists() {
        return Ok(from_config());
    }
    C::load(&path).map_err(|e| TrainError::BadCheckpoint {
        path,
        reason: format!("{e} (rewrite it from config.toml by training again, or delete it)"),
    })
}
