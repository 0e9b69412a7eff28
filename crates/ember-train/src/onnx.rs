//! A trained character model as an ONNX graph (opset 14), for onnxruntime and every other ONNX
//! runtime, with ONNX's own recurrent operators:
//!
//! ```text
//! tokens [batch, seq] int64 ─ Gather(embedding) ─ Transpose ─┬─ LSTM/GRU/RNN layer 0 ─ Squeeze ─ … layer L−1
//! h0 [L, batch, H] (c0 for an LSTM) ─ Slice per layer ───────┘         │ Y_h (Y_c) of every layer: Concat ─ h_n (c_n)
//! … ─ Transpose ─ MatMul(headᵀ) ─ Add(bias) ─ logits [batch, seq, vocab]
//! ```
//!
//! The batch and time axes are dynamic and the state goes in and comes out, so a caller can
//! stream one character at a time, feeding `h_n` (and `c_n`) back as `h0` (`c0`). ONNX orders
//! the gates differently from PyTorch: an LSTM's `i, o, f, c` (PyTorch `i, f, g, o`), a GRU's
//! `z, r, h` (PyTorch `r, z, n`, and `linear_before_reset = 1` is PyTorch's GRU). ONNX's LSTM
//! has no projection, so a model with `proj_size` is refused.

use std::path::Path;

use burn::prelude::*;
use ember_nn::{CellKind, CharLm, Nonlinearity};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto::{self, Value};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf::MessageField;

use crate::export::{torch_state_dict, TorchNames};
use crate::TrainError;

/// The opset the graph is written for (LSTM, GRU and RNN as of opset 14).
pub const OPSET: i64 = 14;

/// ONNX's IR version for [`OPSET`] (ONNX 1.9).
const IR_VERSION: i64 = 7;

/// What [`onnx_model`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnnxShape {
    /// The cell of every layer.
    pub cell: CellKind,
    /// The number of stacked layers.
    pub layers: usize,
    /// The hidden size.
    pub hidden: usize,
    /// The vocabulary size (the logits' last axis).
    pub vocab: usize,
}

