//! Burn's Adam and AdamW with one pass per parameter on the CPU backends.
//!
//! [`FusedAdam`] and [`FusedAdamW`] are [`SimpleOptimizer`]s with Burn's [`AdamState`] and
//! [`AdamWState`] as their states, so their records are Burn's (checkpoints load either way).
//! On `Flex` and `NdArray` a step is [`ember_kernels::adam::adam`]: parameter, gradient and
//! both moments in one loop, in place where Flex holds a buffer alone, with Burn's arithmetic
//! in Burn's order (the values match to the last bit). Every other backend (wgpu), and
//! `EMBER_UNFUSED=1`, runs Burn's own optimizer, which each one wraps.

use std::any::TypeId;

use burn::backend::{Flex, NdArray};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState,
    LearningRate, SimpleOptimizer,
};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;
use ember_kernels::adam::{adam, AdamStep, Rule};

use crate::fused::{enabled, tensor, Host, Values};

/// The hyper-parameters both optimizers share.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Betas {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
}

/// Adam (no weight decay, no AMSGrad) with Burn's semantics and state; see the module docs.
#[derive(Clone)]
pub struct FusedAdam {
    betas: Betas,
    burn: Adam,
}

/// AdamW (decoupled weight decay; no AMSGrad, no cautious decay) with Burn's semantics and
/// state; see the module docs.
#[derive(Clone)]
pub struct FusedAdamW {
    betas: Betas,
    weight_decay: f32,
    burn: AdamW,
}

impl std::fmt::Debug for FusedAdam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedAdam")
            .field("betas", &self.betas)
            .finish()
    }
}

impl std::fmt::Debug for FusedAdamW {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedAdamW")
            .field("betas", &self.betas)
            .field("weight_decay", &self.weight_decay)
            .finish()
    }
}

impl FusedAdam {
    /// Adam with decays `beta_1`, `beta_2` and `epsilon` added to `√v̂`.
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32) -> Self {
        let burn = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .build();
        let betas = Betas {
            beta_1,
            beta_2,
            epsilon,
        };
        Self { betas, burn }
    }

    /// The optimizer of module `M`, clipping each gradient first when `clipping` says so.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        self,
        clipping: Option<GradientClippingConfig>,
    ) -> OptimizerAdaptor<Self, M, B> {
        clipped(OptimizerAdaptor::from(self), clipping)
    }
}

impl FusedAdamW {
    /// AdamW with decays `beta_1`, `beta_2`, `epsilon` added to `√v̂`, and `weight_decay` `λ`
    /// (each step first scales the parameter by `1 − lr · λ`).
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, weight_decay: f32) -> Self {
        let burn = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        let betas = Betas {
            beta_1,
            beta_2,
            epsilon,
        };
        Self {
            betas,
            weight_decay,
            burn,
        }
    }

    /// The optimizer of module `M`, clipping each gradient first when `clipping` says so.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        self,
        clipping: Option<GradientClippingConfig>,
    ) -> OptimizerAdaptor<Self, M, B> {
        clipped(OptimizerAdaptor::from(self), clipping)
    }
}

/// `optim`, clipping each gradient first when `clipping` says so.
fn clipped<O, M, B>(
    optim: OptimizerAdaptor<O, M, B>,
    clipping: Option<GradientClippingConfig>,
) -> OptimizerAdaptor<O, M, B>
where
    O: SimpleOptimizer<B::InnerBackend>,
    M: AutodiffModule<B>,
    B: AutodiffBackend,
{
    match clipping {
        Some(c) => optim.with_grad_clipping(c.init()),
        None => optim,
    }
}

/// Whether the fused step runs for `param`: an `f32` tensor on Flex or NdArray, with the
/// fused path on.
fn fused_for<B: Backend, const D: usize>(param: &Tensor<B, D>) -> bool {
    let b = TypeId::of::<B>();
    enabled()
        && (b == TypeId::of::<Flex>() || b == TypeId::of::<NdArray>())
        && param.dtype() == DType::F32
}

