//! The LSTM recurrence over a whole sequence as one autodiff operation, with a hand-written
//! backward pass (BPTT), on Burn's CPU backends.
//!
//! Burn's autodiff records every tensor op of every time step: about twenty graph nodes per
//! step for an LSTM, each with its own allocations and backward closure. Here the recurrence
//!
//! ```text
//! gates_t = xp_t + h_{t-1} W_hhᵀ      (xp = x W_ihᵀ + b_ih + b_hh, projected outside, once)
//! i, f, o = σ(gates_t[i, f, o])       g = tanh(gates_t[g])
//! c_t = f ⊙ c_{t-1} + i ⊙ g           h_t = o ⊙ tanh(c_t)
//! ```
//!
//! is one node with four parents (`xp`, `W_hh`, `h_0`, `c_0`). Its forward runs on the inner
//! backend and keeps the gate activations; its backward walks the steps in reverse:
//!
//! ```text
//! dh_t = dy_t + d(gates_{t+1}) W_hh        dc_t = dc_{t+1} ⊙ f_{t+1} + dh_t ⊙ o ⊙ (1 - tanh²c_t)
//! d(gates_t) = [dc·g·i(1-i), dc·c_{t-1}·f(1-f), dc·i·(1-g²), dh·tanh(c_t)·o(1-o)]
//! dW_hh = Σ_t d(gates_t)ᵀ h_{t-1}          d(xp_t) = d(gates_t)
//! ```
//!
//! The op's one output is `Y = [h_1, ..., h_T, c_T]`, `[T+1, batch, H]`; the outputs and the final
//! state are slices of it. Used for `Autodiff<NdArray>` and `Autodiff<Flex>` (training) and
//! plain `NdArray`/`Flex` (inference), chosen at run time by type, so models keep a plain
//! `B: Backend` bound; other backends, packed sequences and `proj_size` run the per-step loop.
//! Setting `EMBER_UNFUSED=1` turns the fused path off (for benchmarks and comparisons).

use std::any::{Any, TypeId};
use std::sync::OnceLock;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex, NdArray};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorPrimitive;

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

/// What the backward pass needs, on the inner backend.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    /// `W_hh`, `[4H, H]`.
    w_hh: FloatTensor<B>,
    /// Per step: `σ` of the gates `[batch, 4H]` (the g block unused).
    sig: Vec<FloatTensor<B>>,
    /// Per step: `tanh` of the g gate, `[batch, H]`.
    tanh_g: Vec<FloatTensor<B>>,
    /// `c_0, ..., c_T`.
    cs: Vec<FloatTensor<B>>,
    /// `tanh(c_1), ..., tanh(c_T)`.
    tanh_c: Vec<FloatTensor<B>>,
    /// `h_0, ..., h_{T-1}`.
    hs: Vec<FloatTensor<B>>,
}

/// Sequences at least this long get a row-major copy of `W_hhᵀ` (copying 256×1024 floats
/// through host memory costs about as much as 16 steps' matmuls on ndarray).
const CONTIGUOUS_FROM: usize = 16;

/// A row-major copy of `t` (a matmul with a transposed view as right operand is about twice
/// as slow on the CPU backends).
fn contiguous<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    let device = t.device();
    Tensor::from_data(t.into_data(), &device)
}

