//! The recurrence of an LSTM, GRU or Elman RNN over a whole sequence as one autodiff
//! operation, with a hand-written backward pass (BPTT), on Burn's CPU backends.
//!
//! Burn's autodiff records every tensor op of every time step: about twenty graph nodes per
//! LSTM step, each with its own allocations and backward closure. Here the whole recurrence,
//! from the projected input `xp = x W_ihᵀ + b` (one ordinary autodiff matmul, outside) to the
//! outputs and final state, is one node whose forward and backward run in
//! [`ember_kernels`] on plain `f32` buffers (gemm and vectorised gate loops). Its parents are
//! `xp`, `W_hh`, `h_0` and one more: `c_0` for an LSTM, `b_hh` for a GRU (inside `r ⊙ (…)`, so
//! not foldable into `xp`), nothing for an RNN.
//!
//! The node's one output is `Y = [h_1, ..., h_T, h_n (, c_n)]`, `[T + 1 (+ 1), batch, H]`; the
//! outputs and the final state are slices of it. Packed sequences run only their active rows
//! per step. Used for `Autodiff<NdArray>` and `Autodiff<Flex>` (training) and plain
//! `NdArray`/`Flex` (inference), chosen at run time by type, so models keep a plain
//! `B: Backend` bound; other backends (wgpu) and `proj_size` run the per-step loop.
//! Setting `EMBER_UNFUSED=1` turns the fused path off (for benchmarks and comparisons).

use std::any::{Any, TypeId};
use std::sync::OnceLock;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex, NdArray};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{TensorData, TensorPrimitive};
use ember_kernels::{Cell, Dims, Inputs, Saved};

use crate::cell::CellState;

/// Whether the fused path is on (it is unless `EMBER_UNFUSED` is set).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("EMBER_UNFUSED").is_none())
}

fn tensor<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// The values of `t` in row-major order, as `f32`.
fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32")
}

/// `values` as a tensor of `shape` on `device`.
fn device_tensor<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// One recurrence's inputs on backend `B`.
#[derive(Debug, Clone)]
struct Recurrence<B: Backend> {
    cell: Cell,
    /// `[T, batch, G·H]`.
    xp: Tensor<B, 3>,
    /// `[G·H, H]`.
    w_hh: Tensor<B, 2>,
    /// `[batch, H]`.
    h0: Tensor<B, 2>,
    /// LSTM: `c_0 [batch, H]`; GRU: `b_hh [1, 3H]` when the cell has biases; else `None`.
    aux: Option<Tensor<B, 2>>,
    /// Active rows per step (empty: all).
    active: Vec<usize>,
}

/// What the node keeps for its backward pass.
#[derive(Debug, Clone)]
struct NodeState {
    saved: Saved,
    cell: Cell,
    dims: Dims,
}

/// Runs the recurrence on a plain backend: `Y`, and the node state when `save`.
fn forward<B: Backend>(r: Recurrence<B>, save: bool) -> (Tensor<B, 3>, Option<NodeState>) {
    let device = r.xp.device();
    let [steps, batch, _] = r.xp.dims();
    let hidden = r.h0.dims()[1];
    let dims = Dims {
        steps,
        batch,
        hidden,
    };
    let (b_hh, c0) = match (r.cell, r.aux) {
        (Cell::Lstm, Some(c0)) => (Vec::new(), host(c0)),
        (Cell::Gru, Some(b)) => (host(b), Vec::new()),
        _ => (Vec::new(), Vec::new()),
    };
    let inputs = Inputs {
        cell: r.cell,
        dims,
        xp: host(r.xp),
        w_hh: host(r.w_hh),
        b_hh,
        h0: host(r.h0),
        c0,
        active: r.active,
    };
    let (y, saved) =
        ember_kernels::forward(inputs, save).expect("the layer passes matching shapes");
    let rows = r.cell.output_rows(steps);
    let state = saved.map(|saved| NodeState {
        saved,
        cell: r.cell,
        dims,
    });
    (device_tensor(y, [rows, batch, hidden], &device), state)
}

