//! The `ember` binary end to end: training, sampling, and one-line errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn names_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/names.txt")
}

/// The first `n` names of the shipped dataset, in a file of its own.
fn names_subset(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(names_file()).unwrap();
    let lines: Vec<&str> = text.lines().take(n).collect();
    let path = dir.join("names.txt");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// A tiny experiment on `data`, trainable in seconds.
fn tiny_config(dir: &Path, data: &Path, extra: &str) -> PathBuf {
    let path = dir.join("tiny.toml");
    let text = format!(
        "name = \"tiny\"\n[data]\npath = {:?}\n[model]\nembed_dim = 8\nhidden_size = 16\n\
         [train]\nepochs = 1\nbatch_size = 32\nlearning_rate = 0.01\n{extra}",
        data.to_str().unwrap()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn ember(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the ember binary runs")
}

/// Asserts a failure with exactly one line on stderr that mentions every needle.
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}: {stderr}");
    }
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn missing_data_file_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), &dir.path().join("nope.txt"), "");
    let out = ember(
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--artifacts",
            "run",
        ],
        dir.path(),
    );
    assert_one_line_error(&out, &["nope.txt", "not found", "data.path"]);
}

#[test]
fn empty_data_file_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("empty.txt");
    std::fs::write(&data, "\n \n").unwrap();
    let cfg = tiny_config(dir.path(), &data, "");
    let out = ember(
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--artifacts",
            "run",
        ],
        dir.path(),
    );
    assert_one_line_error(&out, &["empty.txt", "no non-blank lines"]);
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), &names_file(), "learning_rat = 0.1\n");
    let out = ember(&["train", "--config", cfg.to_str().unwrap()], dir.path());
    assert_one_line_error(
        &out,
        &["tiny.toml", "unknown field `learning_rat`", "line 11"],
    );
}

#[test]
fn unknown_set_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), &names_file(), "");
    let args = [
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        "model.hiden_size=3",
    ];
    let out = ember(&args, dir.path());
    assert_one_line_error(
        &out,
        &["tiny.toml", "--set model.hiden_size", "hidden_size"],
    );
    assert!(!dir.path().join("runs").exists());
}

#[test]
fn missing_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = ember(&["train", "--config", "no-such.toml"], dir.path());
    assert_one_line_error(&out, &["no-such.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cause = std::fs::read(dir.path().join("no-such.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        stderr.matches(&cause).count(),
        1,
        "the cause once: {stderr}"
    );
}

