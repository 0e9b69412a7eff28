//! Dropout at PyTorch's cost on Burn's CPU backends and on wgpu.
//!
//! ```text
//! training:   y = m ⊙ x / (1 − p),   m_i ~ Bernoulli(1 − p)      inference:   y = x
//! ```
//!
//! Burn's `Dropout` draws an `f32` tensor of Bernoulli samples one element at a time through
//! its generic sampler (a ChaCha generator) and multiplies twice, and its backward pass keeps
//! that tensor. On `Autodiff<Flex>` and `Autodiff<NdArray>` this is one autodiff node instead,
//! on [`ember_kernels::dropout`]: Philox masks drawn in blocks on rayon's threads, applied in
//! the same pass, kept as one byte per element for the backward pass. The key of each call is
//! drawn from the backend's own generator, so `B::seed` makes the masks repeatable as it does
//! Burn's. On `Autodiff<Wgpu>` and `Autodiff<Cuda>` it is one CubeCL kernel and one node
//! (`cube::dropout`, the same masks for the same key, recomputed in backward instead of kept). Every other backend, and
//! `EMBER_UNFUSED=1`, runs Burn's `Dropout`. As with
//! Burn's, dropout acts only where the backend tracks gradients (`B::ad_enabled`): a model
//! after `valid()` is the identity.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex, NdArray};
use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use ember_kernels::dropout::Mask;

use crate::fused::{cast, enabled, host, primitive, tensor, Host, Values};

/// `layer` applied to `x`: dropout with `layer.prob` while training, the identity otherwise.
pub fn dropout<B: Backend, const D: usize>(layer: &Dropout, x: Tensor<B, D>) -> Tensor<B, D> {
    if layer.prob == 0.0 || !B::ad_enabled(&x.device()) {
        return x;
    }
    if !enabled() {
        return layer.forward(x);
    }
    let shape = x.dims();
    let flat = x.reshape([shape.iter().product::<usize>()]);
    let y = autodiff_as::<B, Flex>(flat, layer.prob)
        .or_else(|x| autodiff_as::<B, NdArray>(x, layer.prob))
        .or_else(|x| on_gpu(x, layer.prob))
        .unwrap_or_else(|x| layer.forward(x));
    y.reshape(shape)
}

/// The scaled mask `[1, batch, features]` of variational (locked) dropout with `prob`, in
/// training only (`None` otherwise, or when `prob` is 0): one draw per sequence and feature,
/// shared by every step of a time-major `[seq, batch, features]` tensor (Gal & Ghahramani,
/// 2016; AWD-LSTM's `LockedDropout`):
///
/// ```text
/// y[t, b, f] = x[t, b, f] · m[b, f] / (1 − p),   m[b, f] ~ Bernoulli(1 − p)
/// ```
///
/// The mask is [`dropout`] of ones, so it comes from the same generator and seed; applying it
/// is one broadcast product over the sequence.
pub fn locked_mask<B: Backend>(
    prob: f64,
    batch: usize,
    features: usize,
    device: &B::Device,
) -> Option<Tensor<B, 3>> {
    (prob > 0.0 && B::ad_enabled(device)).then(|| {
        let layer = Dropout { prob };
        dropout(&layer, Tensor::ones([1, batch, features], device))
    })
}

/// Variational (locked) dropout of a time-major `x` `[seq, batch, features]` with `layer.prob`
/// (see [`locked_mask`]); the identity outside training.
pub fn locked_dropout<B: Backend>(layer: &Dropout, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [_, batch, features] = x.dims();
    match locked_mask::<B>(layer.prob, batch, features, &x.device()) {
        Some(mask) => x * mask,
        None => x,
    }
}

/// The scaled mask `[vocab, 1]` of embedding dropout with `prob`, in training only: whole rows
/// of the embedding table (every occurrence of a token in the batch) are dropped, the others
/// scaled by `1 / (1 − p)` (Gal & Ghahramani, 2016; AWD-LSTM's `embedded_dropout`):
///
/// ```text
/// E'[v, :] = E[v, :] · m[v] / (1 − p),   m[v] ~ Bernoulli(1 − p)
/// ```
pub fn row_mask<B: Backend>(prob: f64, rows: usize, device: &B::Device) -> Option<Tensor<B, 2>> {
    matrix_mask(prob, [rows, 1], device)
}

/// The scaled mask of a weight matrix of shape `dims` for weight-drop (DropConnect on `W_hh`,
/// Wan et al. 2013; AWD-LSTM's `WeightDrop`), in training only: one draw per weight, shared by
/// every step and sequence of a forward pass:
///
/// ```text
/// W' = W ⊙ M / (1 − p),   M[i, j] ~ Bernoulli(1 − p)
/// ```
pub fn matrix_mask<B: Backend>(
    prob: f64,
    dims: [usize; 2],
    device: &B::Device,
) -> Option<Tensor<B, 2>> {
    (prob > 0.0 && B::ad_enabled(device)).then(|| {
        let layer = Dropout { prob };
        dropout(&layer, Tensor::ones(dims, device))
    })
}