/// The recurrence on a plain backend: `Y [T+1, batch, H]`, and what the backward needs when
/// `save`.
fn forward<B: Backend>(
    xp: Tensor<B, 3>,
    w_hh: Tensor<B, 2>,
    h0: Tensor<B, 2>,
    c0: Tensor<B, 2>,
    save: bool,
) -> (Tensor<B, 3>, Option<Saved<B>>) {
    let [steps, batch, h4] = xp.dims();
    let h = h4 / 4;
    // The copy pays off over a sequence; one step (sampling) uses the transposed view.
    let w_t = if steps >= CONTIGUOUS_FROM {
        contiguous(w_hh.clone().transpose())
    } else {
        w_hh.clone().transpose()
    };
    let (mut hc, mut cc) = (h0, c0);
    let mut outs = Vec::with_capacity(steps + 1);
    let mut saved = Saved {
        w_hh: primitive(w_hh),
        sig: Vec::new(),
        tanh_g: Vec::new(),
        cs: vec![primitive(cc.clone())],
        tanh_c: Vec::new(),
        hs: Vec::new(),
    };
    for t in 0..steps {
        let gates =
            xp.clone().slice(s![t..t + 1]).reshape([batch, h4]) + hc.clone().matmul(w_t.clone());
        let sg = sigmoid(gates.clone());
        let i = sg.clone().slice(s![.., 0..h]);
        let f = sg.clone().slice(s![.., h..2 * h]);
        let o = sg.clone().slice(s![.., 3 * h..4 * h]);
        let g = gates.slice(s![.., 2 * h..3 * h]).tanh();
        cc = f * cc + i * g.clone();
        let tc = cc.clone().tanh();
        if save {
            saved.hs.push(primitive(hc.clone()));
            saved.sig.push(primitive(sg));
            saved.tanh_g.push(primitive(g));
            saved.cs.push(primitive(cc.clone()));
            saved.tanh_c.push(primitive(tc.clone()));
        }
        hc = o * tc;
        outs.push(hc.clone());
    }
    outs.push(cc);
    (Tensor::stack(outs, 0), save.then_some(saved))
}

/// BPTT from `dy = dL/dY`: the gradients of `xp`, `W_hh`, `h_0`, `c_0` (those in `need`).
fn backward<B: Backend>(
    st: Saved<B>,
    dy: Tensor<B, 3>,
    need: [bool; 4],
) -> [Option<FloatTensor<B>>; 4] {
    let [t1, batch, h] = dy.dims();
    let steps = t1 - 1;
    let w_hh: Tensor<B, 2> = tensor(st.w_hh);
    let row = |t: usize| dy.clone().slice(s![t..t + 1]).reshape([batch, h]);
    let mut dc = row(steps);
    let mut dh_next: Option<Tensor<B, 2>> = None;
    let mut d_gates = Vec::with_capacity(steps);
    let (mut sig, mut tanh_g, mut cs, mut tanh_c) = (st.sig, st.tanh_g, st.cs, st.tanh_c);
    for t in (0..steps).rev() {
        let dh = match dh_next.take() {
            Some(d) => row(t) + d,
            None => row(t),
        };
        let sg: Tensor<B, 2> = tensor(sig.pop().expect("one per step"));
        let g: Tensor<B, 2> = tensor(tanh_g.pop().expect("one per step"));
        let tc: Tensor<B, 2> = tensor(tanh_c.pop().expect("one per step"));
        cs.pop();
        let c_prev: Tensor<B, 2> = tensor(cs.last().expect("c_0 stays").clone());
        let i = sg.clone().slice(s![.., 0..h]);
        let f = sg.clone().slice(s![.., h..2 * h]);
        let o = sg.slice(s![.., 3 * h..4 * h]);
        let d_o = dh.clone() * tc.clone();
        let dct = dc + dh * o.clone() * (tc.clone() * tc).neg().add_scalar(1.0);
        let di = dct.clone() * g.clone() * i.clone() * i.clone().neg().add_scalar(1.0);
        let dg = dct.clone() * i * (g.clone() * g).neg().add_scalar(1.0);
        let df = dct.clone() * c_prev * f.clone() * f.clone().neg().add_scalar(1.0);
        let do_ = d_o * o.clone() * o.neg().add_scalar(1.0);
        dc = dct * f;
        let d_gate = Tensor::cat(vec![di, df, dg, do_], 1);
        if t > 0 || need[2] {
            dh_next = Some(d_gate.clone().matmul(w_hh.clone()));
        }
        d_gates.push(d_gate);
    }
    d_gates.reverse();
    let d_xp: Tensor<B, 3> = Tensor::stack(d_gates, 0);
    let d_w_hh = need[1].then(|| {
        let hs: Vec<Tensor<B, 2>> = st.hs.into_iter().map(tensor).collect();
        let h_prev = Tensor::cat(hs, 0);
        let flat = d_xp.clone().reshape([steps * batch, 4 * h]);
        primitive(flat.transpose().matmul(h_prev))
    });
    [
        need[0].then(|| primitive(d_xp)),
        d_w_hh,
        if need[2] {
            dh_next.map(primitive)
        } else {
            None
        },
        need[3].then(|| primitive(dc)),
    ]
}