#[test]
fn misspelt_backend_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = ember(&["train", "--backend", "wgp"], dir.path());
    assert_one_line_error(&out, &["wgp", "ndarray", "wgpu"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sample_without_checkpoint_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = ember(&["sample", "--run", "."], dir.path());
    assert_one_line_error(&out, &["holds no checkpoint", "best.mpk"]);
}

#[test]
fn train_sample_and_protect_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = names_subset(dir.path(), 300);
    let cfg = tiny_config(dir.path(), &data, "");
    let cfg = cfg.to_str().unwrap();
    let trained = ember(
        &[
            "train",
            "--config",
            cfg,
            "--epochs",
            "2",
            "--artifacts",
            "run",
        ],
        dir.path(),
    );
    let log = String::from_utf8_lossy(&trained.stderr);
    assert!(
        log.contains("epoch 1") && !log.contains('\u{1b}'),
        "a log to a pipe is plain text, without colour codes: {log}"
    );
    let out = stdout(&trained);
    assert!(
        out.contains("epoch 2/2 valid"),
        "plain renderer lines missing: {out}"
    );
    assert!(out.contains("best checkpoint: run/best.mpk"), "{out}");

    let run = dir.path().join("run");
    for f in [
        "config.toml",
        "vocab.json",
        "best.mpk",
        "best.bpk",
        "model.json",
        "run.json",
        "best.json",
        "metrics.csv",
        "split.json",
        "loss.svg",
        "train.log",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let ckpts: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(ckpts.len(), 2, "{ckpts:?}");
    assert!(ckpts
        .iter()
        .all(|c| c.starts_with("epoch-00") && c.contains("-valid-") && c.ends_with(".mpk")));

    let args = [
        "sample",
        "--run",
        "run",
        "--n",
        "8",
        "--temperature",
        "0.8",
        "--prefix",
        "An",
        "--seed",
        "1",
    ];
    let a = stdout(&ember(&args, dir.path()));
    let b = stdout(&ember(&args, dir.path()));
    assert_eq!(a, b, "same seed, different samples");
    assert_eq!(a.lines().count(), 8);
    assert!(a.lines().all(|l| l.starts_with("An")), "{a}");
    let mut other = args;
    other[10] = "2";
    assert_ne!(a, stdout(&ember(&other, dir.path())), "seed has no effect");
    // Top-1 leaves the sampler no choice: every seed gives the same, most likely names.
    let top1 = |seed: &str| {
        let mut args = args.to_vec();
        args[10] = seed;
        args.extend(["--top-k", "1"]);
        ember(&args, dir.path())
    };
    let (one, two) = (top1("1"), top1("2"));
    assert_eq!(stdout(&one), stdout(&two), "top-1 depends on the seed");
    let novelty = String::from_utf8_lossy(&one.stderr).to_string();
    assert!(
        novelty.contains("novelty: ") && novelty.contains("/8 samples"),
        "{novelty}"
    );
    let out = ember(&["sample", "--run", "run", "--top-k", "0"], dir.path());
    assert_one_line_error(&out, &["--top-k must be at least 1"]);
    let out = stdout(&ember(&["inspect", "--run", "run"], dir.path()));
    assert!(
        out.contains("embedding.weight") && out.contains("total") && out.contains("advice: "),
        "{out}"
    );

    let out = ember(&["sample", "--run", "run", "--prefix", "Zq§"], dir.path());
    assert_one_line_error(&out, &["unknown character", "'§'"]);

    // A second run into the same directory must not touch the first.
    let best_before = std::fs::read(run.join("best.mpk")).unwrap();
    let out = ember(
        &["train", "--config", cfg, "--artifacts", "run"],
        dir.path(),
    );
    assert_one_line_error(&out, &["already holds a trained run", "--overwrite"]);
    assert_eq!(std::fs::read(run.join("best.mpk")).unwrap(), best_before);

    // `ember eval` with no --data re-evaluates the validation split: best.json's figure.
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("best.json")).unwrap()).unwrap();
    let want = format!(
        "loss {:.4} nats/token",
        best["valid_loss"].as_f64().unwrap()
    );
    let out = stdout(&ember(&["eval", "--run", "run"], dir.path()));
    assert!(
        out.starts_with("validation split of") && out.contains(&want),
        "{out} (want {want})"
    );
    std::fs::write(dir.path().join("eval.txt"), "Anna\nZoë\n").unwrap();
    let out = ember(&["eval", "--run", "run", "--data", "eval.txt"], dir.path());
    assert_one_line_error(&out, &["eval.txt", "1 of 2 sample(s)", "'ë'"]);
    std::fs::write(dir.path().join("eval.txt"), "Anna\nAnne\n").unwrap();
    let out = stdout(&ember(
        &["eval", "--run", "run", "--data", "eval.txt"],
        dir.path(),
    ));
    assert!(
        out.contains("eval.txt: 2 sequences, 10 tokens") && out.contains("bits/char"),
        "{out}"
    );

    // A damaged checkpoint is reported, not a panic.
    std::fs::write(run.join("best.mpk"), b"not a checkpoint").unwrap();
    let out = ember(&["sample", "--run", "run"], dir.path());
    assert_one_line_error(&out, &["cannot load checkpoint", "best.mpk"]);
}

/// wgpu on whatever Vulkan device there is (lavapipe on CI): train a step, sample from it.
#[test]
fn wgpu_smoke() {
    let dir = tempfile::tempdir().unwrap();
    let data = names_subset(dir.path(), 64);
    let cfg = tiny_config(dir.path(), &data, "");
    let args = [
        "train",
        "--backend",
        "wgpu",
        "--config",
        cfg.to_str().unwrap(),
        "--artifacts",
        "run",
    ];
    let out = stdout(&ember(&args, dir.path()));
    assert!(out.contains("best checkpoint"), "{out}");
    let samples = stdout(&ember(
        &[
            "sample",
            "--backend",
            "wgpu",
            "--run",
            "run",
            "--n",
            "3",
            "--seed",
            "3",
        ],
        dir.path(),
    ));
    assert_eq!(samples.lines().count(), 3, "{samples}");
}

