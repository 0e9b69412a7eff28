//! A run at a glance: its model, the parameters of each layer, the size of its training data
//! and the char-rnn rule of thumb (parameters against training characters) as advice.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::store::ModuleSnapshot;

use crate::checkpoint::{read_best, read_metrics};
use crate::config::Task;
use crate::run_dir::{RunManifest, RUN_FORMAT};
use crate::TrainError;

/// One tensor of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Its module path (`body.Lstm.cells.0.weight_ih`), as in `best.bpk`.
    pub path: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of values.
    pub fn count(&self) -> usize {
        self.shape.iter().product()
    }

    /// The layer it belongs to: its path without the tensor's own name.
    pub fn layer(&self) -> &str {
        self.path.rsplit_once('.').map_or("", |(layer, _)| layer)
    }
}

/// Every float tensor of `model`, in visiting order.
pub fn tensors<B: Backend, M: Module<B>>(model: &M) -> Vec<TensorInfo> {
    model
        .collect(None, None, false)
        .into_iter()
        .map(|s| TensorInfo {
            path: s.full_path(),
            shape: s.shape.to_vec(),
        })
        .collect()
}

/// What `ember inspect` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// The run directory.
    pub dir: String,
    /// What the run learned.
    pub task: Task,
    /// The model's config, as in `model.json`.
    pub model: String,
    /// The model's tensors.
    pub tensors: Vec<TensorInfo>,
    /// Training characters (values, for a series), when the data could be read.
    pub data_size: Result<usize, String>,
    /// Format of the run directory.
    pub format: String,
    /// Best epoch and its validation loss.
    pub best: Option<(usize, f64)>,
    /// Training and validation loss of the last epoch.
    pub last_losses: Option<(f64, f64)>,
}

impl Inspection {
    /// Total number of parameters.
    pub fn parameters(&self) -> usize {
        self.tensors.iter().map(TensorInfo::count).sum()
    }

    /// Parameter count per layer, in model order.
    pub fn layers(&self) -> Vec<(String, usize)> {
        let mut layers: Vec<(String, usize)> = Vec::new();
        for t in &self.tensors {
            match layers.last_mut() {
                Some((name, count)) if name == t.layer() => *count += t.count(),
                _ => layers.push((t.layer().to_owned(), t.count())),
            }
        }
        layers
    }

    /// The char-rnn rule of thumb (Karpathy): parameters about as many as training
    /// characters. Far more parameters than data overfit; far fewer underfit.
    pub fn advice(&self) -> String {
        let unit = if self.task == Task::Regression {
            "values"
        } else {
            "characters"
        };
        let Ok(size) = self.data_size else {
            return "no advice: the training data could not be read".into();
        };
        let ratio = self.parameters() as f64 / size.max(1) as f64;
        let gap = self
            .last_losses
            .map(|(train, valid)| {
                format!("; last epoch: training loss {train:.4}, validation {valid:.4}")
            })
            .unwrap_or_default();
        let verdict = if ratio > 10.0 {
            format!(
                "far more parameters than training {unit}: the model can memorise its data; \
                 raise model.dropout (0.2-0.5) or lower model.hidden_size, and watch the \
                 train/valid gap{gap}"
            )
        } else if ratio < 0.1 {
            format!(
                "far fewer parameters than training {unit}: the model is likely too small to \
                 fit the data; raise model.hidden_size or model.num_layers{gap}"
            )
        } else {
            format!("within the range the char-rnn rule of thumb suggests (0.1x to 10x){gap}")
        };
        format!(
            "{ratio:.2} parameters per training {}: {verdict}",
            &unit[..unit.len() - 1]
        )
    }
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "run {} ({}, {} task)",
            self.dir,
            self.format,
            self.task.name()
        )?;
        if let Some((epoch, loss)) = self.best {
            writeln!(f, "best epoch {epoch}, validation loss {loss:.4}")?;
        }
        writeln!(f, "model: {}", self.model)?;
        writeln!(f, "parameters per layer:")?;
        for (layer, count) in self.layers() {
            writeln!(f, "  {layer:<32} {count:>12}")?;
            for t in self.tensors.iter().filter(|t| t.layer() == layer) {
                writeln!(f, "    {:<30} {:?}", t.path, t.shape)?;
            }
        }
        writeln!(f, "  {:<32} {:>12}", "total", self.parameters())?;
        match &self.data_size {
            Ok(n) => writeln!(f, "training data: {n}")?,
            Err(e) => writeln!(f, "training data: not read ({e})")?,
        }
        write!(f, "advice: {}", self.advice())
    }
}

/// Inspects the run in `dir` (any task), on the CPU.
pub fn inspect<B: Backend>(dir: &Path, device: &B::Device) -> Result<Inspection, TrainError> {
    if !dir.join(crate::checkpoint::BEST_CHECKPOINT).is_file() {
        return Err(TrainError::NoCheckpoint(dir.to_owned()));
    }
    let config = crate::ExperimentConfig::load(&dir.join(crate::run::CONFIG_FILE))?;
    let format = match RunManifest::read(dir)? {
        Some(m) => m.format,
        None => format!("no run.json: written before {RUN_FORMAT}"),
    };
    let task = config.task();
    let (tensors, model, data_size) = match task {
        Task::Language => {
            let run = crate::load_run::<B>(dir, device)?;
            let size = crate::run::prepare_data(&config).map(|d| {
                d.train
                    .iter()
                    .map(|s| s.tokens.len().saturating_sub(1))
                    .sum()
            });
            (tensors(&run.model), model_json(dir), size)
        }
        Task::Regression => {
            let run = crate::task_eval::load_series_run::<B>(dir, "inspect", device)?;
            let size = crate::regression::prepare_series(&config).map(|d| d.sizes.0);
            (tensors(&run.model), model_json(dir), size)
        }
        Task::Classification => {
            let run = crate::task_eval::load_class_run::<B>(dir, "inspect", device)?;
            let size = crate::classification::prepare_classes(&config)
                .map(|d| d.train.iter().map(|s| s.tokens.len()).sum());
            (tensors(&run.model), model_json(dir), size)
        }
    };
    let last_losses = read_metrics(dir)
        .ok()
        .and_then(|rows| rows.last().map(|r| (r.train_loss, r.valid_loss)));
    Ok(Inspection {
        dir: dir.display().to_string(),
        task,
        model,
        tensors,
        data_size: data_size.map_err(|e| e.to_string()),
        format,
        best: read_best(dir).ok().map(|b| (b.epoch, b.valid_loss)),
        last_losses,
    })
}

/// `model.json` on one line, or where the model comes from when the run has none.
fn model_json(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(crate::run_dir::MODEL_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map_or_else(
            || "from config.toml [model] (no model.json)".into(),
            |v| v.to_string(),
        )
}
