//! A whole LSTM recurrence as one autodiff node on the GPU (wgpu, CUDA): one persistent kernel launch over all
//! time steps forward ([`kernels::lstm_sequence_forward`]), one backward
//! ([`kernels::lstm_sequence_backward`]) and one Burn matmul for `dW_hh`.
//!
//! Same inputs and flat output `Y` (outputs, `h_n`, `c_n`) as [`crate::fused`]'s CPU node, so
//! [`crate::fused::recurrence`] picks it for an LSTM without `proj_size` on `Wgpu`, `Cuda`
//! and `Autodiff` of either. Each batch row is one cube, so rows run in parallel and a step waits only
//! on its own cube's barrier; `W_hh` is read from global memory (cached) at every step.

use std::cell::Cell;
use std::sync::OnceLock;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::{ArrayArg, CubeCount, CubeDim};

use super::{empty, kernels, primitive, tensor, CubeBridge};
use crate::fused::{cast, enabled};

thread_local! {
    /// Tests turn the persistent kernel on for their own thread with this.
    static FORCED: Cell<bool> = const { Cell::new(false) };
}

/// Whether the persistent kernel runs: `EMBER_PERSISTENT=1` turns it on. It is off by default
/// until GPU measurements decide (on lavapipe, a CPU, it is slower than the per-step kernels).
fn persistent() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    FORCED.with(Cell::get)
        || *ON.get_or_init(|| std::env::var("EMBER_PERSISTENT").is_ok_and(|v| v == "1"))
}

/// Runs `f` with the persistent kernel on for this thread (tests).
#[cfg(test)]
pub(crate) fn with_persistent<T>(f: impl FnOnce() -> T) -> T {
    FORCED.with(|on| on.set(true));
    let out = f();
    FORCED.with(|on| on.set(false));
    out
}

/// Sizes of one recurrence.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dims {
    steps: usize,
    batch: usize,
    hidden: usize,
}

/// What the backward pass reads.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    act: FloatTensor<B>,
    hs: FloatTensor<B>,
    cs: FloatTensor<B>,
    w_hh: FloatTensor<B>,
    active: Vec<u32>,
    dims: Dims,
}

/// Threads per cube: the units of a row, at most 256, in whole warps of 32.
fn threads(hidden: usize) -> CubeDim {
    CubeDim::new_1d(hidden.min(256).div_ceil(32) as u32 * 32)
}

/// `active` as a device array.
fn upload<R: CubeRuntime>(like: &CubeTensor<R>, active: &[u32]) -> ArrayArg<R> {
    let bytes: Vec<u8> = active.iter().flat_map(|v| v.to_le_bytes()).collect();
    let handle = like.client.create_from_slice(&bytes);
    // SAFETY: the handle holds exactly `active.len()` u32 values.
    unsafe { ArrayArg::from_raw_parts(handle, active.len()) }
}

/// `u32` of a size the caller has checked.
fn small(n: usize) -> u32 {
    u32::try_from(n).expect("sizes fit in u32")
}

/// Runs the forward kernel: `Y` and what the backward pass needs.
fn forward<B: CubeBridge>(
    xp: FloatTensor<B>,
    w_hh: FloatTensor<B>,
    h0: FloatTensor<B>,
    c0: FloatTensor<B>,
    active: Vec<u32>,
    dims: Dims,
) -> (FloatTensor<B>, Saved<B>) {
    let Dims {
        steps,
        batch,
        hidden,
    } = dims;
    let w_t = B::to_cube(primitive(tensor::<B, 2>(w_hh.clone()).transpose()));
    let xp = B::to_cube(xp);
    let act = empty(&xp, vec![steps, batch, 4 * hidden]);
    let hs = empty(&xp, vec![steps + 1, batch, hidden]);
    let cs = empty(&xp, vec![steps + 1, batch, hidden]);
    let y = empty(&xp, vec![(steps + 2) * batch * hidden]);
    kernels::lstm_sequence_forward::launch::<B::Runtime>(
        &xp.client.clone(),
        CubeCount::Static(small(batch), 1, 1),
        threads(hidden),
        xp.clone().into_array_arg(),
        w_t.into_array_arg(),
        B::to_cube(h0).into_array_arg(),
        B::to_cube(c0).into_array_arg(),
        upload(&xp, &active),
        act.clone().into_array_arg(),
        hs.clone().into_array_arg(),
        cs.clone().into_array_arg(),
        y.clone().into_array_arg(),
        small(steps),
        small(batch),
        hidden,
    );
    let saved = Saved {
        act: B::from_cube(act),
        hs: B::from_cube(hs),
        cs: B::from_cube(cs),
        w_hh,
        active,
        dims,
    };
    (B::from_cube(y), saved)
}

/// The recurrence's autodiff node; parents `xp`, `W_hh`, `h0`, `c0`.
#[derive(Debug)]
struct LstmSequence;

