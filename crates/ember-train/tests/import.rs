//! Importing PyTorch character models (`tools/fixtures/char_lm_import.py`): an imported LSTM,
//! GRU or ReLU RNN run must give PyTorch's logits, and broken files must be named in the error.

use std::path::{Path, PathBuf};

use burn::backend::ndarray::NdArrayDevice;
use burn::backend::NdArray;
use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};
use ember_nn::CharLmConfig;
use ember_train::checkpoint::BEST_BURNPACK;
use ember_train::import::import;
use ember_train::run_dir::{RunManifest, MODEL_FILE, RUN_FORMAT};
use ember_train::{load_run, ExperimentConfig};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

/// The fixtures' config, with extra `[model]` lines (`kind = "gru"`).
fn config(model: &str) -> ExperimentConfig {
    ExperimentConfig::parse(&format!(
        "name = \"imported\"\n[data]\npath = {:?}\nvalid_fraction = 0.25\n\
         [model]\nembed_dim = 4\nhidden_size = 6\nnum_layers = 2\n{model}",
        fixtures().join("names.txt").to_str().unwrap()
    ))
    .unwrap()
}

fn import_as(file: &str, model: &str, out: &Path) -> Result<(), String> {
    let device = NdArrayDevice::Cpu;
    import::<NdArray>(
        &fixtures().join(file),
        &config(model),
        None,
        out,
        false,
        &device,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn import_into(file: &str, out: &Path) -> Result<(), String> {
    import_as(file, "", out)
}

fn floats(v: &Value) -> Vec<f32> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// Imports `file` as `model` and checks the run's logits against `want`.
fn assert_reproduces(file: &str, model: &str, input: &[i64], want: &[f32]) {
    let device = NdArrayDevice::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    import_as(file, model, &out).unwrap();
    let run = load_run::<NdArray>(&out, &device).unwrap();
    let tokens =
        Tensor::<NdArray, 2, Int>::from_data(TensorData::new(input.to_vec(), [2, 4]), &device);
    let (logits, _) = run.model.forward(tokens.clone(), None);
    let got: Vec<f32> = logits.into_data().iter::<f32>().collect();
    assert_eq!(got.len(), want.len());
    // The run directory's other readers: model.json builds the model, best.bpk fills it
    // (every tensor, nothing left over) with exactly the weights of best.mpk.
    let manifest = RunManifest::read(&out).unwrap().unwrap();
    assert_eq!(
        (manifest.format.as_str(), manifest.module.as_str()),
        (RUN_FORMAT, "CharLm")
    );
    let model_config = CharLmConfig::load(out.join(MODEL_FILE)).unwrap();
    let mut from_bpk = model_config.init::<NdArray>(&device).unwrap();
    let applied = from_bpk
        .load_from(&mut BurnpackStore::from_file(out.join(BEST_BURNPACK)))
        .unwrap();
    assert!(
        applied.missing.is_empty() && applied.unused.is_empty() && applied.errors.is_empty(),
        "{file}: {applied:?}"
    );
    let (logits, _) = from_bpk.forward(tokens, None);
    let again: Vec<f32> = logits.into_data().iter::<f32>().collect();
    assert_eq!(
        again, got,
        "{file}: best.bpk must hold the weights of best.mpk"
    );
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-5,
        "{file}: logits differ from PyTorch by {worst}"
    );
    let best = ember_train::checkpoint::read_best(&out).unwrap();
    assert!(best.valid_loss.is_finite() && best.valid_loss > 0.0);
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
    for file in [
        "char_lstm.pt",
        "char_lstm.safetensors",
        "char_lstm_checkpoint.pt",
    ] {
        assert_reproduces(file, "", &input, &floats(&expected["logits"]));
    }
    let others = &expected["others"];
    assert_reproduces(
        "char_gru.safetensors",
        "kind = \"gru\"\n",
        &input,
        &floats(&others["gru"]["logits"]),
    );
    assert_reproduces(
        "char_rnn_relu.safetensors",
        "kind = \"rnn\"\nnonlinearity = \"relu\"\n",
        &input,
        &floats(&others["rnn_relu"]["logits"]),
    );
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
    let err = import_into("char_gru.safetensors", &dir.path().join("d")).unwrap_err();
    assert!(
        err.contains("rnn.weight_ih_l0") && err.contains("kind = \"lstm\""),
        "a GRU file read as an LSTM must point at model.kind: {err}"
    );
    let err = import_into("no-such-file.pt", &dir.path().join("c")).unwrap_err();
    assert!(err.contains("no-such-file.pt"), "{err}");
    assert!(
        !dir.path().join("a").exists(),
        "a failed import must not leave a run directory"
    );
}

/// Import → export gives back every tensor of the PyTorch file, under the same name and shape.
#[test]
fn export_round_trips_the_pytorch_state_dict() {
    let device = NdArrayDevice::Cpu;
    for (file, model) in [
        ("char_lstm.safetensors", ""),
        ("char_gru.safetensors", "kind = \"gru\"\n"),
        (
            "char_rnn_relu.safetensors",
            "kind = \"rnn\"\nnonlinearity = \"relu\"\n",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        import_as(file, model, &out).unwrap();
        let run = load_run::<NdArray>(&out, &device).unwrap();
        let exported = dir.path().join("exported.safetensors");
        let written =
            ember_train::export::export_safetensors(&run.model, &Default::default(), &exported)
                .unwrap();
        let original = ember_train::import::read_torch_file(&fixtures().join(file)).unwrap();
        let back = ember_train::import::read_torch_file(&exported).unwrap();
        assert_eq!(written, original.len(), "{file}");
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            original.keys().collect::<Vec<_>>(),
            "{file}"
        );
        for (name, (shape, values)) in &original {
            let (s, v) = &back[name];
            assert_eq!(s, shape, "{file}: {name}");
            assert_eq!(v, values, "{file}: {name} must round-trip exactly");
        }
    }
}

/// A LayerNorm model's file (`model.layer_norm`): PyTorch's tensors plus the `ln_*` gains, as
/// `ember export` writes them. Imported with `layer_norm = true` and exported again, every
/// tensor comes back bit for bit; a config without it names the gains it has no place for.
#[test]
fn layer_norm_gains_round_trip_through_import_and_export() {
    let device = NdArrayDevice::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let mut tensors =
        ember_train::import::read_torch_file(&fixtures().join("char_lstm.safetensors")).unwrap();
    let rnn = tensors
        .keys()
        .find_map(|k| k.strip_suffix("weight_ih_l0").map(str::to_owned))
        .expect("an LSTM's weight_ih_l0");
    for layer in 0..2 {
        let hidden = 6;
        for (base, width, offset) in [
            ("ln_ih_weight", 4 * hidden, 1.0),
            ("ln_hh_weight", 4 * hidden, 1.0),
            ("ln_c_weight", hidden, 1.0),
            ("ln_c_bias", hidden, 0.0),
        ] {
            let values = (0..width)
                .map(|i| offset + 0.1 * ((i * 7 + layer * 3) % 11) as f32 - 0.5)
                .collect();
            tensors.insert(format!("{rnn}{base}_l{layer}"), (vec![width], values));
        }
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, v))| {
            let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name.clone(), shape.clone(), data)
        })
        .collect();
    let views = bytes.iter().map(|(name, shape, data)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .unwrap();
        (name.clone(), view)
    });
    let file = dir.path().join("ln_lstm.safetensors");
    safetensors::serialize_to_file(views, None, &file).unwrap();

    let plain = import::<NdArray>(
        &file,
        &config(""),
        None,
        &dir.path().join("plain"),
        false,
        &device,
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        plain.contains("tensors the config has no place for") && plain.contains("ln_c_bias_l0"),
        "{plain}"
    );
    let out = dir.path().join("run");
    import::<NdArray>(
        &file,
        &config("layer_norm = true\n"),
        None,
        &out,
        false,
        &device,
    )
    .unwrap();
    let run = load_run::<NdArray>(&out, &device).unwrap();
    assert!(run.model.body.layer_norm());
    let exported = dir.path().join("exported.safetensors");
    let names = ember_train::export::TorchNames::of_run(&out).unwrap();
    ember_train::export::export_safetensors(&run.model, &names, &exported).unwrap();
    let back = ember_train::import::read_torch_file(&exported).unwrap();
    assert_eq!(
        back.keys().collect::<Vec<_>>(),
        tensors.keys().collect::<Vec<_>>()
    );
    for (name, (shape, values)) in &tensors {
        assert_eq!(&back[name], &(shape.clone(), values.clone()), "{name}");
    }
}
