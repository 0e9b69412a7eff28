//! The layer normalisation of a LayerNorm LSTM or GRU cell (Ba et al., 2016, as haste's
//! `LayerNormLSTM` and `LayerNormGRU` place it), in PyTorch's gate order:
//!
//! ```text
//! LN(v) = (v − mean(v)) / √(var(v) + 1e-5)          over all of a row's values (biased var)
//!
//! LSTM: gates = LN(x W_ihᵀ) ⊙ γ_ih + b_ih + LN(h W_hhᵀ) ⊙ γ_hh + b_hh
//!       c' = f ⊙ c + i ⊙ g          h' = o ⊙ tanh(LN(c') ⊙ γ_c + β_c)    (then W_hr with proj_size)
//! GRU:  a = LN(x W_ihᵀ) ⊙ γ_ih + b_ih          b = LN(h W_hhᵀ) ⊙ γ_hh + b_hh
//!       r = σ(a_r + b_r)   z = σ(a_z + b_z)   n = tanh(a_n + r ⊙ b_n)   h' = (1 − z) ⊙ n + z ⊙ h
//! ```
//! The gate norms are over the whole `G·H` pre-activation, gains only (the biases follow);
//! gains start at 1 and `β_c` at 0. The input side runs over all steps at once, after the input
//! projection ([`norm_rows`]: one autodiff node on Burn's CPU backends, on
//! [`ember_kernels::layer_norm`]); the recurrent side inside the fused recurrence
//! ([`ember_kernels::Norm`]) or, per step, with Burn's ops.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex, NdArray};
use burn::module::{Initializer, Module, Param};
use burn::prelude::*;
use burn::tensor::TensorData;
use ember_kernels::layer_norm::Normalised;

use crate::fused::{cast, enabled, grad, host, primitive, same, tensor, Values};
use crate::torch::{TorchParam, TorchTensors};
use crate::NnError;

/// `ε` of PyTorch's `layer_norm`.
pub const EPS: f64 = 1e-5;

/// The gains (and an LSTM's cell bias) of one LayerNorm cell, PyTorch-named
/// `ln_ih_weight{suffix}`, `ln_hh_weight{suffix}`, `ln_c_weight{suffix}`, `ln_c_bias{suffix}`.
#[derive(Module, Debug)]
pub struct CellNorm<B: Backend> {
    /// `γ_ih`, `[G·H]`: the gain of the normalised input projection `x W_ihᵀ`.
    pub gamma_ih: Param<Tensor<B, 1>>,
    /// `γ_hh`, `[G·H]`: the gain of the normalised recurrent product `h W_hhᵀ`.
    pub gamma_hh: Param<Tensor<B, 1>>,
    /// LSTM only: `γ_c`, `[H]`, the gain of the normalised cell state.
    pub gamma_c: Option<Param<Tensor<B, 1>>>,
    /// LSTM only: `β_c`, `[H]`, the bias of the normalised cell state.
    pub beta_c: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> CellNorm<B> {
    /// Gains of 1 and a bias of 0 for `gates` gate blocks of `hidden` units; `cell_state`: with
    /// an LSTM's `γ_c`, `β_c`.
    pub fn init(gates: usize, hidden: usize, cell_state: bool, device: &B::Device) -> Self {
        let g = gates * hidden;
        Self {
            gamma_ih: Initializer::Ones.init([g], device),
            gamma_hh: Initializer::Ones.init([g], device),
            gamma_c: cell_state.then(|| Initializer::Ones.init([hidden], device)),
            beta_c: cell_state.then(|| Initializer::Zeros.init([hidden], device)),
        }
    }

    /// The normalised input projection `LN(x W_ihᵀ) ⊙ γ_ih` of `p = x W_ihᵀ`, `[rows, G·H]`.
    pub fn input(&self, p: Tensor<B, 2>) -> Tensor<B, 2> {
        norm_rows(p, self.gamma_ih.val())
    }

    /// The normalised recurrent product `LN(r) ⊙ γ_hh` of `r = h W_hhᵀ`, `[batch, G·H]`.
    pub fn recurrent(&self, r: Tensor<B, 2>) -> Tensor<B, 2> {
        norm_rows(r, self.gamma_hh.val())
    }

    /// An LSTM's normalised cell state `LN(c) ⊙ γ_c + β_c` (a GRU's norm: `c` back).
    pub fn cell(&self, c: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.gamma_c {
            Some(gamma) => layer_norm(c, gamma.val(), self.beta_c.as_ref().map(|b| b.val())),
            None => c,
        }
    }

    /// The recurrent side as the fused kernels take it.
    pub(crate) fn kernel_params(&self) -> crate::fused::NormWeights<B> {
        crate::fused::NormWeights {
            gamma_hh: self.gamma_hh.val(),
            gamma_c: self.gamma_c.as_ref().map(|p| p.val()),
            beta_c: self.beta_c.as_ref().map(|p| p.val()),
        }
    }

    /// The parameters under their PyTorch-style names, `{prefix}ln_ih_weight{suffix}`, ...
    pub fn torch_params(&self, prefix: &str, suffix: &str) -> Vec<TorchParam<B>> {
        self.named(prefix, suffix)
            .into_iter()
            .map(|(name, p)| TorchParam::Vector(name, p.val()))
            .collect()
    }

    /// Takes the parameters from PyTorch tensors named as [`Self::torch_params`] lists them.
    pub fn load_torch(
        self,
        prefix: &str,
        suffix: &str,
        t: &mut TorchTensors,
    ) -> Result<Self, NnError> {
        let name = |base: &str| format!("{prefix}{base}{suffix}");
        Ok(Self {
            gamma_ih: t.replace(self.gamma_ih, &name("ln_ih_weight"))?,
            gamma_hh: t.replace(self.gamma_hh, &name("ln_hh_weight"))?,
            gamma_c: t.replace_opt(self.gamma_c, &name("ln_c_weight"))?,
            beta_c: t.replace_opt(self.beta_c, &name("ln_c_bias"))?,
        })
    }

    fn named(&self, prefix: &str, suffix: &str) -> Vec<(String, &Param<Tensor<B, 1>>)> {
        let name = |base: &str| format!("{prefix}{base}{suffix}");
        let mut out = vec![
            (name("ln_ih_weight"), &self.gamma_ih),
            (name("ln_hh_weight"), &self.gamma_hh),
        ];
        if let Some(g) = &self.gamma_c {
            out.push((name("ln_c_weight"), g));
        }
        if let Some(b) = &self.beta_c {
            out.push((name("ln_c_bias"), b));
        }
        out
    }
}

/// `LN(x) ⊙ γ (+ β)` over the last axis of `x`, with `γ`, `β` as wide as that axis.
pub fn layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    let axis = D - 1;
    let centred = x.clone() - x.mean_dim(axis);
    let var = centred.clone().powi_scalar(2).mean_dim(axis);
    let normalised = centred / var.add_scalar(EPS).sqrt();
    let scaled = normalised * gamma.unsqueeze::<D>();
    match beta {
        Some(b) => scaled + b.unsqueeze::<D>(),
        None => scaled,
    }
}

