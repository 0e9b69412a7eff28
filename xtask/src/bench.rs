//! `cargo xtask bench`: ember and the PyTorch reference on the same workloads, side by side.
//!
//! Every workload runs in its own process (so peak RSS is the workload's): ember through the
//! `train_bench` example of ember-train on each backend asked for, PyTorch through
//! `tools/bench/bench.py` with the same shapes and thread count. CPU backends (ndarray, flex) are
//! compared with PyTorch on the CPU, GPU backends (wgpu, cuda) with PyTorch on CUDA (cuDNN).
//! The table goes to stdout, and the rows are appended, dated, with the machine and versions,
//! to `BENCHMARKS.md`.
//!
//! Where `nvidia-smi` finds a GPU the default backends add wgpu and cuda; `cuda` builds
//! `train_bench` with ember-train's `cuda` feature (a second build of Burn, on first use).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use crate::{cargo, json_line, json_number, root};

/// One workload: its name in the table and the arguments both benches take.
struct Workload {
    name: &'static str,
    args: &'static [&'static str],
    /// The figure compared: `tokens_per_s`, or `chars_per_s` for sampling.
    torch_key: &'static str,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "char-LM LSTM 2x256 (shakespeare-lstm: embed 64, dropout 0.2, clip 1), B32 T100 V65",
        args: &[
            "--task",
            "charlm",
            "--model",
            "lstm",
            "--embed",
            "64",
            "--dropout",
            "0.2",
            "--clip",
            "1",
        ],
        torch_key: "tokens_per_s",
    },
    Workload {
        name: "char-LM LSTM 2x256 (shakespeare-lstm without dropout: the cost of dropout), B32 T100 V65",
        args: &["--task", "charlm", "--model", "lstm", "--embed", "64", "--dropout", "0", "--clip", "1"],
        torch_key: "tokens_per_s",
    },
    Workload {
        name: "char-LM GRU 2x256 (embed 64, dropout 0.2, clip 1), B32 T100 V65",
        args: &[
            "--task",
            "charlm",
            "--model",
            "gru",
            "--embed",
            "64",
            "--dropout",
            "0.2",
            "--clip",
            "1",
        ],
        torch_key: "tokens_per_s",
    },
    Workload {
        name: "char-LM RNN 2x256 (embed 64, dropout 0.2, clip 1), B32 T100 V65",
        args: &[
            "--task",
            "charlm",
            "--model",
            "rnn",
            "--embed",
            "64",
            "--dropout",
            "0.2",
            "--clip",
            "1",
        ],
        torch_key: "tokens_per_s",
    },
    Workload {
        name: "names LSTM 1x128 (names-lstm: embed 32, clip 1), B64 len 3-15, padded",
        args: &[
            "--task", "names", "--model", "lstm", "--embed", "32", "--clip", "1",
        ],
        torch_key: "tokens_per_s",
    },
    Workload {
        name: "names LSTM 1x128 (embed 32, clip 1), B64 len 3-15, packed",
        args: &[
            "--task", "packed", "--model", "lstm", "--embed", "32", "--clip", "1",
        ],
        torch_key: "tokens_per_s",
    },
    Workload {
        name: "seq2seq LSTM 64 proj_size 1, B32 T50",
        args: &["--task", "seq2seq", "--model", "lstm"],
        torch_key: "tokens_per_s",
    },
    Workload {
        name: "sampling LSTM 2x256, chars/s",
        args: &["--task", "sample", "--model", "lstm"],
        torch_key: "chars_per_s",
    },
];

