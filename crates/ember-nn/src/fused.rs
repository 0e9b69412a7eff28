//! The recurrence of an LSTM, GRU or Elman RNN over a whole sequence as one autodiff
//! operation, with a hand-written backward pass (BPTT), on Burn's CPU backends.
//!
//! Burn's autodiff records every tensor op of every time step: about twenty graph nodes per
//! LSTM step, each with its own allocations and backward closure. Here the whole recurrence,
//! from the projected input `xp = x W_ihᵀ + b` (one `crate::affine` node, outside) to the
//! outputs and final state, is one node whose forward and backward run in
//! [`ember_kernels`] on plain `f32` buffers (gemm and vectorised gate loops). Its parents are
//! `xp`, `W_hh`, `h_0`, then `c_0` for an LSTM or `b_hh` for a GRU (inside `r ⊙ (…)`, so not
//! foldable into `xp`), then an LSTM's projection `W_hr` (`proj_size`), then a LayerNorm cell's
//! recurrent gains `γ_hh`, `γ_c` and bias `β_c` (see `crate::layer_norm`).
//!
//! The node's one output is `Y`, flat: the outputs `[T, batch, H_out]`, `h_n` and, for an LSTM,
//! `c_n`; they are slices of it. Packed sequences run only their active rows per step. Used
//! for `Autodiff<NdArray>` and `Autodiff<Flex>` (training), and for plain `NdArray`/`Flex`
//! (inference) on sequences of [`SHORT`] steps or more, chosen at run time by type, so models
//! keep a plain `B: Backend` bound. wgpu runs the per-step loop with a CubeCL kernel for each
//! LSTM, GRU or RNN step (feature `cube`); with `EMBER_PERSISTENT=1`, an LSTM without `proj_size`
//! runs there as one persistent CubeCL kernel over all steps instead. Setting
//! `EMBER_UNFUSED=1` turns the fused path off (for benchmarks and comparisons).

use std::any::{Any, TypeId};
use std::sync::OnceLock;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex, NdArray};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, TensorData, TensorPrimitive};
use burn_flex::FlexTensor;
use ember_kernels::{Cell, Dims, Inputs, Norm, Saved};

use crate::cell::{CellState, ZoneMasks};

/// Inference on sequences shorter than this (sampling feeds one step at a time) runs the
/// per-step loop: copying `W_hh` to and from the kernel's buffers costs more than the steps.
pub const SHORT: usize = 16;

/// Whether the fused path is on (it is unless `EMBER_UNFUSED` is set).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("EMBER_UNFUSED").is_none())
}

/// `p` as a tensor.
pub(crate) fn tensor<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// `t`'s float primitive.
pub(crate) fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// The values of `t` in row-major order, as `f32`: on Flex one copy out of the tensor's storage
/// (its `into_data` copies a shared tensor twice).
pub(crate) fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    let data = match cast_or::<_, FlexTensor>(primitive(t)) {
        Ok(flex) => match flex.as_slice::<f32>() {
            Some(values) => return values.to_vec(),
            None => flex.into_data(),
        },
        Err(p) => tensor::<B, D>(p).into_data(),
    };
    data.convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32")
}

/// A tensor's values, read-only: a Flex `f32` tensor laid out contiguously is read in place
/// (sharing its storage), anything else is copied.
#[derive(Debug, Clone)]
pub(crate) enum Values {
    Flex(FlexTensor),
    Copied(Vec<f32>),
}

impl Values {
    /// `t`'s values, in place where they can be.
    pub(crate) fn of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Self {
        match cast_or::<_, FlexTensor>(primitive(t)) {
            Ok(flex) if flex.dtype() == DType::F32 && flex.as_slice::<f32>().is_some() => {
                Values::Flex(flex)
            }
            Ok(flex) => Values::Copied(host::<Flex, D>(tensor(flex))),
            Err(p) => Values::Copied(host::<B, D>(tensor(p))),
        }
    }

    /// The values, row-major.
    pub(crate) fn get(&self) -> &[f32] {
        match self {
            Values::Flex(t) => t.as_slice::<f32>().expect("checked contiguous f32"),
            Values::Copied(v) => v,
        }
    }
}

/// A buffer the kernels own and overwrite (the projected input, then its gradient): a Flex
/// tensor held alone, used in place, or a copy of the values.
#[derive(Debug, Clone)]
pub(crate) enum Host {
    Values(Vec<f32>),
    Flex(FlexTensor),
}

