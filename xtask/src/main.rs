//! `cargo xtask`: the project's commands, all on the release profile so Burn is built once.
//!
//! - `cargo xtask train [ARGS]`: build and run `ember train ARGS` (see `ember train --help`).
//! - `cargo xtask sample [ARGS]`: build and run `ember sample ARGS`.
//! - `cargo xtask test`: make sure a Vulkan device exists for the wgpu tests (installing
//!   lavapipe with apt-get when run as root), then run the whole test suite.
//! - `cargo xtask bench [--backends ndarray,flex,wgpu] [--steps N] [--threads N] [--no-torch]
//!   [--no-record] [--only NAME]`: training (and sampling) throughput of ember and PyTorch on the
//!   same workloads, side by side, appended to BENCHMARKS.md (see `xtask/src/bench.rs`).
//! - `cargo xtask bench --quality [--configs a,b] [--threads N] [--no-record]`: the long mode:
//!   the quality configs trained by ember, and by the PyTorch reference in the same wall time;
//!   both best validation losses, appended to BENCHMARKS.md (see `xtask/src/quality.rs`).
//! - `cargo xtask bench-layer [--cell lstm|gru|rnn] [--backend ndarray|flex] [--threads N]
//!   [--layers L --hidden H --input I --batch B --seq T --steps S]`: forward + backward
//!   tokens/s of one recurrent layer, ember against PyTorch on the same shapes and thread count,
//!   and their ratio. PyTorch comes from `$EMBER_TORCH_PYTHON` or `.venv-torch/`
//!   (`bash tools/bench/setup-torch.sh .venv-torch`); without it only ember's column is shown.
//! - `cargo xtask bench-e2e [--configs a,b] [--epochs N | --full] [--threads N] [--no-torch]`:
//!   `ember train` as users run it against a PyTorch reference of the same loop on the same data,
//!   per character-LM config: training tokens/s, wall time and final validation loss, then both
//!   validation losses at the same wall time (see `xtask/src/e2e.rs`).
//! - `cargo xtask gpu-check --prepare | --run | --dry-run [--out DIR]`: the GPU device check,
//!   built here into `.gpu/` and run there in one call (see `xtask/src/gpu.rs`).

use std::path::Path;
use std::process::{Command, ExitCode};

mod bench;
mod e2e;
mod gpu;
mod quality;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some(cmd @ ("train" | "sample" | "eval" | "predict" | "inspect" | "export" | "lr-find")) => ember(cmd, &args[1..]),
        Some("test") => test(&args[1..]),
        Some("bench-layer") => bench_layer(&args[1..]),
        Some("bench") if args.iter().any(|a| a == "--quality") => quality::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("bench-e2e") => e2e::run(&args[1..]),
        Some("gpu-check") => gpu::run(&args[1..]),
        _ => Err("usage: cargo xtask <train|sample|eval|predict|inspect|export|lr-find|test|bench|bench-e2e|bench-layer|gpu-check> [ARGS] (all but test and the benches take ember's arguments, e.g. --backend wgpu)".into()),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // Run from the workspace root, so relative paths in configs resolve the same everywhere.
    cmd.current_dir(root());
    cmd
}

pub(crate) fn status(mut cmd: Command) -> Result<ExitCode, String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(c.clamp(1, 255) as u8),
        None => ExitCode::FAILURE,
    })
}

fn ember(cmd: &str, args: &[String]) -> Result<ExitCode, String> {
    let mut c = cargo();
    c.args(["run", "--release", "--quiet", "-p", "ember", "--"])
        .arg(cmd)
        .args(args);
    status(c)
}