/// Series models on wgpu: one input feature, a one-value head and `proj_size = 1` make matmuls
/// with a dimension of 1, whose gradients CubeCL's autotuner once sent to a kernel that panics.
#[test]
fn wgpu_series_models_train() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let csv = format!(
        "data.path={}",
        root.join("assets/sunspots_yearly.csv").display()
    );
    for (config, sets) in [
        ("series-lstm", vec![csv.as_str(), "model.hidden_size=8"]),
        (
            "sine-seq2seq",
            vec![
                "data.generated.sequences=4",
                "data.generated.length=60",
                "data.window=20",
                "model.hidden_size=8",
            ],
        ),
    ] {
        let path = root.join(format!("configs/{config}.toml"));
        let mut args = vec![
            "train",
            "--backend",
            "wgpu",
            "--config",
            path.to_str().unwrap(),
            "--epochs",
            "1",
            "--artifacts",
            config,
            "--no-tui",
        ];
        for set in &sets {
            args.extend(["--set", set]);
        }
        let out = stdout(&ember(&args, dir.path()));
        assert!(out.contains("valid MSE"), "{config}: {out}");
    }
}

/// `ember import` of a PyTorch state_dict, then sampling from the imported run.
#[test]
fn import_then_sample() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ember-train/tests/fixtures/import");
    let cfg = dir.path().join("imported.toml");
    let text = format!(
        "name = \"imported\"\n[data]\npath = {:?}\nvalid_fraction = 0.25\n\
         [model]\nembed_dim = 4\nhidden_size = 6\nnum_layers = 2\n",
        fixtures.join("names.txt").to_str().unwrap()
    );
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.to_str().unwrap();
    let pt = fixtures.join("char_lstm.pt");
    let args = [
        "import",
        "--from",
        pt.to_str().unwrap(),
        "--config",
        cfg,
        "--out",
        "run",
    ];
    let out = stdout(&ember(&args, dir.path()));
    assert!(
        out.contains("imported") && out.contains("run/best.mpk"),
        "{out}"
    );
    let samples = stdout(&ember(
        &["sample", "--run", "run", "--n", "3", "--seed", "1"],
        dir.path(),
    ));
    assert_eq!(samples.lines().count(), 3, "{samples}");
    assert_one_line_error(&ember(&args, dir.path()), &["already holds a trained run"]);

    let export = ["export", "--run", "run", "--to", "back.safetensors"];
    let out = stdout(&ember(&export, dir.path()));
    assert!(out.starts_with("wrote "), "{out}");
    let original = std::fs::metadata(fixtures.join("char_lstm.safetensors")).unwrap();
    let back = std::fs::metadata(dir.path().join("back.safetensors")).unwrap();
    assert!(back.len() > original.len() / 2, "{} bytes", back.len());
    assert_one_line_error(
        &ember(&export, dir.path()),
        &["back.safetensors exists", "--overwrite"],
    );
    let onnx = ["export", "--run", "run", "--to", "model.onnx"];
    let out = stdout(&ember(&onnx, dir.path()));
    assert!(out.contains("ONNX graph") && out.contains("c_n"), "{out}");
    let graph = std::fs::read(dir.path().join("model.onnx")).unwrap();
    // An ONNX ModelProto: field 1 (ir_version), then the producer "ember" somewhere after.
    assert!(graph.starts_with(&[0x08]) && graph.windows(5).any(|w| w == b"ember"));

    let bad = fixtures.join("char_lstm_badshape.safetensors");
    let args = [
        "import",
        "--from",
        bad.to_str().unwrap(),
        "--config",
        cfg,
        "--out",
        "run2",
    ];
    assert_one_line_error(&ember(&args, dir.path()), &["head.bias", "[5]"]);
}

/// With no Vulkan driver visible, `--backend wgpu` says what to install, in one line, and
/// creates no run directory.
#[test]
fn wgpu_without_adapter_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = names_subset(dir.path(), 64);
    let cfg = tiny_config(dir.path(), &data, "");
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args([
            "train",
            "--backend",
            "wgpu",
            "--config",
            cfg.to_str().unwrap(),
            "--artifacts",
            "run",
        ])
        .current_dir(dir.path())
        .env("VK_ICD_FILENAMES", dir.path().join("no-driver.json"))
        .output()
        .unwrap();
    assert_one_line_error(
        &out,
        &[
            "no GPU or Vulkan device",
            "mesa-vulkan-drivers",
            "--backend flex",
        ],
    );
    assert!(!dir.path().join("run").exists());
}

