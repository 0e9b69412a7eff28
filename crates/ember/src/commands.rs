//! What each subcommand does, on the backend chosen at run time.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use burn::backend::ndarray::NdArrayDevice;
use burn::backend::{Autodiff, NdArray};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use ember_train::checkpoint::BEST_CHECKPOINT;
use ember_train::config::Task;
use ember_train::lr_find::{RangeSpec, LR_FIND_CSV, LR_FIND_SVG};
use ember_train::{
    EvalData, ExperimentConfig, SampleOptions, TaskData, TrainOptions, TrainSummary,
};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::backend::{ensure_wgpu, with_backend, BackendKind};
use crate::cli::{
    Cli, Command, EvalArgs, ExportArgs, ImportArgs, InspectArgs, LrFindArgs, PredictArgs,
    SampleArgs, TrainArgs,
};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => train(args),
        Command::Sample(args) => sample(args),
        Command::Eval(args) => eval(args),
        Command::Predict(args) => predict(args),
        Command::Inspect(args) => inspect(args),
        Command::Import(args) => import(args),
        Command::LrFind(args) => lr_find(args),
        Command::Export(args) => export(args),
    }
}

/// Log filter: `RUST_LOG` if set, else ember at info and the GPU stack only on warnings.
fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,wgpu=warn,wgpu_core=warn,wgpu_hal=warn,naga=warn,cubecl=warn")
    })
}

/// Whether log lines on stderr get colour: only on a terminal (a pipe or a CI log gets plain
/// text), and never when `NO_COLOR` is set to anything but the empty string (no-color.org).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Logs to `train.log` in the run directory (appending when `append`), and to stderr unless
/// the TUI owns the terminal.
fn init_logging(log_file: &Path, tui: bool, append: bool) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log_file)
        .with_context(|| format!("cannot create {}", log_file.display()))?;
    let to_file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .with_filter(filter());
    let to_stderr = (!tui).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .with_target(false)
            .without_time()
            .with_filter(filter())
    });
    tracing_subscriber::registry()
        .with(to_file)
        .with(to_stderr)
        .try_init()
        .context("cannot set up logging")
}

/// `runs/<name>`, or the first free `runs/<name>-N` when that already holds a run.
fn default_run_dir(name: &str) -> PathBuf {
    let base = Path::new("runs");
    (1..)
        .map(|i| match i {
            1 => base.join(name),
            _ => base.join(format!("{name}-{i}")),
        })
        .find(|d| !d.join(BEST_CHECKPOINT).exists())
        .expect("an unbounded range has a free name")
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let config_path = match &args.resume {
        Some(dir) => dir.join(ember_train::run::CONFIG_FILE),
        None => args.config.clone(),
    };
    let mut config = ExperimentConfig::load(&config_path)?
        .with_overrides(&args.set)
        .map_err(|reason| ember_train::TrainError::Config {
            path: config_path.clone(),
            reason,
        })?;
    if let Some(epochs) = args.epochs {
        anyhow::ensure!(epochs > 0, "--epochs must be at least 1");
        config.train.epochs = epochs;
    }
    if args.backend == BackendKind::Wgpu {
        ensure_wgpu()?;
    }
    let artifacts = match (&args.resume, args.artifacts) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => dir,
        (None, None) => default_run_dir(&config.name),
    };
    if args.resume.is_some() {
        let done = ember_train::run::resume_point(&artifacts)?;
        anyhow::ensure!(
            done < config.train.epochs,
            "{} already finished all {} epochs: pass --epochs N with N > {done} to train further",
            artifacts.display(),
            config.train.epochs
        );
    } else {
        ember_train::run::ensure_free(&artifacts, args.overwrite)?;
    }
    // Bad data fails here, before a run directory is touched.
    let data = ember_train::prepare(&config)?;
    let tui = !args.no_tui && std::io::stdout().is_terminal();
    let options = TrainOptions {
        artifacts: artifacts.clone(),
        tui,
        overwrite: args.overwrite,
        resume: args.resume.is_some(),
    };
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("cannot create run directory {}", artifacts.display()))?;
    init_logging(&artifacts.join("train.log"), tui, options.resume)?;
    tracing::info!(
        "{} {} ({}) on {:?} into {}",
        if options.resume {
            "resuming"
        } else {
            "training"
        },
        config.name,
        config_path.display(),
        args.backend,
        artifacts.display()
    );
    let summary = with_backend!(args.backend, |B, device| {
        train_on::<Autodiff<B>>(&config, data, &options, device)?
    });
    report(&summary, config.task());
    Ok(())
}

