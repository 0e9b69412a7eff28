//! Loading a trained run and generating text from it.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::record::Recorder;
use ember_data::Vocab;
use ember_nn::char_lm::CharLmRecord;
use ember_nn::CharLm;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::checkpoint::BEST_CHECKPOINT;
use crate::config::ExperimentConfig;
use crate::model::{char_lm_config, recorder};
use crate::run::{CONFIG_FILE, VOCAB_FILE};
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

/// Shapes of every float parameter, in visiting order.
struct Shapes(Vec<Vec<usize>>);

impl<B: Backend> ModuleVisitor<B> for Shapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().dims().to_vec());
    }
}

fn shapes<B: Backend>(model: &CharLm<B>) -> Vec<Vec<usize>> {
    let mut s = Shapes(Vec::new());
    model.visit(&mut s);
    s.0
}

/// Loads `config.toml`, `vocab.json` and `best.mpk` of the run in `dir`, checking that the
/// checkpoint's tensors have the shapes the config describes.
pub fn load_run<B: Backend>(dir: &Path, device: &B::Device) -> Result<LoadedRun<B>, TrainError> {
    let best = dir.join(BEST_CHECKPOINT);
    if !best.is_file() {
        return Err(TrainError::NoCheckpoint(dir.to_owned()));
    }
    let config = ExperimentConfig::load(&dir.join(CONFIG_FILE))?;
    if config.task() != crate::config::Task::Language {
        return Err(TrainError::NotALanguageModel {
            dir: dir.to_owned(),
            task: config.task().name(),
        });
    }
    let vocab = Vocab::load(&dir.join(VOCAB_FILE))?;
    let fresh = char_lm_config(&config.model, vocab.len()).init::<B>(device)?;
    let expected = shapes(&fresh);
    let bad = |reason: String| TrainError::BadCheckpoint {
        path: best.clone(),
        reason,
    };
    let record: CharLmRecord<B> = recorder().load(best.clone(), device).map_err(|e| {
        bad(format!(
            "{e} (the file is damaged or not a Burn .mpk record)"
        ))
    })?;
    if ember_nn::BodyKind::from(record.body.kind()) != config.model.kind {
        return Err(bad(format!(
            "it holds a {} model, but the run's config.toml says model.kind = \"{}\"",
            record.body.kind(),
            config.model.kind
        )));
    }
    let model = fresh.load_record(record);
    let found = shapes(&model);
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
                draw(
                    row,
                    options.temperature,
                    vocab,
                    options.continuous,
                    &mut rng,
                )
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

/// Draws a token from `softmax(logits / temperature)`, never `<pad>` or `<s>` (nor `</s>` for
/// continuous text).
fn draw(
    logits: &[f32],
    temperature: f64,
    vocab: &Vocab,
    continuous: bool,
    rng: &mut StdRng,
) -> usize {
    let allowed = |id: usize| {
        id != vocab.pad_id() && id != vocab.bos_id() && !(continuous && id == vocab.eos_id())
    };
    let max = logits
        .iter()
        .enumerate()
        .filter(|&(id, _)| allowed(id))
        .map(|(_, &l)| l as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = logits
        .iter()
        .enumerate()
        .map(|(id, &l)| {
            if allowed(id) {
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
