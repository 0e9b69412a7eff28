//! Parity with PyTorch: every committed fixture run through ember on flex, ndarray and wgpu.
//! Outputs, final states and the gradients of a scalar loss with respect to the input, the
//! initial state and every weight must agree to 1e-5 · (1 + |PyTorch's value|) (and be finite).
//!
//! - `tests/fixtures/rnn/` (`tools/fixtures/rnn_parity.py`, PyTorch 2.15): the recurrent
//!   layers, every cell kind and option.
//! - `tests/fixtures/regularisers/` (`tools/fixtures/awd_dropout.py`): the character model with
//!   AWD-LSTM's embedding dropout, variational dropout on its input, between its layers and
//!   before its head, and weight-drop on every `W_hh`, the masks fixed.
//! - `tests/fixtures/zoneout/` (`tools/fixtures/zoneout.py`): the recurrent layers with zoneout
//!   of `h` and an LSTM's `c`, the masks fixed, against a step loop written from PyTorch's
//!   cell equations.
//! - `tests/fixtures/layer_norm/` (`tools/fixtures/layer_norm.py`): LayerNorm LSTM (± proj_size)
//!   and GRU layers, some with zoneout, against a step loop written from the equations in
//!   `ember_nn::layer_norm`, every gain and bias included.

use std::path::PathBuf;

use burn::backend::flex::FlexDevice;
use burn::backend::ndarray::NdArrayDevice;
use burn::backend::wgpu::WgpuDevice;
use burn::backend::Flex;
use burn::backend::{Autodiff, NdArray, Wgpu};
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use ember_nn::recurrent::First;
use ember_nn::{
    CellKind, CharLmConfig, DropMasks, GruCell, LstmCell, Nonlinearity, Recurrent, RecurrentCell,
    RecurrentConfig, RecurrentState, RnnCell, StackMasks, TorchParam, TorchTensors,
};
use serde_json::Value;

const TOLERANCE: f32 = 1e-5;

fn fixture_dir(set: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(set)
}

/// Every case of `tests/fixtures/regularisers`, by name (each `.json` file there, so a case the
/// script adds cannot be left out).
fn regulariser_cases() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/regularisers");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 4, "regulariser fixtures: {names:?}");
    names
        .into_iter()
        .map(|n| {
            let case = read_json(dir.join(format!("{n}.json")));
            (n, case)
        })
        .collect()
}

