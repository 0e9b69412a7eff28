//! The Elman RNN cell of `torch.nn.RNN`.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::relu;
use ember_kernels::Cell;
use serde::{Deserialize, Serialize};

use crate::cell::{
    load_gate_params, project, recur, recurrent_weight_methods, CellOptions, CellSpec, CellState,
    GateWeights, RecurrentCell, ZoneMasks,
};
use crate::torch::{named, TorchParam, TorchTensors};
use crate::NnError;

/// The nonlinearity of an Elman RNN (`nonlinearity=` in PyTorch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Nonlinearity {
    /// `tanh` (PyTorch's default).
    #[default]
    Tanh,
    /// `relu`.
    Relu,
}

/// One direction of one Elman RNN layer, with PyTorch's parameters:
///
/// ```text
/// h' = act(W_ih x + b_ih + W_hh h + b_hh)      act = tanh or relu
/// ```
#[derive(Module, Debug)]
pub struct RnnCell<B: Backend> {
    /// `W_ih`, `[H, in]`.
    pub weight_ih: Param<Tensor<B, 2>>,
    /// `W_hh`, `[H, H]`.
    pub weight_hh: Param<Tensor<B, 2>>,
    /// `b_ih`, `[H]`.
    pub bias_ih: Option<Param<Tensor<B, 1>>>,
    /// `b_hh`, `[H]`.
    pub bias_hh: Option<Param<Tensor<B, 1>>>,
    /// `tanh` or `relu`.
    #[module(skip)]
    pub nonlinearity: Nonlinearity,
}

impl<B: Backend> RecurrentCell<B> for RnnCell<B> {
    const HAS_CELL_STATE: bool = false;
    const SUPPORTS_PROJECTION: bool = false;

    fn init(spec: CellSpec, options: &CellOptions, device: &B::Device) -> Result<Self, NnError> {
        if options.layer_norm {
            return Err(NnError::LayerNormUnsupported);
        }
        let w = GateWeights::init(1, spec, device);
        Ok(Self {
            weight_ih: w.weight_ih,
            weight_hh: w.weight_hh,
            bias_ih: w.bias_ih,
            bias_hh: w.bias_hh,
            nonlinearity: options.nonlinearity,
        })
    }

    fn input_projection(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        project(x, &self.weight_ih, &[&self.bias_ih, &self.bias_hh], None)
    }

    fn step(&self, projected: Tensor<B, 2>, state: &CellState<B>) -> CellState<B> {
        let recurrent = recur(&state.h, &self.weight_hh, None, None);
        #[cfg(feature = "cube")]
        if let Some(h) = crate::cube::rnn(
            projected.clone(),
            recurrent.clone(),
            self.nonlinearity == Nonlinearity::Relu,
        ) {
            return CellState { h, c: None };
        }
        let pre = projected + recurrent;
        let h = match self.nonlinearity {
            Nonlinearity::Tanh => pre.tanh(),
            Nonlinearity::Relu => relu(pre),
        };
        CellState { h, c: None }
    }

    fn fused_recurrence(
        &self,
        projected: Tensor<B, 3>,
        state: &CellState<B>,
        active: &[usize],
        zone: &ZoneMasks<B>,
    ) -> Result<(Tensor<B, 3>, CellState<B>), Tensor<B, 3>> {
        let cell = Cell::Rnn {
            relu: self.nonlinearity == Nonlinearity::Relu,
        };
        let weights = crate::fused::RecurrentWeights {
            w_hh: self.weight_hh.val(),
            w_hr: None,
            b_hh: None,
            norm: None,
        };
        crate::fused::recurrence(cell, projected, weights, state, active, zone)
    }

    fn load_torch(
        mut self,
        prefix: &str,
        suffix: &str,
        t: &mut TorchTensors,
    ) -> Result<Self, NnError> {
        let weights = [&mut self.weight_ih, &mut self.weight_hh];
        load_gate_params(
            t,
            prefix,
            suffix,
            weights,
            [&mut self.bias_ih, &mut self.bias_hh],
        )?;
        Ok(self)
    }

    recurrent_weight_methods!();

    fn torch_params(&self, prefix: &str, suffix: &str) -> Vec<TorchParam<B>> {
        named(
            prefix,
            suffix,
            &[
                ("weight_ih", &self.weight_ih),
                ("weight_hh", &self.weight_hh),
            ],
            &[("bias_ih", &self.bias_ih), ("bias_hh", &self.bias_hh)],
        )
    }
}
