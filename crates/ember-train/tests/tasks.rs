//! Every config of `configs/` trains at a tiny size and beats its baselines: the unigram and
//! bigram models for language models, the mean predictor and persistence for regression, the
//! majority class (and the class prior's loss) for classification.

use std::path::{Path, PathBuf};

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::{Autodiff, NdArray};
use ember_train::checkpoint::read_metrics;
use ember_train::classification::CONFUSION_FILE;
use ember_train::regression::{SeriesInfo, SERIES_FILE};
use ember_train::task_eval::{eval_classes, load_class_run};
use ember_train::{prepare, train, EvalData, ExperimentConfig, TrainOptions, TrainSummary};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Trains `configs/<name>.toml` with `sets` applied, into a temporary run directory.
fn train_config(name: &str, sets: &[String]) -> (tempfile::TempDir, TrainSummary) {
    let config = ExperimentConfig::load(&root().join(format!("configs/{name}.toml")))
        .unwrap()
        .with_overrides(sets)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = TrainOptions {
        artifacts: dir.path().join("run"),
        tui: false,
        overwrite: false,
        resume: false,
    };
    let data = prepare(&config).unwrap();
    let summary = train::<Autodiff<NdArray>>(&config, data, &options, NdArrayDevice::Cpu)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (dir, summary)
}

fn sets(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The best validation loss is below `margin` × the baseline, and below the stronger baseline
/// (bigram, persistence) where the task has one.
fn assert_beats_baseline(name: &str, summary: &TrainSummary, margin: f64) {
    let best = summary.best.valid_loss;
    let base = &summary.baseline;
    assert!(
        best < base.valid_loss * margin,
        "{name}: best valid loss {best} not below {margin} × the {} baseline {}",
        base.name,
        base.valid_loss
    );
    if let Some(stronger) = &base.stronger {
        assert!(
            best < stronger.valid_loss,
            "{name}: best valid loss {best} not below the {} baseline {}",
            stronger.name,
            stronger.valid_loss
        );
    }
    eprintln!(
        "{name}: best valid loss {best:.4}; {} {:.4}{}",
        base.name,
        base.valid_loss,
        base.stronger.as_ref().map_or(String::new(), |s| format!(
            ", {} {:.4}",
            s.name, s.valid_loss
        ))
    );
}

/// The first `chars` characters of a shipped file, in a file of their own.
fn slice_of(asset: &str, chars: usize, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join(asset)).unwrap();
    let end = text
        .char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i);
    let path = dir.join(Path::new(asset).file_name().unwrap());
    std::fs::write(&path, &text[..end]).unwrap();
    path
}

#[test]
fn language_configs_beat_the_bigram_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let names = slice_of("assets/names.txt", 12_000, dir.path());
    // The GRU run also trains with every AWD-LSTM regulariser and zoneout on (drawn masks,
    // fused paths).
    let awd = [
        "model.variational_dropout=true",
        "model.dropout=0.1",
        "model.embed_dropout=0.05",
        "model.input_dropout=0.1",
        "model.weight_drop=0.2",
        "model.zoneout=0.05",
    ];
    for name in ["names-lstm", "names-gru", "names-rnn"] {
        let mut keys = vec![
            format!("data.path={}", names.display()),
            "model.hidden_size=32".into(),
            "model.embed_dim=16".into(),
            "train.epochs=3".into(),
            "train.batch_size=32".into(),
            "train.learning_rate=0.01".into(),
        ];
        if name == "names-gru" {
            keys.extend(awd.iter().map(|k| k.to_string()));
        }
        if name == "names-lstm" {
            // LayerNorm cells on the fused LSTM.
            keys.push("model.layer_norm=true".into());
        }
        let (_run, summary) = train_config(name, &keys);
        assert_eq!(summary.baseline.name, "unigram");
        assert_beats_baseline(name, &summary, 0.9);
    }
    let text = slice_of("assets/tinyshakespeare.txt", 30_000, dir.path());
    let (_run, summary) = train_config(
        "shakespeare-lstm",
        &sets(&[
            &format!("data.path={}", text.display()),
            "data.seq_len=40",
            "model.hidden_size=48",
            "model.num_layers=1",
            "model.dropout=0.0",
            // Zoneout of h and c on the fused LSTM.
            "model.zoneout=0.05",
            "model.zoneout_cell=0.1",
            "train.epochs=3",
            "train.batch_size=16",
            "train.learning_rate=0.01",
        ]),
    );
    assert_beats_baseline("shakespeare-lstm", &summary, 0.9);
}

