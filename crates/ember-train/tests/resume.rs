//! `--resume`: a run stopped after epoch 2 and resumed to epoch 4 gives the figures of an
//! uninterrupted 4-epoch run (model, Adam state, learning-rate schedule and data order all
//! restored), and a finished run refuses to resume without more epochs.
//!
//! The schedule is a warm-up of 40 steps (17 per epoch, so it runs into epoch 3) followed by a
//! per-epoch step decay: neither depends on the total number of epochs, unlike cosine.

use std::path::{Path, PathBuf};

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::{Autodiff, NdArray};
use ember_train::checkpoint::read_metrics;
use ember_train::{prepare, train, ExperimentConfig, TrainError, TrainOptions};

fn config(data: &Path, epochs: usize) -> ExperimentConfig {
    ExperimentConfig::parse(&format!(
        "name = \"resume\"\n[data]\npath = {:?}\n\
         [model]\nembed_dim = 8\nhidden_size = 24\n\
         [train]\nepochs = {epochs}\nbatch_size = 32\nlearning_rate = 0.01\n\
         schedule = \"step\"\ngamma = 0.7\nwarmup_steps = 40\nkeep_last = 1\n",
        data.to_str().unwrap()
    ))
    .unwrap()
}

fn run(config: &ExperimentConfig, dir: PathBuf, resume: bool) -> Result<(), TrainError> {
    let options = TrainOptions {
        artifacts: dir,
        tui: false,
        overwrite: false,
        resume,
    };
    let data = prepare(config).unwrap();
    train::<Autodiff<NdArray>>(config, data, &options, NdArrayDevice::Cpu).map(|_| ())
}

#[test]
fn resumed_run_matches_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let names = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/names.txt"),
    )
    .unwrap();
    let data = dir.path().join("names.txt");
    std::fs::write(
        &data,
        names.lines().take(600).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();

    let straight = dir.path().join("straight");
    run(&config(&data, 4), straight.clone(), false).unwrap();
    let resumed = dir.path().join("resumed");
    run(&config(&data, 2), resumed.clone(), false).unwrap();
    run(&config(&data, 4), resumed.clone(), true).unwrap();

    let a = read_metrics(&straight).unwrap();
    let b = read_metrics(&resumed).unwrap();
    assert_eq!(b.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2, 3, 4]);
    for (x, y) in a.iter().zip(&b) {
        for (p, q) in [(x.train_loss, y.train_loss), (x.valid_loss, y.valid_loss)] {
            assert!(
                (p - q).abs() < 1e-5 * p.abs(),
                "epoch {}: uninterrupted {p} vs resumed {q}",
                x.epoch
            );
        }
    }

    let err = run(&config(&data, 4), resumed.clone(), true).unwrap_err();
    assert!(err.to_string().contains("all 4 epochs are done"), "{err}");
    let err = run(&config(&data, 6), dir.path().join("none"), true).unwrap_err();
    assert!(err.to_string().contains("has no config.toml"), "{err}");
}