fn train_on<B: AutodiffBackend>(
    config: &ExperimentConfig,
    data: TaskData,
    options: &TrainOptions,
    device: B::Device,
) -> anyhow::Result<TrainSummary> {
    Ok(ember_train::train::<B>(config, data, options, device)?)
}

/// ", bigram 2.4531" for a baseline with a stronger one beside it.
fn stronger(base: &ember_train::Baseline) -> String {
    base.stronger.as_ref().map_or(String::new(), |s| {
        format!(", {} {:.4}", s.name, s.valid_loss)
    })
}

fn report(summary: &TrainSummary, task: Task) {
    let best = &summary.best;
    let base = &summary.baseline;
    let record = summary.epochs.iter().find(|r| r.epoch == best.epoch);
    let figures = match task {
        Task::Language => format!(
            "valid loss {:.4}, perplexity {:.2}; unigram baseline {:.4}{}",
            best.valid_loss,
            best.valid_loss.exp(),
            base.valid_loss,
            stronger(base)
        ),
        Task::Regression => format!(
            "valid MSE {:.4}, MAE {:.4} (standardised units); {} MSE {:.4}{}",
            best.valid_loss,
            record.and_then(|r| r.valid_mae).unwrap_or(f64::NAN),
            base.name,
            base.valid_loss,
            stronger(base)
        ),
        Task::Classification => format!(
            "valid loss {:.4}, accuracy {:.1}%; majority class {:.1}%, {} loss {:.4}",
            best.valid_loss,
            100.0 * record.and_then(|r| r.valid_accuracy).unwrap_or(f64::NAN),
            100.0 * base.valid_accuracy.unwrap_or(f64::NAN),
            base.name,
            base.valid_loss
        ),
    };
    println!(
        "best checkpoint: {} (epoch {}, {figures}{})",
        summary.dir.join(BEST_CHECKPOINT).display(),
        best.epoch,
        if summary.stopped_early {
            "; stopped early"
        } else {
            ""
        }
    );
    match task {
        Task::Language => println!(
            "sample from it: cargo xtask sample --run {} --n 20",
            summary.dir.display()
        ),
        Task::Classification => println!(
            "validation confusion matrix: {}",
            summary
                .dir
                .join(ember_train::classification::CONFUSION_FILE)
                .display()
        ),
        Task::Regression => {}
    }
}

fn sample(args: SampleArgs) -> anyhow::Result<()> {
    let options = SampleOptions {
        n: args.n,
        temperature: args.temperature,
        top_k: args.top_k,
        prefix: args.prefix.clone(),
        seed: args.seed,
        max_len: args.max_len,
        continuous: false,
    };
    if args.backend == BackendKind::Wgpu {
        ensure_wgpu()?;
    }
    let (lines, novelty) = with_backend!(args.backend, |B, device| {
        sample_on::<B>(&args.run, &options, device)?
    });
    // Samples of a text model span lines: set them apart.
    let separator = if lines.iter().any(|l| l.contains('\n')) {
        "\n----\n"
    } else {
        "\n"
    };
    println!("{}", lines.join(separator));
    // On stderr, so that stdout holds only the samples.
    match novelty {
        Ok(Some(n)) => eprintln!(
            "novelty: {}/{} samples ({:.0}%) are not in the training split ({} distinct lines)",
            n.novel,
            n.total,
            100.0 * n.share(),
            n.training_lines
        ),
        Ok(None) => {}
        Err(e) => eprintln!("novelty not measured: {e}"),
    }
    Ok(())
}

/// The samples, and their novelty against the training data (which may be unreadable).
type Samples = (
    Vec<String>,
    Result<Option<ember_train::Novelty>, ember_train::TrainError>,
);

fn sample_on<B: Backend>(
    run: &Path,
    options: &SampleOptions,
    device: B::Device,
) -> anyhow::Result<Samples> {
    let loaded = ember_train::load_run::<B>(run, &device)?;
    let lines = ember_train::sample_run(&loaded, options, &device)?;
    let novelty = ember_train::novelty(&loaded, &lines);
    Ok((lines, novelty))
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let data = match args.data {
        Some(path) => EvalData::File(path),
        None => EvalData::RunValidation,
    };
    if args.backend == BackendKind::Wgpu {
        ensure_wgpu()?;
    }
    let report = with_backend!(args.backend, |B, device| {
        eval_on::<B>(&args.run, &data, args.batch_size, device)?
    });
    println!("{report}");
    Ok(())
}

