//! A user's own PyTorch models (`tools/fixtures/user_models.py`): character models written the
//! usual way, with the user's vocabulary (no special tokens) and module names
//! (`encoder`/`rnn`/`decoder`, makemore's `.`), import with that vocabulary, reproduce PyTorch's
//! own held-out loss on Flex, NdArray and wgpu (a tied model too, from either file it saves),
//! and export back under the user's names, bit for bit, or as ONNX graphs that onnxruntime runs to ember's logits (`tools/fixtures/
//! onnx_scores.py`).

use std::path::{Path, PathBuf};

use burn::backend::flex::FlexDevice;
use burn::backend::ndarray::NdArrayDevice;
use burn::backend::wgpu::WgpuDevice;
use burn::backend::{Flex, NdArray, Wgpu};
use burn::prelude::*;
use ember_data::Vocab;
use ember_train::export::{export_safetensors, TorchNames};
use ember_train::import::{char_lm_from_torch, import, read_torch_file};
use ember_train::onnx::export_onnx;
use ember_train::run::prepare_data_in;
use ember_train::{eval_run, load_run, EvalData, ExperimentConfig};
use serde_json::Value;

/// Largest |ember − PyTorch| allowed for a held-out loss (nats).
const TOLERANCE: f64 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/user_models")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The ember config describing fixture model `m`: a stateful text model over the training
/// text, or a names model over the training names.
fn config(m: &Value) -> ExperimentConfig {
    let c = &m["config"];
    let text = m["eval"]["protocol"] == "text_stream";
    let data = if text {
        format!(
            "kind = \"text\"\npath = {:?}\nvalid_fraction = 0.1\nseq_len = 32\nstateful = true",
            fixtures().join("text_train.txt").to_str().unwrap()
        )
    } else {
        format!(
            "path = {:?}\nvalid_fraction = 0.1",
            fixtures().join("names_train.txt").to_str().unwrap()
        )
    };
    ExperimentConfig::parse(&format!(
        "name = \"user\"\n[data]\n{data}\n[model]\nkind = {}\nembed_dim = {}\nhidden_size = {}\nnum_layers = {}\nproj_size = {}\ntie_embeddings = {}\n[train]\nbatch_size = 8",
        c["cell"],
        c["embed_dim"],
        c["hidden_size"],
        c["num_layers"],
        c["proj_size"],
        c["tie_embeddings"].as_bool().unwrap_or(false)
    ))
    .unwrap()
}

/// Fixture model `m`'s vocabulary file (the `chars`/`itos` list, or `stoi` when `stoi`), with
/// its start and end characters.
fn vocab(m: &Value, stoi: bool) -> Vocab {
    let files = &m["vocab_files"];
    let file = if stoi {
        &files["stoi"]
    } else {
        files.get("chars").unwrap_or(&files["itos"])
    };
    let role = |v: &Value| v.as_str().and_then(|s| s.chars().next());
    Vocab::from_user_file(
        &fixtures().join(file.as_str().unwrap()),
        role(&m["bos"]),
        role(&m["eos"]),
    )
    .unwrap()
}

