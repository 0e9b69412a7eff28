//! `cargo xtask bench-e2e`: `ember train` as a user runs it against a PyTorch reference doing
//! the same loop on the same data, per shipped character-language-model config.
//!
//! For each config (default: every `configs/*.toml` whose `[data] kind` is `lines` or `text`):
//!
//! 1. `ember train --config configs/X.toml --no-tui --artifacts <out>/X --overwrite --epochs N`,
//!    with `RAYON_NUM_THREADS` = `--threads`: data loading, validation after every epoch,
//!    checkpoints and metrics, exactly as `cargo xtask train` runs it. Its wall time is the
//!    whole process; its tokens/s and validation loss come from the run's `metrics.csv`.
//! 2. `tools/bench/train_reference.py --run <out>/X --epochs N --threads T --json`, with
//!    `OMP_NUM_THREADS` = T: PyTorch on the CPU, reading the run's saved config, vocabulary and
//!    split, so both train on identical data (see the script's docstring for the loop and where
//!    it knowingly differs). Its wall time covers data preparation and every epoch, not
//!    Python's start-up and `import torch`.
//!
//! A second table compares the two at the same wall time: `W` is the earlier finisher's time
//! (the sum of its epochs' seconds, training and validation, as `metrics.csv` and the
//! reference's `epoch_seconds` give them; start-up and data preparation are left out on both
//! sides), and each side shows the validation loss of its last epoch that ended by `W`. With
//! `--full` every config trains for its own `train.epochs` (the shipped schedule), which makes
//! this the quality row: a faster implementation fits more epochs into `W`.
//!
//! Training tokens/s is, for both, valid target tokens over the seconds of the training passes
//! (batching, forward, backward, clipping, optimiser; validation excluded), over all epochs:
//! the harmonic mean of `metrics.csv`'s per-epoch `train_tokens_per_second`, since every epoch
//! has the same tokens. The validation loss is the last epoch's, in nats per character.
//!
//! Options: `--configs a,b` (names under `configs/`, or paths), `--epochs N` (default 2 for
//! lines configs, 1 for text), `--full` (each config's own epochs), `--threads N` (default:
//! all cores), `--no-torch`, `--ember PATH` (time this `ember` binary instead of building one),
//! `--out DIR` (the run directories, default `$TMPDIR/ember-bench-e2e`; they are kept for
//! inspection and replaced on the next run). The tables are printed, not recorded.
//!
//! Each run is watched for other processes' CPU time (`/proc/stat` against the run's own
//! ticks); above a tenth of the machine a warning names the run, since a busy core slows both
//! sides and PyTorch's OpenMP threads far more than ember's.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::bench::{json_string, machine, torch_python};
use crate::{cargo, json_line, json_number, json_value, root};

struct Options {
    configs: Vec<String>,
    epochs: Option<usize>,
    full: bool,
    threads: String,
    torch: bool,
    ember: Option<PathBuf>,
    out: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Options {
        configs: Vec::new(),
        epochs: None,
        full: false,
        threads: cores.to_string(),
        torch: true,
        ember: None,
        out: std::env::temp_dir().join("ember-bench-e2e"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} takes a value"));
        match a.as_str() {
            "--configs" => o.configs = comma_list(&value()?),
            "--epochs" => {
                let v = value()?;
                o.epochs = Some(
                    v.parse()
                        .ok()
                        .filter(|&n: &usize| n > 0)
                        .ok_or(format!("--epochs {v}: expected a number >= 1"))?,
                )
            }
            "--full" => o.full = true,
            "--threads" => o.threads = value()?,
            "--no-torch" => o.torch = false,
            "--ember" => o.ember = Some(PathBuf::from(value()?)),
            "--out" => o.out = PathBuf::from(value()?),
            other => {
                return Err(format!(
                    "unknown option {other} (--configs a,b, --epochs N, --full, --threads N, --no-torch, --ember PATH, --out DIR)"
                ))
            }
        }
    }
    if o.full && o.epochs.is_some() {
        return Err(
            "--full trains each config for its own epochs: give --full or --epochs N, not both"
                .into(),
        );
    }
    if o.configs.is_empty() {
        o.configs = language_configs()?;
    }
    Ok(o)
}

/// The `kind` of a config's `[data]` table (`lines` when absent), read without a TOML parser:
/// the shipped configs write it as `kind = "..."` on its own line.
fn data_kind(toml: &str) -> String {
    let mut in_data = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_data = line == "[data]";
        } else if in_data {
            if let Some(rest) = line.strip_prefix("kind") {
                if let Some(value) = rest.trim_start().strip_prefix('=') {
                    let value = value.split('#').next().unwrap_or("").trim();
                    return value.trim_matches('"').to_owned();
                }
            }
        }
    }
    "lines".into()
}

