//! The cell abstraction: what RNN, LSTM and GRU cells have in common.
//!
//! A cell splits its math in two, as cuDNN and PyTorch do: [`RecurrentCell::input_projection`]
//! maps the whole input sequence through `W_ih` in one matmul, and [`RecurrentCell::step`] does
//! one time step from that projection and the previous state, with a single
//! `[batch, H_out] × [H_out, gates·H]` matmul. The loop over time lives in
//! [`crate::recurrent`], once for every cell.

use burn::module::{Initializer, Module, Param, ParamId};
use burn::prelude::*;

use crate::torch::{TorchParam, TorchTensors};
use crate::NnError;

/// The state a cell carries from one step to the next.
#[derive(Debug, Clone)]
pub struct CellState<B: Backend> {
    /// Hidden (output) state `h`, `[batch, H_out]`.
    pub h: Tensor<B, 2>,
    /// Cell state `c` of an LSTM, `[batch, H]`; `None` for cells without one.
    pub c: Option<Tensor<B, 2>>,
}

impl<B: Backend> CellState<B> {
    /// Rows `start..end` of the state (a sub-batch).
    pub fn rows(&self, start: usize, end: usize) -> Self {
        Self {
            h: self.h.clone().slice(s![start..end]),
            c: self.c.clone().map(|c| c.slice(s![start..end])),
        }
    }

    /// `self` with rows `0..n` replaced by `head` (whose batch is `n`).
    pub fn replace_head(self, head: Self) -> Self {
        let n = head.h.dims()[0];
        let batch = self.h.dims()[0];
        if n == batch {
            return head;
        }
        let join = |old: Tensor<B, 2>, new: Tensor<B, 2>| {
            Tensor::cat(vec![new, old.slice(s![n..batch])], 0)
        };
        Self {
            h: join(self.h, head.h),
            c: match (self.c, head.c) {
                (Some(old), Some(new)) => Some(join(old, new)),
                (_, c) => c,
            },
        }
    }
}

/// The zoneout masks of one direction's steps (Krueger et al., 2016): how much of its previous
/// value each unit of the state keeps at each step,
///
/// ```text
/// h_t = m_t ⊙ h_{t−1} + (1 − m_t) ⊙ h̃_t     (c_t likewise, with its own masks)
/// ```
///
/// where `h̃_t` is the cell's step. In training `m` holds Bernoulli(`p`) draws (1: keep the
/// previous value), in inference `p` itself. Indexed by real time step `t` (a reverse direction
/// reads them backwards), `[T, batch, width]`.
#[derive(Debug, Clone)]
pub struct ZoneMasks<B: Backend> {
    /// `h`'s masks, `[T, batch, H_out]`; `None`: no zoneout of `h`.
    pub h: Option<Tensor<B, 3>>,
    /// An LSTM's `c`'s masks, `[T, batch, H]`; `None`: no zoneout of `c`.
    pub c: Option<Tensor<B, 3>>,
}

impl<B: Backend> ZoneMasks<B> {
    /// No zoneout.
    pub fn none() -> Self {
        Self { h: None, c: None }
    }

    /// Whether there is no mask.
    pub fn is_none(&self) -> bool {
        self.h.is_none() && self.c.is_none()
    }

    /// The masks with time reversed.
    pub(crate) fn flipped(&self) -> Self {
        Self {
            h: self.h.clone().map(|m| m.flip([0])),
            c: self.c.clone().map(|m| m.flip([0])),
        }
    }

    /// `new` zoned with step `t`'s masks on its first rows (as many as `new` has), from `prev`.
    pub(crate) fn apply(&self, t: usize, prev: &CellState<B>, new: CellState<B>) -> CellState<B> {
        let mix = |mask: &Tensor<B, 3>, prev: Tensor<B, 2>, new: Tensor<B, 2>| {
            let rows = new.dims()[0];
            let m = mask
                .clone()
                .slice(s![t..t + 1, 0..rows])
                .squeeze_dim::<2>(0);
            new.clone() + m * (prev - new)
        };
        CellState {
            h: match &self.h {
                Some(m) => mix(m, prev.h.clone(), new.h),
                None => new.h,
            },
            c: match (&self.c, &prev.c, new.c) {
                (Some(m), Some(old), Some(c)) => Some(mix(m, old.clone(), c)),
                (_, _, c) => c,
            },
        }
    }
}

/// The sizes one cell is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellSpec {
    /// Input features per step.
    pub input_size: usize,
    /// Hidden size `H`.
    pub hidden_size: usize,
    /// Width of `h`: the projection size for a projected LSTM, else `H`.
    pub output_size: usize,
    /// Whether `b_ih` and `b_hh` exist.
    pub bias: bool,
}

/// The per-step math of one direction of one recurrent layer.
pub trait RecurrentCell<B: Backend>: Module<B> {
    /// Whether the cell carries a cell state `c` (LSTM).
    const HAS_CELL_STATE: bool;
    /// Whether the cell supports `proj_size` (LSTM).
    const SUPPORTS_PROJECTION: bool;