/// The autodiff node of the recurrence.
#[derive(Debug)]
struct FusedRecurrence;

impl<B: Backend> Backward<B, 4> for FusedRecurrence {
    type State = NodeState;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy: Tensor<B, 3> = tensor(grads.consume::<B>(&ops.node));
        let device = dy.device();
        let NodeState { saved, cell, dims } = ops.state;
        let g = ember_kernels::backward(saved, &host(dy)).expect("dy has the shape of Y");
        let Dims {
            steps,
            batch,
            hidden,
        } = dims;
        let width = cell.gates() * hidden;
        let found: [Option<FloatTensor<B>>; 4] = [
            Some(primitive(device_tensor::<B, 3>(
                g.xp,
                [steps, batch, width],
                &device,
            ))),
            Some(primitive(device_tensor::<B, 2>(
                g.w_hh,
                [width, hidden],
                &device,
            ))),
            Some(primitive(device_tensor::<B, 2>(
                g.h0,
                [batch, hidden],
                &device,
            ))),
            match cell {
                Cell::Lstm => Some(primitive(device_tensor::<B, 2>(
                    g.c0,
                    [batch, hidden],
                    &device,
                ))),
                Cell::Gru => Some(primitive(device_tensor::<B, 2>(
                    g.b_hh,
                    [1, width],
                    &device,
                ))),
                Cell::Rnn { .. } => None,
            },
        ];
        for (parent, grad) in ops.parents.into_iter().zip(found) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// The recurrence as one node of `Autodiff<B, C>`'s graph.
fn on_autodiff<B: Backend, C: CheckpointStrategy>(
    r: Recurrence<Autodiff<B, C>>,
) -> Tensor<Autodiff<B, C>, 3> {
    let has_aux = r.aux.is_some();
    // An untracked placeholder fills the fourth parent when there is no `c_0`/`b_hh`.
    let aux = r
        .aux
        .unwrap_or_else(|| Tensor::zeros([1, 1], &r.xp.device()));
    let (xp, w_hh, h0, aux) = (
        primitive(r.xp),
        primitive(r.w_hh),
        primitive(r.h0),
        primitive(aux),
    );
    let nodes = [&xp, &w_hh, &h0, &aux].map(|t| t.node.clone());
    let inner = Recurrence::<B> {
        cell: r.cell,
        xp: tensor(xp.primitive),
        w_hh: tensor(w_hh.primitive),
        h0: tensor(h0.primitive),
        aux: has_aux.then(|| tensor(aux.primitive)),
        active: r.active,
    };
    let y = match FusedRecurrence
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, state) = forward(inner, true);
            prep.finish(state.expect("saved when asked"), primitive(y))
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive(forward(inner, false).0)),
    };
    tensor(y)
}

/// `a` as a `T`, when it is one.
fn cast<A: 'static, T: 'static>(a: A) -> Option<T> {
    (Box::new(a) as Box<dyn Any>)
        .downcast::<T>()
        .ok()
        .map(|b| *b)
}

/// `r` on backend `I`, when `B` is `I`.
fn recast<B: Backend, I: Backend>(r: &Recurrence<B>) -> Option<Recurrence<I>> {
    if TypeId::of::<B>() != TypeId::of::<I>() {
        return None;
    }
    Some(Recurrence {
        cell: r.cell,
        xp: cast(r.xp.clone())?,
        w_hh: cast(r.w_hh.clone())?,
        h0: cast(r.h0.clone())?,
        aux: match &r.aux {
            Some(a) => Some(cast(a.clone())?),
            None => None,
        },
        active: r.active.clone(),
    })
}

/// Runs on `Autodiff<I>` when `B` is that backend.
fn autodiff_as<B: Backend, I: Backend>(r: &Recurrence<B>) -> Option<Tensor<B, 3>> {
    cast(on_autodiff::<I, NoCheckpointing>(recast::<B, Autodiff<I>>(
        r,
    )?))
}