/// The autodiff node of the recurrence.
#[derive(Debug)]
struct LstmRecurrence;

impl<B: Backend> Backward<B, 4> for LstmRecurrence {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy: Tensor<B, 3> = tensor(grads.consume::<B>(&ops.node));
        let need = [0, 1, 2, 3].map(|k| ops.parents[k].is_some());
        let found = backward::<B>(ops.state, dy, need);
        for (parent, grad) in ops.parents.into_iter().zip(found) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// The recurrence as one node of `Autodiff<B, C>`'s graph.
fn on_autodiff<B: Backend, C: CheckpointStrategy>(
    xp: Tensor<Autodiff<B, C>, 3>,
    w_hh: Tensor<Autodiff<B, C>, 2>,
    h0: Tensor<Autodiff<B, C>, 2>,
    c0: Tensor<Autodiff<B, C>, 2>,
) -> Tensor<Autodiff<B, C>, 3> {
    let (xp, w_hh, h0, c0) = (primitive(xp), primitive(w_hh), primitive(h0), primitive(c0));
    let nodes = [&xp, &w_hh, &h0, &c0].map(|t| t.node.clone());
    let inner = (
        tensor::<B, 3>(xp.primitive),
        tensor::<B, 2>(w_hh.primitive),
        tensor::<B, 2>(h0.primitive),
        tensor::<B, 2>(c0.primitive),
    );
    let y = match LstmRecurrence
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, saved) = forward(inner.0, inner.1, inner.2, inner.3, true);
            prep.finish(saved.expect("saved when asked"), primitive(y))
        }
        OpsKind::UnTracked(prep) => {
            let (y, _) = forward(inner.0, inner.1, inner.2, inner.3, false);
            prep.finish(primitive(y))
        }
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

/// The recurrence's inputs on backend `B`.
type Inputs<B> = (Tensor<B, 3>, Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>);

/// Runs on `Autodiff<I>` when `B` is that backend.
fn autodiff_as<B: Backend, I: Backend>(args: &Inputs<B>) -> Option<Tensor<B, 3>> {
    if TypeId::of::<B>() != TypeId::of::<Autodiff<I, NoCheckpointing>>() {
        return None;
    }
    let y = on_autodiff::<I, NoCheckpointing>(
        cast(args.0.clone())?,
        cast(args.1.clone())?,
        cast(args.2.clone())?,
        cast(args.3.clone())?,
    );
    cast(y)
}

/// Runs on the plain backend `I` when `B` is `I` (inference).
fn plain_as<B: Backend, I: Backend>(args: &Inputs<B>) -> Option<Tensor<B, 3>> {
    if TypeId::of::<B>() != TypeId::of::<I>() {
        return None;
    }
    let (y, _) = forward::<I>(
        cast(args.0.clone())?,
        cast(args.1.clone())?,
        cast(args.2.clone())?,
        cast(args.3.clone())?,
        false,
    );
    cast(y)
}