#[test]
fn last_step_regressors_beat_the_mean_predictor_and_persistence() {
    let data = root().join("assets/sunspots_yearly.csv");
    for name in ["series-lstm", "series-rnn"] {
        let (_dir, summary) = train_config(
            name,
            &sets(&[
                &format!("data.path={}", data.display()),
                "model.hidden_size=16",
                "train.epochs=12",
            ]),
        );
        assert_eq!(summary.baseline.name, "mean predictor");
        assert_beats_baseline(name, &summary, 0.5);
        let rows = read_metrics(&summary.dir).unwrap();
        assert!(rows.iter().all(|r| r.valid_mae.is_some()
            && r.valid_perplexity.is_none()
            && r.valid_accuracy.is_none()));
        let info = SeriesInfo::load(&summary.dir.join(SERIES_FILE)).unwrap();
        assert_eq!(info.window, 24);
        assert!(info.standardizer.std > 10.0, "{info:?}");
    }
}

#[test]
fn stateful_seq2seq_and_scratch_rnn_beat_the_mean_predictor_and_persistence() {
    let tiny = [
        "data.generated.sequences=12",
        "data.generated.length=200",
        "data.window=25",
        "model.hidden_size=16",
        "train.epochs=6",
        "train.batch_size=4",
    ];
    for name in ["sine-seq2seq", "scratch-rnn"] {
        let (_dir, summary) = train_config(name, &sets(&tiny));
        assert_beats_baseline(name, &summary, 0.3);
    }
}

#[test]
fn classifier_beats_the_majority_class_and_writes_a_confusion_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let languages = ["Russian", "Japanese", "Greek", "Italian"];
    let sizes = [240, 80, 80, 80];
    for (language, n) in languages.iter().zip(sizes) {
        let text = std::fs::read_to_string(
            root().join(format!("assets/names-by-language/{language}.txt")),
        )
        .unwrap();
        let lines: Vec<&str> = text.lines().take(n).collect();
        std::fs::write(dir.path().join(format!("{language}.txt")), lines.join("\n")).unwrap();
    }
    let (_run, summary) = train_config(
        "names-language",
        &sets(&[
            &format!("data.path={}", dir.path().display()),
            "data.valid_fraction=0.2",
            "model.hidden_size=32",
            "model.embed_dim=16",
            "train.epochs=6",
            "train.batch_size=16",
            "train.patience=0",
        ]),
    );
    let majority = summary.baseline.valid_accuracy.unwrap();
    assert!((majority - 0.5).abs() < 0.02, "majority share {majority}");
    let best = read_metrics(&summary.dir).unwrap()[summary.best.epoch - 1].clone();
    let accuracy = best.valid_accuracy.unwrap();
    assert!(
        accuracy > majority + 0.15,
        "accuracy {accuracy} vs majority {majority}"
    );
    assert_beats_baseline("names-language", &summary, 0.8);
    let confusion = std::fs::read_to_string(summary.dir.join(CONFUSION_FILE)).unwrap();
    let rows: Vec<&str> = confusion.lines().collect();
    assert_eq!(rows.len(), 5, "{confusion}");
    assert!(
        rows[0].ends_with("Greek,Italian,Japanese,Russian"),
        "{confusion}"
    );
    let counted: usize = rows[1..]
        .iter()
        .flat_map(|r| r.split(',').skip(1))
        .map(|c| c.parse::<usize>().unwrap())
        .sum();
    assert_eq!(counted, 96, "every validation name is counted once");

    // `ember eval` of the run: the validation split gives training's best figures, and a
    // directory of class files is scored with the run's classes.
    let device = NdArrayDevice::Cpu;
    let run = load_class_run::<NdArray>(&summary.dir, "eval", &device).unwrap();
    let report = eval_classes(&run, &EvalData::RunValidation, 7, &device).unwrap();
    assert_eq!(report.samples, 96);
    assert!((report.accuracy - accuracy).abs() < 1e-9, "{report}");
    assert!(
        (report.loss - summary.best.valid_loss).abs() < 1e-4,
        "{report}"
    );
    let greek = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("Greek.txt"), greek.path().join("Greek.txt")).unwrap();
    let report = eval_classes(&run, &EvalData::File(greek.path().into()), 16, &device).unwrap();
    assert_eq!(report.samples, 80);
    std::fs::write(greek.path().join("Klingon.txt"), "Ana\n").unwrap();
    let err = eval_classes(&run, &EvalData::File(greek.path().into()), 16, &device).unwrap_err();
    assert!(
        err.to_string()
            .contains("\"Klingon\" is not one the run learned"),
        "{err}"
    );
}