/// The configs under `configs/` that train a character language model (`lines` or `text`).
fn language_configs() -> Result<Vec<String>, String> {
    let dir = root().join("configs");
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| {
            std::fs::read_to_string(p)
                .is_ok_and(|t| matches!(data_kind(&t).as_str(), "lines" | "text"))
        })
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    Ok(names)
}

/// The config file of `name`: a path as given, else `configs/<name>.toml`.
pub(crate) fn config_path(name: &str) -> PathBuf {
    let given = root().join(name);
    if name.ends_with(".toml") && given.is_file() {
        given
    } else {
        root().join("configs").join(format!("{name}.toml"))
    }
}

/// The names in a comma-separated option value (`--configs a,b`), empty ones dropped.
pub(crate) fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The run directory of `config` (named `name` on the command line) under `out`, `out/<stem>`,
/// cleared of an earlier run; and the stem.
pub(crate) fn fresh_run_dir(
    out: &Path,
    config: &Path,
    name: &str,
) -> Result<(String, PathBuf), String> {
    let stem = config
        .file_stem()
        .map_or_else(|| name.to_owned(), |s| s.to_string_lossy().into_owned());
    let dir = out.join(&stem);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    Ok((stem, dir))
}

/// Builds `ember` (release) as `cargo xtask train` does (`-p ember`: `cargo tree` shows the same
/// features for its dependencies as a `--workspace` build), and returns the binary.
pub(crate) fn build_ember() -> Result<PathBuf, String> {
    let mut build = cargo();
    build.args(["build", "--release", "--quiet", "-p", "ember"]);
    let ok = build
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?
        .success();
    if !ok {
        return Err("building ember failed".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), |t| root().join(t));
    let bin = target.join("release/ember");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "no ember binary at {} after the build (is the target directory set elsewhere? pass --ember PATH)",
            bin.display()
        ))
    }
}

/// Clock ticks of the machine and of this process's children, to tell how much CPU time other
/// processes took during a run.
struct CpuTicks {
    /// Idle ticks of all CPUs together (`/proc/stat`: idle + iowait).
    idle: u64,
    /// All ticks of all CPUs together.
    total: u64,
    /// CPU ticks of this process's finished children (`/proc/self/stat`: cutime + cstime).
    children: u64,
}

impl CpuTicks {
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let me = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields from the 3rd on, after the command name (which may hold spaces) in parentheses;
        // cutime and cstime are the 16th and 17th.
        let fields: Vec<&str> = me[me.rfind(')')? + 1..].split_whitespace().collect();
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        Some(Self {
            idle: cpu.get(3)? + cpu.get(4).unwrap_or(&0),
            total: cpu.iter().sum(),
            children: tick(13)? + tick(14)?,
        })
    }

    /// Share of all CPUs' time since `self` that went to other processes than the run's.
    fn others_since(&self) -> Option<f64> {
        let now = Self::now()?;
        let total = now.total.checked_sub(self.total)?.max(1);
        let busy = total.saturating_sub(now.idle.checked_sub(self.idle)?);
        let run = now.children.checked_sub(self.children)?;
        Some(busy.saturating_sub(run) as f64 / total as f64)
    }
}

/// Runs `f` (one training process, waited for) and adds a warning to `warnings` when other
/// processes took more than a tenth of the CPUs meanwhile: with every core asked for, a busy
/// core slows both sides, PyTorch's OpenMP threads far more than ember's.
pub(crate) fn watched<T>(what: &str, warnings: &mut Vec<String>, f: impl FnOnce() -> T) -> T {
    let before = CpuTicks::now();
    let out = f();
    if let Some(share) = before.and_then(|b| b.others_since()).filter(|&s| s > 0.1) {
        let warning = format!(
            "warning: other processes took {:.0}% of the CPUs during {what}: its figures may be low",
            100.0 * share
        );
        println!("{warning}");
        warnings.push(warning);
    }
    out
}

/// One implementation's figures on one config.
#[derive(Clone, Default)]
pub(crate) struct Figures {
    /// Training tokens/s over all epochs.
    pub tokens_per_s: Option<f64>,
    /// The whole run's seconds.
    pub wall_s: Option<f64>,
    /// The last epoch's validation loss.
    pub valid_loss: Option<f64>,
    /// Epochs trained.
    pub epochs: Option<usize>,
    /// After each epoch: the seconds of all epochs so far and the validation loss.
    pub curve: Vec<(f64, f64)>,
}