struct Options {
    backends: Vec<String>,
    steps: String,
    threads: String,
    torch: bool,
    record: bool,
    only: Option<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gpu = Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut o = Options {
        backends: if gpu {
            vec![
                "ndarray".into(),
                "flex".into(),
                "wgpu".into(),
                "cuda".into(),
            ]
        } else {
            vec!["ndarray".into(), "flex".into()]
        },
        steps: "10".into(),
        threads: cores.to_string(),
        torch: true,
        record: true,
        only: None,
    };
    if !gpu {
        println!("wgpu and cuda skipped: no GPU found (nvidia-smi); --backends ndarray,flex,wgpu runs wgpu anyway (lavapipe is very slow)");
    }
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} takes a value"));
        match a.as_str() {
            "--backends" => o.backends = value()?.split(',').map(str::to_owned).collect(),
            "--steps" => o.steps = value()?,
            "--threads" => o.threads = value()?,
            "--only" => o.only = Some(value()?),
            "--no-torch" => o.torch = false,
            "--no-record" => o.record = false,
            other => {
                return Err(format!(
                    "unknown option {other} (--backends LIST, --steps N, --threads N, --only TEXT, --no-torch, --no-record)"
                ))
            }
        }
    }
    Ok(o)
}

/// The Python with torch: `$EMBER_TORCH_PYTHON`, or `.venv-torch/`, set up on first use.
pub(crate) fn torch_python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("EMBER_TORCH_PYTHON") {
        return Ok(p.into());
    }
    let venv = root().join(".venv-torch");
    let python = venv.join("bin/python");
    if python.exists() {
        return Ok(python);
    }
    let has_python = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_python {
        return Err("PyTorch column skipped: no python3 on this machine".into());
    }
    println!(
        "setting up PyTorch (CPU) in {} for the reference column (a large download; --no-torch skips it)",
        venv.display()
    );
    let ok = Command::new("bash")
        .arg(root().join("tools/bench/setup-torch.sh"))
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    if ok && python.exists() {
        Ok(python)
    } else {
        Err("PyTorch column skipped: tools/bench/setup-torch.sh failed (no network?)".into())
    }
}

/// The value of `"key":"..."` in a one-line JSON object.
pub(crate) fn json_string(line: &str, key: &str) -> Option<String> {
    let rest = &line[line.find(&format!("\"{key}\": \""))? + key.len() + 5..];
    Some(rest[..rest.find('"')?].to_owned())
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gpu = Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| format!(", {}", String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores{gpu}")
}

/// Runs the benchmarks; see the module doc.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    let o = parse(args)?;
    // `--workspace`, not `-p`: the feature set of every other build, so Burn is not rebuilt
    // (unless CUDA is asked for).
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--quiet",
        "--workspace",
        "--example",
        "train_bench",
    ]);
    if o.backends.iter().any(|b| b == "cuda") {
        build.args(["--features", "ember-train/cuda"]);
    }
    let build = build
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !build.success() {
        return Err("building the train_bench example failed".into());
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let ember_bin = target.join("release/examples/train_bench");
    let python = if o.torch {
        torch_python()
    } else {
        Err("PyTorch column skipped (--no-torch)".into())
    };
    if let Err(e) = &python {
        println!("{e}");
    }
    let mut torch_version = None;
    let mut rows = Vec::new();
    for w in WORKLOADS
        .iter()
        .filter(|w| o.only.as_ref().is_none_or(|t| w.name.contains(t.as_str())))
    {
        let devices = ["cpu", "cuda"].map(|device| {
            let wanted = o.backends.iter().any(|b| torch_device(b) == device);
            match &python {
                Ok(py) if wanted => torch_run(py, w, &o, device, &mut torch_version),
                _ => None,
            }
        });
        for backend in &o.backends {
            let mut c = Command::new(&ember_bin);
            c.args(w.args)
                .args(["--backend", backend, "--steps", &o.steps])
                .env("RAYON_NUM_THREADS", &o.threads);
            let (tps, rss) = match json_line(c) {
                Ok(line) => (
                    json_number(&line, "tokens_per_s"),
                    json_number(&line, "peak_rss_mb"),
                ),
                Err(e) => {
                    println!("{} on {backend}: {e}", w.name);
                    (None, None)
                }
            };
            let device = torch_device(backend);
            let torch = devices[usize::from(device == "cuda")];
            let torch_tps = torch.and_then(|t| t.0);
            let row = Row {
                workload: w.name,
                backend: if device == "cuda" {
                    format!("{backend} (PyTorch on CUDA)")
                } else {
                    backend.clone()
                },
                ember: tps,
                ember_rss: rss,
                torch: torch_tps,
                torch_rss: torch.and_then(|t| t.1),
            };
            println!("{}", row.line());
            rows.push(row);
        }
    }
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| workload | ember backend | ember tokens/s | PyTorch tokens/s | ember / PyTorch | ember peak RSS MiB | PyTorch peak RSS MiB |\n|---|---|---|---|---|---|---|"
    );
    for r in &rows {
        let _ = writeln!(table, "{}", r.line());
    }
    println!("\n{table}");
    if o.record {
        let date = utc_now();
        let section = format!(
            "\n## {date}: {}\n\nember {} (Burn 0.21.0), PyTorch {}, {} thread(s), {} timed steps after 3 warm-up steps.\n\
             Command: `{}cargo xtask bench{}`\n\n{table}",
            machine(),
            env!("CARGO_PKG_VERSION"),
            torch_version.as_deref().unwrap_or("not run"),
            o.threads,
            o.steps,
            ["EMBER_TORCH_PYTHON", "EMBER_UNFUSED", "RAYON_NUM_THREADS"]
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v} ")))
                .collect::<String>(),
            args.iter().fold(String::new(), |s, a| s + " " + a)
        );
        append_section(&section)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The date and time now, UTC, as `2026-12-07 18:00 UTC` (empty when `date` cannot run).
