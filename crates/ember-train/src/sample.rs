//! Loading a trained run and generating text from it.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;
use burn::record::Recorder;
use ember_data::Vocab;
use ember_nn::char_lm::CharLmRecord;
use ember_nn::CharLm;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::checkpoint::BEST_CHECKPOINT;
use crate::config::{ExperimentConfig, Task};
use crate::model::{char_lm_config, recorder};
use crate::run::VOCAB_FILE;
use crate::run_dir::{self, parameter_shapes};
use crate::task_eval::run_config;
use crate::TrainError;

/// A trained run read back from its directory.
#[derive(Debug)]
pub struct LoadedRun<B: Backend> {
    /// The run directory.
    pub dir: std::path::PathBuf,
    /// The config it was trained with.
    pub config: ExperimentConfig,
    /// Its vocabulary.
    pub vocab: Vocab,
    /// The model of `best.mpk`.
    pub model: CharLm<B>,
}

/// Loads `config.toml`, `vocab.json` and `best.mpk` of the run in `dir`, checking that the
/// checkpoint's tensors have the shapes the config describes.
pub fn load_run<B: Backend>(dir: &Path, device: &B::Device) -> Result<LoadedRun<B>, TrainError> {
    let config = run_config(dir, Task::Language, "sample").map_err(|e| match e {
        TrainError::WrongTask { dir, task, .. } => TrainError::NotALanguageModel { dir, task },
        other => other,
    })?;
    let best = dir.join(BEST_CHECKPOINT);
    let vocab = Vocab::load(&dir.join(VOCAB_FILE))?;
    let model_config = run_dir::model_config(dir, || char_lm_config(&config.model, vocab.len()))?;
    let fresh = model_config.init::<B>(device)?;
    let expected = parameter_shapes(&fresh);
    let bad = |reason: String| TrainError::BadCheckpoint {
        path: best.clone(),
        reason,
    };
    let record: CharLmRecord<B> = recorder().load(best.clone(), device).map_err(|e| {
        bad(format!(
            "{e} (the file is damaged or not a Burn .mpk record)"
        ))
    })?;
    if record.body.kind() != model_config.kind {
        return Err(bad(format!(
            "it holds a {} model, but the run's model.json says {}",
            record.body.kind(),
            model_config.kind
        )));
    }
    let model = fresh.load_record(record);
    let found = parameter_shapes(&model);
    if found != expected {
        return Err(bad(format!(
            "tensor shapes {found:?} do not match the run's config.toml and vocab.json ({expected:?})"
        )));
    }
    Ok(LoadedRun {
        dir: dir.to_owned(),
        config,
        vocab,
        model,
    })
}

/// How to sample.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// Number of samples.
    pub n: usize,
    /// Softmax temperature (> 0): below 1 is more conservative, above 1 more adventurous.
    pub temperature: f64,
    /// Draw only among the `top_k` most likely tokens (`None`: all of them).
    pub top_k: Option<usize>,
    /// Text every sample starts with.
    pub prefix: String,
    /// Seed of the sampler: the same seed gives the same samples.
    pub seed: u64,
    /// Maximum characters generated after the prefix.
    pub max_len: usize,
    /// The model was trained on continuous text (no `<s>`/`</s>`): start from the prefix (a
    /// newline when it is empty) and generate exactly `max_len` characters.
    pub continuous: bool,
}

/// How many samples are new: not a line of the run's training split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Novelty {
    /// Samples not in the training split.
    pub novel: usize,
    /// Samples checked.
    pub total: usize,
    /// Distinct lines in the training split.
    pub training_lines: usize,
}

impl Novelty {
    /// The share of new samples, in `[0, 1]`.
    pub fn share(&self) -> f64 {
        self.novel as f64 / self.total.max(1) as f64
    }
}

/// The novelty of `samples` against the training split of a line-data run (names): `None`
/// for a text model, whose samples are not whole lines. Needs the run's data file.
pub fn novelty<B: Backend>(
    run: &LoadedRun<B>,
    samples: &[String],
) -> Result<Option<Novelty>, TrainError> {
    if run.config.data.kind != crate::config::DataKind::Lines {
        return Ok(None);
    }
    let data = crate::run::prepare_data(&run.config)?;
    let training: std::collections::HashSet<String> = data
        .train
        .iter()
        .map(|s| {
            let inner = &s.tokens[1..s.tokens.len().saturating_sub(1).max(1)];
            data.vocab.decode(inner)
        })
        .collect();
    Ok(Some(Novelty {
        novel: samples.iter().filter(|s| !training.contains(*s)).count(),
        total: samples.len(),
        training_lines: training.len(),
    }))
}