/// `(seconds, loss)` after each epoch from per-epoch seconds and validation losses.
fn curve(epoch_seconds: &[f64], losses: &[f64]) -> Vec<(f64, f64)> {
    let mut elapsed = 0.0;
    epoch_seconds
        .iter()
        .zip(losses)
        .map(|(s, l)| {
            elapsed += s;
            (elapsed, *l)
        })
        .collect()
}

/// Where two runs stand at the same wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SameTime {
    /// The earlier finisher's seconds (the sum of its epochs).
    seconds: f64,
    /// Each side's epochs ended by then and the last one's validation loss (`None`: no epoch).
    ember: Option<(usize, f64)>,
    torch: Option<(usize, f64)>,
}

/// The two curves at the earlier finisher's time; `None` when either run has no epoch.
fn same_time(ember: &[(f64, f64)], torch: &[(f64, f64)]) -> Option<SameTime> {
    let seconds = ember.last()?.0.min(torch.last()?.0);
    // The last epoch that ended by `seconds` (the earlier finisher's own last one included).
    let at = |c: &[(f64, f64)]| {
        let done = c.iter().take_while(|(t, _)| *t <= seconds).count();
        (done > 0).then(|| (done, c[done - 1].1))
    };
    Some(SameTime {
        seconds,
        ember: at(ember),
        torch: at(torch),
    })
}

/// Tokens/s over all epochs, the last validation loss, the epochs and the curve, from a run's
/// `metrics.csv` (the wall time is the caller's).
fn read_metrics(dir: &Path) -> Result<Figures, String> {
    let path = dir.join("metrics.csv");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or(format!("{} has no column {name}", path.display()))
    };
    let (valid, tps) = (column("valid_loss")?, column("train_tokens_per_second")?);
    let seconds = column("seconds")?;
    let (mut inverse_sum, mut epochs, mut last) = (0.0, 0, f64::NAN);
    let (mut epoch_seconds, mut losses) = (Vec::new(), Vec::new());
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let number = |i: usize| {
            cells
                .get(i)
                .and_then(|c| c.trim().parse::<f64>().ok())
                .ok_or(format!("{}: bad row {line:?}", path.display()))
        };
        inverse_sum += 1.0 / number(tps)?;
        last = number(valid)?;
        epoch_seconds.push(number(seconds)?);
        losses.push(last);
        epochs += 1;
    }
    if epochs == 0 {
        return Err(format!("{} has no epoch", path.display()));
    }
    Ok(Figures {
        tokens_per_s: Some(epochs as f64 / inverse_sum),
        wall_s: None,
        valid_loss: Some(last),
        epochs: Some(epochs),
        curve: curve(&epoch_seconds, &losses),
    })
}