/// Whether a Vulkan loader and at least one ICD (driver) are installed.
fn vulkan_present() -> bool {
    let loader = [
        "/usr/lib/x86_64-linux-gnu/libvulkan.so.1",
        "/usr/lib/aarch64-linux-gnu/libvulkan.so.1",
        "/usr/lib/libvulkan.so.1",
        "/usr/lib64/libvulkan.so.1",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    let icd = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .any(|d| std::fs::read_dir(d).is_ok_and(|mut entries| entries.next().is_some()));
    loader && icd
}

pub(crate) fn ensure_vulkan() -> Result<(), String> {
    if vulkan_present() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !is_root || !Path::new("/usr/bin/apt-get").exists() {
        return Err("the wgpu tests need a Vulkan device: install one (without a GPU: sudo apt-get install -y mesa-vulkan-drivers libvulkan1), then rerun".into());
    }
    eprintln!("xtask: installing a CPU Vulkan driver (lavapipe) for the wgpu tests");
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "mesa-vulkan-drivers", "libvulkan1"],
    ] {
        let ok = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("apt-get {} failed", args.join(" ")));
        }
    }
    Ok(())
}

fn test(args: &[String]) -> Result<ExitCode, String> {
    ensure_vulkan()?;
    let mut c = cargo();
    c.args(["test", "--release", "--workspace", "--no-fail-fast"])
        .args(args);
    status(c)
}

/// The workspace root. `cargo run` sets `CARGO_MANIFEST_DIR` for the process; it is read at run
/// time because a binary in a target directory shared by several clones may have been built
/// from another clone.
pub(crate) fn root() -> std::path::PathBuf {
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    Path::new(&manifest_dir).join("..")
}

/// The text after `"key":` in a JSON line, up to the line's end.
pub(crate) fn json_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    Some(&line[line.find(&format!("\"{key}\":"))? + key.len() + 3..])
}

/// The value of `"key":` in a one-line JSON object.
pub(crate) fn json_number(line: &str, key: &str) -> Option<f64> {
    let rest = json_value(line, key)?;
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// Runs `cmd` and returns its last stdout line, or an error with its stderr.
pub(crate) fn json_line(mut cmd: Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .last()
        .map(str::to_owned)
        .ok_or_else(|| format!("{cmd:?} printed nothing"))
}

fn bench_layer(args: &[String]) -> Result<ExitCode, String> {
    let mut backend = "flex".to_owned();
    let mut threads = "1".to_owned();
    let mut shape = Vec::new();
    for pair in args.chunks(2) {
        match pair {
            [k, v] if k == "--backend" => backend = v.clone(),
            [k, v] if k == "--threads" => threads = v.clone(),
            [k, v] => shape.extend([k.clone(), v.clone()]),
            _ => return Err(format!("{pair:?}: every option takes a value")),
        }
    }
    let mut ember = cargo();
    ember
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "ember-nn",
            "--example",
            "layer_bench",
            "--",
        ])
        .args(&shape)
        .args(["--backend", &backend])
        .env("RAYON_NUM_THREADS", &threads);
    let ember = json_line(ember)?;
    println!("{ember}");
    let ember_tps = json_number(&ember, "tokens_per_s").ok_or("no tokens_per_s from ember")?;

    let python = std::env::var("EMBER_TORCH_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root().join(".venv-torch/bin/python"));
    if !python.exists() {
        println!("PyTorch column skipped: no {} (set EMBER_TORCH_PYTHON, or run: bash tools/bench/setup-torch.sh .venv-torch)", python.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut torch = Command::new(&python);
    torch
        .arg(root().join("tools/bench/layer_bench.py"))
        .args(&shape)
        .args(["--threads", &threads])
        .env("OMP_NUM_THREADS", &threads);
    let torch = json_line(torch)?;
    println!("{torch}");
    let torch_tps = json_number(&torch, "tokens_per_s").ok_or("no tokens_per_s from PyTorch")?;
    println!(
        "forward+backward tokens/s, {threads} thread(s): ember ({backend}) {ember_tps:.0}, PyTorch {torch_tps:.0}, ratio ember/PyTorch {:.2}",
        ember_tps / torch_tps
    );
    Ok(ExitCode::SUCCESS)
}