/// The ONNX model of `model`; `nonlinearity` is an Elman RNN's activation.
pub fn onnx_model<B: Backend>(
    model: &CharLm<B>,
    nonlinearity: Nonlinearity,
) -> Result<(ModelProto, OnnxShape), TrainError> {
    let refuse = |why: &str| Err(TrainError::Onnx(why.to_owned()));
    if model.body.directions() != 1 {
        return refuse(
            "a bidirectional recurrent body reads the future, so it cannot stream one character \
             at a time; only unidirectional language models export to ONNX",
        );
    }
    let [h, c] = model.body.zoneout();
    if h > 0.0 || c > 0.0 {
        return refuse(&format!(
            "this model was trained with zoneout (model.zoneout = {h}, model.zoneout_cell = \
             {c}): at inference each step mixes the new state with the previous one, which \
             ONNX's LSTM/GRU/RNN operators cannot express; export the weights with `ember \
             export --to FILE.safetensors`, or train with both keys at 0"
        ));
    }
    if model.body.layer_norm() {
        return refuse(
            "this model has LayerNorm cells (model.layer_norm): ONNX's LSTM and GRU operators have \
             no normalisation inside the step; export the weights with `ember export --to \
             FILE.safetensors`, or train with model.layer_norm = false",
        );
    }
    let tensors = torch_state_dict(model, &TorchNames::default());
    if tensors
        .iter()
        .any(|(name, _, _)| name.contains("weight_hr"))
    {
        return refuse(
            "ONNX's LSTM has no projection (proj_size); export this run with `ember export --to \
             FILE.safetensors`, or train with model.proj_size = 0",
        );
    }
    let get = |name: &str| -> Result<&(String, Vec<usize>, Vec<f32>), TrainError> {
        tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .ok_or_else(|| TrainError::Onnx(format!("the model has no tensor {name}")))
    };
    let cell = model.body.kind();
    let (_, embed_shape, _) = get("embed.weight")?;
    let vocab = embed_shape[0];
    let (_, hh_shape, _) = get("rnn.weight_hh_l0")?;
    let hidden = hh_shape[1];
    let layers = (0..)
        .take_while(|l| get(&format!("rnn.weight_ih_l{l}")).is_ok())
        .count();
    let mut g = Graph::default();
    let (_, _, table) = get("embed.weight")?;
    g.floats("embed.weight", embed_shape.clone(), table.clone());
    g.node(
        "Gather",
        &["embed.weight", "tokens"],
        &["embedded"],
        vec![int("axis", 0)],
    );
    g.node(
        "Transpose",
        &["embedded"],
        &["x0"],
        vec![ints("perm", &[1, 0, 2])],
    );
    let gates = gate_order(cell);
    let (mut ys_h, mut ys_c) = (Vec::new(), Vec::new());
    for l in 0..layers {
        let tensor = |kind: &str| get(&format!("rnn.{kind}_l{l}")).map(|(_, s, v)| (s, v));
        let (w_shape, w) = tensor("weight_ih")?;
        let (r_shape, r) = tensor("weight_hh")?;
        g.floats(
            &format!("W{l}"),
            [&[1], &w_shape[..]].concat(),
            reorder(w, &gates),
        );
        g.floats(
            &format!("R{l}"),
            [&[1], &r_shape[..]].concat(),
            reorder(r, &gates),
        );
        // Without biases the operator's optional input `B` stays empty.
        let b = match (tensor("bias_ih"), tensor("bias_hh")) {
            (Ok((_, b_ih)), Ok((_, b_hh))) => {
                let both = [reorder(b_ih, &gates), reorder(b_hh, &gates)].concat();
                g.floats(&format!("B{l}"), vec![1, both.len()], both);
                format!("B{l}")
            }
            _ => String::new(),
        };
        g.ints(&format!("start{l}"), &[l as i64]);
        g.ints(&format!("end{l}"), &[l as i64 + 1]);
        let mut slice = |state: &str| {
            let out = format!("{state}_l{l}");
            g.node(
                "Slice",
                &[state, &format!("start{l}"), &format!("end{l}"), "axis0"],
                &[&out],
                vec![],
            );
            out
        };
        let h0 = slice("h0");
        let c0 = (cell == CellKind::Lstm).then(|| slice("c0"));
        let (y, y_h, y_c) = (format!("y{l}"), format!("h_n{l}"), format!("c_n{l}"));
        let mut input = vec![format!("x{l}"), format!("W{l}"), format!("R{l}"), b];
        input.extend([String::new(), h0]);
        let mut output = vec![y.clone(), y_h.clone()];
        let mut attributes = vec![int("hidden_size", hidden as i64)];
        let op = match cell {
            CellKind::Lstm => {
                input.extend(c0);
                output.push(y_c.clone());
                ys_c.push(y_c);
                "LSTM"
            }
            CellKind::Gru => {
                attributes.push(int("linear_before_reset", 1));
                "GRU"
            }
            CellKind::Rnn => {
                let act = match nonlinearity {
                    Nonlinearity::Tanh => "Tanh",
                    Nonlinearity::Relu => "Relu",
                };
                attributes.push(strings("activations", &[act]));
                "RNN"
            }
        };
        g.node_owned(op, input, output, attributes);
        ys_h.push(y_h);
        g.node("Squeeze", &[&y, "axis1"], &[&format!("x{}", l + 1)], vec![]);
    }
    g.ints("axis0", &[0]);
    g.ints("axis1", &[1]);
    let lstm = cell == CellKind::Lstm;
    g.node_owned("Concat", ys_h, vec!["h_n".into()], vec![int("axis", 0)]);
    if lstm {
        g.node_owned("Concat", ys_c, vec!["c_n".into()], vec![int("axis", 0)]);
    }
    g.node(
        "Transpose",
        &[&format!("x{layers}")],
        &["top"],
        vec![ints("perm", &[1, 0, 2])],
    );
    // PyTorch's Linear weight is [vocab, H]; MatMul wants [H, vocab].
    let (_, head_shape, head) = get("head.weight")?;
    let (t_shape, t) = ember_nn::torch::transpose(head_shape, head);
    g.floats("head.weight_t", t_shape, t);
    g.node("MatMul", &["top", "head.weight_t"], &["scores"], vec![]);
    match get("head.bias") {
        Ok((_, shape, values)) => {
            g.floats("head.bias", shape.clone(), values.clone());
            g.node("Add", &["scores", "head.bias"], &["logits"], vec![]);
        }
        Err(_) => g.node("Identity", &["scores"], &["logits"], vec![]),
    }
    let state = |name: &str| {
        value_info(
            name,
            DataType::FLOAT,
            &[Dim::Fixed(layers), Dim::Batch, Dim::Fixed(hidden)],
        )
    };
    let mut inputs = vec![
        value_info("tokens", DataType::INT64, &[Dim::Batch, Dim::Seq]),
        state("h0"),
    ];
    let mut outputs = vec![
        value_info(
            "logits",
            DataType::FLOAT,
            &[Dim::Batch, Dim::Seq, Dim::Fixed(vocab)],
        ),
        state("h_n"),
    ];
    if lstm {
        inputs.push(state("c0"));
        outputs.push(state("c_n"));
    }
    let graph = GraphProto {
        name: format!("ember {} char model", cell.name()),
        node: g.nodes,
        initializer: g.initializers,
        input: inputs,
        output: outputs,
        ..Default::default()
    };
    let proto = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "ember".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        graph: MessageField::some(graph),
        ..Default::default()
    };
    let shape = OnnxShape {
        cell,
        layers,
        hidden,
        vocab,
    };
    Ok((proto, shape))
}