/// The zoneout masks `[T, batch, width]` of rate `prob` (see [`crate::ZoneMasks`]): in training
/// 1 where a unit keeps its previous value (probability `prob`), else 0, drawn as the dropped
/// elements of [`dropout`] of ones (the same generator and seed); in inference `prob`
/// everywhere, the expectation. `None` when `prob` is 0.
///
/// ```text
/// training:   m[t, b, j] ~ Bernoulli(p)       inference:   m[t, b, j] = p
/// ```
pub fn zone_mask<B: Backend>(
    prob: f64,
    dims: [usize; 3],
    device: &B::Device,
) -> Option<Tensor<B, 3>> {
    if prob == 0.0 {
        return None;
    }
    Some(if B::ad_enabled(device) {
        let layer = Dropout { prob };
        dropout(&layer, Tensor::ones(dims, device))
            .equal_elem(0.0)
            .float()
    } else {
        Tensor::full(dims, prob, device)
    })
}

/// The CubeCL kernel's dropout node where `B` is `Autodiff` of a GPU backend; else `x` back.
fn on_gpu<B: Backend>(x: Tensor<B, 1>, prob: f64) -> Result<Tensor<B, 1>, Tensor<B, 1>> {
    #[cfg(feature = "cube")]
    return crate::cube::dropout(x, prob);
    #[cfg(not(feature = "cube"))]
    Err(x)
}

/// A fresh key from the backend's generator (the one `B::seed` sets): three 24-bit draws.
fn key<B: Backend>(device: &B::Device) -> u64 {
    let draws = host(Tensor::<B, 1>::random(
        [3],
        Distribution::Uniform(0.0, 16_777_216.0),
        device,
    ));
    ember_kernels::dropout::key_of([0, 1, 2].map(|i| draws[i] as u32))
}

/// What the node keeps for its backward pass: the mask, one byte per element, and the scale.
#[derive(Debug, Clone)]
struct NodeState {
    keep: Vec<u8>,
    scale: f32,
}

/// Dropout on a plain backend: `y`, and the node state.
fn forward<B: Backend>(x: Tensor<B, 1>, prob: f64) -> (Tensor<B, 1>, NodeState) {
    let device = x.device();
    let n = x.dims()[0];
    let mask = Mask {
        key: key::<B>(&device),
        prob: prob as f32,
    };
    let (y, keep) = ember_kernels::dropout::forward(Values::of(x).get(), mask);
    let y = Tensor::from_data(TensorData::new(y, [n]), &device);
    (
        y,
        NodeState {
            keep,
            scale: mask.scale(),
        },
    )
}

/// The autodiff node of dropout; one parent, `x`.
#[derive(Debug)]
struct DropoutNode;

impl<B: Backend> Backward<B, 1> for DropoutNode {
    type State = NodeState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy: Tensor<B, 1> = tensor(grads.consume::<B>(&ops.node));
        let device = dy.device();
        let n = dy.dims()[0];
        let NodeState { keep, scale } = ops.state;
        let mut g = Host::of(dy);
        ember_kernels::dropout::backward(g.as_mut(), &keep, scale);
        if let [Some(parent)] = &ops.parents {
            grads.register::<B>(parent.id, g.into_tensor::<B, 1>([n], &device));
        }
    }
}

/// Dropout as one node of `Autodiff<B, C>`'s graph.
fn on_autodiff<B: Backend, C: CheckpointStrategy>(
    x: Tensor<Autodiff<B, C>, 1>,
    prob: f64,
) -> Tensor<Autodiff<B, C>, 1> {
    let x = primitive(x);
    let node = x.node.clone();
    let (y, state) = forward::<B>(tensor(x.primitive), prob);
    let y = match DropoutNode.prepare::<C>([node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state, primitive(y)),
        OpsKind::UnTracked(prep) => prep.finish(primitive(y)),
    };
    tensor(y)
}

