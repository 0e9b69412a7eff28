//! Gradient clipping by the global L2 norm over all parameters, as PyTorch's
//! `torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)` does it:
//!
//! ```text
//! n = ‖(‖g₁‖₂, …, ‖g_k‖₂)‖₂        c = min(1, max_norm / (n + 10⁻⁶))        g_i ← c · g_i
//! ```
//!
//! Burn's `GradientClippingConfig::Norm` clips each parameter's gradient to the norm on its
//! own, which changes the direction of the step; this keeps it. [`ClipGlobalNorm`] wraps any
//! optimizer and clips before handing the gradients on; its record is the optimizer's, so a
//! run resumes from either.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{GradientsParams, LearningRate, MultiGradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// PyTorch's guard against a zero norm in `clip_grad_norm_`.
const EPS: f32 = 1e-6;

/// `inner` with every step's gradients clipped to a global L2 norm of at most `max_norm`
/// (`None`: `inner` as it is).
#[derive(Debug, Clone)]
pub struct ClipGlobalNorm<O> {
    inner: O,
    max_norm: Option<f32>,
}

impl<O> ClipGlobalNorm<O> {
    /// Wraps `inner`, clipping the gradients' global norm to `max_norm` (> 0) before each
    /// step, or not at all when `None`.
    pub fn new(inner: O, max_norm: Option<f32>) -> Self {
        Self { inner, max_norm }
    }
}

impl<M, B, O> Optimizer<M, B> for ClipGlobalNorm<O>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
    O: Optimizer<M, B>,
{
    type Record = O::Record;

    fn step(&mut self, lr: LearningRate, module: M, mut grads: GradientsParams) -> M {
        if let Some(max_norm) = self.max_norm {
            clip_global_norm::<B, M>(&module, &mut grads, max_norm);
        }
        self.inner.step(lr, module, grads)
    }

    fn step_multi(&mut self, lr: LearningRate, module: M, grads: MultiGradientsParams) -> M {
        // The norm is that of the summed gradients, so sum the devices' parts first.
        let mut merged = Merge {
            from: grads,
            into: GradientsParams::new(),
        };
        module.visit(&mut merged);
        self.step(lr, module, merged.into)
    }

    fn to_record(&self) -> Self::Record {
        self.inner.to_record()
    }

    fn load_record(self, record: Self::Record) -> Self {
        Self {
            inner: self.inner.load_record(record),
            max_norm: self.max_norm,
        }
    }
}

/// Scales `grads` so that their global L2 norm over `module`'s parameters is at most
/// `max_norm`, as `clip_grad_norm_` does; returns the norm before clipping.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f32,
) -> f32 {
    let mut norms = Norms::<B> {
        grads,
        squares: Vec::new(),
    };
    module.visit(&mut norms);
    let squares = norms.squares;
    let Some(first) = squares.first() else {
        return 0.0;
    };
    let device = first.device();
    let total = Tensor::cat(
        squares.into_iter().map(|s| s.to_device(&device)).collect(),
        0,
    )
    .sum()
    .sqrt()
    .into_scalar()
    .elem::<f32>();
    let coef = max_norm / (total + EPS);
    // A coefficient of 1 or more is clamped to 1, which leaves g as it is, bit for bit: skip
    // the pass. A NaN norm makes every gradient NaN, and ∞ zeroes them, as in PyTorch.
    if coef.is_nan() || coef < 1.0 {
        module.visit(&mut Scale { grads, coef });
    }
    total
}

/// Collects each gradient's squared L2 norm, `‖g‖₂²` (PyTorch takes the norm of the norms).
struct Norms<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    squares: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Norms<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let norm = g.square().sum().sqrt();
            self.squares.push(norm.square());
        }
    }
}

/// Multiplies each gradient by `coef`.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    coef: f32,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.coef));
        }
    }
}

