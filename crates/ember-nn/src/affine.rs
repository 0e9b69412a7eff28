//! `y = x Wᵀ + b` over many rows as one autodiff node on Burn's CPU backends, with its
//! forward and backward in [`ember_kernels::affine`].
//!
//! Burn's matmul on Flex zero-fills each output, then copies it into aligned storage, and its
//! backward copies transposed operands element by element; the bias is one more pass, and its
//! gradient a reduction. Here a product writes straight into a fresh buffer that becomes the
//! tensor, the operands are read in place, and the bias comes with the product. Used for
//! `Autodiff<Flex>` and `Autodiff<NdArray>`, and plain `Flex`/`NdArray` from [`SHORT`] rows,
//! chosen by type at run time like [`crate::fused`]; every other backend (wgpu), and
//! `EMBER_UNFUSED=1`, gets Burn's matmul and add.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{CheckpointStrategy, NoCheckpointing};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex, NdArray};
use burn::prelude::*;
use burn::tensor::TensorData;
pub(crate) use ember_kernels::affine::Layout;
use ember_kernels::affine::{affine_backward, AffineDims, Wanted};

use crate::cell::times_transposed;
use crate::fused::{cast, enabled, grad, host, primitive, same, tensor, Values, SHORT};

/// `x Wᵀ + b` for `x [rows, in]` and `W` stored as `layout` says (`[out, in]` or `[in, out]`),
/// `b [out]`: `[rows, out]`.
pub(crate) fn affine<B: Backend>(
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
    b: Option<Tensor<B, 1>>,
    layout: Layout,
) -> Tensor<B, 2> {
    let a = Affine { x, w, b, layout };
    if !enabled() {
        return a.burn();
    }
    autodiff_as::<B, Flex>(a)
        .or_else(autodiff_as::<B, NdArray>)
        .or_else(plain_as::<B, Flex>)
        .or_else(plain_as::<B, NdArray>)
        .unwrap_or_else(Affine::burn)
}

/// One affine map's operands on backend `B`.
#[derive(Debug, Clone)]
struct Affine<B: Backend> {
    x: Tensor<B, 2>,
    w: Tensor<B, 2>,
    b: Option<Tensor<B, 1>>,
    layout: Layout,
}

impl<B: Backend> Affine<B> {
    fn dims(&self) -> AffineDims {
        let [rows, input] = self.x.dims();
        let [first, second] = self.w.dims();
        AffineDims {
            rows,
            input,
            output: match self.layout {
                Layout::OutIn => first,
                Layout::InOut => second,
            },
        }
    }

    /// Burn's own ops: a matmul and a broadcast add.
    fn burn(self) -> Tensor<B, 2> {
        let y = match self.layout {
            Layout::OutIn => times_transposed(self.x, self.w),
            Layout::InOut => self.x.matmul(self.w),
        };
        match self.b {
            Some(b) => y + b.unsqueeze_dim(0),
            None => y,
        }
    }

    /// The same map on backend `I` when `B` is `I`, else itself back.
    fn recast<I: Backend>(self) -> Result<Affine<I>, Self> {
        if std::any::TypeId::of::<B>() != std::any::TypeId::of::<I>() {
            return Err(self);
        }
        Ok(Affine {
            x: same(self.x),
            w: same(self.w),
            b: self.b.map(same),
            layout: self.layout,
        })
    }
}

/// What the node keeps for its backward pass.
#[derive(Debug, Clone)]
struct NodeState {
    x: Values,
    w: Values,
    dims: AffineDims,
    layout: Layout,
}

/// Runs the map on a plain backend, with the node state when `save`.
fn forward<B: Backend>(a: Affine<B>, save: bool) -> (Tensor<B, 2>, Option<NodeState>) {
    let device = a.x.device();
    let dims = a.dims();
    let layout = a.layout;
    let (x, w) = (Values::of(a.x), Values::of(a.w));
    let b = a.b.map(host);
    let y = ember_kernels::affine::affine(x.get(), w.get(), b.as_deref(), dims, layout)
        .expect("the caller passes matching shapes");
    let y = Tensor::from_data(TensorData::new(y, [dims.rows, dims.output]), &device);
    (y, save.then_some(NodeState { x, w, dims, layout }))
}

/// The autodiff node of the map; parents `x`, `W`, `b`.
#[derive(Debug)]
struct AffineNode;