/// `LN(x) ⊙ γ` over each row of `x [rows, width]`: on Burn's CPU backends (`Flex`, `NdArray`,
/// with or without autodiff) one operation on [`ember_kernels::layer_norm`], with its own
/// backward pass; on wgpu and CUDA one CubeCL kernel (feature `cube`); elsewhere, and with
/// `EMBER_UNFUSED=1`, [`layer_norm`]'s Burn ops.
pub fn norm_rows<B: Backend>(x: Tensor<B, 2>, gamma: Tensor<B, 1>) -> Tensor<B, 2> {
    let n = RowNorm { x, gamma };
    if !enabled() {
        return n.burn();
    }
    autodiff_as::<B, Flex>(n)
        .or_else(autodiff_as::<B, NdArray>)
        .or_else(plain_as::<B, Flex>)
        .or_else(plain_as::<B, NdArray>)
        .or_else(gpu)
        .unwrap_or_else(RowNorm::burn)
}

/// The norm as one CubeCL kernel (wgpu, CUDA), else `n` back.
#[cfg(feature = "cube")]
fn gpu<B: Backend>(n: RowNorm<B>) -> Result<Tensor<B, 2>, RowNorm<B>> {
    crate::cube::norm(n.x.clone(), n.gamma.clone()).ok_or(n)
}

/// Without the `cube` feature there is no GPU norm.
#[cfg(not(feature = "cube"))]
fn gpu<B: Backend>(n: RowNorm<B>) -> Result<Tensor<B, 2>, RowNorm<B>> {
    Err(n)
}

/// The operands of [`norm_rows`] on backend `B`.
#[derive(Debug, Clone)]
struct RowNorm<B: Backend> {
    x: Tensor<B, 2>,
    gamma: Tensor<B, 1>,
}

impl<B: Backend> RowNorm<B> {
    fn burn(self) -> Tensor<B, 2> {
        layer_norm(self.x, self.gamma, None)
    }

    /// The same operands on backend `I` when `B` is `I`, else themselves back.
    fn recast<I: Backend>(self) -> Result<RowNorm<I>, Self> {
        if std::any::TypeId::of::<B>() != std::any::TypeId::of::<I>() {
            return Err(self);
        }
        Ok(RowNorm {
            x: same(self.x),
            gamma: same(self.gamma),
        })
    }
}

/// What the node keeps for its backward pass.
#[derive(Debug, Clone)]
struct NodeState {
    saved: Normalised,
    gamma: Vec<f32>,
    dims: [usize; 2],
}

/// Runs the norm on a plain backend, with the node state when `save`.
fn forward<B: Backend>(n: RowNorm<B>, save: bool) -> (Tensor<B, 2>, Option<NodeState>) {
    let device = n.x.device();
    let dims = n.x.dims();
    let gamma = host(n.gamma);
    let (y, saved) = ember_kernels::layer_norm::forward(Values::of(n.x).get(), &gamma);
    let y = Tensor::from_data(TensorData::new(y, dims), &device);
    (y, save.then_some(NodeState { saved, gamma, dims }))
}