/// Runs on `Autodiff<I>` when `B` is that backend, else gives `x` back.
fn autodiff_as<B: Backend, I: Backend>(
    x: Tensor<B, 1>,
    prob: f64,
) -> Result<Tensor<B, 1>, Tensor<B, 1>> {
    if std::any::TypeId::of::<B>() != std::any::TypeId::of::<Autodiff<I>>() {
        return Err(x);
    }
    let x: Tensor<Autodiff<I>, 1> = cast(x).expect("B is Autodiff<I>");
    Ok(cast(on_autodiff::<I, NoCheckpointing>(x, prob)).expect("B is Autodiff<I>"))
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexDevice;
    use burn::backend::ndarray::NdArrayDevice;
    use burn::nn::DropoutConfig;
    use burn::tensor::backend::AutodiffBackend;

    use super::*;

    fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    /// `x` `[40, 50]` of values away from zero, and an upstream gradient `r`.
    fn inputs<B: Backend>(device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let x = Tensor::random([40, 50], Distribution::Uniform(0.5, 2.0), device);
        let r = Tensor::random([40, 50], Distribution::Normal(0.0, 1.0), device);
        (x, r)
    }

    /// The node's output and `x`'s gradient equal Burn's ops run with the node's own mask
    /// (read off the output): `y = x · m · s`, `dx = r · m · s`; and the drop rate is `p`.
    fn matches_the_definition<B: AutodiffBackend>(device: &B::Device) {
        B::seed(device, 3);
        let layer = DropoutConfig::new(0.3).init();
        let (x, r) = inputs::<B::InnerBackend>(device);
        let xt = Tensor::<B, 2>::from_inner(x.clone()).require_grad();
        let y = dropout(&layer, xt.clone());
        let grads = (y.clone() * Tensor::from_inner(r.clone())).sum().backward();
        let dx = values(xt.grad(&grads).expect("x tracked"));
        let y = values(y);
        let scale = (1.0 / (1.0 - 0.3f64)) as f32;
        let (x, r) = (values(x), values(r));
        let kept = y.iter().filter(|v| **v != 0.0).count();
        let rate = 1.0 - kept as f64 / y.len() as f64;
        // 2000 draws at p = 0.3: the standard deviation of the rate is 0.0102.
        assert!((rate - 0.3).abs() < 0.05, "drop rate {rate}");
        for i in 0..y.len() {
            let m = if y[i] != 0.0 { 1.0f32 } else { 0.0 };
            let (want_y, want_dx) = (x[i] * m * scale, r[i] * m * scale);
            assert!(
                y[i].to_bits() == want_y.to_bits() && dx[i].to_bits() == want_dx.to_bits(),
                "element {i}: y {} vs {want_y}, dx {} vs {want_dx}",
                y[i],
                dx[i]
            );
        }
    }

    #[test]
    fn the_node_is_dropout_with_its_gradient_on_flex_and_ndarray() {
        matches_the_definition::<Autodiff<Flex>>(&FlexDevice);
        matches_the_definition::<Autodiff<NdArray>>(&NdArrayDevice::Cpu);
    }

    /// The CubeCL node on wgpu (lavapipe in CI): the definition, and one seed's masks.
    #[cfg(feature = "cube")]
    #[test]
    fn the_kernel_node_is_dropout_with_its_gradient_on_wgpu() {
        use burn::backend::wgpu::WgpuDevice;
        use burn::backend::Wgpu;
        let device = WgpuDevice::default();
        matches_the_definition::<Autodiff<Wgpu>>(&device);
        let a = masks::<Autodiff<Wgpu>>(&device, 7);
        assert_eq!(a, masks::<Autodiff<Wgpu>>(&device, 7));
        assert_ne!(a[0], a[1], "two calls draw two masks");
        assert_ne!(a, masks::<Autodiff<Wgpu>>(&device, 8));
    }

    /// The masks of `B` after `seed`, for two calls.
    fn masks<B: AutodiffBackend>(device: &B::Device, seed: u64) -> Vec<Vec<bool>> {
        B::seed(device, seed);
        let layer = DropoutConfig::new(0.5).init();
        let x = Tensor::<B, 2>::ones([30, 30], device);
        (0..2)
            .map(|_| {
                values(dropout(&layer, x.clone()))
                    .iter()
                    .map(|v| *v != 0.0)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn one_seed_gives_one_sequence_of_masks() {
        let device = FlexDevice;
        let a = masks::<Autodiff<Flex>>(&device, 7);
        assert_eq!(a, masks::<Autodiff<Flex>>(&device, 7));
        assert_ne!(a[0], a[1], "two calls draw two masks");
        assert_ne!(a, masks::<Autodiff<Flex>>(&device, 8));
        let n = masks::<Autodiff<NdArray>>(&NdArrayDevice::Cpu, 7);
        assert_eq!(n, masks::<Autodiff<NdArray>>(&NdArrayDevice::Cpu, 7));
    }

    /// Variational dropout: one mask per (sequence, feature), the same at every step, at the
    /// rate `p`, scaled by `1 / (1 − p)`; its gradient is the upstream gradient times the mask.
    #[test]
    fn locked_dropout_shares_one_mask_over_time_and_passes_its_gradient() {
        type A = Autodiff<Flex>;
        let device = FlexDevice;
        A::seed(&device, 11);
        let (steps, batch, features) = (7, 40, 50);
        let layer = DropoutConfig::new(0.3).init();
        let x = Tensor::<A, 3>::random(
            [steps, batch, features],
            Distribution::Uniform(0.5, 2.0),
            &device,
        )
        .require_grad();
        let y = locked_dropout(&layer, x.clone());
        let dx = values(x.grad(&y.clone().sum().backward()).expect("x tracked"));
        let (x, y) = (values(x), values(y));
        let scale = (1.0 / (1.0 - 0.3f64)) as f32;
        let mut dropped = 0;
        for bf in 0..batch * features {
            let keep = y[bf] != 0.0;
            dropped += usize::from(!keep);
            for t in 0..steps {
                let i = t * batch * features + bf;
                let m = if keep { scale } else { 0.0 };
                assert_eq!(y[i], x[i] * m, "element {i}: the mask changed over time");
                assert_eq!(dx[i], m, "gradient of element {i}");
            }
        }
        // 2000 masks at p = 0.3: the standard deviation of the rate is 0.0102.
        let rate = dropped as f64 / (batch * features) as f64;
        assert!((rate - 0.3).abs() < 0.05, "drop rate {rate}");
    }

    /// Embedding dropout drops whole rows and weight-drop single weights at the rate `p`;
    /// outside training every mask is off.
    #[test]
    fn row_and_weight_masks_drop_at_their_rate_and_only_in_training() {
        type A = Autodiff<Flex>;
        let device = FlexDevice;
        A::seed(&device, 5);
        let mask = values(row_mask::<A>(0.25, 4000, &device).expect("training draws a mask"));
        assert_eq!(mask.len(), 4000);
        assert!(mask
            .iter()
            .all(|&m| m == 0.0 || m == (1.0 / 0.75f64) as f32));
        // 4000 rows at p = 0.25: the standard deviation of the rate is 0.0068.
        let rate = mask.iter().filter(|&&m| m == 0.0).count() as f64 / 4000.0;
        assert!((rate - 0.25).abs() < 0.035, "drop rate {rate}");
        assert!(row_mask::<Flex>(0.25, 10, &device).is_none(), "inference");
        assert!(row_mask::<A>(0.0, 10, &device).is_none(), "p = 0");
        assert!(
            locked_mask::<Flex>(0.5, 2, 3, &device).is_none(),
            "inference"
        );
        let x = Tensor::<Flex, 3>::ones([2, 3, 4], &device);
        assert_eq!(
            values(locked_dropout(&DropoutConfig::new(0.5).init(), x.clone())),
            values(x)
        );
    }

    /// Zoneout masks: 0/1 in training, 1 (keep) at the rate `p`; `p` everywhere in inference;
    /// none at `p = 0`.
    #[test]
    fn zoneout_masks_keep_at_their_rate_in_training_and_are_the_rate_in_inference() {
        type A = Autodiff<Flex>;
        let device = FlexDevice;
        A::seed(&device, 9);
        let dims = [10, 20, 20];
        let mask = values(zone_mask::<A>(0.3, dims, &device).expect("training draws masks"));
        assert_eq!(mask.len(), 4000);
        assert!(mask.iter().all(|&m| m == 0.0 || m == 1.0), "0/1 masks");
        // 4000 draws at p = 0.3: the standard deviation of the rate is 0.0072.
        let rate = mask.iter().filter(|&&m| m == 1.0).count() as f64 / 4000.0;
        assert!((rate - 0.3).abs() < 0.036, "keep rate {rate}");
        let eval = values(zone_mask::<Flex>(0.3, dims, &device).expect("inference's expectation"));
        assert!(eval.iter().all(|&m| m == 0.3f32), "inference: p everywhere");
        assert!(zone_mask::<A>(0.0, dims, &device).is_none());
    }

    #[test]
    fn inference_and_probability_zero_are_the_identity() {
        let device = FlexDevice;
        let (x, _) = inputs::<Flex>(&device);
        let want = values(x.clone());
        let layer = DropoutConfig::new(0.5).init();
        assert_eq!(values(dropout(&layer, x.clone())), want, "plain Flex");
        let tracked = Tensor::<Autodiff<Flex>, 2>::from_inner(x);
        let zero = DropoutConfig::new(0.0).init();
        assert_eq!(values(dropout(&zero, tracked)), want, "p = 0");
    }

    #[test]
    fn an_untracked_input_runs_without_a_gradient_and_keeps_its_shape() {
        let device = FlexDevice;
        let layer = DropoutConfig::new(0.2).init();
        let x = Tensor::<Autodiff<Flex>, 3>::ones([4, 5, 6], &device);
        let y = dropout(&layer, x);
        assert_eq!(y.dims(), [4, 5, 6]);
        let kept: Vec<f32> = values(y).into_iter().filter(|v| *v != 0.0).collect();
        assert!(kept.iter().all(|v| (v - 1.25).abs() < 1e-6));
    }
}
