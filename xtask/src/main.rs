//! `cargo xtask`: the project's commands, all on the release profile so Burn is built once.
//!
//! - `cargo xtask train [ARGS]`: build and run `ember train ARGS` (see `ember train --help`).
//! - `cargo xtask sample [ARGS]`: build and run `ember sample ARGS`.
//! - `cargo xtask test`: make sure a Vulkan device exists for the wgpu tests (installing
//!   lavapipe with apt-get when run as root), then run the whole test suite.

use std::path::Path;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some(cmd @ ("train" | "sample")) => ember(cmd, &args[1..]),
        Some("test") => test(&args[1..]),
        _ => Err("usage: cargo xtask <train|sample|test> [ARGS] (train/sample take ember's arguments, e.g. --backend wgpu)".into()),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // Run from the workspace root, so relative paths in configs resolve the same everywhere.
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    cmd
}

fn status(mut cmd: Command) -> Result<ExitCode, String> {
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

fn ensure_vulkan() -> Result<(), String> {
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