    /// A cell with PyTorch's initialisation, every weight and bias `U(-1/√H, 1/√H)`.
    fn init(spec: CellSpec, options: &CellOptions, device: &B::Device) -> Result<Self, NnError>
    where
        Self: Sized;

    /// Projects the whole time-major input `[T, batch, in]` to `[T, batch, gates·H]` with one
    /// matmul, adding the biases that do not depend on the state.
    fn input_projection(&self, x: Tensor<B, 3>) -> Tensor<B, 3>;

    /// One time step from the projected input `[batch, gates·H]` and the previous state.
    fn step(&self, projected: Tensor<B, 2>, state: &CellState<B>) -> CellState<B>;

    /// Every step at once, from the projected input `[T, batch, gates·H]`, as one operation
    /// with its own backward pass, when this cell and backend have one: the outputs
    /// `[T, batch, H_out]` and the final state. `active` gives the rows running at each step
    /// of a packed batch (empty: all rows, every step), `zone` the zoneout masks, in the order
    /// the steps run. Without one (the default) the
    /// projected input comes back as the error, untouched, and [`Self::step`] runs per step.
    /// (Taken by value so that the operation may own it: a Flex buffer nothing else holds is
    /// overwritten in place instead of copied.)
    fn fused_recurrence(
        &self,
        projected: Tensor<B, 3>,
        _state: &CellState<B>,
        _active: &[usize],
        _zone: &ZoneMasks<B>,
    ) -> Result<(Tensor<B, 3>, CellState<B>), Tensor<B, 3>> {
        Err(projected)
    }

    /// Takes this cell's parameters from PyTorch tensors named `{prefix}weight_ih{suffix}`, ...
    /// (`suffix` as `_l1_reverse`).
    fn load_torch(
        self,
        prefix: &str,
        suffix: &str,
        tensors: &mut TorchTensors,
    ) -> Result<Self, NnError>
    where
        Self: Sized;

    /// This cell's parameters under PyTorch's names, `{prefix}weight_ih{suffix}`, ...
    fn torch_params(&self, prefix: &str, suffix: &str) -> Vec<TorchParam<B>>;

    /// The shape of the recurrent weight `W_hh`, `[G·H, H_out]`.
    fn recurrent_weight_dims(&self) -> [usize; 2];

    /// This cell with `W_hh` multiplied by `mask` (its shape), for weight-drop: the product is
    /// a node of the graph, so the gradient reaches the parameter through it.
    fn with_recurrent_mask(&self, mask: Tensor<B, 2>) -> Self
    where
        Self: Sized;
}

/// [`RecurrentCell::recurrent_weight_dims`] and [`RecurrentCell::with_recurrent_mask`] for a cell
/// whose recurrent weight is its field `weight_hh`.
macro_rules! recurrent_weight_methods {
    () => {
        fn recurrent_weight_dims(&self) -> [usize; 2] {
            self.weight_hh.lazy_shape().dims()
        }

        fn with_recurrent_mask(&self, mask: Tensor<B, 2>) -> Self {
            Self {
                weight_hh: $crate::cell::masked(&self.weight_hh, mask),
                ..self.clone()
            }
        }
    };
}
pub(crate) use recurrent_weight_methods;

/// `weight ⊙ mask` as a parameter of a transient cell (see
/// [`RecurrentCell::with_recurrent_mask`]): not a leaf, so not marked as requiring a gradient of
/// its own.
pub(crate) fn masked<B: Backend>(
    weight: &Param<Tensor<B, 2>>,
    mask: Tensor<B, 2>,
) -> Param<Tensor<B, 2>> {
    Param::initialized(ParamId::new(), weight.val() * mask)
}

/// Cell-specific options that are not sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CellOptions {
    /// The nonlinearity of an Elman RNN cell.
    pub nonlinearity: crate::rnn::Nonlinearity,
    /// A LayerNorm LSTM or GRU cell (see [`crate::layer_norm`]).
    pub layer_norm: bool,
}