/// Evaluates the run by its task; returns the report's text.
fn eval_on<B: Backend>(
    run: &Path,
    data: &EvalData,
    batch_size: usize,
    device: B::Device,
) -> anyhow::Result<String> {
    use ember_train::task_eval::{eval_classes, eval_series, load_class_run, load_series_run};
    let config = ember_train::ExperimentConfig::load(&run.join(ember_train::run::CONFIG_FILE))?;
    Ok(match config.task() {
        Task::Language => {
            let loaded = ember_train::load_run::<B>(run, &device)?;
            ember_train::eval_run(&loaded, data, batch_size, &device)?.to_string()
        }
        Task::Regression => {
            let loaded = load_series_run::<B>(run, "eval", &device)?;
            eval_series(&loaded, data, batch_size, &device)?.to_string()
        }
        Task::Classification => {
            let loaded = load_class_run::<B>(run, "eval", &device)?;
            eval_classes(&loaded, data, batch_size, &device)?.to_string()
        }
    })
}

fn predict(args: PredictArgs) -> anyhow::Result<()> {
    if args.backend == BackendKind::Wgpu {
        ensure_wgpu()?;
    }
    with_backend!(args.backend, |B, device| predict_on::<B>(&args, device))
}

fn predict_on<B: Backend>(args: &PredictArgs, device: B::Device) -> anyhow::Result<()> {
    use ember_train::predict::{forecast, FORECAST_CSV, FORECAST_SVG};
    let run = ember_train::task_eval::load_series_run::<B>(&args.run, "predict", &device)?;
    let data = &run.config.data;
    let input = match &args.input {
        Some(path) => path.clone(),
        None if data.is_generated() => anyhow::bail!(
            "{} was trained on generated waves: pass --input CSV --column NAME",
            args.run.display()
        ),
        None => data.path.clone(),
    };
    let column = args.column.as_deref().unwrap_or(&data.column);
    anyhow::ensure!(
        !column.is_empty(),
        "the run names no CSV column: pass --column NAME"
    );
    let values = ember_data::series::read_csv_column(&input, column, data.missing)?;
    let result = forecast(&run, &values, args.steps, !args.beyond, &device)?;
    let out = args.out.clone().unwrap_or_else(|| args.run.clone());
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    result.write_csv(&out.join(FORECAST_CSV))?;
    if let Err(e) = result.write_svg(&out.join(FORECAST_SVG)) {
        eprintln!("no plot: {e}");
    }
    match (result.errors(), result.persistence_errors()) {
        (Some((mse, mae)), Some((p_mse, p_mae))) => println!(
            "{}-step forecast after {} values of {}: RMSE {:.4}, MAE {:.4} against the held-out truth; \
             repeating the last value: RMSE {:.4}, MAE {:.4} (data units)",
            args.steps,
            result.context.len(),
            input.display(),
            mse.sqrt(),
            mae,
            p_mse.sqrt(),
            p_mae
        ),
        _ => println!(
            "{}-step forecast past the end of {} ({} values)",
            args.steps,
            input.display(),
            result.context.len()
        ),
    }
    println!(
        "table: {}, plot: {}",
        out.join(FORECAST_CSV).display(),
        out.join(FORECAST_SVG).display()
    );
    Ok(())
}

fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let report = ember_train::inspect::inspect::<NdArray>(&args.run, &NdArrayDevice::Cpu)?;
    println!("{report}");
    Ok(())
}

