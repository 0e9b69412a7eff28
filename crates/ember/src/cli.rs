//! Command-line arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::backend::BackendKind;

/// Train recurrent sequence models (RNN, LSTM, GRU) on Burn and use them.
#[derive(Debug, Parser)]
#[command(name = "ember", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train the experiment of a config file into a run directory.
    Train(TrainArgs),
    /// Generate text from a trained run's best checkpoint.
    Sample(SampleArgs),
    /// A trained run's figures on a file or its validation split: loss, perplexity and
    /// bits/char; MSE and MAE for series; loss, accuracy and recall for classifiers.
    Eval(EvalArgs),
    /// Forecast a series run's values autoregressively; writes a CSV and a plot.
    Predict(PredictArgs),
    /// Model summary, parameters per layer, data size and sizing advice of a run.
    Inspect(InspectArgs),
    /// Turn a PyTorch character model's state_dict into a run directory.
    Import(ImportArgs),
    /// Write a run's character model as a PyTorch state_dict (safetensors).
    Export(ExportArgs),
    /// Learning-rate range test: sweep the rate over training batches, plot the loss and
    /// suggest a rate.
    LrFind(LrFindArgs),
}

/// `ember train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The experiment config (TOML).
    #[arg(long, default_value = "configs/names-lstm.toml")]
    pub config: PathBuf,
    /// Continue the run in this directory from its last finished epoch, with its config,
    /// optimiser and learning-rate schedule state and the same data order (`--epochs` may
    /// raise the total).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "artifacts", "overwrite", "set"])]
    pub resume: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
    /// Override train.epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override any config key for this run, e.g. `--set model.hidden_size=256
    /// --set data.path=my.txt` (repeatable; the run directory saves the merged config).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run directory [default: runs/<config name>, or runs/<name>-2, -3, ... if taken].
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
    /// Replace a run already in --artifacts.
    #[arg(long)]
    pub overwrite: bool,
    /// Print one line per epoch instead of the TUI dashboard (the default when stdout is
    /// not a terminal).
    #[arg(long)]
    pub no_tui: bool,
}

/// `ember sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// The run directory (holding best.mpk, config.toml, vocab.json).
    #[arg(long)]
    pub run: PathBuf,
    /// Number of samples.
    #[arg(long, default_value_t = 10)]
    pub n: usize,
    /// Softmax temperature: below 1 is safer, above 1 wilder.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Draw only among the K most likely characters [default: all].
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Text each sample starts with.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Sampler seed; the same seed gives the same samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Most characters generated per sample after the prefix.
    #[arg(long, default_value_t = 50)]
    pub max_len: usize,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
}

/// `ember eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The run directory (holding best.mpk, config.toml, vocab.json).
    #[arg(long)]
    pub run: PathBuf,
    /// What to evaluate [default: the run's validation split]: a text file (one sample per
    /// line) for language runs, a CSV with the run's column for series runs, a directory of
    /// `<class>.txt` files for classifiers.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Sequences per batch (for a stateful text model: parallel streams, state carried).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
}

/// `ember predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The series run directory (holding best.mpk, config.toml, series.json).
    #[arg(long)]
    pub run: PathBuf,
    /// CSV holding the series [default: the run's data file].
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The CSV column to read [default: the run's `data.column`].
    #[arg(long)]
    pub column: Option<String>,
    /// Number of values to forecast.
    #[arg(long)]
    pub steps: usize,
    /// Forecast past the end of the input; by default the last --steps values are held out
    /// and the forecast is scored against them.
    #[arg(long)]
    pub beyond: bool,
    /// Directory for forecast.csv and forecast.svg [default: the run directory].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
}

/// `ember inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The run directory.
    #[arg(long)]
    pub run: PathBuf,
}

/// `ember import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The PyTorch state_dict: `.pt`/`.pth` (torch.save) or `.safetensors`.
    #[arg(long)]
    pub from: PathBuf,
    /// The experiment config describing the same model (sizes, data for validation).
    #[arg(long)]
    pub config: PathBuf,
    /// The model's vocabulary as the PyTorch script keeps it: a JSON list of tokens in id order
    /// (`chars`/`itos`), a JSON object token → id (`stoi`), or ember's `vocab.json`
    /// [default: ember's, built from the config's data].
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// The character that starts every line of a line-per-sample model (makemore's `.`).
    #[arg(long)]
    pub bos: Option<char>,
    /// The character that ends every line (makemore's `.` again).
    #[arg(long)]
    pub eos: Option<char>,
    /// The run directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a run already in --out.
    #[arg(long)]
    pub overwrite: bool,
}

/// `ember export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run directory (holding best.mpk, config.toml, vocab.json).
    #[arg(long)]
    pub run: PathBuf,
    /// The file to write: `*.onnx` for an ONNX graph (opset 14, ONNX's LSTM/GRU/RNN, state in
    /// and out), anything else for a safetensors state_dict (names `embed.*`, `rnn.*`,
    /// `head.*`, PyTorch layouts).
    #[arg(long)]
    pub to: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub overwrite: bool,
}

/// `ember lr-find`.
#[derive(Debug, Args)]
pub struct LrFindArgs {
    /// The experiment config (TOML): its data, model and optimiser are probed.
    #[arg(long, default_value = "configs/names-lstm.toml")]
    pub config: PathBuf,
    /// Override any config key, as for `ember train` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// First learning rate of the sweep.
    #[arg(long, default_value_t = 1e-6)]
    pub min_lr: f64,
    /// Last learning rate of the sweep.
    #[arg(long, default_value_t = 1.0)]
    pub max_lr: f64,
    /// Optimiser steps (batches) in the sweep; it stops early once the loss diverges.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Directory for lr_find.csv and lr_find.svg [default: runs/<config name>-lr-find].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Flex)]
    pub backend: BackendKind,
}

/// Prints a usage error as one line (help and version print as usual).
pub fn report_usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = e.render().to_string();
    let line = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("{line} (see ember --help)");
    ExitCode::from(2)
}
