//! `cargo xtask bench --quality`: the learning quality ember's shipped quality configs reach,
//! against the PyTorch reference given the same wall time on the same machine. A long mode (the
//! three default configs take about 80 minutes of ember and as much of PyTorch on 2 cores).
//!
//! For each config (default: [`CONFIGS`]):
//!
//! 1. `ember train --config configs/X.toml` for the config's own epochs, as `cargo xtask train`
//!    runs it (`bench-e2e`'s runner). Its time `W` is the sum of its epochs' seconds, training
//!    and validation, from `metrics.csv`.
//! 2. `tools/bench/train_reference.py --run <the ember run> --time-budget W`: PyTorch trains the
//!    same model (the AWD regularisers included) on the same vocabulary and split, and fits its
//!    run into `W` the way a user would: after its first epoch it keeps the epochs that fit
//!    (`floor(W / first epoch's seconds)`, at most the config's) and stretches the learning-rate
//!    schedule over them.
//!
//! Each side reports its best validation loss (the checkpoint `best.mpk` / `best.pt` holds); the
//! lower wins, ties go to ember. The table is printed and, unless `--no-record`, appended to
//! BENCHMARKS.md with the command and machine.
//!
//! Options: `--configs a,b`, `--threads N` (default: all cores), `--ember PATH`, `--out DIR`
//! (default `$TMPDIR/ember-bench-quality`), `--no-record`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::bench::{append_section, machine, torch_python, utc_now};
use crate::e2e::{
    build_ember, comma_list, config_path, fresh_run_dir, run_ember, run_torch, watched, Figures,
};

/// The configs whose figures issue 23 names: the names model, the shipped Shakespeare model and
/// the large Shakespeare model.
pub const CONFIGS: [&str; 3] = [
    "names-lstm-large",
    "shakespeare-lstm",
    "shakespeare-lstm-large",
];

struct Options {
    configs: Vec<String>,
    threads: String,
    ember: Option<PathBuf>,
    out: PathBuf,
    record: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Options {
        configs: CONFIGS.iter().map(|c| c.to_string()).collect(),
        threads: cores.to_string(),
        ember: None,
        out: std::env::temp_dir().join("ember-bench-quality"),
        record: true,
    };
    let mut it = args.iter().filter(|a| *a != "--quality");
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} takes a value"));
        match a.as_str() {
            "--configs" => o.configs = comma_list(&value()?),
            "--threads" => o.threads = value()?,
            "--ember" => o.ember = Some(PathBuf::from(value()?)),
            "--out" => o.out = PathBuf::from(value()?),
            "--no-record" => o.record = false,
            other => {
                return Err(format!(
                    "unknown option {other} for --quality (--configs a,b, --threads N, --ember PATH, --out DIR, --no-record)"
                ))
            }
        }
    }
    if o.configs.is_empty() {
        return Err("--configs names no config".into());
    }
    Ok(o)
}

/// One side's result on one config.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Side {
    epochs: usize,
    seconds: f64,
    best: f64,
}

impl Side {
    /// From a run's curve; `None` when it has no epoch.
    fn of(figures: &Figures) -> Option<Self> {
        let (seconds, _) = *figures.curve.last()?;
        let best = figures
            .curve
            .iter()
            .map(|&(_, l)| l)
            .fold(f64::INFINITY, f64::min);
        Some(Self {
            epochs: figures.curve.len(),
            seconds,
            best,
        })
    }
}

/// The table line of one config; the verdict needs both sides, and a NaN loss never wins.
fn line(config: &str, ember: Option<Side>, torch: Option<Side>) -> String {
    let cells = |s: Option<Side>| {
        s.map_or(("–".into(), "–".into(), "–".into()), |s| {
            (
                s.epochs.to_string(),
                format!("{:.0}", s.seconds),
                format!("{:.4}", s.best),
            )
        })
    };
    let ((ee, es, el), (te, ts, tl)) = (cells(ember), cells(torch));
    let verdict = match (ember, torch) {
        (Some(e), Some(t)) if e.best.is_finite() && (e.best <= t.best || t.best.is_nan()) => {
            "ember"
        }
        (Some(_), Some(t)) if t.best.is_finite() => "PyTorch",
        _ => "–",
    };
    format!("| {config} | {ee} | {es} | {el} | {te} | {ts} | {tl} | {verdict} |")
}