impl Host {
    /// `t`'s values: the tensor itself when it is a Flex `f32` tensor that nothing else holds,
    /// laid out contiguously over its whole buffer; otherwise a copy.
    pub(crate) fn of<B: Backend, const D: usize>(t: Tensor<B, D>) -> Self {
        match cast_or::<_, FlexTensor>(primitive(t)) {
            Ok(flex) if Self::whole(&flex) => Host::Flex(flex),
            Ok(flex) => Host::Values(host::<Flex, D>(tensor(flex))),
            Err(p) => Host::Values(host::<B, D>(tensor(p))),
        }
    }

    fn whole(t: &FlexTensor) -> bool {
        t.dtype() == DType::F32
            && t.is_unique()
            && t.is_contiguous()
            && t.layout().start_offset() == 0
            && t.bytes().len() == t.layout().num_elements() * size_of::<f32>()
    }

    /// As a tensor of `shape` on `device` (a Flex tensor keeps its own shape, which is `shape`).
    pub(crate) fn into_tensor<B: Backend, const D: usize>(
        self,
        shape: [usize; D],
        device: &B::Device,
    ) -> FloatTensor<B> {
        match self {
            Host::Values(values) => primitive(Tensor::<B, D>::from_data(
                TensorData::new(values, shape),
                device,
            )),
            Host::Flex(t) => cast(t).expect("a Flex buffer comes from a Flex tensor"),
        }
    }
}

impl AsRef<[f32]> for Host {
    fn as_ref(&self) -> &[f32] {
        match self {
            Host::Values(v) => v,
            Host::Flex(t) => t.storage::<f32>(),
        }
    }
}

impl AsMut<[f32]> for Host {
    fn as_mut(&mut self) -> &mut [f32] {
        match self {
            Host::Values(v) => v,
            Host::Flex(t) => t.storage_mut::<f32>(),
        }
    }
}

/// `values` as a tensor of `shape` on `device`, as a graph gradient.
pub(crate) fn grad<B: Backend, const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &B::Device,
) -> Option<FloatTensor<B>> {
    Some(Host::Values(values).into_tensor::<B, D>(shape, device))
}

/// One recurrence's inputs on backend `B`.
#[derive(Debug, Clone)]
struct Recurrence<B: Backend> {
    cell: Cell,
    /// `[T, batch, G·H]`.
    xp: Tensor<B, 3>,
    /// `[G·H, H_out]`.
    w_hh: Tensor<B, 2>,
    /// `[batch, H_out]`.
    h0: Tensor<B, 2>,
    /// LSTM: `c_0 [batch, H]`; GRU: `b_hh [1, 3H]` when the cell has biases; else `None`.
    aux: Option<Tensor<B, 2>>,
    /// LSTM with `proj_size`: `W_hr [H_out, H]`.
    w_hr: Option<Tensor<B, 2>>,
    /// Active rows per step (empty: all).
    active: Vec<usize>,
    /// Zoneout masks of `h` `[T, batch, H_out]` and of an LSTM's `c` `[T, batch, H]`, in step
    /// order; constants of the graph.
    zone_h: Option<Tensor<B, 3>>,
    zone_c: Option<Tensor<B, 3>>,
    /// A LayerNorm cell's recurrent gains and bias.
    norm: Option<NormWeights<B>>,
}

/// The recurrent side of a LayerNorm cell's norms, as [`ember_kernels::Norm`] takes them.
#[derive(Debug, Clone)]
pub(crate) struct NormWeights<B: Backend> {
    /// `γ_hh [G·H]`.
    pub gamma_hh: Tensor<B, 1>,
    /// LSTM: `γ_c [H]`, the gain of the normalised cell state.
    pub gamma_c: Option<Tensor<B, 1>>,
    /// LSTM: `β_c [H]`, the bias of the normalised cell state.
    pub beta_c: Option<Tensor<B, 1>>,
}

impl<B: Backend> NormWeights<B> {
    fn recast<I: Backend>(self) -> NormWeights<I> {
        NormWeights {
            gamma_hh: same(self.gamma_hh),
            gamma_c: self.gamma_c.map(same),
            beta_c: self.beta_c.map(same),
        }
    }

