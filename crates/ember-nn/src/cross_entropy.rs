//! The mean cross-entropy over the valid rows of `logits [rows, classes]` as one autodiff node
//! on Burn's CPU backends, with its forward and backward in [`ember_kernels::cross_entropy`].
//!
//! Burn's `log_softmax`, `gather` and masked mean are a dozen graph nodes, and on NdArray the
//! backward of their `ln` goes through an approximate reciprocal on the aligned part of each
//! buffer: logit gradients off by up to 4e-5, and different from one run to the next. Here one
//! node computes each row's log-sum-exp once, and its backward is `softmax − onehot` from it.
//! Used for `Autodiff<Flex>` and `Autodiff<NdArray>` and plain `Flex`/`NdArray`, chosen by type
//! at run time like [`crate::fused`]; every other backend (wgpu), and `EMBER_UNFUSED=1`, gets
//! Burn's ops.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex, NdArray};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::TensorData;
use ember_kernels::cross_entropy::{backward, forward, Forward, Labels};

use crate::fused::{cast, enabled, grad, primitive, same, tensor, Values};

/// The mean of `−log softmax(logits)[r, targets[r]]` over the rows `r` where `mask` is true
/// (PyTorch's `F.cross_entropy(logits, targets, ignore_index=…)`), as a one-element tensor;
/// 0 when no row is valid. `logits` is `[rows, classes]`, `targets` and `mask` `[rows]`; an
/// ignored row's target may hold anything.
///
/// # Panics
/// If a valid row's target is not a class (`0 ≤ t < classes`).
pub fn masked_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    mask: Tensor<B, 1, Bool>,
) -> Tensor<B, 1> {
    let loss = Loss {
        logits,
        targets,
        mask,
    };
    if !enabled() {
        return loss.burn();
    }
    autodiff_as::<B, Flex>(loss)
        .or_else(autodiff_as::<B, NdArray>)
        .or_else(plain_as::<B, Flex>)
        .or_else(plain_as::<B, NdArray>)
        .unwrap_or_else(Loss::burn)
}

/// One loss's operands on backend `B`.
struct Loss<B: Backend> {
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    mask: Tensor<B, 1, Bool>,
}

impl<B: Backend> Loss<B> {
    /// Burn's own ops.
    fn burn(self) -> Tensor<B, 1> {
        let n = self.targets.dims()[0];
        // Ignored rows may hold a negative ignore value: point them at class 0 for the
        // gather; the mask then drops them.
        let targets = self.targets.mask_fill(self.mask.clone().bool_not(), 0);
        let nll = log_softmax(self.logits, 1)
            .gather(1, targets.reshape([n, 1]))
            .neg()
            .reshape([n]);
        let mask = self.mask.float();
        (nll * mask.clone()).sum() / mask.sum().clamp_min(1.0)
    }

    /// The logits on backend `I` and the labels on the host, when `B` is `I`; else itself back.
    fn recast<I: Backend>(self) -> Result<(Tensor<I, 2>, Host), Self> {
        if std::any::TypeId::of::<B>() != std::any::TypeId::of::<I>() {
            return Err(self);
        }
        let targets = self
            .targets
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .expect("converted to i64");
        let valid = self.mask.into_data().iter::<bool>().collect();
        Ok((same(self.logits), Host { targets, valid }))
    }
}

/// The labels as host values.
#[derive(Debug, Clone)]
struct Host {
    targets: Vec<i64>,
    valid: Vec<bool>,
}

impl Host {
    fn labels(&self) -> Labels<'_> {
        Labels {
            targets: &self.targets,
            valid: &self.valid,
        }
    }
}

/// What the node keeps for its backward pass.
#[derive(Debug, Clone)]
struct NodeState {
    logits: Values,
    classes: usize,
    labels: Host,
    forward: Forward,
}

/// Runs the loss on a plain backend, with the node state when `save`.
fn run<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Host,
    save: bool,
) -> (Tensor<B, 1>, Option<NodeState>) {
    let device = logits.device();
    let classes = logits.dims()[1];
    let logits = Values::of(logits);
    let f = forward(logits.get(), classes, labels.labels())
        .unwrap_or_else(|e| panic!("cross-entropy: {e}"));
    let loss = Tensor::from_data(TensorData::new(vec![f.loss], [1]), &device);
    let state = save.then_some(NodeState {
        logits,
        classes,
        labels,
        forward: f,
    });
    (loss, state)
}

/// The autodiff node of the loss; its parent is the logits.
#[derive(Debug)]
struct LossNode;