/// Runs on the plain backend `I` when `B` is `I` (inference).
fn plain_as<B: Backend, I: Backend>(r: &Recurrence<B>) -> Option<Tensor<B, 3>> {
    cast(forward::<I>(recast::<B, I>(r)?, false).0)
}

/// The outputs `[T, batch, H]` and final state of `cell`'s recurrence over the projected input
/// `xp [T, batch, G·H]` from `state`, with `W_hh [G·H, H]` and (GRU) `b_hh`; `active` gives
/// the rows running at each step of a packed batch (empty: all). `None` when the backend has
/// no fused path (or it is turned off, or `T` is 0).
pub(crate) fn recurrence<B: Backend>(
    cell: Cell,
    xp: Tensor<B, 3>,
    w_hh: Tensor<B, 2>,
    b_hh: Option<Tensor<B, 1>>,
    state: &CellState<B>,
    active: &[usize],
) -> Option<(Tensor<B, 3>, CellState<B>)> {
    let steps = xp.dims()[0];
    if !enabled() || steps == 0 {
        return None;
    }
    let aux = match cell {
        Cell::Lstm => Some(state.c.clone()?),
        Cell::Gru => b_hh.map(|b| b.unsqueeze_dim(0)),
        Cell::Rnn { .. } => None,
    };
    let r = Recurrence {
        cell,
        xp,
        w_hh,
        h0: state.h.clone(),
        aux,
        active: active.to_vec(),
    };
    let y = autodiff_as::<B, NdArray>(&r)
        .or_else(|| autodiff_as::<B, Flex>(&r))
        .or_else(|| plain_as::<B, NdArray>(&r))
        .or_else(|| plain_as::<B, Flex>(&r))?;
    let [_, batch, hidden] = y.dims();
    let row = |t: usize| y.clone().slice(s![t..t + 1]).reshape([batch, hidden]);
    let last = CellState {
        h: row(steps),
        c: (cell == Cell::Lstm).then(|| row(steps + 1)),
    };
    Some((y.slice(s![0..steps]), last))
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexDevice;
    use burn::backend::ndarray::NdArrayDevice;
    use burn::tensor::backend::AutodiffBackend;
    use burn::tensor::Distribution;

    use super::*;
    use crate::cell::{CellOptions, CellSpec, RecurrentCell};
    use crate::packing::Packing;
    use crate::recurrent::run_steps;
    use crate::rnn::Nonlinearity;
    use crate::torch::TorchParam;
    use crate::{GruCell, LstmCell, RnnCell};

    fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    /// What one run gives: outputs, final state and every gradient, by name.
    type Results = Vec<(String, Vec<f32>)>;

    /// Outputs, final state and every gradient of the fused recurrence (`fused`) or of the
    /// per-step loop, for the same cell, inputs, packing and loss.
    fn run<B: AutodiffBackend, C: RecurrentCell<B>>(
        cell: &C,
        inputs: &[Tensor<B::InnerBackend, 3>; 2],
        state: &[Tensor<B::InnerBackend, 2>; 4],
        packing: Option<&Packing>,
        fused: bool,
    ) -> Results {
        let x = Tensor::<B, 3>::from_inner(inputs[0].clone()).require_grad();
        let h0 = Tensor::<B, 2>::from_inner(state[0].clone()).require_grad();
        let c0 =
            C::HAS_CELL_STATE.then(|| Tensor::<B, 2>::from_inner(state[1].clone()).require_grad());
        let start = CellState {
            h: h0.clone(),
            c: c0.clone(),
        };
        let projected = cell.input_projection(x.clone());
        let (out, last) = if fused {
            let steps = projected.dims()[0];
            let active: Vec<usize> =
                packing.map_or_else(Vec::new, |p| (0..steps).map(|t| p.active_at(t)).collect());
            cell.fused_recurrence(projected, &start, &active)
                .expect("the fused path runs on this backend")
        } else {
            run_steps(cell, projected, start, packing, false)
        };
        // Weighted sums, so every output and final-state element gets its own gradient.
        let mut loss = (out.clone() * Tensor::from_inner(inputs[1].clone())).sum()
            + (last.h.clone() * Tensor::from_inner(state[2].clone())).sum();
        if let Some(c) = &last.c {
            loss = loss + (c.clone() * Tensor::from_inner(state[3].clone())).sum();
        }
        let grads = loss.backward();
        let mut found = vec![
            ("out".to_string(), values(out.inner())),
            ("h_n".to_string(), values(last.h.inner())),
            ("dx".to_string(), values(x.grad(&grads).expect("dx"))),
            ("dh0".to_string(), values(h0.grad(&grads).expect("dh0"))),
        ];
        if let (Some(c), Some(c0)) = (last.c, c0) {
            found.push(("c_n".to_string(), values(c.inner())));
            found.push(("dc0".to_string(), values(c0.grad(&grads).expect("dc0"))));
        }
        for p in cell.torch_params("", "") {
            let (name, grad) = match p {
                TorchParam::Matrix(n, t) => (n, t.grad(&grads).map(values)),
                TorchParam::Vector(n, t) => (n, t.grad(&grads).map(values)),
            };
            found.push((format!("d{name}"), grad.expect("a parameter gradient")));
        }
        found
    }

    fn compare(what: &str, fused: &Results, stepped: &Results) {
        assert_eq!(fused.len(), stepped.len(), "{what}");
        for ((name, a), (other, b)) in fused.iter().zip(stepped) {
            assert_eq!(name, other);
            assert_eq!(a.len(), b.len(), "{what} {name}");
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-5,
                "{what} {name}: fused and per-step differ by {worst}"
            );
        }
    }

    fn matches_the_step_loop<B: AutodiffBackend, C: RecurrentCell<B>>(
        what: &str,
        options: CellOptions,
        device: &B::Device,
    ) {
        B::seed(device, 3);
        let (steps, batch, input, hidden) = (7, 3, 5, 4);
        let spec = CellSpec {
            input_size: input,
            hidden_size: hidden,
            output_size: hidden,
            bias: true,
        };
        let cell = C::init(spec, &options, device).unwrap();
        let n = Distribution::Normal(0.0, 0.7);
        let inputs = [
            Tensor::random([steps, batch, input], n, device),
            Tensor::random([steps, batch, hidden], n, device),
        ];
        let state = [0, 1, 2, 3].map(|_| Tensor::random([batch, hidden], n, device));
        let full = [
            run(&cell, &inputs, &state, None, true),
            run(&cell, &inputs, &state, None, false),
        ];
        compare(what, &full[0], &full[1]);
        // A packed batch, sorted longest first, with a sequence of one step.
        let packing = Packing::new(&[7, 4, 1], steps);
        let packed = [true, false].map(|f| run(&cell, &inputs, &state, Some(&packing), f));
        compare(&format!("{what} packed"), &packed[0], &packed[1]);
    }

    fn every_cell<B: AutodiffBackend>(device: &B::Device) {
        let relu = CellOptions {
            nonlinearity: Nonlinearity::Relu,
        };
        matches_the_step_loop::<B, LstmCell<B>>("lstm", CellOptions::default(), device);
        matches_the_step_loop::<B, GruCell<B>>("gru", CellOptions::default(), device);
        matches_the_step_loop::<B, RnnCell<B>>("rnn tanh", CellOptions::default(), device);
        matches_the_step_loop::<B, RnnCell<B>>("rnn relu", relu, device);
    }

    #[test]
    fn fused_cells_match_the_step_loop_on_ndarray() {
        every_cell::<Autodiff<NdArray>>(&NdArrayDevice::Cpu);
    }

    #[test]
    fn fused_cells_match_the_step_loop_on_flex() {
        every_cell::<Autodiff<Flex>>(&FlexDevice);
    }
}
