//! `cargo xtask gpu-check`: the GPU device check, prepared here and run in one call there.
//!
//! The device machine has an NVIDIA GPU, PyTorch with CUDA and `python3`, but no Rust toolchain,
//! no Vulkan loader and no network. So:
//! - `--prepare` builds `ember` and `train_bench` with wgpu and CUDA here (release, stripped,
//!   xz-compressed), and lays them into the git-ignored folder [`FOLDER`] with
//!   `tools/gpu/check.sh`, `tools/gpu/check.py`, `tools/bench/bench.py` and the Vulkan loader
//!   packages (downloaded with apt-get, amd64).
//! - On the device the one command is `bash .gpu/check.sh` (the `device` tool's `run`, with
//!   `.gpu` in `carry`): it unpacks the binaries and the loaders, checks the kernels against
//!   Flex, trains and samples as a user does on each backend, times the workloads on wgpu,
//!   CUDA and PyTorch (cuDNN), and writes its tables into `$OUT`.
//! - `--run` runs that script here, for a machine with a GPU and the folder prepared.
//! - `--dry-run [--out DIR]` runs `check.py` here on this machine's Vulkan device (lavapipe
//!   without a GPU) with tiny shapes, using the `ember` and `train_bench` the test suite builds,
//!   so the script cannot rot while no device is lent. CI runs it after the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::{cargo, root, status};

/// The prepared folder, at the workspace root.
const FOLDER: &str = ".gpu";

/// The most the prepared folder may hold: the device tool carries 64 MiB in all.
const MAX_BYTES: u64 = 60 << 20;

/// The CUDA version cudarc binds to when the build machine has no `nvcc` to ask: the device's
/// driver (580) is CUDA 13.0.
const CUDA_VERSION: &str = "13000";

/// The Vulkan loader packages the device lacks (the `device` tool's README).
const LOADER_PACKAGES: &[&str] = &[
    "libvulkan1",
    "libegl1",
    "libglvnd0",
    "libopengl0",
    "libgl1",
    "libglx0",
    "libgles2",
];

/// What `gpu-check` was asked to do.
#[derive(Debug, PartialEq)]
enum Mode {
    Prepare,
    Run,
    DryRun { out: Option<PathBuf> },
}

fn parse(args: &[String]) -> Result<Mode, String> {
    let usage = "usage: cargo xtask gpu-check --prepare | --run | --dry-run [--out DIR]";
    match args {
        [m] if m == "--prepare" => Ok(Mode::Prepare),
        [m] if m == "--run" => Ok(Mode::Run),
        [m] if m == "--dry-run" => Ok(Mode::DryRun { out: None }),
        [m, o, dir] if m == "--dry-run" && o == "--out" => Ok(Mode::DryRun {
            out: Some(dir.into()),
        }),
        _ => Err(usage.into()),
    }
}

/// `cargo xtask gpu-check ARGS`.
pub fn run(args: &[String]) -> Result<ExitCode, String> {
    match parse(args)? {
        Mode::Prepare => prepare(),
        Mode::Run => {
            let script = root().join(FOLDER).join("check.sh");
            if !script.exists() {
                return Err(format!(
                    "{} is missing: run `cargo xtask gpu-check --prepare` first",
                    script.display()
                ));
            }
            let mut c = Command::new("bash");
            c.arg(script);
            status(c)
        }
        Mode::DryRun { out } => dry_run(out),
    }
}

/// The binaries the check runs: (cargo target kind, name).
const BINARIES: [(&str, &str); 2] = [("bin", "ember"), ("example", "train_bench")];

