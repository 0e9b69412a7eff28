//! Fused recurrent steps on the GPU: CubeCL kernels for the pointwise part of an LSTM, GRU or RNN
//! step, each one autodiff node with a hand-written backward kernel (feature `cube`, on by
//! default).
//!
//! On the GPU a step is `W_hh h` (a Burn matmul, tracked as usual) and then, instead of the
//! dozen elementwise ops and graph nodes of the gate math, one kernel: LSTM gates
//! `[batch, 4H]` and `c` to `[h'; c']`, GRU `xp`, `gh` and `h` to `h'`. The backward kernel
//! recomputes nothing but `tanh c'`: the forward keeps the gate activations. Used for `Wgpu`,
//! `Cuda` (feature `cuda`) and `Autodiff` of either, chosen at run time by type like
//! [`crate::fused`]; the kernels are generic over the CubeCL runtime, and `entry_points!`
//! instantiates them once per backend. `EMBER_UNFUSED=1` turns them off. The Elman RNN's
//! step, `act(xp + W_hh h)`, is one kernel too ([`rnn`]).
//!
//! With `EMBER_PERSISTENT=1`, an LSTM without `proj_size` goes further ([`sequence`]): its
//! whole recurrence is one persistent kernel launch, one cube per batch row.
//!
//! A LayerNorm cell's norm of a product `[rows, G·H]` is one kernel and one node too ([`norm`]:
//! a thread per row).
//!
//! Dropout on `Autodiff` of a GPU backend is one kernel and one node too ([`mod@dropout`]): Philox masks,
//! the CPU's for the same key, drawn and applied in one pass and recomputed in backward.

mod dropout;
mod kernels;
mod sequence;

pub(crate) use sequence::lstm_sequence;
#[cfg(test)]
pub(crate) use sequence::with_persistent;

use std::any::TypeId;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Wgpu};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime};
use burn_fusion::stream::OperationStreams;
use burn_fusion::{get_client, Fusion, NoOp};
use burn_ir::{InitOperationIr, OperationIr, OperationOutput};
use cubecl::prelude::{CubeCount, CubeDim};

use crate::fused::{cast, cast_or, enabled, primitive, tensor};

/// A CubeCL backend with `f32` floats, `i32` ints and booleans stored as `BT` (wgpu stores
/// them as `u32`, CUDA as `u8`).
type Cube<R, BT> = CubeBackend<R, f32, i32, BT>;

/// A backend whose float tensors are, or wrap, CubeCL tensors of runtime `Runtime`.
trait CubeBridge: Backend {
    /// The CubeCL runtime.
    type Runtime: CubeRuntime;
    /// The CubeCL tensor behind `t`, contiguous.
    fn to_cube(t: FloatTensor<Self>) -> CubeTensor<Self::Runtime>;
    /// `t` as this backend's tensor.
    fn from_cube(t: CubeTensor<Self::Runtime>) -> FloatTensor<Self>;
}

impl<R: CubeRuntime, BT: BoolElement> CubeBridge for Cube<R, BT> {
    type Runtime = R;

    fn to_cube(t: FloatTensor<Self>) -> CubeTensor<R> {
        into_contiguous(t)
    }

    fn from_cube(t: CubeTensor<R>) -> FloatTensor<Self> {
        t
    }
}

impl<R: CubeRuntime, BT: BoolElement> CubeBridge for Fusion<Cube<R, BT>> {
    type Runtime = R;

    fn to_cube(t: FloatTensor<Self>) -> CubeTensor<R> {
        // Runs the operations queued for `t`'s stream and hands over the tensor.
        into_contiguous(t.client.clone().resolve_tensor_float::<Cube<R, BT>>(t))
    }

    fn from_cube(t: CubeTensor<R>) -> FloatTensor<Self> {
        // As `Fusion::float_from_data` registers a tensor made by the inner backend.
        let client = get_client::<Cube<R, BT>>(&t.device);
        let (shape, dtype) = (t.shape(), t.dtype());
        let handle = t.into();
        let init = InitOperationIr::create(shape, dtype, || client.register_tensor_handle(handle));
        client
            .register(
                OperationStreams::default(),
                OperationIr::Init(init),
                NoOp::<Cube<R, BT>>::new(),
            )
            .output()
    }
}

