//! Stateful truncated BPTT on a slice of tiny Shakespeare: the model must beat the unigram and
//! bigram baselines, and carrying the state must help validation compared with resetting it.

use std::path::Path;

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::{Autodiff, NdArray};
use ember_train::run::{evaluate_streams, prepare_data};
use ember_train::{load_run, sample_run, train, ExperimentConfig, SampleOptions, TrainOptions};

#[test]
fn stateful_text_model_learns_and_uses_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/tinyshakespeare.txt"),
    )
    .unwrap();
    let data = dir.path().join("shakespeare.txt");
    std::fs::write(&data, &text[..40_000]).unwrap();
    let config = ExperimentConfig::parse(&format!(
        "name = \"text\"\n[data]\nkind = \"text\"\npath = {:?}\nseq_len = 40\n\
         [model]\nembed_dim = 16\nhidden_size = 64\n\
         [train]\nepochs = 3\nbatch_size = 16\nlearning_rate = 0.01\n",
        data.to_str().unwrap()
    ))
    .unwrap();
    let options = TrainOptions {
        artifacts: dir.path().join("run"),
        tui: false,
        overwrite: false,
        resume: false,
    };
    let prepared = prepare_data(&config).unwrap();
    let streams = prepared.streams.clone().expect("stateful text has streams");
    assert!(streams.train[0].first && !streams.train[1].first);
    let summary =
        train::<Autodiff<NdArray>>(&config, prepared, &options, NdArrayDevice::Cpu).unwrap();
    let bigram = summary
        .baseline
        .stronger
        .as_ref()
        .expect("a bigram baseline");
    assert_eq!(bigram.name, "bigram");
    assert!(
        summary.best.valid_loss < summary.baseline.valid_loss - 0.3
            && summary.best.valid_loss < bigram.valid_loss,
        "valid loss {} not below unigram {} - 0.3 and bigram {}",
        summary.best.valid_loss,
        summary.baseline.valid_loss,
        bigram.valid_loss
    );

    let device = NdArrayDevice::Cpu;
    let run = load_run::<NdArray>(&options.artifacts, &device).unwrap();
    let carried = evaluate_streams(&run.model, &streams.valid, &device);
    assert!((carried - summary.best.valid_loss).abs() < 1e-4);
    // The same chunks, each from a zero state: the carried state must be worth something.
    let mut reset = streams.valid.clone();
    for c in &mut reset {
        c.first = true;
    }
    let without = evaluate_streams(&run.model, &reset, &device);
    assert!(
        carried < without,
        "carried state {carried} is no better than resetting {without}"
    );
    let options = SampleOptions {
        n: 2,
        temperature: 0.8,
        top_k: None,
        prefix: "ROMEO:".into(),
        seed: 3,
        max_len: 60,
        continuous: false,
    };
    let samples = sample_run(&run, &options, &device).unwrap();
    for s in &samples {
        assert!(s.starts_with("ROMEO:"), "{s:?}");
        assert_eq!(s.chars().count(), "ROMEO:".len() + 60, "{s:?}");
    }
}
