//! Burn's Adam with one pass per parameter on the CPU backends.
//!
//! [`FusedAdam`] is a [`SimpleOptimizer`] with Burn's [`AdamState`] as its state, so its
//! records are Burn's Adam records (checkpoints load either way). On `Flex` and `NdArray` a step
//! is [`ember_kernels::adam::adam`]: parameter, gradient and both moments in one loop, in place
//! where Flex holds a buffer alone, with Burn's arithmetic in Burn's order (the values match
//! to the last bit). Every other backend (wgpu), and `EMBER_UNFUSED=1`, runs Burn's own Adam.

use std::any::TypeId;

use burn::backend::{Flex, NdArray};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, SimpleOptimizer,
};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::DType;
use ember_kernels::adam::{adam, AdamStep};

use crate::fused::{enabled, tensor, Host, Values};

/// Adam (no weight decay, no AMSGrad) with Burn's semantics and state; see the module docs.
#[derive(Clone)]
pub struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    burn: Adam,
}

impl std::fmt::Debug for FusedAdam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedAdam")
            .field("beta_1", &self.beta_1)
            .field("beta_2", &self.beta_2)
            .field("epsilon", &self.epsilon)
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
        Self {
            beta_1,
            beta_2,
            epsilon,
            burn,
        }
    }

    /// The optimizer of module `M`, clipping each gradient first when `clipping` says so.
    pub fn init<B: AutodiffBackend, M: AutodiffModule<B>>(
        self,
        clipping: Option<GradientClippingConfig>,
    ) -> OptimizerAdaptor<Self, M, B> {
        let optim = OptimizerAdaptor::from(self);
        match clipping {
            Some(c) => optim.with_grad_clipping(c.init()),
            None => optim,
        }
    }
}

/// Whether `B` is a backend the fused step runs on.
fn on_cpu<B: Backend>() -> bool {
    let b = TypeId::of::<B>();
    b == TypeId::of::<Flex>() || b == TypeId::of::<NdArray>()
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
        if !enabled() || !on_cpu::<B>() || param.dtype() != DType::F32 {
            return self.burn.step(lr, param, grad, state);
        }
        let device = param.device();
        let dims = param.dims();
        let n = dims.iter().product();
        let (time, mut m, mut v) = match state {
            Some(s) => (
                s.momentum.time + 1,
                Host::of(s.momentum.moment_1),
                Host::of(s.momentum.moment_2),
            ),
            None => (1, Host::Values(vec![0.0; n]), Host::Values(vec![0.0; n])),
        };
        let mut p = Host::of(param);
        let step = AdamStep {
            lr: lr as f32,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            time: i32::try_from(time).unwrap_or(i32::MAX),
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
        (as_tensor(p), Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <Adam as SimpleOptimizer<B>>::to_device(state, device)
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
    fn train<B: AutodiffBackend, O: Optimizer<Linear<B>, B>>(
        mut optim: O,
        steps: usize,
        device: &B::Device,
    ) -> (Vec<f32>, O) {
        let wave = |n: usize, k: f32| (0..n).map(|i| (i as f32 * k).sin()).collect::<Vec<_>>();
        let mut layer = Linear {
            weight: Param::from_tensor(
                Tensor::<B, 1>::from_floats(&wave(15, 0.7)[..], device).reshape([5, 3]),
            ),
            bias: Some(Param::from_tensor(Tensor::from_floats(
                &wave(3, 1.9)[..],
                device,
            ))),
        };
        let x = Tensor::<B, 1>::from_floats(&wave(10, 2.3)[..], device).reshape([2, 5]);
        for _ in 0..steps {
            let loss = layer.forward(x.clone()).tanh().sum();
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            layer = optim.step(0.05, layer, grads);
        }
        let mut found = values(layer.weight.val());
        found.extend(values(layer.bias.expect("a bias").val()));
        (found, optim)
    }

    fn matches_burns_adam<B: AutodiffBackend>(device: &B::Device) {
        let clip = || Some(GradientClippingConfig::Norm(0.5));
        let burn = AdamConfig::new()
            .with_epsilon(1e-8)
            .with_grad_clipping(clip())
            .init::<B, Linear<B>>();
        let fused = FusedAdam::new(0.9, 0.999, 1e-8).init::<B, Linear<B>>(clip());
        let (want, burn) = train::<B, _>(burn, 4, device);
        let (got, fused) = train::<B, _>(fused, 4, device);
        assert_eq!(got, want, "weights after 4 steps");
        // The state is Burn's record: a fused optimizer resumes from Burn's, and back.
        let recorder = burn::record::BinBytesRecorder::<FullPrecisionSettings>::default();
        let bytes = recorder
            .record(fused.to_record(), ())
            .expect("the record serialises");
        let record = recorder.load(bytes, device).expect("and reads back");
        let resumed = burn.load_record(record);
        assert!(!resumed.to_record().is_empty());
    }

    #[test]
    fn fused_adam_matches_burns_adam_and_shares_its_record() {
        matches_burns_adam::<Autodiff<Flex>>(&FlexDevice);
        matches_burns_adam::<Autodiff<NdArray>>(&NdArrayDevice::Cpu);
    }
}