/// One fused step of `rule` (given the learning rate): the new parameter and moments.
fn fused_step<B: Backend, const D: usize>(
    betas: Betas,
    rule: Rule,
    lr: LearningRate,
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    momentum: Option<AdaptiveMomentumState<B, D>>,
) -> (Tensor<B, D>, AdaptiveMomentumState<B, D>) {
    let device = param.device();
    let dims = param.dims();
    let n = dims.iter().product();
    let (time, mut m, mut v) = match momentum {
        Some(s) => (s.time + 1, Host::of(s.moment_1), Host::of(s.moment_2)),
        None => (1, Host::Values(vec![0.0; n]), Host::Values(vec![0.0; n])),
    };
    let mut p = Host::of(param);
    let step = AdamStep {
        lr: lr as f32,
        beta_1: betas.beta_1,
        beta_2: betas.beta_2,
        epsilon: betas.epsilon,
        time: i32::try_from(time).unwrap_or(i32::MAX),
        rule,
    };
    adam(
        p.as_mut(),
        Values::of(grad).get(),
        m.as_mut(),
        v.as_mut(),
        step,
    );
    let as_tensor = |h: Host| tensor(h.into_tensor::<B, D>(dims, &device));
    let momentum = AdaptiveMomentumState::new(time, as_tensor(m), as_tensor(v));
    (as_tensor(p), momentum)
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdam {
    type State<const D: usize> = AdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        if !fused_for(&param) {
            return self.burn.step(lr, param, grad, state);
        }
        let momentum = state.map(|s| s.momentum);
        let (param, momentum) = fused_step(self.betas, Rule::Adam, lr, param, grad, momentum);
        (param, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <Adam as SimpleOptimizer<B>>::to_device(state, device)
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        param: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        if !fused_for(&param) {
            return self.burn.step(lr, param, grad, state);
        }
        // Burn rounds `1 − lr · λ` from f64.
        let keep = (1.0 - lr * f64::from(self.weight_decay)) as f32;
        let momentum = state.map(|s| s.momentum);
        let rule = Rule::AdamW { keep };
        let (param, momentum) = fused_step(self.betas, rule, lr, param, grad, momentum);
        (param, Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexDevice;
    use burn::backend::ndarray::NdArrayDevice;
    use burn::backend::Autodiff;
    use burn::module::Param;
    use burn::nn::Linear;
    use burn::optim::{GradientsParams, Optimizer};
    use burn::record::{FullPrecisionSettings, Recorder};

    use super::*;

    fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    /// The layer's weights after `steps` Adam steps of a fixed loss, with `optim`.
    /// A small layer with fixed weights.
    fn layer<B: Backend>(device: &B::Device) -> Linear<B> {
        let wave = |n: usize, k: f32| (0..n).map(|i| (i as f32 * k).sin()).collect::<Vec<_>>();
        Linear {
            weight: Param::from_tensor(
                Tensor::<B, 1>::from_floats(&wave(15, 0.7)[..], device).reshape([5, 3]),
            ),
            bias: Some(Param::from_tensor(Tensor::from_floats(
                &wave(3, 1.9)[..],
                device,
            ))),
        }
    }

    /// `layer` after `steps` steps of a fixed loss with `optim`, and its weights' values.
    fn train<B: AutodiffBackend, O: Optimizer<Linear<B>, B>>(
        optim: &mut O,
        mut layer: Linear<B>,
        steps: usize,
    ) -> (Linear<B>, Vec<f32>) {
        let device = layer.weight.device();
        let x = Tensor::<B, 1>::from_floats(
            [0.5, -1.0, 2.0, 0.3, 1.5, -0.7, 0.1, 0.9, -2.0, 0.4],
            &device,
        )
        .reshape([2, 5]);
        for _ in 0..steps {
            let loss = layer.forward(x.clone()).tanh().sum();
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            layer = optim.step(0.05, layer, grads);
        }
        let mut found = values(layer.weight.val());
        found.extend(values(layer.bias.clone().expect("a bias").val()));
        (layer, found)
    }

    /// `fused` trains to the same weights as `burn`, bit for bit, and `burn` resumed from
    /// `fused`'s record takes the same next steps as `fused`.
    fn matches<B, Burn, Fused>(mut burn: Burn, mut fused: Fused, device: &B::Device)
    where
        B: AutodiffBackend,
        Burn: Optimizer<Linear<B>, B>,
        Fused: Optimizer<Linear<B>, B>,
    {
        let (_, want) = train(&mut burn, layer(device), 4);
        let (trained, got) = train(&mut fused, layer(device), 4);
        assert_eq!(got, want, "weights after 4 steps");
        let recorder = burn::record::BinBytesRecorder::<FullPrecisionSettings>::default();
        let bytes = recorder
            .record(fused.to_record(), ())
            .expect("the record serialises");
        let mut resumed = burn.load_record(recorder.load(bytes, device).expect("and reads back"));
        let (_, want) = train(&mut resumed, trained.clone(), 2);
        let (_, got) = train(&mut fused, trained, 2);
        assert_eq!(
            got, want,
            "2 more steps, Burn's resumed from the fused record"
        );
    }

    fn matches_burns_optimizers<B: AutodiffBackend>(device: &B::Device) {
        let clip = || Some(GradientClippingConfig::Norm(0.5));
        let burn = AdamConfig::new()
            .with_epsilon(1e-8)
            .with_grad_clipping(clip())
            .init::<B, Linear<B>>();
        let fused = FusedAdam::new(0.9, 0.999, 1e-8).init::<B, Linear<B>>(clip());
        matches::<B, _, _>(burn, fused, device);
        let burn = AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(0.01)
            .with_grad_clipping(clip())
            .init::<B, Linear<B>>();
        let fused = FusedAdamW::new(0.9, 0.999, 1e-8, 0.01).init::<B, Linear<B>>(clip());
        matches::<B, _, _>(burn, fused, device);
    }

    #[test]
    fn fused_adam_and_adamw_match_burns_and_share_their_records() {
        // The fused step is what runs here, not Burn's behind it.
        assert!(fused_for(&Tensor::<Flex, 1>::zeros([1], &FlexDevice)));
        assert!(fused_for(&Tensor::<NdArray, 1>::zeros(
            [1],
            &NdArrayDevice::Cpu
        )));
        matches_burns_optimizers::<Autodiff<Flex>>(&FlexDevice);
        matches_burns_optimizers::<Autodiff<NdArray>>(&NdArrayDevice::Cpu);
    }
}
