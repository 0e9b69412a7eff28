//! Evaluating a trained run on a file, or on its own validation split.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use ember_data::{read_lines, SplitIndices, TokenSequence};

use crate::run::{evaluate, prepare_data, SPLIT_FILE};
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

/// The figures of one evaluation. Every token after `<s>` counts, `</s>` included, as in
/// training.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// What was evaluated, for messages.
    pub source: String,
    /// Number of sequences.
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
    let (source, sequences) = match data {
        EvalData::File(path) => (path.display().to_string(), read_file(run, path)?),
        EvalData::RunValidation => {
            let prepared = prepare_data(&run.config)?;
            let saved = run.dir.join(SPLIT_FILE);
            if saved.is_file() && SplitIndices::load(&saved)? != prepared.split {
                return Err(TrainError::BadOption(format!(
                    "{} has changed since training (its split differs from {}): pass --data FILE",
                    run.config.data.path.display(),
                    saved.display()
                )));
            }
            if prepared.vocab != run.vocab {
                return Err(TrainError::BadOption(format!(
                    "{} no longer has the characters the run was trained on: pass --data FILE",
                    run.config.data.path.display()
                )));
            }
            let source = format!("validation split of {}", run.config.data.path.display());
            (source, prepared.valid)
        }
    };
    let tokens = sequences.iter().map(|s| s.tokens.len() - 1).sum();
    let loss = evaluate(
        &run.model,
        &sequences,
        run.vocab.pad_id(),
        batch_size,
        device,
    );
    Ok(EvalReport {
        source,
        sequences: sequences.len(),
        tokens,
        loss,
    })
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