impl<B: Backend> Backward<B, 3> for AffineNode {
    type State = NodeState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy: Tensor<B, 2> = tensor(grads.consume::<B>(&ops.node));
        let device = dy.device();
        let NodeState { x, w, dims, layout } = ops.state;
        let [px, pw, pb] = &ops.parents;
        let wanted = Wanted {
            x: px.is_some(),
            w: pw.is_some(),
            b: pb.is_some(),
        };
        let g = affine_backward(Values::of(dy).get(), x.get(), w.get(), dims, layout, wanted)
            .expect("dy has the shape of y");
        let w_shape = match layout {
            Layout::OutIn => [dims.output, dims.input],
            Layout::InOut => [dims.input, dims.output],
        };
        let found = [
            g.x.and_then(|v| grad::<B, 2>(v, [dims.rows, dims.input], &device)),
            g.w.and_then(|v| grad::<B, 2>(v, w_shape, &device)),
            g.b.and_then(|v| grad::<B, 1>(v, [dims.output], &device)),
        ];
        for (parent, grad) in ops.parents.into_iter().zip(found) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// The map as one node of `Autodiff<B, C>`'s graph.
fn on_autodiff<B: Backend, C: CheckpointStrategy>(
    a: Affine<Autodiff<B, C>>,
) -> Tensor<Autodiff<B, C>, 2> {
    let device = a.x.device();
    let has_b = a.b.is_some();
    let x = primitive(a.x);
    let w = primitive(a.w);
    // An untracked placeholder stands for a missing bias.
    let b = primitive(a.b.unwrap_or_else(|| Tensor::zeros([1], &device)));
    let nodes = [&x, &w, &b].map(|t| t.node.clone());
    let inner = Affine::<B> {
        x: tensor(x.primitive),
        w: tensor(w.primitive),
        b: has_b.then(|| tensor(b.primitive)),
        layout: a.layout,
    };
    let y = match AffineNode.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (y, state) = forward(inner, true);
            prep.finish(state.expect("saved when asked"), primitive(y))
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive(forward(inner, false).0)),
    };
    tensor(y)
}

/// Runs on `Autodiff<I>` when `B` is that backend, else gives `a` back.
fn autodiff_as<B: Backend, I: Backend>(a: Affine<B>) -> Result<Tensor<B, 2>, Affine<B>> {
    let a = a.recast::<Autodiff<I>>()?;
    Ok(cast(on_autodiff::<I, NoCheckpointing>(a)).expect("B is Autodiff<I>"))
}

/// Runs on the plain backend `I` when `B` is `I` and there are [`SHORT`] rows or more (one
/// sampled step copies no weights through here), else gives `a` back.
fn plain_as<B: Backend, I: Backend>(a: Affine<B>) -> Result<Tensor<B, 2>, Affine<B>> {
    if a.x.dims()[0] < SHORT {
        return Err(a);
    }
    let a = a.recast::<I>()?;
    Ok(cast(forward::<I>(a, false).0).expect("B is I"))
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

    /// `y`, and the gradients of `Σ y ⊙ r` for `x`, `W`, `b`, from the node or from Burn's ops.
    fn run<B: AutodiffBackend>(
        inputs: &[Tensor<B::InnerBackend, 2>; 3],
        bias: &Tensor<B::InnerBackend, 1>,
        layout: Layout,
        fused: bool,
    ) -> Vec<Vec<f32>> {
        let [x, w, r] = inputs
            .clone()
            .map(|t| Tensor::<B, 2>::from_inner(t).require_grad());
        let b = Tensor::<B, 1>::from_inner(bias.clone()).require_grad();
        let a = Affine {
            x: x.clone(),
            w: w.clone(),
            b: Some(b.clone()),
            layout,
        };
        let y = if fused {
            affine(a.x, a.w, a.b, layout)
        } else {
            a.burn()
        };
        let grads = (y.clone() * r.detach()).sum().backward();
        vec![
            values(y),
            values(x.grad(&grads).expect("x tracked")),
            values(w.grad(&grads).expect("W tracked")),
            values(b.grad(&grads).expect("b tracked")),
        ]
    }

    fn matches_burn<B: AutodiffBackend>(device: &B::Device) {
        let (rows, input, output) = (40, 7, 9);
        let normal = Distribution::Normal(0.0, 1.0);
        for layout in [Layout::OutIn, Layout::InOut] {
            let w_shape = match layout {
                Layout::OutIn => [output, input],
                Layout::InOut => [input, output],
            };
            let inputs = [
                Tensor::random([rows, input], normal, device),
                Tensor::random(w_shape, normal, device),
                Tensor::random([rows, output], normal, device),
            ];
            let bias = Tensor::random([output], normal, device);
            let fused = run::<B>(&inputs, &bias, layout, true);
            let burn = run::<B>(&inputs, &bias, layout, false);
            for (k, (f, b)) in fused.iter().zip(&burn).enumerate() {
                assert_eq!(f.len(), b.len());
                for (u, v) in f.iter().zip(b) {
                    assert!(
                        (u - v).abs() < 1e-4 * (1.0 + v.abs()),
                        "{layout:?} #{k}: {u} vs {v}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_node_matches_burns_ops_on_flex_and_ndarray() {
        matches_burn::<Autodiff<Flex>>(&FlexDevice);
        matches_burn::<Autodiff<NdArray>>(&NdArrayDevice::Cpu);
    }

    #[test]
    fn an_untracked_input_gets_no_gradient_and_a_transposed_input_is_read_right() {
        let device = FlexDevice;
        let x = Tensor::<Autodiff<Flex>, 2>::random([20, 3], Distribution::Default, &device);
        // A transposed view is not contiguous: it is copied, not misread.
        let w = Tensor::<Autodiff<Flex>, 2>::random([3, 5], Distribution::Default, &device)
            .require_grad();
        let y = affine(x.clone(), w.clone().transpose(), None, Layout::OutIn);
        let want = x.clone().matmul(w.clone());
        let (got, want) = (values(y.clone()), values(want));
        for (u, v) in got.iter().zip(&want) {
            assert!((u - v).abs() < 1e-5, "{u} vs {v}");
        }
        let grads = y.sum().backward();
        assert!(x.grad(&grads).is_none());
        assert_eq!(w.grad(&grads).expect("W tracked").dims(), [3, 5]);
    }
}
