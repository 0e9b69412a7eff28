//! Checkpoints of a run: one per epoch named by epoch and validation loss, the best one copied
//! to `best.mpk` (never replaced by a worse one), and `metrics.csv`.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Task;
use crate::model::RecordFormat;
use crate::output::LossAccumulator;
use crate::TrainError;

/// File name of the best checkpoint in a run directory.
pub const BEST_CHECKPOINT: &str = "best.mpk";
/// The best model again, as Burnpack (burn-store), for Burn 0.22+ apps.
pub const BEST_BURNPACK: &str = "best.bpk";
/// File name of the best checkpoint's description in a run directory.
pub const BEST_JSON: &str = "best.json";
/// Folder of the per-epoch checkpoints in a run directory.
pub const CHECKPOINT_DIR: &str = "checkpoints";
/// File name of the per-epoch metrics table in a run directory.
pub const METRICS_CSV: &str = "metrics.csv";

/// Which epoch `best.mpk` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestCheckpoint {
    /// The epoch (1-based).
    pub epoch: usize,
    /// Its validation loss (mean NLL per valid token in nats; mean squared error for regression).
    pub valid_loss: f64,
    /// The epoch checkpoint it was copied from, relative to the run directory.
    pub checkpoint: String,
}

/// One row of `metrics.csv`: exact position-weighted figures of one epoch. The columns a
/// task has no use for are empty (perplexity for regression, MAE for language models, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch (1-based).
    pub epoch: usize,
    /// Mean training loss per valid position over the epoch.
    pub train_loss: f64,
    /// Mean validation loss per valid position after the epoch.
    pub valid_loss: f64,
    /// Language models: `exp(valid_loss)`.
    pub valid_perplexity: Option<f64>,
    /// Language models: `valid_loss / ln 2`.
    pub valid_bits_per_char: Option<f64>,
    /// Regression: validation mean absolute error (standardised units).
    pub valid_mae: Option<f64>,
    /// Classification: share of training sequences classified correctly during the epoch.
    pub train_accuracy: Option<f64>,
    /// Classification: share of validation sequences classified correctly.
    pub valid_accuracy: Option<f64>,
    /// Whether this epoch became `best.mpk`.
    pub best: bool,
    /// Wall time of the epoch, training and validation, in seconds.
    pub seconds: f64,
    /// Training throughput: valid positions (tokens, time steps) per second of the training
    /// pass (forward, backward and optimiser step).
    pub train_tokens_per_second: f64,
}

impl EpochRecord {
    /// A language model's record of `epoch` from its mean losses; `best` is set by the keeper.
    pub fn new(epoch: usize, train_loss: f64, valid_loss: f64, seconds: f64) -> Self {
        Self {
            epoch,
            train_loss,
            valid_loss,
            valid_perplexity: Some(valid_loss.exp()),
            valid_bits_per_char: Some(valid_loss / std::f64::consts::LN_2),
            valid_mae: None,
            train_accuracy: None,
            valid_accuracy: None,
            best: false,
            seconds,
            train_tokens_per_second: 0.0,
        }
    }

    /// The record of `epoch` from its accumulated figures, with the columns of `task`.
    pub fn of_task(
        task: Task,
        epoch: usize,
        train: &LossAccumulator,
        valid: &LossAccumulator,
        seconds: f64,
    ) -> Self {
        let mut record = Self::new(epoch, train.mean(), valid.mean(), seconds);
        if task != Task::Language {
            record.valid_perplexity = None;
            record.valid_bits_per_char = None;
        }
        record.valid_mae = valid.mean_abs_error();
        record.train_accuracy = train.accuracy();
        record.valid_accuracy = valid.accuracy();
        record
    }

