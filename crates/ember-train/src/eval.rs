//! Evaluating a trained run on a file, or on its own validation split.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use ember_data::{
    random_chunks, read_lines, read_utf8, stream_chunks, SplitIndices, TokenSequence,
};

use crate::config::DataKind;
use crate::run::{evaluate, evaluate_streams, prepare_data_in, stream_count, SPLIT_FILE};
use crate::sample::LoadedRun;
use crate::TrainError;

/// What was evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalData {
    /// A text file, one sample per line.
    File(PathBuf),
    /// The validation split of the run's own config (same file, fraction and seed).
    RunValidation,
}

/// The figures of one evaluation. For line data every token after `<s>` counts, `</s>`
/// included, as in training; a stateful text model reads the text as parallel streams with its
/// state carried, as in validation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// What was evaluated, for messages.
    pub source: String,
    /// Number of sequences (of parallel streams, for a stateful text model).
    pub sequences: usize,
    /// Number of predicted tokens.
    pub tokens: usize,
    /// Mean negative log-likelihood per token, in nats.
    pub loss: f64,
}

impl EvalReport {
    /// `exp(loss)`.
    pub fn perplexity(&self) -> f64 {
        self.loss.exp()
    }

    /// The loss in bits per character: `loss / ln 2`.
    pub fn bits_per_char(&self) -> f64 {
        self.loss / std::f64::consts::LN_2
    }
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} sequences, {} tokens: loss {:.4} nats/token, perplexity {:.3}, {:.4} bits/char",
            self.source,
            self.sequences,
            self.tokens,
            self.loss,
            self.perplexity(),
            self.bits_per_char()
        )
    }
}

/// Evaluates the run's best model on `data` with the run's vocabulary, in batches of
/// `batch_size`. A file with characters the vocabulary lacks is an error listing them, never
/// silently shortened.
pub fn eval_run<B: Backend>(
    run: &LoadedRun<B>,
    data: &EvalData,
    batch_size: usize,
    device: &B::Device,
) -> Result<EvalReport, TrainError> {
    if batch_size == 0 {
        return Err(TrainError::BadOption(
            "--batch-size must be at least 1".into(),
        ));
    }
    let config = &run.config;
    let text = config.data.kind == DataKind::Text;
    let (source, sequences, streams) = match data {
        EvalData::File(path) if text => {
            let ids = read_text(run, path)?;
            let what = path.display().to_string();
            let streams = if config.data.stateful {
                let count = stream_count(batch_size, ids.len());
                Some(stream_chunks(&ids, count, config.data.seq_len, &what)?)
            } else {
                None
            };
            (what, random_chunks(&ids, config.data.seq_len)?, streams)
        }
        EvalData::File(path) => (path.display().to_string(), read_file(run, path)?, None),
        EvalData::RunValidation => {
            let prepared = prepare_data_in(config, run.vocab.is_user().then_some(&run.vocab))?;
            let saved = run.dir.join(SPLIT_FILE);
            if let Some(split) = &prepared.split {
                if saved.is_file() && SplitIndices::load(&saved)? != *split {
                    return Err(TrainError::BadOption(format!(
                        "{} has changed since training (its split differs from {}): pass --data FILE",
                        config.data.path.display(),
                        saved.display()
                    )));
                }
            }
            if prepared.vocab != run.vocab {
                return Err(TrainError::BadOption(format!(
                    "{} no longer has the characters the run was trained on: pass --data FILE",
                    config.data.path.display()
                )));
            }
            let source = format!("validation split of {}", config.data.path.display());
            (source, prepared.valid, prepared.streams.map(|s| s.valid))
        }
    };
    let (loss, count, tokens) = match streams {
        Some(chunks) => (
            evaluate_streams(&run.model, &chunks, device),
            chunks.first().map_or(0, |c| c.streams),
            chunks.iter().map(|c| c.streams * c.steps).sum(),
        ),
        None => (
            evaluate(
                &run.model,
                &sequences,
                run.vocab.pad_id(),
                batch_size,
                device,
            ),
            sequences.len(),
            sequences.iter().map(|s| s.tokens.len() - 1).sum(),
        ),
    };
    Ok(EvalReport {
        source,
        sequences: count,
        tokens,
        loss,
    })
}

/// A text file encoded with the run's vocabulary; unknown characters are an error listing them.
fn read_text<B: Backend>(run: &LoadedRun<B>, path: &Path) -> Result<Vec<usize>, TrainError> {
    let text = read_utf8(path)?;
    match run.vocab.encode(&text) {
        Ok(ids) if ids.len() >= 2 => Ok(ids),
        Ok(_) => Err(ember_data::DataError::Empty {
            path: path.to_owned(),
        }
        .into()),
        Err(ember_data::DataError::UnknownChars { chars }) => {
            Err(ember_data::DataError::UnknownCharsInFile {
                path: path.to_owned(),
                chars,
                samples: 1,
                total: 1,
            }
            .into())
        }
        Err(other) => Err(other.into()),
    }
}

fn read_file<B: Backend>(
    run: &LoadedRun<B>,
    path: &Path,
) -> Result<Vec<TokenSequence>, TrainError> {
    let lines = read_lines(path)?;
    let encoded = run.vocab.encode_file_lines(&lines, path)?;
    Ok(encoded
        .into_iter()
        .map(|tokens| TokenSequence { tokens })
        .collect())
}