/// An uninitialised `f32` tensor of `shape` beside `like`.
fn empty<R: CubeRuntime>(like: &CubeTensor<R>, shape: Vec<usize>) -> CubeTensor<R> {
    empty_device::<R, f32>(like.client.clone(), like.device.clone(), Shape::from(shape))
}

/// Launch grid for one thread per unit.
fn grid(units: usize) -> (CubeCount, CubeDim, u32) {
    const THREADS: u32 = 256;
    let units = u32::try_from(units).expect("a step has fewer than 2³² units");
    (
        CubeCount::Static(units.div_ceil(THREADS), 1, 1),
        CubeDim::new_1d(THREADS),
        units,
    )
}

/// `[batch, width]` of a step's matrix.
fn dims2<R: CubeRuntime>(t: &CubeTensor<R>) -> [usize; 2] {
    t.shape().dims::<2>()
}

/// LSTM step forward: `[h'; c']` as `[2, batch, H]`, and what the backward pass reads.
fn lstm_forward<B: CubeBridge>(
    gates: FloatTensor<B>,
    c_prev: FloatTensor<B>,
) -> (FloatTensor<B>, LstmSaved<B::Runtime>) {
    let (gates, c_prev) = (B::to_cube(gates), B::to_cube(c_prev));
    let [batch, width] = dims2(&gates);
    let hidden = width / 4;
    let act = empty(&gates, vec![batch, width]);
    let out = empty(&gates, vec![2, batch, hidden]);
    let (count, dim, units) = grid(batch * hidden);
    kernels::lstm_forward::launch::<B::Runtime>(
        &gates.client.clone(),
        count,
        dim,
        gates.into_array_arg(),
        c_prev.clone().into_array_arg(),
        act.clone().into_array_arg(),
        out.clone().into_array_arg(),
        hidden as u32,
        units,
    );
    (B::from_cube(out.clone()), (act, out, c_prev))
}

/// GRU step forward: `h'`, and what the backward pass reads.
fn gru_forward<B: CubeBridge>(
    xp: FloatTensor<B>,
    gh: FloatTensor<B>,
    h_prev: FloatTensor<B>,
) -> (FloatTensor<B>, GruSaved<B::Runtime>) {
    let (xp, gh, h_prev) = (B::to_cube(xp), B::to_cube(gh), B::to_cube(h_prev));
    let [batch, width] = dims2(&xp);
    let hidden = width / 3;
    let act = empty(&xp, vec![batch, width]);
    let h = empty(&xp, vec![batch, hidden]);
    let (count, dim, units) = grid(batch * hidden);
    kernels::gru_forward::launch::<B::Runtime>(
        &xp.client.clone(),
        count,
        dim,
        xp.into_array_arg(),
        gh.clone().into_array_arg(),
        h_prev.clone().into_array_arg(),
        act.clone().into_array_arg(),
        h.clone().into_array_arg(),
        hidden as u32,
        units,
    );
    (B::from_cube(h), (act, gh, h_prev))
}

/// Elman RNN step forward: `h' = act(xp + gh)`, which its backward pass also reads.
fn rnn_forward<B: CubeBridge>(
    xp: FloatTensor<B>,
    gh: FloatTensor<B>,
    relu: bool,
) -> (FloatTensor<B>, CubeTensor<B::Runtime>) {
    let (xp, gh) = (B::to_cube(xp), B::to_cube(gh));
    let [batch, hidden] = dims2(&xp);
    let h = empty(&xp, vec![batch, hidden]);
    let (count, dim, units) = grid(batch * hidden);
    kernels::rnn_forward::launch::<B::Runtime>(
        &xp.client.clone(),
        count,
        dim,
        xp.into_array_arg(),
        gh.into_array_arg(),
        h.clone().into_array_arg(),
        units,
        relu,
    );
    (B::from_cube(h.clone()), h)
}

/// What the LSTM step's backward reads: activations, `[h'; c']`, `c`. Kept as CubeCL tensors,
/// so the backward pass hands only its incoming gradient over from Burn's fusion stream.
type LstmSaved<R> = (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>);

/// The LSTM step's autodiff node; parents `gates`, `c_prev`.
#[derive(Debug)]
struct LstmStep;