/// Runs the comparison; see the module doc.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let o = parse(args)?;
    if let Some(missing) = o.configs.iter().find(|n| !config_path(n).is_file()) {
        return Err(format!(
            "no config {} (--configs takes names under configs/, e.g. shakespeare-lstm)",
            config_path(missing).display()
        ));
    }
    let python = torch_python()?;
    let ember = match &o.ember {
        Some(bin) => bin.clone(),
        None => build_ember()?,
    };
    std::fs::create_dir_all(&o.out)
        .map_err(|e| format!("cannot create {}: {e}", o.out.display()))?;
    println!(
        "{}; {} thread(s); runs in {}",
        machine(),
        o.threads,
        o.out.display()
    );
    let (mut rows, mut warnings, mut version, mut failed) = (Vec::new(), Vec::new(), None, false);
    for name in &o.configs {
        let config = config_path(name);
        let (stem, dir) = fresh_run_dir(&o.out, &config, name)?;
        let ember_side = match watched(&format!("ember on {stem}"), &mut warnings, || {
            run_ember(&ember, &config, &dir, None, &o.threads)
        }) {
            Ok(f) => Side::of(&f),
            Err(e) => {
                println!("{stem}: {e}");
                failed = true;
                None
            }
        };
        let torch_side = match ember_side {
            Some(e) => match watched(&format!("PyTorch on {stem}"), &mut warnings, || {
                run_torch(&python, &dir, None, Some(e.seconds), &o.threads)
            }) {
                Ok((f, v)) => {
                    version = version.or(v);
                    Side::of(&f)
                }
                Err(e) => {
                    println!("{stem}: PyTorch failed: {e}");
                    failed = true;
                    None
                }
            },
            None => None,
        };
        let row = line(&stem, ember_side, torch_side);
        println!("{row}");
        rows.push(row);
    }
    let table = format!(
        "| config | ember epochs | ember s | ember best valid loss | PyTorch epochs | PyTorch s | PyTorch best valid loss | lower loss |\n\
         |---|---|---|---|---|---|---|---|\n{}\n",
        rows.join("\n")
    );
    let heading = format!(
        "ember {} (`ember train`, Flex backend) and PyTorch {} (CPU), {} thread(s) each, {}; \
         seconds are the epochs' own (training and validation), PyTorch's fitted into ember's",
        env!("CARGO_PKG_VERSION"),
        version.as_deref().unwrap_or("not run"),
        o.threads,
        machine()
    );
    println!("\n{heading}\n\n{table}");
    for w in &warnings {
        println!("{w}");
    }
    if o.record && !failed {
        append_section(&format!(
            "\n## {}: learning quality at the same wall time\n\nCommand: `cargo xtask bench{}`. {heading}.\n\n{table}{}",
            utc_now(),
            args.iter().fold(String::new(), |s, a| s + " " + a),
            warnings.iter().map(|w| format!("\n{w}\n")).collect::<String>()
        ))?;
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

    fn side(best: f64) -> Option<Side> {
        Some(Side {
            epochs: 3,
            seconds: 100.0,
            best,
        })
    }

    #[test]
    fn side_takes_the_best_epoch_and_the_last_time() {
        let f = Figures {
            curve: vec![(10.0, 2.0), (20.0, 1.5), (30.0, 1.7)],
            ..Figures::default()
        };
        assert_eq!(
            Side::of(&f),
            Some(Side {
                epochs: 3,
                seconds: 30.0,
                best: 1.5
            })
        );
        assert_eq!(Side::of(&Figures::default()), None);
    }

    #[test]
    fn the_lower_finite_loss_wins_and_ties_go_to_ember() {
        assert!(line("x", side(1.5), side(1.6)).ends_with("| ember |"));
        assert!(line("x", side(1.5), side(1.5)).ends_with("| ember |"));
        assert!(line("x", side(1.6), side(1.5)).ends_with("| PyTorch |"));
        assert!(line("x", side(f64::NAN), side(1.5)).ends_with("| PyTorch |"));
        assert!(line("x", side(1.5), side(f64::NAN)).ends_with("| ember |"));
        assert!(line("x", side(1.5), None).ends_with("| – |"));
    }
}
