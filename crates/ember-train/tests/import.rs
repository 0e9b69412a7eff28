//! Importing a PyTorch character LSTM (`tools/fixtures/char_lm_import.py`): the imported run
//! must give PyTorch's logits, and broken files must be named in the error.

use std::path::{Path, PathBuf};

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::NdArray;
use burn::prelude::*;
use ember_train::import::import;
use ember_train::{load_run, ExperimentConfig};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

fn config() -> ExperimentConfig {
    ExperimentConfig::parse(&format!(
        "name = \"imported\"\n[data]\npath = {:?}\nvalid_fraction = 0.25\n\
         [model]\nembed_dim = 4\nhidden_size = 6\nnum_layers = 2\n",
        fixtures().join("names.txt").to_str().unwrap()
    ))
    .unwrap()
}

fn import_into(file: &str, out: &Path) -> Result<(), String> {
    let device = NdArrayDevice::Cpu;
    import::<NdArray>(&fixtures().join(file), &config(), None, out, false, &device)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn imported_models_reproduce_pytorch_logits() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let input: Vec<i64> = expected["input"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()))
        .collect();
    let want: Vec<f32> = expected["logits"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let device = NdArrayDevice::Cpu;
    for file in [
        "char_lstm.pt",
        "char_lstm.safetensors",
        "char_lstm_checkpoint.pt",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        import_into(file, &out).unwrap();
        let run = load_run::<NdArray>(&out, &device).unwrap();
        let tokens =
            Tensor::<NdArray, 2, Int>::from_data(TensorData::new(input.clone(), [2, 4]), &device);
        let (logits, _) = run.model.forward(tokens, None);
        let got: Vec<f32> = logits.into_data().iter::<f32>().collect();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-5,
            "{file}: logits differ from PyTorch by {worst}"
        );
        let best = ember_train::checkpoint::read_best(&out).unwrap();
        assert!(best.valid_loss.is_finite() && best.valid_loss > 0.0);
    }
}

#[test]
fn broken_files_name_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let err = import_into("char_lstm_missing.safetensors", &dir.path().join("a")).unwrap_err();
    assert!(
        err.contains("rnn.weight_hh_l1") && err.contains("missing"),
        "{err}"
    );
    let err = import_into("char_lstm_badshape.safetensors", &dir.path().join("b")).unwrap_err();
    assert!(
        err.contains("head.bias") && err.contains("[5]") && err.contains("[7]"),
        "{err}"
    );
    let err = import_into("no-such-file.pt", &dir.path().join("c")).unwrap_err();
    assert!(err.contains("no-such-file.pt"), "{err}");
    assert!(
        !dir.path().join("a").exists(),
        "a failed import must not leave a run directory"
    );
}