/// Trains `config` with ember into `dir` for `epochs` epochs (`None`: the config's); the log
/// goes to `<dir>.log`.
pub(crate) fn run_ember(
    ember: &Path,
    config: &Path,
    dir: &Path,
    epochs: Option<usize>,
    threads: &str,
) -> Result<Figures, String> {
    let mut c = Command::new(ember);
    c.current_dir(root())
        .arg("train")
        .arg("--config")
        .arg(config)
        .arg("--artifacts")
        .arg(dir)
        .args(["--no-tui", "--overwrite"])
        .env("RAYON_NUM_THREADS", threads);
    if let Some(n) = epochs {
        c.args(["--epochs", &n.to_string()]);
    }
    let started = Instant::now();
    let out = c
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ember.display()))?;
    let wall = started.elapsed().as_secs_f64();
    let log = dir.with_extension("log");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::write(&log, &text);
    if !out.status.success() {
        let tail: Vec<&str> = text.lines().rev().take(10).collect();
        return Err(format!(
            "ember train failed ({}); the end of {}:\n{}",
            out.status,
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(Figures {
        wall_s: Some(wall),
        ..read_metrics(dir)?
    })
}

/// The numbers of the array `key` in a JSON line, e.g. `"key": [1.5, 2]`.
fn json_numbers(line: &str, key: &str) -> Option<Vec<f64>> {
    let rest = json_value(line, key)?.trim_start().strip_prefix('[')?;
    rest[..rest.find(']')?]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().ok())
        .collect()
}

/// Trains the reference on the data of the ember run in `dir` for `epochs` epochs (`None`: the
/// run's config's), or for the epochs that fit in `budget` seconds (the script's
/// `--time-budget`); returns its figures and version.
pub(crate) fn run_torch(
    python: &Path,
    dir: &Path,
    epochs: Option<usize>,
    budget: Option<f64>,
    threads: &str,
) -> Result<(Figures, Option<String>), String> {
    let mut c = Command::new(python);
    c.current_dir(root())
        .arg(root().join("tools/bench/train_reference.py"))
        .arg("--run")
        .arg(dir)
        .args(["--threads", threads, "--json", "--quiet"])
        .env("OMP_NUM_THREADS", threads);
    if let Some(n) = epochs {
        c.args(["--epochs", &n.to_string()]);
    }
    if let Some(seconds) = budget {
        c.args(["--time-budget", &format!("{seconds:.1}")]);
    }
    let line = json_line(c)?;
    let figures = Figures {
        tokens_per_s: json_number(&line, "train_tokens_per_s"),
        wall_s: json_number(&line, "wall_s"),
        valid_loss: json_number(&line, "final_valid_loss"),
        epochs: json_number(&line, "epochs").map(|e| e as usize),
        curve: json_numbers(&line, "epoch_seconds")
            .zip(json_numbers(&line, "valid_losses"))
            .map(|(s, l)| curve(&s, &l))
            .unwrap_or_default(),
    };
    Ok((figures, json_string(&line, "torch")))
}

/// One line of the table.
struct Row {
    config: String,
    epochs: Option<usize>,
    ember: Figures,
    torch: Figures,
}

impl Row {
    fn line(&self) -> String {
        let num =
            |v: Option<f64>, digits: usize| v.map_or("–".into(), |v| format!("{v:.digits$}"));
        let ratio = self
            .ember
            .tokens_per_s
            .zip(self.torch.tokens_per_s)
            .map(|(e, t)| e / t);
        // Early stopping may end a run before `epochs`: show what ran.
        let epochs = match (self.ember.epochs, self.torch.epochs) {
            (Some(e), Some(t)) if e != t => format!("{e} (PyTorch {t})"),
            (Some(e), _) | (None, Some(e)) => e.to_string(),
            (None, None) => self.epochs.map_or("config's".into(), |e| e.to_string()),
        };
        format!(
            "| {} | {epochs} | {} | {} | {} | {} | {} | {} | {} |",
            self.config,
            num(self.ember.tokens_per_s, 0),
            num(self.torch.tokens_per_s, 0),
            num(ratio, 2),
            num(self.ember.wall_s, 1),
            num(self.torch.wall_s, 1),
            num(self.ember.valid_loss, 4),
            num(self.torch.valid_loss, 4),
        )
    }

    /// The line of the same-wall-time table, when both runs have epochs.
    fn same_time_line(&self) -> Option<String> {
        let at = same_time(&self.ember.curve, &self.torch.curve)?;
        let side = |s: Option<(usize, f64)>| {
            s.map_or(("0".into(), "–".into()), |(e, l)| {
                (e.to_string(), format!("{l:.4}"))
            })
        };
        let ((ee, el), (te, tl)) = (side(at.ember), side(at.torch));
        let verdict = match (at.ember, at.torch) {
            (Some((_, e)), Some((_, t))) if e <= t => "ember",
            (Some(_), Some(_)) => "PyTorch",
            (Some(_), None) => "ember (PyTorch had no epoch)",
            (None, _) => "PyTorch (ember had no epoch)",
        };
        Some(format!(
            "| {} | {:.1} | {ee} | {el} | {te} | {tl} | {verdict} |",
            self.config, at.seconds
        ))
    }
}

/// Runs the comparison; see the module doc.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let o = parse(args)?;
    // A misspelt name is one line before any PyTorch set-up or training.
    if let Some(missing) = o.configs.iter().find(|n| !config_path(n).is_file()) {
        return Err(format!(
            "no config {} (--configs takes names under configs/, e.g. names-lstm)",
            config_path(missing).display()
        ));
    }
    let ember = match &o.ember {
        Some(bin) => bin.clone(),
        None => build_ember()?,
    };
    let python = if o.torch {
        torch_python()
    } else {
        Err("PyTorch columns skipped (--no-torch)".into())
    };
    if let Err(e) = &python {
        println!("{e}");
    }
    std::fs::create_dir_all(&o.out)
        .map_err(|e| format!("cannot create {}: {e}", o.out.display()))?;
    println!(
        "{}; {} thread(s); runs in {}",
        machine(),
        o.threads,
        o.out.display()
    );
    let mut failed = false;
    let mut warnings = Vec::new();
    let mut torch_version = None;
    let mut rows = Vec::new();
    for name in &o.configs {
        let config = config_path(name);
        let text = std::fs::read_to_string(&config)
            .map_err(|e| format!("cannot read {}: {e}", config.display()))?;
        let kind = data_kind(&text);
        if !matches!(kind.as_str(), "lines" | "text") {
            println!("{name}: skipped, data.kind = {kind:?} is not a character language model");
            continue;
        }
        let epochs = if o.full {
            None
        } else {
            Some(o.epochs.unwrap_or(if kind == "text" { 1 } else { 2 }))
        };
        let (stem, dir) = fresh_run_dir(&o.out, &config, name)?;
        let ember_run = watched(&format!("ember on {stem}"), &mut warnings, || {
            run_ember(&ember, &config, &dir, epochs, &o.threads)
        });
        let ember_figures = match ember_run {
            Ok(f) => f,
            Err(e) => {
                println!("{stem}: {e}");
                failed = true;
                rows.push(Row {
                    config: stem,
                    epochs,
                    ember: Figures::default(),
                    torch: Figures::default(),
                });
                continue;
            }
        };
        let torch_figures = match &python {
            Ok(py) => match watched(&format!("PyTorch on {stem}"), &mut warnings, || {
                run_torch(py, &dir, epochs, None, &o.threads)
            }) {
                Ok((f, version)) => {
                    torch_version = torch_version.or(version);
                    f
                }
                Err(e) => {
                    println!("{stem}: PyTorch failed: {e}");
                    failed = true;
                    Figures::default()
                }
            },
            Err(_) => Figures::default(),
        };
        let row = Row {
            config: stem,
            epochs,
            ember: ember_figures,
            torch: torch_figures,
        };
        println!("{}", row.line());
        rows.push(row);
    }
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| config | epochs | ember tok/s | PyTorch tok/s | ember / PyTorch | ember wall s | PyTorch wall s | ember valid loss | PyTorch valid loss |\n|---|---|---|---|---|---|---|---|---|"
    );
    for r in &rows {
        let _ = writeln!(table, "{}", r.line());
    }
    println!(
        "\nember {} (`ember train`, Flex backend), PyTorch {} (CPU), {} thread(s); {}\n\n{table}",
        env!("CARGO_PKG_VERSION"),
        torch_version.as_deref().unwrap_or("not run"),
        o.threads,
        machine()
    );
    let same: Vec<String> = rows.iter().filter_map(Row::same_time_line).collect();
    if !same.is_empty() {
        println!(
            "At the same wall time (the earlier finisher's epochs, training and validation; the lower loss wins):\n\n\
             | config | seconds | ember epochs | ember valid loss | PyTorch epochs | PyTorch valid loss | lower loss |\n\
             |---|---|---|---|---|---|---|\n{}\n",
            same.join("\n")
        );
    }
    for w in &warnings {
        println!("{w}");
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_time_takes_each_sides_last_epoch_by_the_earlier_finish() {
        let ember = curve(&[10.0, 10.0, 10.0, 10.0], &[2.0, 1.8, 1.7, 1.65]);
        let torch = curve(&[14.0, 14.0, 14.0], &[1.9, 1.75, 1.7]);
        let at = same_time(&ember, &torch).expect("both have epochs");
        assert_eq!(at.seconds, 40.0);
        assert_eq!(at.ember, Some((4, 1.65)));
        assert_eq!(at.torch, Some((2, 1.75)));
        let slow = curve(&[50.0], &[1.9]);
        let at = same_time(&slow, &torch).expect("both have epochs");
        assert_eq!(
            (at.seconds, at.ember, at.torch),
            (42.0, None, Some((3, 1.7)))
        );
        assert_eq!(same_time(&[], &torch), None);
    }

    #[test]
    fn json_numbers_reads_an_array() {
        let line = r#"{"valid_losses": [1.5, 2, 3e-1], "epochs": 3, "empty": []}"#;
        assert_eq!(
            json_numbers(line, "valid_losses"),
            Some(vec![1.5, 2.0, 0.3])
        );
        assert_eq!(json_numbers(line, "empty"), Some(vec![]));
        assert_eq!(json_numbers(line, "epochs"), None);
        assert_eq!(json_numbers(line, "missing"), None);
    }

    #[test]
    fn data_kind_reads_the_data_table_only() {
        let names = "name = \"n\"\n[data]\npath = \"a.txt\"\n[model]\nkind = \"lstm\"\n";
        assert_eq!(data_kind(names), "lines");
        let text =
            "[data]\nkind = \"text\"   # a corpus\npath = \"t.txt\"\n[model]\nkind = \"gru\"\n";
        assert_eq!(data_kind(text), "text");
        assert_eq!(data_kind("[data.generated]\nkind = \"x\"\n"), "lines");
    }
}