impl<B: CubeBridge> Backward<B, 2> for LstmStep {
    type State = LstmSaved<B::Runtime>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_out = B::to_cube(grads.consume::<B>(&ops.node));
        let (act, out, c_prev) = ops.state;
        let [batch, width] = dims2(&act);
        let hidden = width / 4;
        let d_gates = empty(&act, vec![batch, width]);
        let d_c_prev = empty(&act, vec![batch, hidden]);
        let (count, dim, units) = grid(batch * hidden);
        kernels::lstm_backward::launch::<B::Runtime>(
            &act.client.clone(),
            count,
            dim,
            d_out.into_array_arg(),
            act.into_array_arg(),
            out.into_array_arg(),
            c_prev.into_array_arg(),
            d_gates.clone().into_array_arg(),
            d_c_prev.clone().into_array_arg(),
            hidden as u32,
            units,
        );
        let [gates_node, c_node] = ops.parents;
        if let Some(node) = gates_node {
            grads.register::<B>(node.id, B::from_cube(d_gates));
        }
        if let Some(node) = c_node {
            grads.register::<B>(node.id, B::from_cube(d_c_prev));
        }
    }
}

/// What the GRU step's backward reads: activations, `gh`, `h_prev` (CubeCL tensors).
type GruSaved<R> = (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>);

/// The GRU step's autodiff node; parents `xp`, `gh`, `h_prev`.
#[derive(Debug)]
struct GruStep;

impl<B: CubeBridge> Backward<B, 3> for GruStep {
    type State = GruSaved<B::Runtime>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dh = B::to_cube(grads.consume::<B>(&ops.node));
        let (act, gh, h_prev) = ops.state;
        let [batch, width] = dims2(&act);
        let hidden = width / 3;
        let d_xp = empty(&act, vec![batch, width]);
        let d_gh = empty(&act, vec![batch, width]);
        let d_h_prev = empty(&act, vec![batch, hidden]);
        let (count, dim, units) = grid(batch * hidden);
        kernels::gru_backward::launch::<B::Runtime>(
            &act.client.clone(),
            count,
            dim,
            dh.into_array_arg(),
            act.into_array_arg(),
            gh.into_array_arg(),
            h_prev.into_array_arg(),
            d_xp.clone().into_array_arg(),
            d_gh.clone().into_array_arg(),
            d_h_prev.clone().into_array_arg(),
            hidden as u32,
            units,
        );
        for (parent, grad) in ops.parents.into_iter().zip([d_xp, d_gh, d_h_prev]) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, B::from_cube(grad));
            }
        }
    }
}

/// The Elman RNN step's autodiff node, for `tanh` or (`relu`) `relu`; parents `xp`, `gh`,
/// which get the same gradient. Its state is the step's output.
#[derive(Debug)]
struct RnnStep {
    relu: bool,
}

impl<B: CubeBridge> Backward<B, 2> for RnnStep {
    type State = CubeTensor<B::Runtime>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dh = B::to_cube(grads.consume::<B>(&ops.node));
        let h = ops.state;
        let [batch, hidden] = dims2(&h);
        let d_pre = empty(&h, vec![batch, hidden]);
        let (count, dim, units) = grid(batch * hidden);
        kernels::rnn_backward::launch::<B::Runtime>(
            &h.client.clone(),
            count,
            dim,
            dh.into_array_arg(),
            h.into_array_arg(),
            d_pre.clone().into_array_arg(),
            units,
            self.relu,
        );
        for node in ops.parents.into_iter().flatten() {
            grads.register::<B>(node.id, B::from_cube(d_pre.clone()));
        }
    }
}

/// Layer norm forward: `γ ⊙ LN(x)` for `x [rows, width]` and `gamma [1, width]`, and what the
/// backward pass reads.
fn norm_forward<B: CubeBridge>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
) -> (FloatTensor<B>, NormSaved<B::Runtime>) {
    let (x, gamma) = (B::to_cube(x), B::to_cube(gamma));
    let [rows, width] = dims2(&x);
    let x_hat = empty(&x, vec![rows, width]);
    let scale = empty(&x, vec![rows]);
    let y = empty(&x, vec![rows, width]);
    let (count, dim, units) = grid(rows);
    kernels::norm_forward::launch::<B::Runtime>(
        &x.client.clone(),
        count,
        dim,
        x.into_array_arg(),
        gamma.clone().into_array_arg(),
        x_hat.clone().into_array_arg(),
        scale.clone().into_array_arg(),
        y.clone().into_array_arg(),
        width as u32,
        units,
        1.0 / width as f32,
    );
    (B::from_cube(y), (x_hat, scale, gamma))
}