fn lr_find(args: LrFindArgs) -> anyhow::Result<()> {
    let config = ExperimentConfig::load(&args.config)?
        .with_overrides(&args.set)
        .map_err(|reason| ember_train::TrainError::Config {
            path: args.config.clone(),
            reason,
        })?;
    let spec = RangeSpec {
        min_lr: args.min_lr,
        max_lr: args.max_lr,
        steps: args.steps,
    };
    spec.validate()
        .map_err(ember_train::TrainError::RangeTest)?;
    if args.backend == BackendKind::Wgpu {
        ensure_wgpu()?;
    }
    let data = ember_train::prepare(&config)?;
    let out = args
        .out
        .unwrap_or_else(|| Path::new("runs").join(format!("{}-lr-find", config.name)));
    let options = TrainOptions {
        artifacts: out.clone(),
        tui: false,
        overwrite: true,
        resume: false,
    };
    let report = with_backend!(args.backend, |B, device| {
        ember_train::run::lr_find::<Autodiff<B>>(&config, data, &options, device, spec)?
    });
    println!(
        "suggested learning rate: {:.2e} (steepest fall of the smoothed loss); lowest loss at {:.2e}, \
         so {:.2e} is the other common pick",
        report.steepest,
        report.lowest,
        report.lowest / 10.0
    );
    println!(
        "{} steps{}; plot: {}, table: {}",
        report.points.len(),
        if report.diverged {
            ", stopped when the loss diverged"
        } else {
            ""
        },
        out.join(LR_FIND_SVG).display(),
        out.join(LR_FIND_CSV).display()
    );
    println!(
        "train with it: cargo xtask train --config {} --set train.learning_rate={:.2e}",
        args.config.display(),
        report.steepest
    );
    Ok(())
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.overwrite || !args.to.exists(),
        "{} exists: pass --overwrite to replace it",
        args.to.display()
    );
    let loaded = ember_train::load_run::<NdArray>(&args.run, &NdArrayDevice::Cpu)?;
    if args.to.extension().is_some_and(|e| e == "onnx") {
        let nonlinearity = loaded.config.model.nonlinearity;
        let shape = ember_train::onnx::export_onnx(&loaded.model, nonlinearity, &args.to)?;
        println!(
            "wrote {} as an ONNX graph (opset {}, {} layers of {} × {}) to {}: inputs tokens \
             [batch, seq] int64, h0{} [{}, batch, {}]; outputs logits [batch, seq, {}], h_n{}",
            args.run.join(BEST_CHECKPOINT).display(),
            ember_train::onnx::OPSET,
            shape.layers,
            shape.cell,
            shape.hidden,
            args.to.display(),
            if shape.cell == ember_nn::CellKind::Lstm {
                ", c0"
            } else {
                ""
            },
            shape.layers,
            shape.hidden,
            shape.vocab,
            if shape.cell == ember_nn::CellKind::Lstm {
                ", c_n"
            } else {
                ""
            },
        );
        return Ok(());
    }
    let names = ember_train::export::TorchNames::of_run(&args.run)?;
    let count = ember_train::export::export_safetensors(&loaded.model, &names, &args.to)?;
    println!(
        "wrote {count} tensors of {} to {} (PyTorch names: {}, {}*, {}*)",
        args.run.join(BEST_CHECKPOINT).display(),
        args.to.display(),
        names.embedding,
        names.recurrent,
        names.head
    );
    let [h, c] = loaded.model.body.zoneout();
    if h > 0.0 || c > 0.0 {
        println!(
            "note: this model was trained with zoneout (model.zoneout = {h}, model.zoneout_cell = \
             {c}); ember evaluates it with each step's state mixed with the previous one, \
             h = {h}·h_prev + (1 − {h})·h_new (c likewise), which a plain nn.LSTM does not do"
        );
    }
    if loaded.model.body.layer_norm() {
        println!(
            "note: this model has LayerNorm cells (model.layer_norm): the file holds their gains \
             as {}ln_ih_weight_l*, ln_hh_weight_l* (and an LSTM's ln_c_weight_l*, ln_c_bias_l*), \
             which a plain nn.LSTM or nn.GRU does not have (equations: docs/regularisers.md)",
            names.recurrent
        );
    }
    Ok(())
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    let config = ExperimentConfig::load(&args.config)?;
    let vocab = match &args.vocab {
        Some(path) => Some(ember_data::Vocab::from_user_file(path, args.bos, args.eos)?),
        None if args.bos.is_some() || args.eos.is_some() => {
            anyhow::bail!(
                "--bos and --eos name characters of --vocab FILE: pass the vocabulary too"
            )
        }
        None => None,
    };
    let summary = ember_train::import::import::<NdArray>(
        &args.from,
        &config,
        vocab.as_ref(),
        &args.out,
        args.overwrite,
        &NdArrayDevice::Cpu,
    )?;
    println!(
        "imported {} into {} (valid loss {:.4} on {})",
        args.from.display(),
        summary.dir.join(BEST_CHECKPOINT).display(),
        summary.valid_loss,
        config.data.path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None));
    }
}