    /// The epoch's validation figures after the loss, for the log: "; valid MAE 0.31".
    pub fn extra_figures(&self) -> String {
        let mut out = String::new();
        if let Some(mae) = self.valid_mae {
            out += &format!(", valid MAE {mae:.4}");
        }
        if let Some(acc) = self.valid_accuracy {
            out += &format!(", valid accuracy {:.1}%", acc * 100.0);
        }
        out
    }
}

/// Saves each epoch's checkpoint, keeps the best and the last few, and logs the metrics.
#[derive(Debug)]
pub struct CheckpointKeeper {
    dir: PathBuf,
    keep_last: usize,
    best: Option<BestCheckpoint>,
    recent: VecDeque<PathBuf>,
}

impl CheckpointKeeper {
    /// A keeper for the run in `dir` that keeps `keep_last` epoch checkpoints besides the best.
    pub fn new(dir: &Path, keep_last: usize) -> Self {
        Self {
            dir: dir.to_owned(),
            keep_last,
            best: None,
            recent: VecDeque::new(),
        }
    }

    /// The keeper of a run being resumed: its best checkpoint and its kept epoch
    /// checkpoints, oldest first.
    pub fn resume(dir: &Path, keep_last: usize) -> Result<Self, TrainError> {
        let best = read_best(dir)?;
        let folder = dir.join(CHECKPOINT_DIR);
        let mut kept: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map_err(TrainError::io(&folder))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "mpk"))
            .collect();
        // `epoch-NNN-...` sorts by epoch.
        kept.sort();
        Ok(Self {
            dir: dir.to_owned(),
            keep_last,
            best: Some(best),
            recent: kept.into(),
        })
    }

    /// The best checkpoint so far.
    pub fn best(&self) -> Option<&BestCheckpoint> {
        self.best.as_ref()
    }

    /// Records an epoch: `save` writes its weights to the path given, in the format given;
    /// the `.mpk` is the epoch's checkpoint. When its validation loss is the lowest so far it
    /// becomes `best.mpk`, and is written as Burnpack to `best.bpk`. Files are replaced
    /// atomically, so an interrupted run never leaves a broken best model. Returns whether it
    /// is the new best.
    pub fn on_epoch(
        &mut self,
        record: &mut EpochRecord,
        save: impl Fn(&Path, RecordFormat) -> Result<(), String>,
    ) -> Result<bool, TrainError> {
        let name = format!(
            "epoch-{:03}-valid-{:.4}.mpk",
            record.epoch, record.valid_loss
        );
        let relative = Path::new(CHECKPOINT_DIR).join(&name);
        let path = self.dir.join(&relative);
        std::fs::create_dir_all(self.dir.join(CHECKPOINT_DIR))
            .map_err(TrainError::io(self.dir.join(CHECKPOINT_DIR)))?;
        save(&path, RecordFormat::Mpk).map_err(|reason| TrainError::BadCheckpoint {
            path: path.clone(),
            reason,
        })?;
        let is_best = self
            .best
            .as_ref()
            .is_none_or(|b| record.valid_loss < b.valid_loss);
        record.best = is_best;
        if is_best {
            let best = BestCheckpoint {
                epoch: record.epoch,
                valid_loss: record.valid_loss,
                checkpoint: relative.to_string_lossy().into_owned(),
            };
            replace_atomically(&self.dir.join(BEST_CHECKPOINT), |tmp| {
                std::fs::copy(&path, tmp).map(|_| ())
            })?;
            replace_atomically(&self.dir.join(BEST_BURNPACK), |tmp| {
                save(tmp, RecordFormat::Burnpack).map_err(std::io::Error::other)
            })?;
            let json = serde_json::to_string_pretty(&best).expect("serialisable");
            replace_atomically(&self.dir.join(BEST_JSON), |tmp| std::fs::write(tmp, json))?;
            self.best = Some(best);
        }
        self.append_metrics(record)?;
        // A plot that cannot be drawn costs only the plot, never the run.
        let plotted = read_metrics(&self.dir)
            .map_err(|e| e.to_string())
            .and_then(|rows| {
                crate::plot::write_loss_curves(&self.dir.join(crate::plot::LOSS_SVG), &rows)
            });
        if let Err(e) = plotted {
            tracing::warn!("{e}");
        }
        self.recent.push_back(path);
        self.prune();
        Ok(is_best)
    }

    /// Removes epoch checkpoints beyond the last `keep_last`, except the best one's.
    fn prune(&mut self) {
        while self.recent.len() > self.keep_last {
            let Some(old) = self.recent.pop_front() else {
                break;
            };
            let is_best = self
                .best
                .as_ref()
                .is_some_and(|b| self.dir.join(&b.checkpoint) == old);
            if !is_best {
                // A checkpoint that cannot be removed only costs disk space.
                if let Err(e) = std::fs::remove_file(&old) {
                    tracing::warn!("could not remove old checkpoint {}: {e}", old.display());
                }
            }
        }
    }

    fn append_metrics(&self, record: &EpochRecord) -> Result<(), TrainError> {
        let path = self.dir.join(METRICS_CSV);
        let exists = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(TrainError::io(&path))?;
        let mut writer = csv::WriterBuilder::new()
            .has_headers(!exists)
            .from_writer(file);
        writer
            .serialize(record)
            .and_then(|_| writer.flush().map_err(csv::Error::from))
            .map_err(|e| TrainError::Io {
                path,
                source: std::io::Error::other(e),
            })
    }
}

