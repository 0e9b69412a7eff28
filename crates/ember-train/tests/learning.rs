//! A short real training run on ndarray: it must beat the unigram and bigram models, and
//! `best.mpk` must be the best epoch.

use std::path::Path;

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::{Autodiff, NdArray};
use ember_train::checkpoint::{read_metrics, CHECKPOINT_DIR};
use ember_train::run::{evaluate, prepare_data};
use ember_train::{load_run, train, ExperimentConfig, TrainOptions};

#[test]
fn learns_below_unigram_and_keeps_the_best_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let names = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/names.txt"),
    )
    .unwrap();
    let data = dir.path().join("names.txt");
    std::fs::write(
        &data,
        names.lines().step_by(16).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let config = ExperimentConfig::parse(&format!(
        "name = \"learn\"\n[data]\npath = {:?}\n[model]\nembed_dim = 16\nhidden_size = 64\n\
         [train]\nepochs = 4\nbatch_size = 32\nlearning_rate = 0.01\nkeep_last = 1\n",
        data.to_str().unwrap()
    ))
    .unwrap();
    let options = TrainOptions {
        artifacts: dir.path().join("run"),
        tui: false,
        overwrite: false,
        resume: false,
    };
    let data = prepare_data(&config).unwrap();
    let summary = train::<Autodiff<NdArray>>(&config, data, &options, NdArrayDevice::Cpu).unwrap();

    let rows = read_metrics(&options.artifacts).unwrap();
    assert_eq!(rows.len(), 4);
    let (best_epoch, best_loss) = rows
        .iter()
        .map(|r| (r.epoch, r.valid_loss))
        .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
    let bigram = summary
        .baseline
        .stronger
        .as_ref()
        .expect("a bigram baseline");
    assert!(
        best_loss < summary.baseline.valid_loss - 0.2 && best_loss < bigram.valid_loss,
        "valid loss {best_loss} not below unigram {} - 0.2 and bigram {}",
        summary.baseline.valid_loss,
        bigram.valid_loss
    );
    // best.json goes through serde_json, whose default float parsing may be off by an ulp.
    assert_eq!(summary.best.epoch, best_epoch);
    assert!((summary.best.valid_loss - best_loss).abs() < 1e-12);
    assert!(rows.iter().all(|r| r.best
        == (r.valid_loss
            <= rows[..r.epoch]
                .iter()
                .map(|p| p.valid_loss)
                .fold(f64::INFINITY, f64::min))));

    // best.mpk, evaluated afresh, gives the lowest validation loss of the run.
    let device = NdArrayDevice::Cpu;
    let run = load_run::<NdArray>(&options.artifacts, &device).unwrap();
    let prepared = prepare_data(&config).unwrap();
    let pad = prepared.vocab.pad_id();
    let reloaded = evaluate(&run.model, &prepared.valid, pad, 32, &device);
    assert!(
        (reloaded - best_loss).abs() < 1e-4,
        "best.mpk gives {reloaded}, metrics say {best_loss}"
    );
    // Every other kept checkpoint is worse or equal.
    for entry in std::fs::read_dir(options.artifacts.join(CHECKPOINT_DIR)).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let loss: f64 = name
            .trim_end_matches(".mpk")
            .rsplit("-valid-")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(loss >= best_loss - 1e-4, "{name} is better than best.mpk");
    }
}
