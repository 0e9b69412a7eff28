//! PyTorch `state_dict` names for recurrent layers: load PyTorch's tensors into ember's layers
//! and list ember's parameters under PyTorch's names.
//!
//! Layer `k`'s cell has `weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}` and,
//! for a projected LSTM, `weight_hr_l{k}`; the reverse direction adds `_reverse`. Shapes are
//! PyTorch's (`weight_ih [G·H, in]`), so tensors are copied as they are.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::prelude::*;

use crate::NnError;

/// A row-major `[rows, cols]` matrix as `[cols, rows]`: PyTorch's `nn.Linear` weight
/// (`[out, in]`) as Burn's `Linear` holds it (`[in, out]`), and back.
pub fn transpose(shape: &[usize], values: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (rows, cols) = (shape[0], shape[1]);
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    (vec![cols, rows], out)
}

/// Float tensors by PyTorch name, as read from a `state_dict`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TorchTensors {
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl TorchTensors {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tensor of `shape` with row-major `values`.
    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, values: Vec<f32>) {
        self.tensors.insert(name.into(), (shape, values));
    }

    /// Names not taken yet, in order.
    pub fn remaining(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    /// Removes `name` and returns its shape and values, if present.
    pub fn remove(&mut self, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        self.tensors.remove(name)
    }

    /// Removes `name` and returns it as a tensor, checking it has `shape`.
    pub fn take<B: Backend, const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, NnError> {
        let (found, values) = self
            .tensors
            .remove(name)
            .ok_or_else(|| NnError::MissingTensor(name.to_owned()))?;
        if found != shape {
            return Err(NnError::TensorShape {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found,
            });
        }
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// Replaces `param` by tensor `name`, which must have the parameter's shape.
    pub fn replace<B: Backend, const D: usize>(
        &mut self,
        param: Param<Tensor<B, D>>,
        name: &str,
    ) -> Result<Param<Tensor<B, D>>, NnError> {
        let shape: [usize; D] = param.lazy_shape().dims();
        let device = param.val().device();
        Ok(Param::from_tensor(self.take(name, shape, &device)?))
    }

    /// Replaces an optional parameter; `None` stays `None` (and the tensor must be absent).
    pub fn replace_opt<B: Backend, const D: usize>(
        &mut self,
        param: Option<Param<Tensor<B, D>>>,
        name: &str,
    ) -> Result<Option<Param<Tensor<B, D>>>, NnError> {
        param.map(|p| self.replace(p, name)).transpose()
    }
}

/// One parameter under its PyTorch name.
#[derive(Debug, Clone)]
pub enum TorchParam<B: Backend> {
    /// A weight matrix.
    Matrix(String, Tensor<B, 2>),
    /// A bias vector.
    Vector(String, Tensor<B, 1>),
}

impl<B: Backend> TorchParam<B> {
    /// The PyTorch name.
    pub fn name(&self) -> &str {
        match self {
            Self::Matrix(n, _) | Self::Vector(n, _) => n,
        }
    }

    /// Shape and row-major values.
    pub fn to_host(&self) -> (Vec<usize>, Vec<f32>) {
        let data = match self {
            Self::Matrix(_, t) => t.to_data(),
            Self::Vector(_, t) => t.to_data(),
        };
        (data.shape.to_vec(), data.iter::<f32>().collect())
    }
}

/// Lists (PyTorch base name, parameter) pairs as `{prefix}{name}{suffix}`.
pub(crate) fn named<B: Backend>(
    prefix: &str,
    suffix: &str,
    matrices: &[(&str, &Param<Tensor<B, 2>>)],
    vectors: &[(&str, &Option<Param<Tensor<B, 1>>>)],
) -> Vec<TorchParam<B>> {
    let mut out: Vec<TorchParam<B>> = matrices
        .iter()
        .map(|(n, p)| TorchParam::Matrix(format!("{prefix}{n}{suffix}"), p.val()))
        .collect();
    out.extend(vectors.iter().filter_map(|(n, p)| {
        p.as_ref()
            .map(|p| TorchParam::Vector(format!("{prefix}{n}{suffix}"), p.val()))
    }));
    out
}
