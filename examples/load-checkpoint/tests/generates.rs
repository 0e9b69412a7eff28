//! The example reads a run directory committed in `tests/run` (written by `ember train`, format
//! `ember-run/1`: model.json, vocab.json, best.mpk), so a change to what ember writes, or to
//! ember-nn's modules, that breaks other Burn apps fails here.

use std::path::Path;
use std::process::{Command, Output};

fn generate(run: &Path, count: &str, seed: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_load-checkpoint"))
        .arg(run)
        .args([count, seed])
        .output()
        .unwrap()
}

#[test]
fn loads_the_committed_run_and_generates() {
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run");
    let out = generate(&run, "6", "3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 6, "{text}");
    let vocab = std::fs::read_to_string(run.join("vocab.json")).unwrap();
    assert!(
        text.lines().flat_map(str::chars).all(|c| vocab.contains(c)),
        "characters outside vocab.json: {text}"
    );
    assert!(text.lines().any(|l| !l.is_empty()), "{text}");
    let again = String::from_utf8(generate(&run, "6", "3").stdout).unwrap();
    assert_eq!(text, again, "the same seed must give the same names");
    let other = String::from_utf8(generate(&run, "6", "4").stdout).unwrap();
    assert_ne!(text, other, "the seed has no effect");
}

#[test]
fn a_directory_without_a_run_fails_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let out = generate(&dir, "1", "0");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model.json") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