/// `Y = [h_1, ..., h_T, c_T]` (`[T+1, batch, H]`) of the LSTM recurrence over the projected
/// input `xp [T, batch, 4H]` from `(h_0, c_0)`, with `W_hh [4H, H]`; `None` when the backend
/// has no fused path (or it is turned off, or `T` is 0).
pub fn lstm_recurrence<B: Backend>(
    xp: Tensor<B, 3>,
    w_hh: Tensor<B, 2>,
    h0: Tensor<B, 2>,
    c0: Tensor<B, 2>,
) -> Option<Tensor<B, 3>> {
    if !enabled() || xp.dims()[0] == 0 {
        return None;
    }
    let args = (xp, w_hh, h0, c0);
    autodiff_as::<B, NdArray>(&args)
        .or_else(|| autodiff_as::<B, Flex>(&args))
        .or_else(|| plain_as::<B, NdArray>(&args))
        .or_else(|| plain_as::<B, Flex>(&args))
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexDevice;
    use burn::backend::ndarray::NdArrayDevice;
    use burn::tensor::backend::AutodiffBackend;
    use burn::tensor::Distribution;

    use super::*;
    use crate::cell::{CellOptions, CellSpec, CellState, RecurrentCell};
    use crate::recurrent::run_steps;
    use crate::LstmCell;

    fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    /// Outputs, final state and every gradient of the fused recurrence (`fused`) or of the
    /// per-step loop, for the same cell, inputs and loss.
    fn run<B: AutodiffBackend>(
        cell: &LstmCell<B>,
        inputs: &[Tensor<B::InnerBackend, 3>; 2],
        state: &[Tensor<B::InnerBackend, 2>; 4],
        fused: bool,
    ) -> Vec<Vec<f32>> {
        let x = Tensor::<B, 3>::from_inner(inputs[0].clone()).require_grad();
        let h0 = Tensor::<B, 2>::from_inner(state[0].clone()).require_grad();
        let c0 = Tensor::<B, 2>::from_inner(state[1].clone()).require_grad();
        let start = CellState {
            h: h0.clone(),
            c: Some(c0.clone()),
        };
        let projected = cell.input_projection(x.clone());
        let (out, last) = if fused {
            cell.fused_recurrence(projected, &start)
                .expect("the fused path runs on this backend")
        } else {
            run_steps(cell, projected, start, None, false)
        };
        let c_n = last.c.clone().expect("an LSTM state");
        // Weighted sums, so every output, h_n and c_n element gets its own gradient.
        let loss = (out.clone() * Tensor::from_inner(inputs[1].clone())).sum()
            + (last.h.clone() * Tensor::from_inner(state[2].clone())).sum()
            + (c_n.clone() * Tensor::from_inner(state[3].clone())).sum();
        let grads = loss.backward();
        let grad = |t: Tensor<B, 2>| values(t.grad(&grads).expect("a gradient"));
        let bias = |b: &Option<burn::module::Param<Tensor<B, 1>>>| {
            values(
                b.as_ref()
                    .expect("biases")
                    .val()
                    .grad(&grads)
                    .expect("a gradient"),
            )
        };
        vec![
            values(out.inner()),
            values(last.h.inner()),
            values(c_n.inner()),
            values(x.grad(&grads).expect("a gradient")),
            grad(h0),
            grad(c0),
            grad(cell.weight_ih.val()),
            grad(cell.weight_hh.val()),
            bias(&cell.bias_ih),
            bias(&cell.bias_hh),
        ]
    }

    fn matches_the_step_loop<B: AutodiffBackend>(device: &B::Device) {
        B::seed(device, 3);
        let (steps, batch, input, hidden) = (7, 3, 5, 4);
        let spec = CellSpec {
            input_size: input,
            hidden_size: hidden,
            output_size: hidden,
            bias: true,
        };
        let cell = LstmCell::<B>::init(spec, &CellOptions::default(), device).unwrap();
        let n = Distribution::Normal(0.0, 0.7);
        let inputs = [
            Tensor::random([steps, batch, input], n, device),
            Tensor::random([steps, batch, hidden], n, device),
        ];
        let state = [0, 1, 2, 3].map(|_| Tensor::random([batch, hidden], n, device));
        let fused = run(&cell, &inputs, &state, true);
        let stepped = run(&cell, &inputs, &state, false);
        let names = [
            "out", "h_n", "c_n", "dx", "dh0", "dc0", "dW_ih", "dW_hh", "db_ih", "db_hh",
        ];
        for ((name, a), b) in names.iter().zip(&fused).zip(&stepped) {
            assert_eq!(a.len(), b.len(), "{name}");
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{name}: fused and per-step differ by {worst}");
        }
    }

    #[test]
    fn fused_lstm_matches_the_step_loop_on_ndarray() {
        matches_the_step_loop::<Autodiff<NdArray>>(&NdArrayDevice::Cpu);
    }

    #[test]
    fn fused_lstm_matches_the_step_loop_on_flex() {
        matches_the_step_loop::<Autodiff<Flex>>(&FlexDevice);
    }
}