/// What the layer norm's backward reads: `x̂`, the rows' scales, `γ` (CubeCL tensors).
type NormSaved<R> = (CubeTensor<R>, CubeTensor<R>, CubeTensor<R>);

/// The layer norm's autodiff node; parents `x`, `γ` (`[1, width]`).
#[derive(Debug)]
struct NormStep;

impl<B: CubeBridge> Backward<B, 2> for NormStep {
    type State = NormSaved<B::Runtime>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = B::to_cube(grads.consume::<B>(&ops.node));
        let (x_hat, scale, gamma) = ops.state;
        let [rows, width] = dims2(&x_hat);
        let dx = empty(&x_hat, vec![rows, width]);
        let (count, dim, units) = grid(rows);
        kernels::norm_backward::launch::<B::Runtime>(
            &x_hat.client.clone(),
            count,
            dim,
            dy.clone().into_array_arg(),
            x_hat.clone().into_array_arg(),
            scale.into_array_arg(),
            gamma.into_array_arg(),
            dx.clone().into_array_arg(),
            width as u32,
            units,
            1.0 / width as f32,
        );
        // dγ = Σ_rows dy ⊙ x̂, `[1, width]`.
        let dgamma = B::float_sum_dim(B::float_mul(B::from_cube(dy), B::from_cube(x_hat)), 0);
        for (parent, grad) in ops.parents.into_iter().zip([B::from_cube(dx), dgamma]) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// [`norm`] as one node of `Autodiff<B, C>`'s graph.
fn norm_tracked<B: CubeBridge, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    gamma: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [x.node.clone(), gamma.node.clone()];
    let (y, saved) = norm_forward::<B>(x.primitive, gamma.primitive);
    match NormStep.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(saved, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// [`lstm`] on a plain CubeCL backend.
fn lstm_plain<B: CubeBridge>(gates: FloatTensor<B>, c_prev: FloatTensor<B>) -> FloatTensor<B> {
    lstm_forward::<B>(gates, c_prev).0
}

/// [`gru`] on a plain CubeCL backend.
fn gru_plain<B: CubeBridge>(
    xp: FloatTensor<B>,
    gh: FloatTensor<B>,
    h_prev: FloatTensor<B>,
) -> FloatTensor<B> {
    gru_forward::<B>(xp, gh, h_prev).0
}

/// [`lstm`] as one node of `Autodiff<B, C>`'s graph.
fn lstm_tracked<B: CubeBridge, C: CheckpointStrategy>(
    gates: FloatTensor<Autodiff<B, C>>,
    c_prev: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [gates.node.clone(), c_prev.node.clone()];
    let (out, saved) = lstm_forward::<B>(gates.primitive, c_prev.primitive);
    match LstmStep.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(saved, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// [`gru`] as one node of `Autodiff<B, C>`'s graph.
fn gru_tracked<B: CubeBridge, C: CheckpointStrategy>(
    xp: FloatTensor<Autodiff<B, C>>,
    gh: FloatTensor<Autodiff<B, C>>,
    h_prev: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [xp.node.clone(), gh.node.clone(), h_prev.node.clone()];
    let (h, saved) = gru_forward::<B>(xp.primitive, gh.primitive, h_prev.primitive);
    match GruStep.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(saved, h),
        OpsKind::UnTracked(prep) => prep.finish(h),
    }
}

/// [`rnn`] as one node of `Autodiff<B, C>`'s graph.
fn rnn_tracked<B: CubeBridge, C: CheckpointStrategy>(
    xp: FloatTensor<Autodiff<B, C>>,
    gh: FloatTensor<Autodiff<B, C>>,
    relu: bool,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [xp.node.clone(), gh.node.clone()];
    let (h, saved) = rnn_forward::<B>(xp.primitive, gh.primitive, relu);
    match (RnnStep { relu })
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(saved, h),
        OpsKind::UnTracked(prep) => prep.finish(h),
    }
}

/// The kernels' entry points on one GPU backend `$backend` (its CubeCL runtime `$runtime`)
/// and on `Autodiff` of it, written out per backend rather than left generic so they are
/// compiled once, here, and not again in every crate whose generic models call them. Each
/// `pick_*` runs its kernel when `B` is that backend and gives `None` (or `x` back) otherwise.
macro_rules! entry_points {
    ($module:ident, $backend:ty, $runtime:ty) => {
        /// The kernels' entry points on one backend (see `entry_points!`).
        mod $module {
            use super::*;

            type Plain = $backend;
            type Ad = Autodiff<$backend>;

            #[inline(never)]
            fn lstm_plain([g, c]: [FloatTensor<Plain>; 2]) -> FloatTensor<Plain> {
                super::lstm_plain::<Plain>(g, c)
            }

            #[inline(never)]
            fn lstm_tracked([g, c]: [FloatTensor<Ad>; 2]) -> FloatTensor<Ad> {
                super::lstm_tracked::<Plain, NoCheckpointing>(g, c)
            }

            #[inline(never)]
            fn gru_plain([x, g, h]: [FloatTensor<Plain>; 3]) -> FloatTensor<Plain> {
                super::gru_plain::<Plain>(x, g, h)
            }

            #[inline(never)]
            fn gru_tracked([x, g, h]: [FloatTensor<Ad>; 3]) -> FloatTensor<Ad> {
                super::gru_tracked::<Plain, NoCheckpointing>(x, g, h)
            }

            #[inline(never)]
            fn rnn_plain([x, g]: [FloatTensor<Plain>; 2], relu: bool) -> FloatTensor<Plain> {
                super::rnn_forward::<Plain>(x, g, relu).0
            }

            #[inline(never)]
            fn rnn_tracked([x, g]: [FloatTensor<Ad>; 2], relu: bool) -> FloatTensor<Ad> {
                super::rnn_tracked::<Plain, NoCheckpointing>(x, g, relu)
            }

            #[inline(never)]
            fn norm_plain([x, g]: [FloatTensor<Plain>; 2]) -> FloatTensor<Plain> {
                super::norm_forward::<Plain>(x, g).0
            }

            #[inline(never)]
            fn norm_tracked([x, g]: [FloatTensor<Ad>; 2]) -> FloatTensor<Ad> {
                super::norm_tracked::<Plain, NoCheckpointing>(x, g)
            }

            #[inline(never)]
            fn dropout_tracked(x: FloatTensor<Ad>, prob: f64) -> FloatTensor<Ad> {
                super::dropout::tracked::<Plain, NoCheckpointing>(x, prob)
            }

            #[inline(never)]
            fn sequence_tracked(
                inputs: sequence::Inputs<Ad>,
                active: Vec<u32>,
                dims: sequence::Dims,
            ) -> FloatTensor<Ad> {
                sequence::tracked::<Plain, NoCheckpointing>(inputs, active, dims)
            }

            #[inline(never)]
            fn sequence_plain(
                inputs: sequence::Inputs<Plain>,
                active: Vec<u32>,
                dims: sequence::Dims,
            ) -> FloatTensor<Plain> {
                sequence::plain::<Plain>(inputs, active, dims)
            }

            /// The LSTM step kernel's `[h'; c']` when `B` is this backend.
            pub(super) fn pick_lstm<B: Backend>(
                inputs: &[Tensor<B, 2>; 2],
            ) -> Option<Tensor<B, 3>> {
                on::<B, Ad, 2, 3>(inputs, lstm_tracked)
                    .or_else(|| on::<B, Plain, 2, 3>(inputs, lstm_plain))
            }

            /// The GRU step kernel's `h'` when `B` is this backend.
            pub(super) fn pick_gru<B: Backend>(inputs: &[Tensor<B, 2>; 3]) -> Option<Tensor<B, 2>> {
                on::<B, Ad, 3, 2>(inputs, gru_tracked)
                    .or_else(|| on::<B, Plain, 3, 2>(inputs, gru_plain))
            }

            /// The Elman RNN step kernel's `h'` when `B` is this backend.
            pub(super) fn pick_rnn<B: Backend>(
                inputs: &[Tensor<B, 2>; 2],
                relu: bool,
            ) -> Option<Tensor<B, 2>> {
                on::<B, Ad, 2, 2>(inputs, |i| rnn_tracked(i, relu))
                    .or_else(|| on::<B, Plain, 2, 2>(inputs, |i| rnn_plain(i, relu)))
            }

            /// The layer norm kernel's `γ ⊙ LN(x)` when `B` is this backend.
            pub(super) fn pick_norm<B: Backend>(
                inputs: &[Tensor<B, 2>; 2],
            ) -> Option<Tensor<B, 2>> {
                on::<B, Ad, 2, 2>(inputs, norm_tracked)
                    .or_else(|| on::<B, Plain, 2, 2>(inputs, norm_plain))
            }

            /// The dropout node when `B` is `Autodiff` of this backend; else `x` back.
            pub(super) fn pick_dropout<B: Backend>(
                x: Tensor<B, 1>,
                prob: f64,
            ) -> Result<Tensor<B, 1>, Tensor<B, 1>> {
                let x: Tensor<Ad, 1> = cast_or(x)?;
                let y = tensor::<Ad, 1>(dropout_tracked(primitive(x), prob));
                Ok(cast(y).expect("B is this backend"))
            }

            /// The persistent LSTM kernel's flat `Y` when `B` is this backend and a cube holds
            /// what its backward kernel keeps in shared memory.
            pub(super) fn pick_sequence<B: Backend>(
                xp: &Tensor<B, 3>,
                rest: [&Tensor<B, 2>; 3],
                active: Vec<u32>,
                dims: sequence::Dims,
            ) -> Option<Tensor<B, 1>> {
                let device = cast::<_, <$runtime as cubecl::Runtime>::Device>(xp.device())?;
                if !sequence::fits::<$runtime>(&device, dims) {
                    return None;
                }
                if let Some(inputs) = sequence::recast::<B, Ad>(xp, rest) {
                    return cast(tensor::<Ad, 1>(sequence_tracked(inputs, active, dims)));
                }
                let inputs = sequence::recast::<B, Plain>(xp, rest)?;
                cast(tensor::<Plain, 1>(sequence_plain(inputs, active, dims)))
            }
        }
    };
}

entry_points!(wgpu, Wgpu, burn::backend::wgpu::WgpuRuntime);
#[cfg(feature = "cuda")]
entry_points!(cuda, burn::backend::Cuda, cubecl::cuda::CudaRuntime);

/// `f` on backend `I`'s tensors, when `B` is `I`.
fn on<B: Backend, I: Backend, const N: usize, const D: usize>(
    inputs: &[Tensor<B, 2>; N],
    f: impl FnOnce([FloatTensor<I>; N]) -> FloatTensor<I>,
) -> Option<Tensor<B, D>> {
    if TypeId::of::<B>() != TypeId::of::<I>() {
        return None;
    }
    let inputs: Vec<FloatTensor<I>> = inputs
        .iter()
        .map(|t| cast::<Tensor<B, 2>, Tensor<I, 2>>(t.clone()).map(primitive))
        .collect::<Option<_>>()?;
    let inputs = <[FloatTensor<I>; N]>::try_from(inputs).ok()?;
    cast(tensor::<I, D>(f(inputs)))
}

/// The LSTM step's pointwise part in one kernel, `(h', c')` from `gates [batch, 4H]` (input
/// and recurrent parts summed) and `c_prev`; `None` where the backend has no kernel.
pub(crate) fn lstm<B: Backend>(
    gates: Tensor<B, 2>,
    c_prev: Tensor<B, 2>,
) -> Option<(Tensor<B, 2>, Tensor<B, 2>)> {
    if !enabled() {
        return None;
    }
    let inputs = [gates, c_prev];
    let out = wgpu::pick_lstm(&inputs);
    #[cfg(feature = "cuda")]
    let out = out.or_else(|| cuda::pick_lstm(&inputs));
    let [h, c] = <[Tensor<B, 3>; 2]>::try_from(out?.chunk(2, 0)).ok()?;
    Some((h.squeeze_dim(0), c.squeeze_dim(0)))
}

/// `γ ⊙ LN(x)` over each row of `x [rows, width]` (a LayerNorm cell's norm of a product) in
/// one kernel, a thread per row, with its backward kernel; `None` where the backend has no
/// kernel.
pub(crate) fn norm<B: Backend>(x: Tensor<B, 2>, gamma: Tensor<B, 1>) -> Option<Tensor<B, 2>> {
    if !enabled() || x.dims()[0] == 0 {
        return None;
    }
    let width = gamma.dims()[0];
    let inputs = [x, gamma.reshape([1, width])];
    let out = wgpu::pick_norm(&inputs);
    #[cfg(feature = "cuda")]
    let out = out.or_else(|| cuda::pick_norm(&inputs));
    out
}

/// The GRU step's pointwise part in one kernel, `h'` from `xp`, `gh` (`[batch, 3H]`) and
/// `h_prev`; `None` where the backend has no kernel.
pub(crate) fn gru<B: Backend>(
    xp: Tensor<B, 2>,
    gh: Tensor<B, 2>,
    h_prev: Tensor<B, 2>,
) -> Option<Tensor<B, 2>> {
    if !enabled() {
        return None;
    }
    let inputs = [xp, gh, h_prev];
    let out = wgpu::pick_gru(&inputs);
    #[cfg(feature = "cuda")]
    let out = out.or_else(|| cuda::pick_gru(&inputs));
    out
}

/// The Elman RNN step in one kernel, `h' = act(xp + gh)` from `xp` and `gh` (`[batch, H]`),
/// `act` being `relu` when `relu`, else `tanh`; `None` where the backend has no kernel.
///
/// One kernel after Burn's matmul rather than an add and an activation that Burn's fusion
/// folds into the matmul: on lavapipe its autotune sometimes picks a fused double-buffered
/// matmul (`fused_double_buffering_unit`, for `[5, 24] × [24, 24]`) whose results are wrong,
/// and the RNN's gradients with it.
pub(crate) fn rnn<B: Backend>(
    xp: Tensor<B, 2>,
    gh: Tensor<B, 2>,
    relu: bool,
) -> Option<Tensor<B, 2>> {
    if !enabled() {
        return None;
    }
    let inputs = [xp, gh];
    let out = wgpu::pick_rnn(&inputs, relu);
    #[cfg(feature = "cuda")]
    let out = out.or_else(|| cuda::pick_rnn(&inputs, relu));
    out
}

/// Dropout of the flat `x` with probability `prob` in one kernel, as one autodiff node, when
/// `B` is `Autodiff` of a GPU backend; else `x` back. The caller checks `prob > 0` and
/// [`crate::fused::enabled`].
pub(crate) fn dropout<B: Backend>(
    x: Tensor<B, 1>,
    prob: f64,
) -> Result<Tensor<B, 1>, Tensor<B, 1>> {
    let out = wgpu::pick_dropout(x, prob);
    #[cfg(feature = "cuda")]
    let out = out.or_else(|x| cuda::pick_dropout(x, prob));
    out
}

#[cfg(test)]
mod tests {
    use burn::backend::wgpu::WgpuDevice;
    use burn::tensor::activation::sigmoid;
    use burn::tensor::Distribution;

    use super::*;

    type Ad = Autodiff<Wgpu>;

    fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().into_vec().expect("f32")
    }

    fn close(what: &str, a: Vec<f32>, b: Vec<f32>) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        assert!(
            a.iter().chain(&b).all(|v| v.is_finite()),
            "{what}: a value is NaN or infinite"
        );
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{what}: kernel and ops differ by {worst}");
    }