/// [`sample`] from a loaded run, in the mode its data implies (lines or continuous text).
pub fn sample_run<B: Backend>(
    run: &LoadedRun<B>,
    options: &SampleOptions,
    device: &B::Device,
) -> Result<Vec<String>, TrainError> {
    let options = SampleOptions {
        continuous: run.config.data.kind == crate::config::DataKind::Text,
        ..options.clone()
    };
    sample(&run.model, &run.vocab, &options, device)
}

/// Generates `options.n` sequences from `<s>` + the prefix until `</s>` (or `max_len`).
pub fn sample<B: Backend>(
    model: &CharLm<B>,
    vocab: &Vocab,
    options: &SampleOptions,
    device: &B::Device,
) -> Result<Vec<String>, TrainError> {
    if !(options.temperature > 0.0 && options.temperature.is_finite()) {
        return Err(TrainError::BadOption(format!(
            "--temperature must be a positive number, got {}",
            options.temperature
        )));
    }
    if options.top_k == Some(0) {
        return Err(TrainError::BadOption(
            "--top-k must be at least 1 (leave it out to draw from every character)".into(),
        ));
    }
    if options.n == 0 {
        return Ok(Vec::new());
    }
    let n = options.n;
    let prefix = vocab.encode(&options.prefix)?;
    let start = if !options.continuous {
        [vec![vocab.bos_id()], prefix.clone()].concat()
    } else if !prefix.is_empty() {
        prefix.clone()
    } else {
        vec![
            vocab.encode("\n").map_err(|_| {
                TrainError::BadOption(
                    "this text model needs --prefix: its text has no newline to start from".into(),
                )
            })?[0],
        ]
    };
    let tokens: Vec<i64> = (0..n)
        .flat_map(|_| start.iter().map(|&t| t as i64))
        .collect();
    let input = Tensor::<B, 2, Int>::from_data(TensorData::new(tokens, [n, start.len()]), device);
    let (mut logits, mut state) = model.forward(input, None);
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut generated: Vec<Vec<usize>> = vec![prefix; n];
    let mut done = vec![false; n];
    for _ in 0..options.max_len {
        let [_, steps, v] = logits.dims();
        let last: Vec<f32> = logits
            .slice(s![.., steps - 1..steps])
            .reshape([n, v])
            .into_data()
            .iter::<f32>()
            .collect();
        let mut next = Vec::with_capacity(n);
        for (i, row) in last.chunks(v).enumerate() {
            let id = if done[i] {
                vocab.eos_id()
            } else {
                draw(row, options, vocab, &mut rng)
            };
            if id == vocab.eos_id() {
                done[i] = true;
            } else {
                generated[i].push(id);
            }
            next.push(id as i64);
        }
        if done.iter().all(|&d| d) {
            break;
        }
        let input = Tensor::<B, 2, Int>::from_data(TensorData::new(next, [n, 1]), device);
        (logits, state) = model.forward(input, Some(state));
    }
    Ok(generated.iter().map(|ids| vocab.decode(ids)).collect())
}

/// Draws a token from `softmax(logits / temperature)` over the `top_k` most likely tokens
/// that [`Vocab::drawable`] allows (never `<pad>` or `<s>`, nor `</s>` for continuous text).
fn draw(logits: &[f32], options: &SampleOptions, vocab: &Vocab, rng: &mut StdRng) -> usize {
    let temperature = options.temperature;
    let mut ranked: Vec<usize> = (0..logits.len())
        .filter(|&id| vocab.drawable(id, options.continuous))
        .collect();
    ranked.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    ranked.truncate(options.top_k.unwrap_or(usize::MAX));
    let mut allowed = vec![false; logits.len()];
    for &id in &ranked {
        allowed[id] = true;
    }
    let max = ranked
        .first()
        .map_or(f64::NEG_INFINITY, |&id| logits[id] as f64);
    let weights: Vec<f64> = logits
        .iter()
        .enumerate()
        .map(|(id, &l)| {
            if allowed[id] {
                ((l as f64 - max) / temperature).exp()
            } else {
                0.0
            }
        })
        .collect();
    let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (id, w) in weights.iter().enumerate() {
        if *w > 0.0 && u < *w {
            return id;
        }
        u -= w;
    }
    vocab.eos_id()
}