    fn host(self) -> Norm {
        Norm {
            gamma_hh: host(self.gamma_hh),
            gamma_c: self.gamma_c.map(host).unwrap_or_default(),
            beta_c: self.beta_c.map(host).unwrap_or_default(),
        }
    }
}

impl<B: Backend> Recurrence<B> {
    fn dims(&self) -> Dims {
        let [steps, batch, width] = self.xp.dims();
        Dims {
            steps,
            batch,
            hidden: width / self.cell.gates(),
            output: self.h0.dims()[1],
        }
    }

    /// The same recurrence on backend `I` when `B` is `I`, else itself back. By value: a
    /// tensor also held here would be shared, and copied where the kernel could take it.
    fn recast<I: Backend>(self) -> Result<Recurrence<I>, Self> {
        if TypeId::of::<B>() != TypeId::of::<I>() {
            return Err(self);
        }
        Ok(Recurrence {
            cell: self.cell,
            xp: same(self.xp),
            w_hh: same(self.w_hh),
            h0: same(self.h0),
            aux: self.aux.map(same),
            w_hr: self.w_hr.map(same),
            active: self.active,
            zone_h: self.zone_h.map(same),
            zone_c: self.zone_c.map(same),
            norm: self.norm.map(NormWeights::recast),
        })
    }
}

/// What the node keeps for its backward pass.
#[derive(Debug, Clone)]
struct NodeState {
    saved: Saved<Host>,
    cell: Cell,
    dims: Dims,
}

/// Runs the recurrence on a plain backend: the flat `Y`, and the node state when `save`.
fn forward<B: Backend>(r: Recurrence<B>, save: bool) -> (Tensor<B, 1>, Option<NodeState>) {
    let device = r.xp.device();
    let dims = r.dims();
    let (b_hh, c0) = match (r.cell, r.aux) {
        (Cell::Lstm, Some(c0)) => (Vec::new(), host(c0)),
        (Cell::Gru, Some(b)) => (host(b), Vec::new()),
        _ => (Vec::new(), Vec::new()),
    };
    let inputs = Inputs {
        cell: r.cell,
        dims,
        xp: Host::of(r.xp),
        w_hh: host(r.w_hh),
        w_hr: r.w_hr.map(host).unwrap_or_default(),
        b_hh,
        h0: host(r.h0),
        c0,
        active: r.active,
        zone_h: r.zone_h.map(host).unwrap_or_default(),
        zone_c: r.zone_c.map(host).unwrap_or_default(),
        norm: r.norm.map(NormWeights::host).unwrap_or_default(),
    };
    let (y, saved) =
        ember_kernels::forward(inputs, save).expect("the layer passes matching shapes");
    let state = saved.map(|saved| NodeState {
        saved,
        cell: r.cell,
        dims,
    });
    let y = Tensor::from_data(TensorData::new(y, [dims.y_len(r.cell)]), &device);
    (y, state)
}

/// The autodiff node of the recurrence.
#[derive(Debug)]
struct FusedRecurrence;

/// The node's parents: `xp`, `W_hh`, `h_0`, `c_0` or `b_hh`, `W_hr`, `γ_hh`, `γ_c`, `β_c`.
const PARENTS: usize = 8;

impl<B: Backend> Backward<B, PARENTS> for FusedRecurrence {
    type State = NodeState;