/// A loss that stops being finite ends the run with one line, not a panic or a bad checkpoint.
#[test]
fn exploding_loss_stops_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = names_subset(dir.path(), 300);
    let cfg = dir.path().join("explode.toml");
    let text = format!(
        "name = \"explode\"\n[data]\npath = {:?}\n[model]\nembed_dim = 8\nhidden_size = 16\n\
         [train]\nepochs = 2\nbatch_size = 32\nlearning_rate = 1e38\ngrad_clip = 0\n",
        data.to_str().unwrap()
    );
    std::fs::write(&cfg, text).unwrap();
    let out = ember(
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--artifacts",
            "run",
        ],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("train loss became") && errors[0].contains("learning_rate"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A loss that stays finite but far above a uniform guess (a learning rate of 1e6) is a
/// diverged run: one line naming `train.learning_rate`, a failing exit, and no checkpoint that
/// calls the diverged model the best.
#[test]
fn diverged_loss_stops_with_one_line_and_no_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = names_subset(dir.path(), 300);
    let cfg = tiny_config(dir.path(), &data, "");
    let out = ember(
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--artifacts",
            "run",
            "--set",
            "train.learning_rate=1e6",
            "--set",
            "train.epochs=2",
        ],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    for needle in [
        "training diverged at epoch 1",
        "2 × a uniform guess over the vocabulary",
        "lower train.learning_rate (it is 1000000)",
        "no checkpoint was written",
    ] {
        assert!(errors[0].contains(needle), "lacks {needle:?}: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    for file in ["best.mpk", "best.bpk", "best.json"] {
        assert!(
            !dir.path().join("run").join(file).exists(),
            "{file} was written"
        );
    }
}

/// GRU and ReLU-RNN character models train, evaluate and sample through the same commands, and
/// a checkpoint that does not match its config's cell kind is one line.
#[test]
fn gru_and_rnn_bodies_train_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let data = names_subset(dir.path(), 200);
    for (run, model) in [
        ("gru", "kind = \"gru\"\n"),
        ("bucketed", "kind = \"gru\"\n"),
        ("sgd-cosine", "kind = \"gru\"\n"),
        ("rnn", "kind = \"rnn\"\nnonlinearity = \"relu\"\n"),
    ] {
        let cfg = dir.path().join(format!("{run}.toml"));
        let bucket = run == "bucketed";
        let text = format!(
            "name = \"{run}\"\n[data]\npath = {:?}\n[model]\nembed_dim = 8\nhidden_size = 16\n\
             {model}[train]\nepochs = 1\nbatch_size = 32\nlearning_rate = 0.01\n",
            data.to_str().unwrap()
        );
        std::fs::write(&cfg, text).unwrap();
        let mut args = vec![
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--artifacts",
            run,
        ];
        if bucket {
            args.extend(["--set", "data.bucket_by_length=true"]);
        }
        if run == "sgd-cosine" {
            args.extend([
                "--set",
                "train.optimizer=sgd",
                "--set",
                "train.learning_rate=0.5",
            ]);
            args.extend([
                "--set",
                "train.schedule=cosine",
                "--set",
                "train.warmup_steps=2",
            ]);
        }
        assert!(stdout(&ember(&args, dir.path())).contains("best checkpoint"));
        let saved = std::fs::read_to_string(dir.path().join(run).join("config.toml")).unwrap();
        assert_eq!(saved.contains("bucket_by_length = true"), bucket, "{saved}");
        let log = std::fs::read_to_string(dir.path().join(run).join("train.log")).unwrap();
        assert!(
            log.contains("with length bucketing") && log.contains("(bucketing is on)") == bucket,
            "{log}"
        );
        let out = stdout(&ember(&["eval", "--run", run], dir.path()));
        assert!(out.contains("nats/token"), "{out}");
        let samples = stdout(&ember(&["sample", "--run", run, "--n", "2"], dir.path()));
        assert_eq!(samples.lines().count(), 2, "{samples}");
    }
    // model.json, not config.toml, says what the weights are.
    let model = dir.path().join("gru/model.json");
    let text = std::fs::read_to_string(&model).unwrap();
    assert!(text.contains("\"kind\": \"gru\""), "{text}");
    std::fs::write(
        &model,
        text.replace("\"kind\": \"gru\"", "\"kind\": \"lstm\""),
    )
    .unwrap();
    let out = ember(&["sample", "--run", "gru"], dir.path());
    assert_one_line_error(&out, &["holds a gru model", "model.json says lstm"]);
}