/// Sums each parameter's gradient over the devices that hold a part of it.
struct Merge {
    from: MultiGradientsParams,
    into: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Merge {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some((g, _)) = self.from.remove::<B::InnerBackend, D>(param.id) {
            self.into.register(param.id, g);
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexDevice;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::SgdConfig;

    use super::*;

    type B = Autodiff<Flex>;

    /// A model whose gradients below have a global norm far above 1.
    fn model() -> Linear<B> {
        let device = FlexDevice;
        B::seed(&device, 1);
        LinearConfig::new(6, 4).init::<B>(&device)
    }

    /// The gradients of a loss on `model`.
    fn grads(model: &Linear<B>) -> GradientsParams {
        let x = Tensor::<B, 2>::from_floats([[30.0, -20.0, 10.0, 5.0, -8.0, 12.0]; 3], &FlexDevice);
        let loss = model.forward(x).square().sum();
        GradientsParams::from_grads(loss.backward(), model)
    }

    fn model_and_grads() -> (Linear<B>, GradientsParams) {
        let model = model();
        let grads = grads(&model);
        (model, grads)
    }

    fn flat(model: &Linear<B>, grads: &GradientsParams) -> Vec<f32> {
        let w = grads
            .get::<Flex, 2>(model.weight.id)
            .expect("weight has a gradient");
        let b = grads
            .get::<Flex, 1>(model.bias.as_ref().expect("bias").id)
            .expect("bias has a gradient");
        let mut v: Vec<f32> = w.into_data().iter::<f32>().collect();
        v.extend(b.into_data().iter::<f32>());
        v
    }

    #[test]
    fn clips_the_global_norm_keeping_the_direction() {
        let (model, mut grads) = model_and_grads();
        let before = flat(&model, &grads);
        let want_norm = before.iter().map(|g| g * g).sum::<f32>().sqrt();
        let norm = clip_global_norm::<B, _>(&model, &mut grads, 1.0);
        assert!(
            (norm - want_norm).abs() <= 1e-4 * want_norm,
            "norm {norm} vs {want_norm}"
        );
        assert!(norm > 10.0, "the test needs clipping to act (norm {norm})");
        let after = flat(&model, &grads);
        let coef = 1.0 / (norm + EPS);
        for (a, b) in after.iter().zip(&before) {
            assert!(
                (a - b * coef).abs() <= 1e-6 * (1.0 + b.abs()),
                "{a} vs {}",
                b * coef
            );
        }
        let new_norm = after.iter().map(|g| g * g).sum::<f32>().sqrt();
        assert!((new_norm - 1.0).abs() < 1e-4, "clipped norm {new_norm}");
    }

    #[test]
    fn a_norm_under_the_limit_leaves_the_gradients_alone() {
        let (model, mut grads) = model_and_grads();
        let before = flat(&model, &grads);
        let norm = clip_global_norm::<B, _>(&model, &mut grads, 1e9);
        assert!(norm.is_finite() && norm > 0.0);
        assert_eq!(flat(&model, &grads), before);
    }

    #[test]
    fn the_wrapper_steps_with_clipped_gradients() {
        let model = model();
        let mut clipped = grads(&model);
        clip_global_norm::<B, _>(&model, &mut clipped, 0.5);
        let dw: Vec<f32> = clipped
            .get::<Flex, 2>(model.weight.id)
            .expect("weight")
            .into_data()
            .iter::<f32>()
            .collect();
        let w0: Vec<f32> = model.weight.val().into_data().iter::<f32>().collect();
        let grads = grads(&model);
        let mut optim = ClipGlobalNorm::new(SgdConfig::new().init::<B, Linear<B>>(), Some(0.5));
        let stepped = optim.step(0.1, model, grads);
        let w1: Vec<f32> = stepped.weight.val().into_data().iter::<f32>().collect();
        for ((a, b), g) in w1.iter().zip(&w0).zip(&dw) {
            assert!((a - (b - 0.1 * g)).abs() < 1e-6, "{a} vs {}", b - 0.1 * g);
        }
    }
}