    fn backward(self, ops: Ops<Self::State, PARENTS>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy: Tensor<B, 1> = tensor(grads.consume::<B>(&ops.node));
        let device = dy.device();
        let NodeState { saved, cell, dims } = ops.state;
        let g =
            ember_kernels::backward(saved, Values::of(dy).get()).expect("dy has the layout of Y");
        let Dims {
            steps,
            batch,
            hidden,
            output,
        } = dims;
        let width = cell.gates() * hidden;
        let vector = |values: Vec<f32>| {
            let len = values.len();
            (len > 0)
                .then(|| grad::<B, 1>(values, [len], &device))
                .flatten()
        };
        let found: [Option<FloatTensor<B>>; PARENTS] = [
            Some(g.xp.into_tensor::<B, 3>([steps, batch, width], &device)),
            grad::<B, 2>(g.w_hh, [width, output], &device),
            grad::<B, 2>(g.h0, [batch, output], &device),
            match cell {
                Cell::Lstm => grad::<B, 2>(g.c0, [batch, hidden], &device),
                Cell::Gru => grad::<B, 2>(g.b_hh, [1, width], &device),
                Cell::Rnn { .. } => None,
            },
            (!g.w_hr.is_empty())
                .then(|| grad::<B, 2>(g.w_hr, [output, hidden], &device))
                .flatten(),
            vector(g.norm.gamma_hh),
            vector(g.norm.gamma_c),
            vector(g.norm.beta_c),
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
) -> Tensor<Autodiff<B, C>, 1> {
    let device = r.xp.device();
    // Untracked placeholders fill the parents a cell does not have.
    let placeholder = || Tensor::<Autodiff<B, C>, 2>::zeros([1, 1], &device);
    let vector = || Tensor::<Autodiff<B, C>, 1>::zeros([1], &device);
    let (has_aux, has_w_hr) = (r.aux.is_some(), r.w_hr.is_some());
    let xp = primitive(r.xp);
    let w_hh = primitive(r.w_hh);
    let h0 = primitive(r.h0);
    let aux = primitive(r.aux.unwrap_or_else(placeholder));
    let w_hr = primitive(r.w_hr.unwrap_or_else(placeholder));
    let (normed, has_c_norm) = match &r.norm {
        Some(n) => (true, n.gamma_c.is_some()),
        None => (false, false),
    };
    let (gamma_hh, gamma_c, beta_c) = match r.norm {
        Some(n) => (
            n.gamma_hh,
            n.gamma_c.unwrap_or_else(vector),
            n.beta_c.unwrap_or_else(vector),
        ),
        None => (vector(), vector(), vector()),
    };
    let (gamma_hh, gamma_c, beta_c) = (primitive(gamma_hh), primitive(gamma_c), primitive(beta_c));
    let nodes =
        [&xp, &w_hh, &h0, &aux, &w_hr, &gamma_hh, &gamma_c, &beta_c].map(|t| t.node.clone());
    let inner = Recurrence::<B> {
        cell: r.cell,
        xp: tensor(xp.primitive),
        w_hh: tensor(w_hh.primitive),
        h0: tensor(h0.primitive),
        aux: has_aux.then(|| tensor(aux.primitive)),
        w_hr: has_w_hr.then(|| tensor(w_hr.primitive)),
        active: r.active,
        zone_h: r.zone_h.map(|m| m.inner()),
        zone_c: r.zone_c.map(|m| m.inner()),
        norm: normed.then(|| NormWeights {
            gamma_hh: tensor(gamma_hh.primitive),
            gamma_c: has_c_norm.then(|| tensor(gamma_c.primitive)),
            beta_c: has_c_norm.then(|| tensor(beta_c.primitive)),
        }),
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

/// `a` as a `T`, which the caller has checked it is (the backend `B` is `I`).
pub(crate) fn same<A: 'static, T: 'static>(a: A) -> T {
    cast(a).expect("B is I")
}

/// `a` as a `T`, when it is one.
pub(crate) fn cast<A: 'static, T: 'static>(a: A) -> Option<T> {
    cast_or(a).ok()
}

/// `a` as a `T` when it is one, else `a` back.
pub(crate) fn cast_or<A: 'static, T: 'static>(a: A) -> Result<T, A> {
    if TypeId::of::<A>() != TypeId::of::<T>() {
        return Err(a);
    }
    Ok(*(Box::new(a) as Box<dyn Any>)
        .downcast::<T>()
        .expect("the same type"))
}

/// Runs on `Autodiff<I>` when `B` is that backend, else gives `r` back.
fn autodiff_as<B: Backend, I: Backend>(r: Recurrence<B>) -> Result<Tensor<B, 1>, Recurrence<B>> {
    let r = r.recast::<Autodiff<I>>()?;
    Ok(cast(on_autodiff::<I, NoCheckpointing>(r)).expect("B is Autodiff<I>"))
}

/// Runs on the plain backend `I` when `B` is `I` (inference), else gives `r` back.
fn plain_as<B: Backend, I: Backend>(r: Recurrence<B>) -> Result<Tensor<B, 1>, Recurrence<B>> {
    if r.xp.dims()[0] < SHORT {
        return Err(r);
    }
    let r = r.recast::<I>()?;
    Ok(cast(forward::<I>(r, false).0).expect("B is I"))
}

/// The recurrence as one persistent CubeCL kernel (wgpu or CUDA; LSTM without `proj_size`,
/// zoneout or layer norm).
#[cfg(feature = "cube")]
fn gpu<B: Backend>(r: &Recurrence<B>) -> Option<Tensor<B, 1>> {
    if r.zone_h.is_some() || r.zone_c.is_some() || r.norm.is_some() {
        return None;
    }
    match (r.cell, &r.aux, &r.w_hr) {
        (Cell::Lstm, Some(c0), None) => {
            crate::cube::lstm_sequence(&r.xp, &r.w_hh, &r.h0, c0, &r.active)
        }
        _ => None,
    }
}

/// Without the `cube` feature there is no GPU recurrence.
#[cfg(not(feature = "cube"))]
fn gpu<B: Backend>(_: &Recurrence<B>) -> Option<Tensor<B, 1>> {
    None
}

/// A cell's weights as the fused recurrence takes them.
pub(crate) struct RecurrentWeights<B: Backend> {
    /// `W_hh [G·H, H_out]`.
    pub w_hh: Tensor<B, 2>,
    /// LSTM with `proj_size`: `W_hr [H_out, H]`.
    pub w_hr: Option<Tensor<B, 2>>,
    /// GRU with biases: `b_hh [3H]`.
    pub b_hh: Option<Tensor<B, 1>>,
    /// A LayerNorm cell: its recurrent gains and bias.
    pub norm: Option<NormWeights<B>>,
}

/// The outputs `[T, batch, H_out]` and final state of `cell`'s recurrence over the projected
/// input `xp [T, batch, G·H]` from `state`, with `weights`; `active` gives the rows running at
/// each step of a packed batch (empty: all), `zone` the zoneout masks in step order. When the
/// backend has no fused path (or it is turned off, or `T` is 0), `xp` comes back as the error.
pub(crate) fn recurrence<B: Backend>(
    cell: Cell,
    xp: Tensor<B, 3>,
    weights: RecurrentWeights<B>,
    state: &CellState<B>,
    active: &[usize],
    zone: &ZoneMasks<B>,
) -> Result<(Tensor<B, 3>, CellState<B>), Tensor<B, 3>> {
    let RecurrentWeights {
        w_hh,
        w_hr,
        b_hh,
        norm,
    } = weights;
    if !enabled() || xp.dims()[0] == 0 {
        return Err(xp);
    }
    let aux = match (cell, &state.c) {
        (Cell::Lstm, Some(c)) => Some(c.clone()),
        (Cell::Lstm, None) => return Err(xp),
        (Cell::Gru, _) => b_hh.map(|b| b.unsqueeze_dim(0)),
        (Cell::Rnn { .. }, _) => None,
    };
    let r = Recurrence {
        cell,
        xp,
        w_hh,
        h0: state.h.clone(),
        aux,
        w_hr,
        active: active.to_vec(),
        zone_h: zone.h.clone(),
        zone_c: zone.c.clone().filter(|_| cell == Cell::Lstm),
        norm,
    };
    let d = r.dims();
    let y = match gpu(&r) {
        Some(y) => y,
        None => autodiff_as::<B, NdArray>(r)
            .or_else(autodiff_as::<B, Flex>)
            .or_else(plain_as::<B, NdArray>)
            .or_else(plain_as::<B, Flex>)
            .map_err(|r| r.xp)?,
    };
    let block = d.state_len();
    let part = |start: usize, len: usize| y.clone().slice(s![start..start + len]);
    let out = part(0, d.steps * block).reshape([d.steps, d.batch, d.output]);
    let last = CellState {
        h: part(d.steps * block, block).reshape([d.batch, d.output]),
        c: (cell == Cell::Lstm)
            .then(|| part((d.steps + 1) * block, d.batch * d.hidden).reshape([d.batch, d.hidden])),
    };
    Ok((out, last))
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
        zone: &ZoneMasks<B>,
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
            cell.fused_recurrence(projected, &start, &active, zone)
                .expect("the fused path runs on this backend")
        } else {
            run_steps(cell, projected, start, packing, false, zone)
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

    /// `output`: the width of `h` (below `hidden`: a projected LSTM). With `zoneout`, also
    /// with zoneout masks.
    fn matches_the_step_loop<B: AutodiffBackend, C: RecurrentCell<B>>(
        what: &str,
        options: CellOptions,
        [hidden, output]: [usize; 2],
        zoneout: bool,
        device: &B::Device,
    ) {
        B::seed(device, 3);
        let (steps, batch, input) = (7, 3, 5);
        let spec = CellSpec {
            input_size: input,
            hidden_size: hidden,
            output_size: output,
            bias: true,
        };
        let cell = C::init(spec, &options, device).unwrap();
        let n = Distribution::Normal(0.0, 0.7);
        let inputs = [
            Tensor::random([steps, batch, input], n, device),
            Tensor::random([steps, batch, output], n, device),
        ];
        let width = [output, hidden, output, hidden];
        let state = width.map(|w| Tensor::random([batch, w], n, device));
        // Zoneout masks of 0 (take the new value), 1 (keep the old) and 0.3 (inference).
        let zone_mask = |width: usize| {
            let u = Tensor::<B, 3>::random([steps, batch, width], Distribution::Default, device);
            let keep = u.clone().lower_elem(0.35).float();
            let rate = u.greater_elem(0.7).float().mul_scalar(0.3);
            keep + rate
        };
        let zoned = ZoneMasks {
            h: Some(zone_mask(output)),
            c: C::HAS_CELL_STATE.then(|| zone_mask(hidden)),
        };
        let mut variants = vec![("", ZoneMasks::none())];
        if zoneout {
            variants.push((" zoneout", zoned));
        }
        for (how, zone) in variants {
            let full = [
                run(&cell, &inputs, &state, None, &zone, true),
                run(&cell, &inputs, &state, None, &zone, false),
            ];
            compare(&format!("{what}{how}"), &full[0], &full[1]);
            // A packed batch, sorted longest first, with a sequence of one step.
            let packing = Packing::new(&[7, 4, 1], steps);
            let packed =
                [true, false].map(|f| run(&cell, &inputs, &state, Some(&packing), &zone, f));
            compare(&format!("{what}{how} packed"), &packed[0], &packed[1]);
        }
    }

    fn every_cell<B: AutodiffBackend>(device: &B::Device) {
        let relu = CellOptions {
            nonlinearity: Nonlinearity::Relu,
            ..CellOptions::default()
        };
        let plain = CellOptions::default();
        let normed = CellOptions {
            layer_norm: true,
            ..CellOptions::default()
        };
        matches_the_step_loop::<B, LstmCell<B>>("lstm", plain, [4, 4], true, device);
        matches_the_step_loop::<B, LstmCell<B>>("lstm proj_size 2", plain, [4, 2], true, device);
        matches_the_step_loop::<B, GruCell<B>>("gru", plain, [4, 4], true, device);
        matches_the_step_loop::<B, RnnCell<B>>("rnn tanh", plain, [4, 4], true, device);
        matches_the_step_loop::<B, RnnCell<B>>("rnn relu", relu, [4, 4], true, device);
        matches_the_step_loop::<B, LstmCell<B>>("ln lstm", normed, [4, 4], true, device);
        matches_the_step_loop::<B, LstmCell<B>>("ln lstm proj 2", normed, [4, 2], true, device);
        matches_the_step_loop::<B, GruCell<B>>("ln gru", normed, [4, 4], true, device);
        matches_the_step_loop::<B, GruCell<B>>("ln gru wide", normed, [17, 17], true, device);
    }

    #[test]
    fn fused_cells_match_the_step_loop_on_ndarray() {
        every_cell::<Autodiff<NdArray>>(&NdArrayDevice::Cpu);
    }

    #[test]
    fn fused_cells_match_the_step_loop_on_flex() {
        every_cell::<Autodiff<Flex>>(&FlexDevice);
    }

    /// The persistent CubeCL kernel of an LSTM on wgpu (lavapipe without a GPU), with fewer
    /// units than a cube's threads and with more (each thread then runs several).
    #[cfg(feature = "cube")]
    #[test]
    fn persistent_lstm_kernel_matches_the_step_loop_on_wgpu() {
        type Ad = Autodiff<burn::backend::Wgpu>;
        let device = burn::backend::wgpu::WgpuDevice::default();
        for hidden in [4, 300] {
            let what = format!("lstm H {hidden}");
            crate::cube::with_persistent(|| {
                matches_the_step_loop::<Ad, LstmCell<Ad>>(
                    &what,
                    CellOptions::default(),
                    [hidden; 2],
                    false,
                    &device,
                )
            });
        }
    }
}