/// Runs cargo with `cargo_args` and returns the executables of [`BINARIES`] it built or found
/// up to date (`--message-format json` names them).
fn build(
    cargo_args: &[&str],
    env: &[(&str, &str)],
) -> Result<Vec<(&'static str, PathBuf)>, String> {
    let mut c = cargo();
    c.args(cargo_args)
        .args(["--message-format", "json-render-diagnostics"])
        .envs(env.iter().copied());
    let out = c.output().map_err(|e| format!("cannot run {c:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{c:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let messages = String::from_utf8_lossy(&out.stdout);
    BINARIES
        .iter()
        .map(|&(kind, name)| {
            executable(&messages, kind, name)
                .map(|path| (name, path))
                .ok_or_else(|| format!("{c:?} built no {kind} {name}"))
        })
        .collect()
}

/// The `"executable"` of the target `name` of `kind` among cargo's JSON messages: the program
/// itself, not its unit-test harness (`cargo test` builds both, each with kind `bin`; the harness's
/// profile has `"test":true`, and it answers `--config` with libtest's "Unrecognized option").
fn executable(messages: &str, kind: &str, name: &str) -> Option<PathBuf> {
    let target = format!("\"kind\":[\"{kind}\"],\"crate_types\":[\"bin\"],\"name\":\"{name}\",");
    messages
        .lines()
        .filter(|l| {
            let profile = l
                .split_once("\"profile\":{")
                .map(|(_, p)| p.split('}').next());
            l.contains("\"reason\":\"compiler-artifact\"")
                && l.contains(&target)
                && profile
                    .flatten()
                    .is_some_and(|p| p.contains("\"test\":false"))
        })
        .find_map(|l| {
            let rest = crate::json_value(l, "executable")?;
            let rest = rest.strip_prefix('"')?;
            Some(PathBuf::from(&rest[..rest.find('"')?]))
        })
}

fn dry_run(out: Option<PathBuf>) -> Result<ExitCode, String> {
    crate::ensure_vulkan()?;
    // The same build as `cargo xtask test`'s, so CI compiles nothing again.
    let binaries = build(
        &["test", "--release", "--workspace", "--no-run", "--quiet"],
        &[],
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let bin = target.join("gpu-check-dry/bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    for (name, path) in binaries {
        copy(&path, &bin.join(name))?;
    }
    let out = out.unwrap_or_else(|| target.join("gpu-check-dry/out"));
    let mut c = Command::new("python3");
    c.current_dir(root())
        .arg(root().join("tools/gpu/check.py"))
        .arg("--dry-run")
        .arg("--bin")
        .arg(&bin)
        .arg("--bench-py")
        .arg(root().join("tools/bench/bench.py"))
        .arg("--out")
        .arg(&out);
    let code = status(c)?;
    eprintln!("xtask: the dry run's tables are in {}", out.display());
    Ok(code)
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

fn prepare() -> Result<ExitCode, String> {
    let version = std::env::var("CUDARC_CUDA_VERSION").unwrap_or_else(|_| CUDA_VERSION.into());
    eprintln!("xtask: building ember and train_bench with wgpu and CUDA (CUDA {version}; the first build of Burn's CUDA backend takes a while)");
    let binaries = build(
        &[
            "build",
            "--release",
            "--quiet",
            "-p",
            "ember",
            "-p",
            "ember-train",
            "--bins",
            "--example",
            "train_bench",
            "--features",
            "ember/cuda,ember-train/cuda",
        ],
        &[("CUDARC_CUDA_VERSION", &version)],
    )?;
    let dir = root().join(FOLDER);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    for sub in ["bin", "debs"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    for (name, path) in binaries {
        let to = dir.join("bin").join(name);
        copy(&path, &to)?;
        for (tool, args) in [("strip", &[][..]), ("xz", &["-T0", "-6"][..])] {
            let ok = Command::new(tool)
                .args(args)
                .arg(&to)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!(
                    "{tool} {} failed (install binutils and xz-utils)",
                    to.display()
                ));
            }
        }
    }
    for (from, to) in [
        ("tools/gpu/check.sh", "check.sh"),
        ("tools/gpu/check.py", "check.py"),
        ("tools/bench/bench.py", "bench.py"),
    ] {
        copy(&root().join(from), &dir.join(to))?;
    }
    download_loaders(&dir.join("debs"))?;
    let bytes = size(&dir);
    if bytes > MAX_BYTES {
        return Err(format!(
            "{} holds {} MiB, over the {} MiB the device tool carries",
            dir.display(),
            bytes >> 20,
            MAX_BYTES >> 20
        ));
    }
    println!(
        "{FOLDER}/ prepared ({} MiB). On the device: run `bash {FOLDER}/check.sh` with carry [\"{FOLDER}\"] and timeout_s 540; the tables come back in $OUT (gpu-check.md).",
        bytes >> 20
    );
    Ok(ExitCode::SUCCESS)
}

/// Downloads the amd64 Vulkan loader packages into `dir` (apt's own lists, kept in /tmp).
fn download_loaders(dir: &Path) -> Result<(), String> {
    let lists = "/tmp/ember-gpu-apt-lists";
    std::fs::create_dir_all(format!("{lists}/partial")).map_err(|e| format!("{lists}: {e}"))?;
    let options = [
        "-oAPT::Architecture=amd64".to_owned(),
        "-oAPT::Architectures=amd64".to_owned(),
        format!("-oDir::State::Lists={lists}"),
    ];
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(&options)
            .args(args)
            .current_dir(dir)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["update", "-qq"]) {
        return Err(
            "apt-get update failed: the Vulkan loader packages need Debian's package index".into(),
        );
    }
    let mut download = vec!["download", "-qq"];
    download.extend(LOADER_PACKAGES);
    if !apt(&download) {
        return Err(format!(
            "apt-get download {} failed",
            LOADER_PACKAGES.join(" ")
        ));
    }
    Ok(())
}

/// The bytes of the files under `dir`.
fn size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_takes_one_mode() {
        let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(parse(&args("--prepare")), Ok(Mode::Prepare));
        assert_eq!(parse(&args("--run")), Ok(Mode::Run));
        assert_eq!(
            parse(&args("--dry-run --out /tmp/x")),
            Ok(Mode::DryRun {
                out: Some("/tmp/x".into())
            })
        );
        for bad in ["", "--prepare --run", "--dry-run --out", "--fast"] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn executable_finds_each_binary_among_cargos_messages() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"crate_types":["lib"],"name":"ember","src_path":"x"},"profile":{"test":false},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"kind":["example"],"crate_types":["bin"],"name":"layer_bench","src_path":"y"},"profile":{"test":false},"executable":"/t/release/examples/layer_bench-1"}"#,
            r#"{"reason":"compiler-artifact","target":{"kind":["example"],"crate_types":["bin"],"name":"train_bench","src_path":"z"},"profile":{"test":false},"executable":"/t/release/examples/train_bench-2"}"#,
            r#"{"reason":"compiler-artifact","target":{"kind":["test"],"crate_types":["bin"],"name":"ember","src_path":"w"},"profile":{"test":true},"executable":"/t/release/deps/ember-3"}"#,
            r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"crate_types":["bin"],"name":"ember","src_path":"v","test":false},"profile":{"test":true},"executable":"/t/release/deps/ember-4"}"#,
            r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"crate_types":["bin"],"name":"ember","src_path":"v","test":true},"profile":{"opt_level":"3","test":false},"executable":"/t/release/ember"}"#,
        ]
        .join("\n");
        assert_eq!(
            executable(&messages, "example", "train_bench"),
            Some(PathBuf::from("/t/release/examples/train_bench-2"))
        );
        assert_eq!(
            executable(&messages, "bin", "ember"),
            Some(PathBuf::from("/t/release/ember"))
        );
        assert_eq!(executable(&messages, "bin", "train_bench"), None);
    }
}