/// The autodiff node of [`norm_rows`]; parents `x`, `γ`.
#[derive(Debug)]
struct RowNormNode;

impl<B: Backend> Backward<B, 2> for RowNormNode {
    type State = NodeState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy: Tensor<B, 2> = tensor(grads.consume::<B>(&ops.node));
        let device = dy.device();
        let NodeState { saved, gamma, dims } = ops.state;
        let (dx, dgamma) =
            ember_kernels::layer_norm::backward(Values::of(dy).get(), &saved, &gamma);
        let found = [
            grad::<B, 2>(dx, dims, &device),
            grad::<B, 1>(dgamma, [dims[1]], &device),
        ];
        for (parent, grad) in ops.parents.into_iter().zip(found) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// The norm as one node of `Autodiff<B, C>`'s graph.
fn on_autodiff<B: Backend, C: CheckpointStrategy>(
    n: RowNorm<Autodiff<B, C>>,
) -> Tensor<Autodiff<B, C>, 2> {
    let x = primitive(n.x);
    let gamma = primitive(n.gamma);
    let nodes = [&x, &gamma].map(|t| t.node.clone());
    let inner = RowNorm::<B> {
        x: tensor(x.primitive),
        gamma: tensor(gamma.primitive),
    };
    let y = match RowNormNode.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (y, state) = forward(inner, true);
            prep.finish(state.expect("saved when asked"), primitive(y))
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive(forward(inner, false).0)),
    };
    tensor(y)
}

/// Runs on `Autodiff<I>` when `B` is that backend, else gives `n` back.
fn autodiff_as<B: Backend, I: Backend>(n: RowNorm<B>) -> Result<Tensor<B, 2>, RowNorm<B>> {
    let n = n.recast::<Autodiff<I>>()?;
    Ok(cast(on_autodiff::<I, NoCheckpointing>(n)).expect("B is Autodiff<I>"))
}

/// Runs on the plain backend `I` when `B` is `I`, else gives `n` back.
fn plain_as<B: Backend, I: Backend>(n: RowNorm<B>) -> Result<Tensor<B, 2>, RowNorm<B>> {
    let n = n.recast::<I>()?;
    Ok(cast(forward::<I>(n, false).0).expect("B is I"))
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexDevice;
    use burn::backend::ndarray::NdArrayDevice;
    use burn::tensor::backend::AutodiffBackend;
    use burn::tensor::Distribution;

    use super::*;

    fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    /// `y` and the gradients of `Σ y ⊙ r` for `x` and `γ`, from the node or Burn's ops.
    fn run<B: AutodiffBackend>(
        x: &Tensor<B::InnerBackend, 2>,
        gamma: &Tensor<B::InnerBackend, 1>,
        r: &Tensor<B::InnerBackend, 2>,
        fused: bool,
    ) -> Vec<Vec<f32>> {
        let x = Tensor::<B, 2>::from_inner(x.clone()).require_grad();
        let gamma = Tensor::<B, 1>::from_inner(gamma.clone()).require_grad();
        let y = if fused {
            norm_rows(x.clone(), gamma.clone())
        } else {
            layer_norm(x.clone(), gamma.clone(), None)
        };
        let grads = (y.clone() * Tensor::from_inner(r.clone())).sum().backward();
        vec![
            values(y),
            values(x.grad(&grads).expect("x tracked")),
            values(gamma.grad(&grads).expect("γ tracked")),
        ]
    }

    fn matches_burn<B: AutodiffBackend>(device: &B::Device) {
        let normal = Distribution::Normal(0.0, 1.0);
        let (rows, width) = (150, 33);
        let x = Tensor::random([rows, width], normal, device);
        let gamma = Tensor::random([width], normal, device);
        let r = Tensor::random([rows, width], normal, device);
        let fused = run::<B>(&x, &gamma, &r, true);
        let burn = run::<B>(&x, &gamma, &r, false);
        for (k, (f, b)) in fused.iter().zip(&burn).enumerate() {
            assert_eq!(f.len(), b.len());
            for (u, v) in f.iter().zip(b) {
                assert!((u - v).abs() <= 1e-4 * (1.0 + v.abs()), "#{k}: {u} vs {v}");
            }
        }
    }

    #[test]
    fn the_row_norm_node_matches_burns_ops_on_flex_and_ndarray() {
        matches_burn::<Autodiff<Flex>>(&FlexDevice);
        matches_burn::<Autodiff<NdArray>>(&NdArrayDevice::Cpu);
    }

    /// The CubeCL norm kernels (lavapipe without a GPU).
    #[cfg(feature = "cube")]
    #[test]
    fn the_row_norm_kernel_matches_burns_ops_on_wgpu() {
        let device = burn::backend::wgpu::WgpuDevice::default();
        matches_burn::<Autodiff<burn::backend::Wgpu>>(&device);
    }
}