/// The parameters every PyTorch recurrent cell has, for `gates` gate blocks.
pub(crate) struct GateWeights<B: Backend> {
    pub weight_ih: Param<Tensor<B, 2>>,
    pub weight_hh: Param<Tensor<B, 2>>,
    pub bias_ih: Option<Param<Tensor<B, 1>>>,
    pub bias_hh: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> GateWeights<B> {
    /// `W_ih [G·H, in]`, `W_hh [G·H, H_out]` and the biases, all `U(-1/√H, 1/√H)`.
    pub fn init(gates: usize, spec: CellSpec, device: &B::Device) -> Self {
        let uniform = uniform(spec.hidden_size);
        let g = gates * spec.hidden_size;
        Self {
            weight_ih: uniform.init([g, spec.input_size], device),
            weight_hh: uniform.init([g, spec.output_size], device),
            bias_ih: spec.bias.then(|| uniform.init([g], device)),
            bias_hh: spec.bias.then(|| uniform.init([g], device)),
        }
    }
}

/// PyTorch's recurrent initialiser, `U(-1/√H, 1/√H)`.
pub(crate) fn uniform(hidden_size: usize) -> Initializer {
    let bound = 1.0 / (hidden_size as f64).sqrt();
    Initializer::Uniform {
        min: -bound,
        max: bound,
    }
}

/// `x Wᵀ` for `x [rows, in]` and `weight [out, in]`.
///
/// A product with `in == 1` or `out == 1` is computed as a broadcast multiply (and a sum)
/// instead of a matmul: its gradient would be a matrix-vector product with a transposed
/// operand, which CubeCL 0.10's autotuner routes to a kernel that refuses it (`MatVec plane
/// parallel only supports row major lhs`), panicking the wgpu backend. Series models (one
/// input feature, `proj_size = 1`, one output) hit exactly these shapes.
pub fn times_transposed<B: Backend>(x: Tensor<B, 2>, weight: Tensor<B, 2>) -> Tensor<B, 2> {
    let [out, input] = weight.dims();
    let [rows, _] = x.dims();
    if rows == 1 {
        (weight * x).sum_dim(1).reshape([1, out])
    } else if input == 1 {
        x * weight.reshape([1, out])
    } else if out == 1 {
        (x * weight).sum_dim(1)
    } else {
        x.matmul(weight.transpose())
    }
}

/// `x W_ihᵀ + Σ biases` for a time-major `x [T, batch, in]`, as one affine map over all steps
/// (on Burn's CPU backends one autodiff node; see `crate::affine`). With a LayerNorm cell's
/// `norm`, `LN(x W_ihᵀ) ⊙ γ_ih + Σ biases`.
pub(crate) fn project<B: Backend>(
    x: Tensor<B, 3>,
    weight_ih: &Param<Tensor<B, 2>>,
    biases: &[&Option<Param<Tensor<B, 1>>>],
    norm: Option<&crate::layer_norm::CellNorm<B>>,
) -> Tensor<B, 3> {
    let [steps, batch, input] = x.dims();
    // The biases are summed first (`[G·H]`), so the projection gets one add and its backward
    // one sum over the rows.
    let bias = biases
        .iter()
        .copied()
        .flatten()
        .map(|b| b.val())
        .reduce(|sum, b| sum + b);
    let x = x.reshape([steps * batch, input]);
    let layout = crate::affine::Layout::OutIn;
    let p = match norm {
        None => crate::affine::affine(x, weight_ih.val(), bias, layout),
        Some(norm) => {
            let p = norm.input(crate::affine::affine(x, weight_ih.val(), None, layout));
            match bias {
                Some(b) => p + b.unsqueeze_dim(0),
                None => p,
            }
        }
    };
    let width = p.dims()[1];
    p.reshape([steps, batch, width])
}

/// `h W_hhᵀ (+ b_hh)`: the recurrent matmul of one step; with a LayerNorm cell's `norm`,
/// `LN(h W_hhᵀ) ⊙ γ_hh (+ b_hh)`.
pub(crate) fn recur<B: Backend>(
    h: &Tensor<B, 2>,
    weight_hh: &Param<Tensor<B, 2>>,
    bias_hh: Option<&Param<Tensor<B, 1>>>,
    norm: Option<&crate::layer_norm::CellNorm<B>>,
) -> Tensor<B, 2> {
    let r = times_transposed(h.clone(), weight_hh.val());
    let r = match norm {
        Some(norm) => norm.recurrent(r),
        None => r,
    };
    match bias_hh {
        Some(b) => r + b.val().unsqueeze_dim(0),
        None => r,
    }
}

/// Splits `[batch, G·H]` gate pre-activations into `G` blocks of `[batch, H]`.
pub(crate) fn split_gates<B: Backend, const G: usize>(x: Tensor<B, 2>) -> [Tensor<B, 2>; G] {
    <[Tensor<B, 2>; G]>::try_from(x.chunk(G, 1)).expect("the gate width is G·H")
}

/// Loads `weight_ih`, `weight_hh` (in `weights`) and `bias_ih`, `bias_hh` (in `biases`) from
/// the PyTorch tensors `{prefix}weight_ih{suffix}`, ...
pub(crate) fn load_gate_params<B: Backend>(
    tensors: &mut TorchTensors,
    prefix: &str,
    suffix: &str,
    weights: [&mut Param<Tensor<B, 2>>; 2],
    biases: [&mut Option<Param<Tensor<B, 1>>>; 2],
) -> Result<(), NnError> {
    for (name, w) in ["weight_ih", "weight_hh"].into_iter().zip(weights) {
        *w = tensors.replace(w.clone(), &format!("{prefix}{name}{suffix}"))?;
    }
    for (name, b) in ["bias_ih", "bias_hh"].into_iter().zip(biases) {
        *b = tensors.replace_opt(b.take(), &format!("{prefix}{name}{suffix}"))?;
    }
    Ok(())
}
