//! The GRU cell of `torch.nn.GRU`.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use ember_kernels::Cell;

use crate::cell::{
    load_gate_params, project, recur, recurrent_weight_methods, split_gates, CellOptions, CellSpec,
    CellState, GateWeights, RecurrentCell, ZoneMasks,
};
use crate::layer_norm::CellNorm;
use crate::torch::{named, TorchParam, TorchTensors};
use crate::NnError;

/// One direction of one GRU layer, with PyTorch's parameters (gate order r, z, n):
///
/// ```text
/// r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(W_iz x + b_iz + W_hz h + b_hz)
/// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
/// h' = (1 − z) ⊙ n + z ⊙ h
/// ```
/// The reset gate multiplies `W_hn h + b_hn` after the matmul ("reset after", as cuDNN does).
/// With `norm`, a LayerNorm GRU: both products normalised before their biases (see
/// [`crate::layer_norm`]).
#[derive(Module, Debug)]
pub struct GruCell<B: Backend> {
    /// `W_ih`, `[3H, in]`: the input weights of gates r, z, n stacked.
    pub weight_ih: Param<Tensor<B, 2>>,
    /// `W_hh`, `[3H, H]`.
    pub weight_hh: Param<Tensor<B, 2>>,
    /// `b_ih`, `[3H]`.
    pub bias_ih: Option<Param<Tensor<B, 1>>>,
    /// `b_hh`, `[3H]`.
    pub bias_hh: Option<Param<Tensor<B, 1>>>,
    /// A LayerNorm GRU's gains.
    pub norm: Option<CellNorm<B>>,
}

impl<B: Backend> RecurrentCell<B> for GruCell<B> {
    const HAS_CELL_STATE: bool = false;
    const SUPPORTS_PROJECTION: bool = false;

    fn init(spec: CellSpec, options: &CellOptions, device: &B::Device) -> Result<Self, NnError> {
        let w = GateWeights::init(3, spec, device);
        Ok(Self {
            weight_ih: w.weight_ih,
            weight_hh: w.weight_hh,
            bias_ih: w.bias_ih,
            bias_hh: w.bias_hh,
            norm: options
                .layer_norm
                .then(|| CellNorm::init(3, spec.hidden_size, false, device)),
        })
    }

    fn input_projection(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        // b_hn sits inside r ⊙ (...), so only b_ih is added here.
        project(x, &self.weight_ih, &[&self.bias_ih], self.norm.as_ref())
    }

    fn step(&self, projected: Tensor<B, 2>, state: &CellState<B>) -> CellState<B> {
        let bias = self.bias_hh.as_ref();
        let recurrent = recur(&state.h, &self.weight_hh, bias, self.norm.as_ref());
        #[cfg(feature = "cube")]
        if let Some(h) = crate::cube::gru(projected.clone(), recurrent.clone(), state.h.clone()) {
            return CellState { h, c: None };
        }
        let [i_r, i_z, i_n] = split_gates(projected);
        let [h_r, h_z, h_n] = split_gates(recurrent);
        let r = sigmoid(i_r + h_r);
        let z = sigmoid(i_z + h_z);
        let n = (i_n + r * h_n).tanh();
        let h = n.clone() + z * (state.h.clone() - n);
        CellState { h, c: None }
    }

    fn fused_recurrence(
        &self,
        projected: Tensor<B, 3>,
        state: &CellState<B>,
        active: &[usize],
        zone: &ZoneMasks<B>,
    ) -> Result<(Tensor<B, 3>, CellState<B>), Tensor<B, 3>> {
        let weights = crate::fused::RecurrentWeights {
            w_hh: self.weight_hh.val(),
            w_hr: None,
            b_hh: self.bias_hh.as_ref().map(|b| b.val()),
            norm: self.norm.as_ref().map(CellNorm::kernel_params),
        };
        crate::fused::recurrence(Cell::Gru, projected, weights, state, active, zone)
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
        self.norm = self
            .norm
            .map(|n| n.load_torch(prefix, suffix, t))
            .transpose()?;
        Ok(self)
    }

    recurrent_weight_methods!();

    fn torch_params(&self, prefix: &str, suffix: &str) -> Vec<TorchParam<B>> {
        let mut params = named(
            prefix,
            suffix,
            &[
                ("weight_ih", &self.weight_ih),
                ("weight_hh", &self.weight_hh),
            ],
            &[("bias_ih", &self.bias_ih), ("bias_hh", &self.bias_hh)],
        );
        if let Some(norm) = &self.norm {
            params.extend(norm.torch_params(prefix, suffix));
        }
        params
    }
}