impl<B: CubeBridge> Backward<B, 4> for LstmSequence {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = B::to_cube(grads.consume::<B>(&ops.node));
        let Saved {
            act,
            hs,
            cs,
            w_hh,
            active,
            dims,
        } = ops.state;
        let Dims {
            steps,
            batch,
            hidden,
        } = dims;
        let act = B::to_cube(act);
        let dxp = empty(&act, vec![steps, batch, 4 * hidden]);
        let dh = empty(&act, vec![batch, hidden]);
        let dc = empty(&act, vec![batch, hidden]);
        kernels::lstm_sequence_backward::launch::<B::Runtime>(
            &act.client.clone(),
            CubeCount::Static(small(batch), 1, 1),
            threads(hidden),
            dy.into_array_arg(),
            B::to_cube(w_hh).into_array_arg(),
            act.clone().into_array_arg(),
            B::to_cube(cs).into_array_arg(),
            upload(&act, &active),
            dxp.clone().into_array_arg(),
            dh.clone().into_array_arg(),
            dc.clone().into_array_arg(),
            small(steps),
            small(batch),
            hidden,
        );
        let dxp = B::from_cube(dxp);
        let rows = steps * batch;
        let d_w_hh = tensor::<B, 3>(dxp.clone())
            .reshape([rows, 4 * hidden])
            .transpose()
            .matmul(
                tensor::<B, 3>(hs)
                    .slice(s![0..steps])
                    .reshape([rows, hidden]),
            );
        let found = [dxp, primitive(d_w_hh), B::from_cube(dh), B::from_cube(dc)];
        for (parent, grad) in ops.parents.into_iter().zip(found) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// The inputs, as primitives of backend `I`.
pub(super) type Inputs<I> = [FloatTensor<I>; 4];

/// The recurrence on a plain CubeCL backend.
pub(super) fn plain<B: CubeBridge>(
    [xp, w_hh, h0, c0]: Inputs<B>,
    active: Vec<u32>,
    dims: Dims,
) -> FloatTensor<B> {
    forward::<B>(xp, w_hh, h0, c0, active, dims).0
}

/// The recurrence as one node of `Autodiff<B, C>`'s graph.
pub(super) fn tracked<B: CubeBridge, C: CheckpointStrategy>(
    [xp, w_hh, h0, c0]: Inputs<Autodiff<B, C>>,
    active: Vec<u32>,
    dims: Dims,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [&xp, &w_hh, &h0, &c0].map(|t| t.node.clone());
    let (y, saved) = forward::<B>(
        xp.primitive,
        w_hh.primitive,
        h0.primitive,
        c0.primitive,
        active,
        dims,
    );
    match LstmSequence.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(saved, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// The inputs on backend `I`, when `B` is `I`.
pub(super) fn recast<B: Backend, I: Backend>(
    xp: &Tensor<B, 3>,
    rest: [&Tensor<B, 2>; 3],
) -> Option<Inputs<I>> {
    let xp: Tensor<I, 3> = cast(xp.clone())?;
    let [w_hh, h0, c0] = rest.map(|t| cast::<Tensor<B, 2>, Tensor<I, 2>>(t.clone()));
    Some([
        primitive(xp),
        primitive(w_hh?),
        primitive(h0?),
        primitive(c0?),
    ])
}

/// The flat `Y` (outputs `[T, batch, H]`, `h_n`, `c_n`) of an LSTM without projection over
/// `xp [T, batch, 4H]` (both biases added) from `(h0, c0)` with `W_hh [4H, H]`; `active`
/// gives the rows running at each step (empty: all). `None` on backends without the kernel,
/// or where a cube's shared memory cannot hold the step's gate gradients (`16·H` bytes).
pub(crate) fn lstm_sequence<B: Backend>(
    xp: &Tensor<B, 3>,
    w_hh: &Tensor<B, 2>,
    h0: &Tensor<B, 2>,
    c0: &Tensor<B, 2>,
    active: &[usize],
) -> Option<Tensor<B, 1>> {
    let [steps, batch, width] = xp.dims();
    let dims = Dims {
        steps,
        batch,
        hidden: width / 4,
    };
    if !enabled() || !persistent() || steps == 0 || batch == 0 {
        return None;
    }
    let active: Vec<u32> = if active.is_empty() {
        vec![small(batch); steps]
    } else {
        active.iter().map(|&n| small(n)).collect()
    };
    let rest = [w_hh, h0, c0];
    let out = super::wgpu::pick_sequence(xp, rest, active.clone(), dims);
    #[cfg(feature = "cuda")]
    let out = out.or_else(|| super::cuda::pick_sequence(xp, rest, active, dims));
    out
}

/// Whether `device`'s cubes have the shared memory the backward kernel asks for (`16·H` bytes).
pub(super) fn fits<R: CubeRuntime>(device: &R::Device, dims: Dims) -> bool {
    let hardware = R::client(device).properties().hardware.clone();
    hardware.max_shared_memory_size >= 16 * dims.hidden
}
