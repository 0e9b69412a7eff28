//! The LSTM cell of `torch.nn.LSTM`, with `proj_size`.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use ember_kernels::Cell;

use crate::cell::{
    load_gate_params, project, recur, recurrent_weight_methods, split_gates, times_transposed,
    uniform, CellOptions, CellSpec, CellState, GateWeights, RecurrentCell, ZoneMasks,
};
use crate::layer_norm::CellNorm;
use crate::torch::{named, TorchParam, TorchTensors};
use crate::NnError;

/// One direction of one LSTM layer, with PyTorch's parameters (gate order i, f, g, o):
///
/// ```text
/// i = σ(W_ii x + b_ii + W_hi h + b_hi)      f = σ(W_if x + b_if + W_hf h + b_hf)
/// g = tanh(W_ig x + b_ig + W_hg h + b_hg)   o = σ(W_io x + b_io + W_ho h + b_ho)
/// c' = f ⊙ c + i ⊙ g                        h' = o ⊙ tanh(c')   (h' = W_hr h' with proj_size)
/// ```
/// With `norm`, a LayerNorm LSTM: the two products and `c'` normalised (see
/// [`crate::layer_norm`]).
#[derive(Module, Debug)]
pub struct LstmCell<B: Backend> {
    /// `W_ih`, `[4H, in]`: the input weights of gates i, f, g, o stacked.
    pub weight_ih: Param<Tensor<B, 2>>,
    /// `W_hh`, `[4H, H_out]`.
    pub weight_hh: Param<Tensor<B, 2>>,
    /// `b_ih`, `[4H]`.
    pub bias_ih: Option<Param<Tensor<B, 1>>>,
    /// `b_hh`, `[4H]`.
    pub bias_hh: Option<Param<Tensor<B, 1>>>,
    /// `W_hr`, `[P, H]`, only with `proj_size > 0`.
    pub weight_hr: Option<Param<Tensor<B, 2>>>,
    /// A LayerNorm LSTM's gains and cell bias.
    pub norm: Option<CellNorm<B>>,
}

/// `(o ⊙ tanh c', c')` with `c' = f ⊙ c + i ⊙ g` from the gate pre-activations `[batch, 4H]`:
/// one CubeCL kernel where the backend has it, else Burn's elementwise ops.
fn pointwise<B: Backend>(
    gates: Tensor<B, 2>,
    c_prev: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    #[cfg(feature = "cube")]
    if let Some(step) = crate::cube::lstm(gates.clone(), c_prev.clone()) {
        return step;
    }
    let [i, f, g, o] = split_gates(gates);
    let c = sigmoid(f) * c_prev + sigmoid(i) * g.tanh();
    (sigmoid(o) * c.clone().tanh(), c)
}

impl<B: Backend> RecurrentCell<B> for LstmCell<B> {
    const HAS_CELL_STATE: bool = true;
    const SUPPORTS_PROJECTION: bool = true;

    fn init(spec: CellSpec, options: &CellOptions, device: &B::Device) -> Result<Self, NnError> {
        let w = GateWeights::init(4, spec, device);
        let projected = spec.output_size != spec.hidden_size;
        Ok(Self {
            weight_ih: w.weight_ih,
            weight_hh: w.weight_hh,
            bias_ih: w.bias_ih,
            bias_hh: w.bias_hh,
            weight_hr: projected.then(|| {
                uniform(spec.hidden_size).init([spec.output_size, spec.hidden_size], device)
            }),
            norm: options
                .layer_norm
                .then(|| CellNorm::init(4, spec.hidden_size, true, device)),
        })
    }

    fn input_projection(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        // Both biases are constant per step, so they are added once, here.
        let biases = [&self.bias_ih, &self.bias_hh];
        project(x, &self.weight_ih, &biases, self.norm.as_ref())
    }

    fn step(&self, projected: Tensor<B, 2>, state: &CellState<B>) -> CellState<B> {
        let gates = projected + recur(&state.h, &self.weight_hh, None, self.norm.as_ref());
        let c_prev = state.c.clone().expect("an LSTM state carries c");
        let (mut h, c) = match &self.norm {
            None => pointwise(gates, c_prev),
            Some(norm) => {
                let [i, f, g, o] = split_gates(gates);
                let c = sigmoid(f) * c_prev + sigmoid(i) * g.tanh();
                (sigmoid(o) * norm.cell(c.clone()).tanh(), c)
            }
        };
        if let Some(w_hr) = &self.weight_hr {
            h = times_transposed(h, w_hr.val());
        }
        CellState { h, c: Some(c) }
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
            w_hr: self.weight_hr.as_ref().map(|w| w.val()),
            b_hh: None,
            norm: self.norm.as_ref().map(CellNorm::kernel_params),
        };
        crate::fused::recurrence(Cell::Lstm, projected, weights, state, active, zone)
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
        self.weight_hr = t.replace_opt(self.weight_hr, &format!("{prefix}weight_hr{suffix}"))?;
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
        if let Some(w_hr) = &self.weight_hr {
            params.push(TorchParam::Matrix(
                format!("{prefix}weight_hr{suffix}"),
                w_hr.val(),
            ));
        }
        if let Some(norm) = &self.norm {
            params.extend(norm.torch_params(prefix, suffix));
        }
        params
    }
}