impl<B: Backend> Backward<B, 1> for LossNode {
    type State = NodeState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g: Tensor<B, 1> = tensor(grads.consume::<B>(&ops.node));
        let device = g.device();
        let g = g.into_data().iter::<f32>().next().unwrap_or(0.0);
        let NodeState {
            logits,
            classes,
            labels,
            forward: f,
        } = ops.state;
        let [parent] = ops.parents;
        if let Some(node) = parent {
            let dx = backward(logits.get(), classes, labels.labels(), &f, g)
                .expect("the forward pass checked these labels");
            let rows = labels.targets.len();
            if let Some(dx) = grad::<B, 2>(dx, [rows, classes], &device) {
                grads.register::<B>(node.id, dx);
            }
        }
    }
}

/// The loss as one node of `Autodiff<B, C>`'s graph.
fn on_autodiff<B: Backend, C: CheckpointStrategy>(
    logits: Tensor<Autodiff<B, C>, 2>,
    labels: Host,
) -> Tensor<Autodiff<B, C>, 1> {
    let x = primitive(logits);
    let node = x.node.clone();
    let inner: Tensor<B, 2> = tensor(x.primitive);
    let y = match LossNode.prepare::<C>([node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (y, state) = run(inner, labels, true);
            prep.finish(state.expect("saved when asked"), primitive(y))
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive(run(inner, labels, false).0)),
    };
    tensor(y)
}

/// Runs on `Autodiff<I>` when `B` is that backend, else gives `loss` back.
fn autodiff_as<B: Backend, I: Backend>(loss: Loss<B>) -> Result<Tensor<B, 1>, Loss<B>> {
    let (logits, labels) = loss.recast::<Autodiff<I>>()?;
    Ok(cast(on_autodiff::<I, NoCheckpointing>(logits, labels)).expect("B is Autodiff<I>"))
}

/// Runs on the plain backend `I` when `B` is `I`, else gives `loss` back.
fn plain_as<B: Backend, I: Backend>(loss: Loss<B>) -> Result<Tensor<B, 1>, Loss<B>> {
    let (logits, labels) = loss.recast::<I>()?;
    Ok(cast(run::<I>(logits, labels, false).0).expect("B is I"))
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexDevice;
    use burn::backend::ndarray::NdArrayDevice;
    use burn::tensor::backend::AutodiffBackend;

    use super::*;

    /// The loss and the logits' gradient of `3 · loss`, through `f`.
    fn run_with<B: AutodiffBackend>(
        device: &B::Device,
        f: impl Fn(Loss<B>) -> Tensor<B, 1>,
    ) -> (f32, Vec<f32>) {
        let (rows, classes) = (23, 11);
        let x: Vec<f32> = (0..rows * classes)
            .map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 6.0)
            .collect();
        let t: Vec<i64> = (0..rows)
            .map(|r| {
                if r % 4 == 3 {
                    -100
                } else {
                    (r * 5 % classes) as i64
                }
            })
            .collect();
        let logits =
            Tensor::<B, 2>::from_data(TensorData::new(x, [rows, classes]), device).require_grad();
        let targets = Tensor::<B, 1, Int>::from_data(TensorData::new(t, [rows]), device);
        let mask = targets.clone().greater_equal_elem(0);
        let loss = f(Loss {
            logits: logits.clone(),
            targets,
            mask,
        });
        let grads = (loss.clone() * 3.0).backward();
        let dx = logits.grad(&grads).expect("tracked");
        (
            loss.into_scalar().elem(),
            dx.into_data().iter::<f32>().collect(),
        )
    }

    fn close(a: f32, b: f32) -> bool {
        a.is_finite() && b.is_finite() && (a - b).abs() <= 1e-6 * (1.0 + b.abs())
    }

    /// The node against Burn's ops on Flex (exact there), on both CPU backends, with ignored
    /// rows; the same result twice, bit for bit.
    fn matches_burn<B: AutodiffBackend>(device: &B::Device) {
        let (want_loss, want) = run_with::<Autodiff<Flex>>(&FlexDevice, Loss::burn);
        let (loss, dx) = run_with::<B>(device, |l| {
            masked_cross_entropy(l.logits, l.targets, l.mask)
        });
        assert!(close(loss, want_loss), "loss {loss} vs {want_loss}");
        for (i, (a, b)) in dx.iter().zip(&want).enumerate() {
            assert!(close(*a, *b), "dx[{i}] {a} vs {b}");
        }
        let (again_loss, again) = run_with::<B>(device, |l| {
            masked_cross_entropy(l.logits, l.targets, l.mask)
        });
        assert_eq!(again_loss.to_bits(), loss.to_bits());
        assert!(again
            .iter()
            .zip(&dx)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn the_node_matches_burns_ops_on_flex_and_ndarray() {
        matches_burn::<Autodiff<Flex>>(&FlexDevice);
        matches_burn::<Autodiff<NdArray>>(&NdArrayDevice::Cpu);
    }
}