    fn random(shape: [usize; 2], device: &WgpuDevice) -> Tensor<Ad, 2> {
        Tensor::random(shape, Distribution::Uniform(-3.0, 3.0), device).require_grad()
    }

    /// Gradients of `Σ w ⊙ out` with respect to `inputs`, for fixed random `w`.
    fn grads(out: Tensor<Ad, 2>, w: &Tensor<Ad, 2>, inputs: &[&Tensor<Ad, 2>]) -> Vec<Vec<f32>> {
        let g = (out * w.clone()).sum().backward();
        inputs
            .iter()
            .map(|t| values(t.grad(&g).expect("a gradient")))
            .collect()
    }

    #[test]
    fn lstm_kernel_matches_the_elementwise_ops() {
        let device = WgpuDevice::default();
        let (batch, hidden) = (5, 7);
        let gates = random([batch, 4 * hidden], &device);
        let c_prev = random([batch, hidden], &device);
        let w = Tensor::<Ad, 2>::random([batch, 2 * hidden], Distribution::Default, &device);
        let (h, c) = lstm(gates.clone(), c_prev.clone()).expect("wgpu has the kernel");
        let [i, f, g, o] = <[Tensor<Ad, 2>; 4]>::try_from(gates.clone().chunk(4, 1)).unwrap();
        let c_ref = sigmoid(f) * c_prev.clone() + sigmoid(i) * g.tanh();
        let h_ref = sigmoid(o) * c_ref.clone().tanh();
        close("h", values(h.clone()), values(h_ref.clone()));
        close("c", values(c.clone()), values(c_ref.clone()));
        let inputs = [&gates, &c_prev];
        let kernel = grads(Tensor::cat(vec![h, c], 1), &w, &inputs);
        let reference = grads(Tensor::cat(vec![h_ref, c_ref], 1), &w, &inputs);
        for (what, (a, b)) in ["d gates", "d c_prev"]
            .iter()
            .zip(kernel.into_iter().zip(reference))
        {
            close(what, a, b);
        }
    }