/// A continuous-text model: stateful training, a prime that the samples continue, evaluation
/// of another text with the state carried, and a text with an unknown character.
#[test]
fn text_model_trains_samples_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/tinyshakespeare.txt"),
    )
    .unwrap();
    std::fs::write(dir.path().join("text.txt"), &text[..12_000]).unwrap();
    std::fs::write(dir.path().join("other.txt"), &text[20_000..23_000]).unwrap();
    std::fs::write(dir.path().join("odd.txt"), "ROMEO: ¿qué?\n").unwrap();
    let cfg = dir.path().join("text.toml");
    std::fs::write(
        &cfg,
        "name = \"text\"\n[data]\nkind = \"text\"\npath = \"text.txt\"\nseq_len = 30\n\
         [model]\nembed_dim = 8\nhidden_size = 16\n[train]\nepochs = 1\nbatch_size = 8\n",
    )
    .unwrap();
    let args = ["train", "--config", "text.toml", "--artifacts", "run"];
    assert!(stdout(&ember(&args, dir.path())).contains("best checkpoint"));
    assert!(!dir.path().join("run/split.json").exists());
    let args = [
        "sample",
        "--run",
        "run",
        "--n",
        "2",
        "--prefix",
        "First",
        "--max-len",
        "30",
    ];
    let out = stdout(&ember(&args, dir.path()));
    let samples: Vec<&str> = out.trim_end_matches('\n').split("\n----\n").collect();
    assert_eq!(samples.len(), 2, "{out}");
    assert!(
        samples
            .iter()
            .all(|s| s.starts_with("First") && s.chars().count() == 35),
        "{out:?}"
    );
    let out = stdout(&ember(
        &[
            "eval",
            "--run",
            "run",
            "--data",
            "other.txt",
            "--batch-size",
            "8",
        ],
        dir.path(),
    ));
    assert!(
        out.starts_with("other.txt: 8 sequences, 2992 tokens"),
        "{out}"
    );
    let out = ember(&["eval", "--run", "run", "--data", "odd.txt"], dir.path());
    assert_one_line_error(&out, &["odd.txt", "'¿'"]);
    let bad = [
        "train",
        "--config",
        "text.toml",
        "--set",
        "data.bucket_by_length=true",
    ];
    assert_one_line_error(&ember(&bad, dir.path()), &["bucket_by_length", "lines"]);
}

#[test]
fn resume_continues_a_run_with_more_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let data = names_subset(dir.path(), 300);
    let cfg = tiny_config(dir.path(), &data, "keep_last = 1\n");
    let cfg = cfg.to_str().unwrap();
    let train = ember(
        &["train", "--config", cfg, "--artifacts", "run", "--no-tui"],
        dir.path(),
    );
    stdout(&train);
    let out = ember(&["train", "--resume", "run", "--no-tui"], dir.path());
    assert_one_line_error(&out, &["run already finished all 1 epochs", "--epochs"]);
    let resumed = stdout(&ember(
        &["train", "--resume", "run", "--epochs", "3", "--no-tui"],
        dir.path(),
    ));
    assert!(resumed.contains("best checkpoint"), "{resumed}");
    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.csv")).unwrap();
    let epochs: Vec<&str> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(epochs, ["1", "2", "3"], "{metrics}");
    let log = std::fs::read_to_string(dir.path().join("run/train.log")).unwrap();
    assert!(log.contains("resumed after epoch 1"), "{log}");
    assert!(
        log.contains("epoch 1: train loss"),
        "the log is appended to: {log}"
    );
    let config = std::fs::read_to_string(dir.path().join("run/config.toml")).unwrap();
    assert!(config.contains("epochs = 3"), "{config}");
    let out = ember(&["train", "--resume", "nowhere"], dir.path());
    assert_one_line_error(&out, &["cannot read config", "nowhere"]);
}

#[test]
fn lr_find_writes_a_plot_and_suggests_a_rate() {
    let dir = tempfile::tempdir().unwrap();
    let data = names_subset(dir.path(), 400);
    let cfg = tiny_config(dir.path(), &data, "");
    let out = stdout(&ember(
        &[
            "lr-find",
            "--config",
            cfg.to_str().unwrap(),
            "--steps",
            "30",
            "--min-lr",
            "1e-5",
            "--max-lr",
            "10",
            "--out",
            "probe",
        ],
        dir.path(),
    ));
    let rate: f64 = out
        .strip_prefix("suggested learning rate: ")
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!((1e-5..10.0).contains(&rate), "{out}");
    let csv = std::fs::read_to_string(dir.path().join("probe/lr_find.csv")).unwrap();
    assert!(csv.lines().count() > 10, "{csv}");
    assert!(dir.path().join("probe/lr_find.svg").exists());
    let out = ember(
        &[
            "lr-find",
            "--config",
            cfg.to_str().unwrap(),
            "--min-lr",
            "1",
            "--max-lr",
            "0.1",
        ],
        dir.path(),
    );
    assert_one_line_error(&out, &["--min-lr", "--max-lr"]);
}