/// Imports fixture model `name` from its `.pt` or `.safetensors` file into `out`.
fn import_model(name: &str, format: &str, stoi: bool, out: &Path) -> Value {
    let m = expected()["models"][name].clone();
    let from = fixtures().join(m["files"][format].as_str().unwrap());
    import::<NdArray>(
        &from,
        &config(&m),
        Some(&vocab(&m, stoi)),
        out,
        false,
        &NdArrayDevice::Cpu,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    m
}

/// PyTorch's held-out loss of fixture model `m`, by ember's evaluation of the run in `out`
/// on backend `B`: the validation text as one stream (batch size 1, state carried from
/// zeros), or every validation name on its own.
fn held_out<B: Backend>(m: &Value, out: &Path, device: &B::Device) -> f64 {
    let run = load_run::<B>(out, device).unwrap();
    let file = fixtures().join(m["eval"]["file"].as_str().unwrap());
    let report = eval_run(&run, &EvalData::File(file), 1, device).unwrap();
    assert_eq!(
        report.tokens as u64,
        m["eval"]["positions"].as_u64().unwrap(),
        "positions scored"
    );
    report.loss
}

fn assert_loss(name: &str, got: f64, want: f64, backend: &str) {
    assert!(
        (got - want).abs() <= TOLERANCE,
        "{name} on {backend}: held-out loss {got} vs PyTorch {want}"
    );
}

/// Every fixture model, imported from its `.safetensors` (and the LSTM also from its `.pt`
/// with the `stoi` map), gives PyTorch's held-out loss on each backend.
#[test]
fn users_models_reproduce_pytorchs_held_out_loss() {
    let names = [
        "word_lm_lstm",
        "word_lm_lstm_proj",
        "word_lm_gru",
        "word_lm_lstm_tied",
        "names_lstm",
    ];
    let mut runs = vec![];
    for name in names {
        let dir = tempfile::tempdir().unwrap();
        let m = import_model(name, "safetensors", false, &dir.path().join("run"));
        runs.push((name, m, dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let m = import_model("word_lm_lstm", "pt", true, &dir.path().join("run"));
    runs.push(("word_lm_lstm (.pt, stoi)", m, dir));
    // The tied model's .pt holds the shared weight under both names, its .safetensors under one.
    let dir = tempfile::tempdir().unwrap();
    let m = import_model("word_lm_lstm_tied", "pt", false, &dir.path().join("run"));
    runs.push(("word_lm_lstm_tied (.pt)", m, dir));
    for (name, m, dir) in &runs {
        let out = dir.path().join("run");
        let want = m["eval"]["loss_f32"].as_f64().unwrap();
        assert_loss(name, held_out::<Flex>(m, &out, &FlexDevice), want, "flex");
        let nd = held_out::<NdArray>(m, &out, &NdArrayDevice::Cpu);
        assert_loss(name, nd, want, "ndarray");
        let wgpu = held_out::<Wgpu>(m, &out, &WgpuDevice::default());
        assert_loss(name, wgpu, want, "wgpu");
    }
}

/// `ember export` of an imported run writes the user's own tensor names and values, bit for
/// bit, so it loads back into the user's class (a tied model's shared weight under the names
/// its file had).
#[test]
fn export_of_an_imported_run_is_the_users_state_dict() {
    for (name, format) in [
        ("word_lm_lstm_proj", "safetensors"),
        ("names_lstm", "safetensors"),
        ("word_lm_lstm_tied", "safetensors"),
        ("word_lm_lstm_tied", "pt"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let m = import_model(name, format, false, &out);
        let run = load_run::<NdArray>(&out, &NdArrayDevice::Cpu).unwrap();
        let names = TorchNames::of_run(&out).unwrap();
        let exported = dir.path().join("back.safetensors");
        export_safetensors(&run.model, &names, &exported).unwrap();
        let original =
            read_torch_file(&fixtures().join(m["files"][format].as_str().unwrap())).unwrap();
        let back = read_torch_file(&exported).unwrap();
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            original.keys().collect::<Vec<_>>(),
            "{name}: names"
        );
        for (key, (shape, values)) in &original {
            let (got_shape, got) = &back[key];
            assert_eq!(got_shape, shape, "{name} {key}");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(got), bits(values), "{name} {key}: values");
        }
    }
}

/// A tied file read with an untied config, and an untied file read as tied, are each one line
/// naming `model.tie_embeddings`.
#[test]
fn a_config_that_disagrees_on_tying_is_named() {
    let attempt = |name: &str, format: &str, tie: bool| {
        let m = &expected()["models"][name];
        let mut cfg = config(m);
        cfg.model.tie_embeddings = tie;
        let from = fixtures().join(m["files"][format].as_str().unwrap());
        let dir = tempfile::tempdir().unwrap();
        import::<NdArray>(
            &from,
            &cfg,
            Some(&vocab(m, false)),
            &dir.path().join("run"),
            false,
            &NdArrayDevice::Cpu,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let err = attempt("word_lm_lstm_tied", "safetensors", false);
    assert!(
        err.contains("decoder.weight")
            && err.ends_with("set model.tie_embeddings = true in the config"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Its projection is as wide as its embedding, so only the values tell it is not tied.
    let err = attempt("word_lm_lstm_proj", "pt", true);
    assert!(
        err.contains("decoder.weight differs from encoder.weight")
            && err.ends_with("set model.tie_embeddings = false"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// The vocabulary must cover the data, and a line-per-sample file needs the start and end
/// characters; each mistake is one line naming it.
#[test]
fn a_vocabulary_that_does_not_fit_the_data_is_named() {
    let m = &expected()["models"]["names_lstm"];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("names.txt");
    std::fs::write(
        &data,
        "quinn\nzed\nanna\nbob\nquade\nemma\nliam\nnora\nmia\nava\n",
    )
    .unwrap();
    let mut cfg = config(m);
    cfg.data.path = data;
    let from = fixtures().join("names_lstm.safetensors");
    let attempt = |vocab: &Vocab| {
        import::<NdArray>(
            &from,
            &cfg,
            Some(vocab),
            &dir.path().join("run"),
            true,
            &NdArrayDevice::Cpu,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let err = attempt(&vocab(m, false));
    assert!(err.contains("'q'") && err.contains("names.txt"), "{err}");
    let unmarked = Vocab::from_user_file(&fixtures().join("names_itos.json"), None, None).unwrap();
    let mut plain = cfg.clone();
    plain.data.path = fixtures().join("names_train.txt");
    let err = import::<NdArray>(
        &from,
        &plain,
        Some(&unmarked),
        &dir.path().join("run"),
        true,
        &NdArrayDevice::Cpu,
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("--bos CHAR --eos CHAR"), "{err}");
}

/// The import fixtures' two-layer ReLU RNN (`tests/fixtures/import`, ember's names and
/// vocabulary): its file, config and vocabulary.
fn rnn_relu() -> (PathBuf, ExperimentConfig, Vocab) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import");
    let cfg = ExperimentConfig::parse(&format!(
        "name = \"rnn\"\n[data]\npath = {:?}\nvalid_fraction = 0.25\n[model]\nkind = \"rnn\"\n\
         nonlinearity = \"relu\"\nembed_dim = 4\nhidden_size = 6\nnum_layers = 2\n",
        dir.join("names.txt").to_str().unwrap()
    ))
    .unwrap();
    let vocab = prepare_data_in(&cfg, None).unwrap().vocab;
    (dir.join("char_rnn_relu.safetensors"), cfg, vocab)
}

/// The graphs `ember_train::onnx` writes for the fixture models are the ones onnxruntime
/// scored (`onnx/*.onnx`, byte for byte), and ember's own logits and final states on the same
/// characters are onnxruntime's (`onnx/expected.json`, within 1e-5). `EMBER_WRITE_FIXTURES=1`
/// writes the graphs for `tools/fixtures/onnx_scores.py` instead of comparing them.
#[test]
fn onnx_export_runs_in_onnxruntime_as_in_ember() {
    let dir = fixtures().join("onnx");
    let write = std::env::var_os("EMBER_WRITE_FIXTURES").is_some();
    let scores: Value = if write {
        Value::Null
    } else {
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
    };
    let tolerance = 1e-5;
    let device = NdArrayDevice::Cpu;
    for name in ["word_lm_lstm", "word_lm_gru", "names_lstm", "char_rnn_relu"] {
        let (from, cfg, vocab) = if name == "char_rnn_relu" {
            rnn_relu()
        } else {
            let m = &expected()["models"][name];
            let from = fixtures().join(m["files"]["safetensors"].as_str().unwrap());
            (from, config(m), vocab(m, false))
        };
        let (model, _) = char_lm_from_torch::<NdArray>(&from, &cfg, &vocab, &device)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let graph = dir.join(format!("{name}.onnx"));
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            export_onnx(&model, cfg.model.nonlinearity, &graph).unwrap();
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("model.onnx");
        let shape = export_onnx(&model, cfg.model.nonlinearity, &fresh).unwrap();
        assert!(
            std::fs::read(&fresh).unwrap() == std::fs::read(&graph).unwrap(),
            "{name}: the export differs from the graph onnxruntime scored; rerun \
             tools/fixtures/onnx_scores.py (see its docs)"
        );
        let s = &scores["models"][name];
        let floats = |key: &str| -> Vec<f32> {
            s[key]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: {key}"))
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        };
        let ids: Vec<i64> = s["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let steps = ids.len();
        let tokens =
            Tensor::<NdArray, 2, Int>::from_data(TensorData::new(ids, [1, steps]), &device);
        let (logits, state) = model.forward(tokens, None);
        assert_eq!(logits.dims(), [1, steps, shape.vocab], "{name}: logits");
        let mut pairs = vec![
            ("logits", logits.into_data(), floats("logits")),
            ("h_n", state.h.into_data(), floats("h_n")),
        ];
        if let Some(c) = state.c {
            pairs.push(("c_n", c.into_data(), floats("c_n")));
        }
        for (what, got, want) in pairs {
            let got: Vec<f32> = got.iter::<f32>().collect();
            assert_eq!(got.len(), want.len(), "{name} {what}: size");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    a.is_finite() && b.is_finite() && (a - b).abs() <= tolerance * (1.0 + b.abs()),
                    "{name} {what}[{i}]: ember {a} vs onnxruntime {b}"
                );
            }
        }
    }
}

/// ONNX's LSTM has no projection: a `proj_size` model is refused in one line that says what
/// to do instead.
#[test]
fn onnx_export_refuses_proj_size_in_one_line() {
    let m = &expected()["models"]["word_lm_lstm_proj"];
    let from = fixtures().join(m["files"]["safetensors"].as_str().unwrap());
    let cfg = config(m);
    let (model, _) =
        char_lm_from_torch::<NdArray>(&from, &cfg, &vocab(m, false), &NdArrayDevice::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("model.onnx");
    let err = export_onnx(&model, cfg.model.nonlinearity, &to)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("proj_size") && !err.contains('\n') && !to.exists(),
        "{err}"
    );
}

/// ONNX's recurrent operators have no zoneout: a model trained with it is refused in one line
/// that names the keys and what to do instead (its inference mixes each step's state with the
/// previous one).
#[test]
fn onnx_export_refuses_zoneout_in_one_line() {
    let device = NdArrayDevice::Cpu;
    let model = ember_nn::CharLmConfig::new(12)
        .with_embed_dim(4)
        .with_hidden_size(6)
        .with_zoneout(Some(0.1))
        .with_zoneout_cell(Some(0.2))
        .init::<NdArray>(&device)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("model.onnx");
    let err = export_onnx(&model, ember_nn::Nonlinearity::Tanh, &to)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.zoneout = 0.1")
            && err.contains("safetensors")
            && !err.contains('\n')
            && !to.exists(),
        "{err}"
    );
}