    #[test]
    fn gru_kernel_matches_the_elementwise_ops() {
        let device = WgpuDevice::default();
        let (batch, hidden) = (4, 9);
        let xp = random([batch, 3 * hidden], &device);
        let gh = random([batch, 3 * hidden], &device);
        let h_prev = random([batch, hidden], &device);
        let w = Tensor::<Ad, 2>::random([batch, hidden], Distribution::Default, &device);
        let h = gru(xp.clone(), gh.clone(), h_prev.clone()).expect("wgpu has the kernel");
        let [xr, xz, xn] = <[Tensor<Ad, 2>; 3]>::try_from(xp.clone().chunk(3, 1)).unwrap();
        let [hr, hz, hn] = <[Tensor<Ad, 2>; 3]>::try_from(gh.clone().chunk(3, 1)).unwrap();
        let r = sigmoid(xr + hr);
        let z = sigmoid(xz + hz);
        let n = (xn + r * hn).tanh();
        let h_ref = n.clone() + z * (h_prev.clone() - n);
        close("h", values(h.clone()), values(h_ref.clone()));
        let inputs = [&xp, &gh, &h_prev];
        let kernel = grads(h, &w, &inputs);
        let reference = grads(h_ref, &w, &inputs);
        for (what, (a, b)) in ["d xp", "d gh", "d h_prev"]
            .iter()
            .zip(kernel.into_iter().zip(reference))
        {
            close(what, a, b);
        }
    }