pub(crate) fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Appends `section` to BENCHMARKS.md (starting the file with its header when it is missing)
/// and says so.
pub(crate) fn append_section(section: &str) -> Result<(), String> {
    let path = root().join("BENCHMARKS.md");
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nRows are appended by `cargo xtask bench`; every figure was measured by the command above it.\n"
            .into()
    });
    text.push_str(section);
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("appended to {}", path.display());
    Ok(())
}

/// Where PyTorch runs to compare with ember's `backend`: `cuda` for the GPU backends.
fn torch_device(backend: &str) -> &'static str {
    match backend {
        "wgpu" | "cuda" => "cuda",
        _ => "cpu",
    }
}

/// PyTorch's figure and peak RSS for workload `w` on `device`, noting its version.
fn torch_run(
    python: &std::path::Path,
    w: &Workload,
    o: &Options,
    device: &str,
    version: &mut Option<String>,
) -> Option<(Option<f64>, Option<f64>)> {
    let mut c = Command::new(python);
    c.arg(root().join("tools/bench/bench.py"))
        .args(w.args)
        .args(["--steps", &o.steps, "--threads", &o.threads, "--json"])
        .args(["--device", device])
        .env("OMP_NUM_THREADS", &o.threads);
    match json_line(c) {
        Ok(line) => {
            *version = version.take().or_else(|| json_string(&line, "torch"));
            Some((
                json_number(&line, w.torch_key),
                json_number(&line, "peak_rss_mb"),
            ))
        }
        Err(e) => {
            println!("{} on {device}: PyTorch failed: {e}", w.name);
            None
        }
    }
}

/// One line of the table.
struct Row {
    workload: &'static str,
    backend: String,
    ember: Option<f64>,
    ember_rss: Option<f64>,
    torch: Option<f64>,
    torch_rss: Option<f64>,
}

impl Row {
    fn line(&self) -> String {
        let num =
            |v: Option<f64>, digits: usize| v.map_or("–".into(), |v| format!("{v:.digits$}"));
        let ratio = self.ember.zip(self.torch).map(|(e, t)| e / t);
        format!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            self.workload,
            self.backend,
            num(self.ember, 0),
            num(self.torch, 0),
            num(ratio, 2),
            num(self.ember_rss, 0),
            num(self.torch_rss, 0)
        )
    }
}