/// Writes [`onnx_model`] of `model` to `to`.
pub fn export_onnx<B: Backend>(
    model: &CharLm<B>,
    nonlinearity: Nonlinearity,
    to: &Path,
) -> Result<OnnxShape, TrainError> {
    let (proto, shape) = onnx_model(model, nonlinearity)?;
    let bytes = proto
        .write_to_bytes()
        .map_err(|e| TrainError::Onnx(format!("cannot encode the graph: {e}")))?;
    std::fs::write(to, bytes).map_err(TrainError::io(to))?;
    Ok(shape)
}

/// Where ONNX puts PyTorch's gate blocks: block `k` of ONNX's weight is PyTorch's block
/// `order[k]`.
fn gate_order(cell: CellKind) -> Vec<usize> {
    match cell {
        // PyTorch i, f, g, o → ONNX i, o, f, c.
        CellKind::Lstm => vec![0, 3, 1, 2],
        // PyTorch r, z, n → ONNX z, r, h.
        CellKind::Gru => vec![1, 0, 2],
        CellKind::Rnn => vec![0],
    }
}

/// `values`, row-major with PyTorch's gate blocks one after another along the first axis,
/// with the blocks in `order`.
fn reorder(values: &[f32], order: &[usize]) -> Vec<f32> {
    let block = values.len() / order.len();
    order
        .iter()
        .flat_map(|&k| &values[k * block..(k + 1) * block])
        .copied()
        .collect()
}

/// The nodes and initialisers of a graph being built.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Graph {
    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        self.node_owned(op, owned(inputs), owned(outputs), attribute);
    }

    fn node_owned(
        &mut self,
        op: &str,
        input: Vec<String>,
        output: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) {
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            op_type: op.into(),
            name,
            input,
            output,
            attribute,
            ..Default::default()
        });
    }

    /// A float initialiser, values little-endian in `raw_data`.
    fn floats(&mut self, name: &str, dims: Vec<usize>, values: Vec<f32>) {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::FLOAT as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
    }

    /// A one-dimensional int64 initialiser.
    fn ints(&mut self, name: &str, values: &[i64]) {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: vec![values.len() as i64],
            data_type: DataType::INT64 as i32,
            int64_data: values.to_vec(),
            ..Default::default()
        });
    }
}

/// An integer attribute.
fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INT.into(),
        i,
        ..Default::default()
    }
}

/// An integer-list attribute.
fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INTS.into(),
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// A string-list attribute.
fn strings(name: &str, values: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::STRINGS.into(),
        strings: values.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

/// One axis of a graph input or output.
enum Dim {
    /// The dynamic batch axis.
    Batch,
    /// The dynamic time axis.
    Seq,
    /// A fixed size.
    Fixed(usize),
}

/// The declaration of a graph input or output.
fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Batch => dimension::Value::DimParam("batch".into()),
                Dim::Seq => dimension::Value::DimParam("seq".into()),
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: elem as i32,
        shape: MessageField::some(TensorShapeProto {
            dim,
            ..Default::default()
        }),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: MessageField::some(TypeProto {
            value: Some(Value::TensorType(tensor)),
            ..Default::default()
        }),
        ..Default::default()
    }
}