#[test]
fn series_and_classifier_runs_train_and_refuse_sampling() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(&ember(
        &[
            "train",
            "--config",
            root.join("configs/series-rnn.toml").to_str().unwrap(),
            "--set",
            &format!(
                "data.path={}",
                root.join("assets/sunspots_yearly.csv").display()
            ),
            "--epochs",
            "2",
            "--artifacts",
            "series",
            "--no-tui",
        ],
        dir.path(),
    ));
    assert!(
        out.contains("valid MSE") && out.contains("mean predictor MSE"),
        "{out}"
    );
    assert!(dir.path().join("series/series.json").exists());
    let sample = ember(&["sample", "--run", "series"], dir.path());
    assert_one_line_error(&sample, &["series-regression run", "language-model runs"]);
    // eval re-scores the validation split: best.json's loss.
    let best: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("series/best.json")).unwrap(),
    )
    .unwrap();
    let out = stdout(&ember(&["eval", "--run", "series"], dir.path()));
    let want = format!("MSE {:.4}", best["valid_loss"].as_f64().unwrap());
    assert!(
        out.contains(&want) && out.contains("persistence MSE"),
        "{want}: {out}"
    );
    let out = stdout(&ember(
        &["predict", "--run", "series", "--steps", "5"],
        dir.path(),
    ));
    assert!(
        out.contains("5-step forecast") && out.contains("held-out truth"),
        "{out}"
    );
    let mut table = csv::Reader::from_path(dir.path().join("series/forecast.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = table.records().map(Result::unwrap).collect();
    let forecast: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[1] == "forecast").collect();
    assert_eq!(forecast.len(), 5);
    assert!(forecast
        .iter()
        .all(|r| r[2].parse::<f64>().is_ok() && r[3].parse::<f64>().unwrap().is_finite()));
    assert_eq!(rows.len(), 309, "every input value is a row");
    let svg = std::fs::read_to_string(dir.path().join("series/forecast.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("forecast"));
    let out = ember(
        &["predict", "--run", "series", "--steps", "290"],
        dir.path(),
    );
    assert_one_line_error(&out, &["this model needs at least 24", "--beyond"]);
    let out = stdout(&ember(&["inspect", "--run", "series"], dir.path()));
    assert!(out.contains("parameters per training value"), "{out}");
    let out = ember(
        &[
            "train",
            "--config",
            root.join("configs/series-rnn.toml").to_str().unwrap(),
            "--set",
            "data.column=SUNSPOTS",
            "--set",
            &format!(
                "data.path={}",
                root.join("assets/sunspots_yearly.csv").display()
            ),
            "--artifacts",
            "bad",
        ],
        dir.path(),
    );
    assert_one_line_error(&out, &["SUNSPOTS", "SUNACTIVITY"]);
}

/// The ndarray CPU backend (flex is the default) trains, samples, and scores the run as flex
/// does.
#[test]
fn ndarray_backend_trains_samples_and_agrees_with_flex() {
    let dir = tempfile::tempdir().unwrap();
    let data = names_subset(dir.path(), 300);
    let cfg = tiny_config(dir.path(), &data, "");
    let cfg = cfg.to_str().unwrap();
    let args = [
        "train",
        "--config",
        cfg,
        "--backend",
        "ndarray",
        "--epochs",
        "2",
        "--artifacts",
        "run",
    ];
    let out = stdout(&ember(&args, dir.path()));
    assert!(out.contains("best checkpoint: run/best.mpk"), "{out}");
    let samples = stdout(&ember(
        &["sample", "--run", "run", "--backend", "ndarray", "--n", "3"],
        dir.path(),
    ));
    assert_eq!(samples.lines().count(), 3, "{samples}");
    let loss = |backend: &str| {
        let out = stdout(&ember(
            &["eval", "--run", "run", "--backend", backend],
            dir.path(),
        ));
        let at = out.find("loss ").expect("a loss") + 5;
        out[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let (flex, ndarray) = (loss("flex"), loss("ndarray"));
    assert!(
        (flex - ndarray).abs() < 2e-4,
        "flex {flex} vs ndarray {ndarray}"
    );
}