    #[test]
    fn rnn_kernel_matches_the_elementwise_ops() {
        let device = WgpuDevice::default();
        let (batch, hidden) = (5, 24);
        for relu in [false, true] {
            let xp = random([batch, hidden], &device);
            let gh = random([batch, hidden], &device);
            let w = Tensor::<Ad, 2>::random([batch, hidden], Distribution::Default, &device);
            let h = rnn(xp.clone(), gh.clone(), relu).expect("wgpu has the kernel");
            let pre = xp.clone() + gh.clone();
            let h_ref = if relu {
                burn::tensor::activation::relu(pre)
            } else {
                pre.tanh()
            };
            close("h", values(h.clone()), values(h_ref.clone()));
            let inputs = [&xp, &gh];
            let kernel = grads(h, &w, &inputs);
            let reference = grads(h_ref, &w, &inputs);
            for (what, (a, b)) in ["d xp", "d gh"]
                .iter()
                .zip(kernel.into_iter().zip(reference))
            {
                close(&format!("{what} (relu: {relu})"), a, b);
            }
        }
    }

    #[test]
    fn inference_runs_the_kernel_without_a_graph() {
        let device = WgpuDevice::default();
        let gates = Tensor::<Wgpu, 2>::random([3, 8], Distribution::Default, &device);
        let c_prev = Tensor::<Wgpu, 2>::random([3, 2], Distribution::Default, &device);
        let (h, c) = lstm(gates.clone(), c_prev.clone()).expect("wgpu has the kernel");
        let tracked = lstm(
            Tensor::<Ad, 2>::from_inner(gates),
            Tensor::<Ad, 2>::from_inner(c_prev),
        )
        .expect("wgpu has the kernel");
        close("h", values(h), values(tracked.0));
        close("c", values(c), values(tracked.1));
    }

    #[test]
    fn other_backends_have_no_kernel() {
        let device = Default::default();
        let t = Tensor::<burn::backend::NdArray, 2>::zeros([2, 8], &device);
        assert!(lstm(t.clone(), t.clone().slice(s![.., 0..2])).is_none());
    }
}