fn read_json(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Every case of the fixture set `set` (`rnn`, `zoneout`, `layer_norm`), by name.
fn cases(set: &str) -> Vec<(String, Value)> {
    let index = read_json(fixture_dir(set).join("index.json"));
    index["cases"]
        .as_array()
        .expect("index.json lists cases")
        .iter()
        .map(|c| {
            let file = c["file"].as_str().unwrap();
            (
                c["name"].as_str().unwrap().to_owned(),
                read_json(fixture_dir(set).join(file)),
            )
        })
        .collect()
}

fn host(v: &Value) -> (Vec<usize>, Vec<f32>) {
    let shape = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    (shape, data)
}

fn tensor<B: Backend, const D: usize>(v: &Value, device: &B::Device) -> Tensor<B, D> {
    let (shape, data) = host(v);
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Compares `actual` with the fixture tensor `expected`; records a failure line if they differ.
fn compare<B: Backend, const D: usize>(
    failures: &mut Vec<String>,
    what: &str,
    actual: Option<Tensor<B, D>>,
    expected: &Value,
) {
    let Some(actual) = actual else {
        failures.push(format!("{what}: no value (no gradient?)"));
        return;
    };
    let (shape, want) = host(expected);
    if actual.dims().to_vec() != shape {
        failures.push(format!(
            "{what}: shape {:?}, expected {shape:?}",
            actual.dims()
        ));
        return;
    }
    let got: Vec<f32> = actual.into_data().iter::<f32>().collect();
    // |a − b| ≤ TOLERANCE · (1 + |b|): absolute near zero, relative for the large gradients of
    // the wide cases (sums over hundreds of rows and steps in f32). NaN fails the comparison.
    let bad = got
        .iter()
        .zip(&want)
        .filter(|(a, b)| !close(**a, **b))
        .count();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    if got.iter().any(|v| !v.is_finite()) || bad > 0 {
        failures.push(format!("{what}: {bad} values off, max abs diff {worst:e}"));
    }
}

/// `|a − b| ≤ TOLERANCE · (1 + |b|)`; false when either is NaN.
fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= TOLERANCE * (1.0 + b.abs())
}

fn config_of(case: &Value) -> RecurrentConfig {
    let c = &case["config"];
    let int = |k: &str| c[k].as_u64().unwrap() as usize;
    let flag = |k: &str| c[k].as_bool().unwrap();
    RecurrentConfig::new(int("input_size"), int("hidden_size"))
        .with_num_layers(int("num_layers"))
        .with_bias(flag("bias"))
        .with_batch_first(flag("batch_first"))
        .with_bidirectional(flag("bidirectional"))
        .with_proj_size(int("proj_size"))
        .with_nonlinearity(match c["nonlinearity"].as_str() {
            Some("relu") => Nonlinearity::Relu,
            _ => Nonlinearity::Tanh,
        })
        .with_zoneout(c["zoneout"].as_f64().unwrap_or(0.0))
        .with_zoneout_cell(c["zoneout_cell"].as_f64().unwrap_or(0.0))
        .with_layer_norm(c["layer_norm"].as_bool().unwrap_or(false))
}

/// A zoneout case's masks (`masks.h`, `masks.c`: one per cell; no dropout between layers);
/// `None` for other cases.
fn zone_masks<B: Backend>(case: &Value, device: &B::Device) -> Option<StackMasks<B>> {
    let m = case.get("masks")?;
    let config = config_of(case);
    let batch = host(&case["input"]).0[1];
    let width = config.output_size() * if config.bidirectional { 2 } else { 1 };
    let between = (1..config.num_layers)
        .map(|_| Tensor::ones([1, batch, width], device))
        .collect();
    let list = |k: &str| -> Vec<Tensor<B, 3>> {
        m[k].as_array()
            .unwrap()
            .iter()
            .map(|v| tensor(v, device))
            .collect()
    };
    Some(StackMasks {
        between,
        recurrent: Vec::new(),
        zone_h: list("h"),
        zone_c: list("c"),
    })
}

/// Runs one case with cells `C`; returns what did not match.
fn check<B: AutodiffBackend, C: RecurrentCell<B>>(case: &Value, device: &B::Device) -> Vec<String> {
    let mut tensors = TorchTensors::new();
    for (name, v) in case["params"].as_object().unwrap() {
        let (shape, data) = host(v);
        tensors.insert(name.clone(), shape, data);
    }
    let layer: Recurrent<B, C> = config_of(case).init(device).unwrap();
    let layer = layer.load_torch("", &mut tensors).unwrap();
    assert!(
        tensors.remaining().is_empty(),
        "unused tensors {:?}",
        tensors.remaining()
    );
    let lengths: Option<Vec<usize>> = case["config"]["lengths"]
        .as_array()
        .map(|l| l.iter().map(|x| x.as_u64().unwrap() as usize).collect());
    let has_c = case.get("c0").is_some_and(|v| !v.is_null());

    let mut failures = Vec::new();
    for (section, given) in [("given_state", true), ("zero_state", false)] {
        let s = &case[section];
        let x = tensor::<B, 3>(&case["input"], device).require_grad();
        let h0 = tensor::<B, 3>(&case["h0"], device).require_grad();
        let c0 = has_c.then(|| tensor::<B, 3>(&case["c0"], device).require_grad());
        let state = given.then(|| RecurrentState {
            h: h0.clone(),
            c: c0.clone(),
        });
        let (out, fin) = match zone_masks(case, device) {
            Some(masks) => {
                assert!(!layer_batch_first(case), "zoneout fixtures are seq-first");
                layer
                    .forward_with_masks(
                        First::Features(x.clone()),
                        lengths.as_deref(),
                        state,
                        &masks,
                    )
                    .unwrap_or_else(|e| panic!("the fixture's masks must fit its layer: {e}"))
            }
            None => layer.forward(x.clone(), lengths.as_deref(), state),
        };
        let what = |w: &str| format!("{section} {w}");
        compare(
            &mut failures,
            &what("output"),
            Some(out.clone().inner()),
            &s["output"],
        );
        compare(
            &mut failures,
            &what("h_n"),
            Some(fin.h.clone().inner()),
            &s["h_n"],
        );
        let mut loss = (out * tensor(&s["grad_output"], device)).sum()
            + (fin.h * tensor(&s["grad_h_n"], device)).sum();
        if let Some(c_n) = fin.c {
            compare(
                &mut failures,
                &what("c_n"),
                Some(c_n.clone().inner()),
                &s["c_n"],
            );
            loss = loss + (c_n * tensor(&s["grad_c_n"], device)).sum();
        }
        let grads = loss.backward();
        compare(
            &mut failures,
            &what("grad.input"),
            x.grad(&grads),
            &s["grad.input"],
        );
        if given {
            compare(
                &mut failures,
                &what("grad.h0"),
                h0.grad(&grads),
                &s["grad.h0"],
            );
            if let Some(c0) = &c0 {
                compare(
                    &mut failures,
                    &what("grad.c0"),
                    c0.grad(&grads),
                    &s["grad.c0"],
                );
            }
        }
        for p in layer.torch_params("") {
            let key = format!("grad.{}", p.name());
            match &p {
                TorchParam::Matrix(_, t) => {
                    compare(&mut failures, &what(&key), t.grad(&grads), &s[&key])
                }
                TorchParam::Vector(_, t) => {
                    compare(&mut failures, &what(&key), t.grad(&grads), &s[&key])
                }
            }
        }
    }
    failures
}

fn layer_batch_first(case: &Value) -> bool {
    case["config"]["batch_first"].as_bool().unwrap()
}

fn check_all<B: AutodiffBackend>(device: &B::Device) {
    let plain = cases("rnn");
    assert!(plain.len() >= 84, "fixtures missing: {} cases", plain.len());
    let zoned = cases("zoneout");
    assert!(
        zoned.len() >= 8,
        "zoneout fixtures missing: {} cases",
        zoned.len()
    );
    let normed = cases("layer_norm");
    assert!(
        normed.len() >= 9,
        "layer_norm fixtures missing: {} cases",
        normed.len()
    );
    let mut report = Vec::new();
    for (name, case) in plain.iter().chain(&zoned).chain(&normed) {
        let failures = match case["config"]["cell"].as_str().unwrap() {
            "lstm" => check::<B, LstmCell<B>>(case, device),
            "gru" => check::<B, GruCell<B>>(case, device),
            "rnn_tanh" | "rnn_relu" => check::<B, RnnCell<B>>(case, device),
            other => panic!("unknown cell {other}"),
        };
        report.extend(failures.into_iter().map(|f| format!("{name}: {f}")));
    }
    assert!(
        report.is_empty(),
        "{} mismatches:\n{}",
        report.len(),
        report.join("\n")
    );
}

/// Runs one regulariser case (see the module docs); returns what did not match.
fn check_regularised<B: AutodiffBackend>(case: &Value, device: &B::Device) -> Vec<String> {
    let c = &case["config"];
    let int = |k: &str| c[k].as_u64().unwrap() as usize;
    let prob = |k: &str| c[k].as_f64().unwrap();
    let kind = match c["cell"].as_str().unwrap() {
        "lstm" => CellKind::Lstm,
        "gru" => CellKind::Gru,
        other => panic!("unknown cell {other}"),
    };
    let mut lm = CharLmConfig::new(int("vocab_size"))
        .with_kind(kind)
        .with_embed_dim(int("embed_dim"))
        .with_hidden_size(int("hidden_size"))
        .with_num_layers(int("num_layers"))
        .with_dropout(prob("p"))
        .with_variational(Some(true))
        .with_embed_dropout(Some(prob("p_embed")))
        .with_input_dropout(Some(prob("p_input")))
        .with_weight_drop(Some(prob("p_weight")))
        .with_proj_size(c["proj_size"].as_u64().unwrap_or(0) as usize)
        .with_tie_embeddings(Some(c["tied"].as_bool().unwrap_or(false)))
        .init::<B>(device)
        .unwrap();
    let params = &case["params"];
    lm.embedding.weight = Param::from_tensor(tensor(&params["embedding.weight"], device));
    let bias = Some(Param::from_tensor(tensor(&params["head.bias"], device)));
    match lm.head.as_mut() {
        Some(head) => {
            let (shape, data) = host(&params["head.weight"]);
            let (shape, data) = ember_nn::torch::transpose(&shape, &data);
            head.weight =
                Param::from_tensor(Tensor::from_data(TensorData::new(data, shape), device));
            head.bias = bias;
        }
        None => {
            assert_eq!(
                params["head.weight"], params["embedding.weight"],
                "a tied fixture's head is its embedding"
            );
            lm.tied_bias = bias;
        }
    }
    let mut tensors = TorchTensors::new();
    for (name, v) in params.as_object().unwrap() {
        if name.starts_with("rnn.") {
            let (shape, data) = host(v);
            tensors.insert(name.clone(), shape, data);
        }
    }
    lm.body = lm.body.load_torch("rnn.", &mut tensors).unwrap();
    assert!(tensors.remaining().is_empty(), "{:?}", tensors.remaining());

    let (shape, ids) = (
        [
            case["tokens"]["shape"][0].as_u64().unwrap() as usize,
            case["tokens"]["shape"][1].as_u64().unwrap() as usize,
        ],
        case["tokens"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect::<Vec<_>>(),
    );
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, shape), device);
    let lengths: Option<Vec<usize>> = case["lengths"]
        .as_array()
        .map(|l| l.iter().map(|x| x.as_u64().unwrap() as usize).collect());
    let m = &case["masks"];
    let masks = DropMasks {
        embed: Some(tensor(&m["embed"], device)),
        input: Some(tensor(&m["input"], device)),
        stack: Some(StackMasks {
            between: m["between"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| tensor(v, device))
                .collect(),
            recurrent: m["recurrent"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| tensor(v, device))
                .collect(),
            zone_h: Vec::new(),
            zone_c: Vec::new(),
        }),
        output: Some(tensor(&m["output"], device)),
    };
    let (logits, state) = lm
        .forward_with_masks(tokens, lengths.as_deref(), None, masks)
        .unwrap_or_else(|e| panic!("the fixture's masks must fit its model: {e}"));
    let logits = logits.swap_dims(0, 1);
    let mut failures = Vec::new();
    compare(
        &mut failures,
        "logits",
        Some(logits.clone().inner()),
        &case["logits"],
    );
    compare(
        &mut failures,
        "h_n",
        Some(state.h.clone().inner()),
        &case["h_n"],
    );
    let mut loss = (logits * tensor(&case["grad_logits"], device)).sum()
        + (state.h * tensor(&case["grad_h_n"], device)).sum();
    if let Some(c_n) = state.c {
        compare(
            &mut failures,
            "c_n",
            Some(c_n.clone().inner()),
            &case["c_n"],
        );
        loss = loss + (c_n * tensor(&case["grad_c_n"], device)).sum();
    }
    let grads = loss.backward();
    let want = &case["grad"];
    compare(
        &mut failures,
        "grad.embedding.weight",
        lm.embedding.weight.grad(&grads),
        &want["embedding.weight"],
    );
    // A tied head's weight is the embedding's: its gradient, both uses summed, was compared.
    if let Some(head) = &lm.head {
        compare(
            &mut failures,
            "grad.head.weight",
            head.weight.grad(&grads).map(|g| g.transpose()),
            &want["head.weight"],
        );
    }
    let bias = match &lm.head {
        Some(head) => head.bias.as_ref(),
        None => lm.tied_bias.as_ref(),
    };
    compare(
        &mut failures,
        "grad.head.bias",
        bias.and_then(|b| b.grad(&grads)),
        &want["head.bias"],
    );
    for p in lm.body.torch_params("rnn.") {
        let key = p.name().to_owned();
        match &p {
            TorchParam::Matrix(_, t) => compare(
                &mut failures,
                &format!("grad.{key}"),
                t.grad(&grads),
                &want[&key],
            ),
            TorchParam::Vector(_, t) => compare(
                &mut failures,
                &format!("grad.{key}"),
                t.grad(&grads),
                &want[&key],
            ),
        }
    }
    failures
}

fn check_all_regularised<B: AutodiffBackend>(device: &B::Device) {
    let mut report = Vec::new();
    for (name, case) in regulariser_cases() {
        let failures = check_regularised::<B>(&case, device);
        report.extend(failures.into_iter().map(|f| format!("{name}: {f}")));
    }
    assert!(
        report.is_empty(),
        "{} mismatches:\n{}",
        report.len(),
        report.join("\n")
    );
}

#[test]
fn pytorch_parity_flex() {
    check_all::<Autodiff<Flex>>(&FlexDevice);
    check_all_regularised::<Autodiff<Flex>>(&FlexDevice);
}

#[test]
fn pytorch_parity_ndarray() {
    check_all::<Autodiff<NdArray>>(&NdArrayDevice::Cpu);
    check_all_regularised::<Autodiff<NdArray>>(&NdArrayDevice::Cpu);
}

#[test]
fn pytorch_parity_wgpu() {
    check_all::<Autodiff<Wgpu>>(&WgpuDevice::default());
    check_all_regularised::<Autodiff<Wgpu>>(&WgpuDevice::default());
}