/// Writes `target` through a temporary file and a rename, so it is never half-written.
fn replace_atomically(
    target: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), TrainError> {
    let tmp = target.with_extension("tmp");
    write(&tmp)
        .and_then(|_| std::fs::rename(&tmp, target))
        .map_err(TrainError::io(target))
}

/// Reads `metrics.csv` of a run.
pub fn read_metrics(dir: &Path) -> Result<Vec<EpochRecord>, TrainError> {
    let path = dir.join(METRICS_CSV);
    let mut reader = csv::Reader::from_path(&path).map_err(|e| TrainError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    reader
        .deserialize()
        .collect::<Result<Vec<EpochRecord>, _>>()
        .map_err(|e| TrainError::Io {
            path,
            source: std::io::Error::other(e),
        })
}

/// Reads `best.json` of a run.
pub fn read_best(dir: &Path) -> Result<BestCheckpoint, TrainError> {
    let path = dir.join(BEST_JSON);
    let text = std::fs::read_to_string(&path).map_err(|_| TrainError::NoCheckpoint(dir.into()))?;
    serde_json::from_str(&text).map_err(|e| TrainError::BadCheckpoint {
        path,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_is_never_replaced_by_a_worse_epoch_and_old_files_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut keeper = CheckpointKeeper::new(dir.path(), 1);
        let losses = [2.0, 1.5, 1.7, 1.6];
        for (i, loss) in losses.iter().enumerate() {
            let mut rec = EpochRecord::new(i + 1, 2.5, *loss, 0.1);
            let content = format!("epoch {}", i + 1);
            keeper
                .on_epoch(&mut rec, |p, format| {
                    std::fs::write(p, format!("{content} {format:?}")).map_err(|e| e.to_string())
                })
                .unwrap();
            assert_eq!(rec.best, i <= 1);
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join(BEST_CHECKPOINT)).unwrap(),
            "epoch 2 Mpk"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(BEST_BURNPACK)).unwrap(),
            "epoch 2 Burnpack"
        );
        let best = read_best(dir.path()).unwrap();
        assert_eq!((best.epoch, best.valid_loss), (2, 1.5));
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join(CHECKPOINT_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["epoch-002-valid-1.5000.mpk", "epoch-004-valid-1.6000.mpk"]
        );
        let rows = read_metrics(dir.path()).unwrap();
        assert_eq!(rows.len(), 4);
        assert!(rows[1].best && !rows[2].best);
    }
}
