//! The hand-written teaching RNN: every step spelled out, for reading before using [`crate::Rnn`].

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::NnError;

/// Configuration of a [`ScratchRnn`].
#[derive(Config, Debug, PartialEq)]
pub struct ScratchRnnConfig {
    /// Features per input step.
    pub input_size: usize,
    /// Width of the state.
    pub hidden_size: usize,
    /// Features per output step.
    pub output_size: usize,
    /// Number of shared `Linear + tanh` layers before the two heads.
    #[config(default = 1)]
    pub shared_layers: usize,
}

impl ScratchRnnConfig {
    /// Builds the module (PyTorch's `Linear` initialisation).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<ScratchRnn<B>, NnError> {
        for (key, v) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("output_size", self.output_size),
            ("shared_layers", self.shared_layers),
        ] {
            if v == 0 {
                return Err(NnError::ZeroSize { key });
            }
        }
        let shared = (0..self.shared_layers)
            .map(|i| {
                let input = if i == 0 {
                    self.input_size + self.hidden_size
                } else {
                    self.hidden_size
                };
                LinearConfig::new(input, self.hidden_size).init(device)
            })
            .collect();
        Ok(ScratchRnn {
            shared,
            output_head: LinearConfig::new(self.hidden_size, self.output_size).init(device),
            state_head: LinearConfig::new(self.hidden_size, self.hidden_size).init(device),
            hidden_size: self.hidden_size,
        })
    }
}

/// A recurrent network written from scratch: shared layers read the input together with the
/// state, then two heads give the output and the next state.
///
/// ```text
/// z  = tanh(L_k(… tanh(L_1([x, state]))))     shared layers
/// y  = W_y z + b_y                            output head
/// state' = tanh(W_s z + b_s)                  state head
/// ```
#[derive(Module, Debug)]
pub struct ScratchRnn<B: Backend> {
    /// The shared layers; the first reads `[x, state]`.
    pub shared: Vec<Linear<B>>,
    /// The output head.
    pub output_head: Linear<B>,
    /// The next-state head.
    pub state_head: Linear<B>,
    hidden_size: usize,
}

impl<B: Backend> ScratchRnn<B> {
    /// The all-zero state for `batch` sequences, `[batch, hidden]`.
    pub fn zero_state(&self, batch: usize, device: &B::Device) -> Tensor<B, 2> {
        Tensor::zeros([batch, self.hidden_size], device)
    }

    /// One step: input `[batch, in]` and state `[batch, hidden]` give the output
    /// `[batch, out]` and the next state.
    pub fn forward(&self, x: Tensor<B, 2>, state: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let mut z = Tensor::cat(vec![x, state], 1);
        for layer in &self.shared {
            z = layer.forward(z).tanh();
        }
        let y = self.output_head.forward(z.clone());
        let next_state = self.state_head.forward(z).tanh();
        (y, next_state)
    }

    /// Unrolls [`ScratchRnn::forward`] over `xs` `[batch, seq, in]` with a plain loop; returns
    /// every step's output `[batch, seq, out]` and the last state.
    pub fn forward_seq(
        &self,
        xs: Tensor<B, 3>,
        state: Option<Tensor<B, 2>>,
    ) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let [batch, steps, input] = xs.dims();
        let mut state = state.unwrap_or_else(|| self.zero_state(batch, &xs.device()));
        let mut ys = Vec::with_capacity(steps);
        for t in 0..steps {
            let x_t = xs.clone().slice(s![.., t..t + 1]).reshape([batch, input]);
            let (y, next) = self.forward(x_t, state);
            ys.push(y);
            state = next;
        }
        (Tensor::stack(ys, 1), state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn unrolled_sequence_equals_manual_steps() {
        let device = Default::default();
        let model = ScratchRnnConfig::new(2, 4, 3)
            .with_shared_layers(2)
            .init::<NdArray>(&device)
            .unwrap();
        let xs =
            Tensor::<NdArray, 3>::random([2, 5, 2], burn::tensor::Distribution::Default, &device);
        let (ys, last) = model.forward_seq(xs.clone(), None);
        assert_eq!(ys.dims(), [2, 5, 3]);
        let mut state = model.zero_state(2, &device);
        for t in 0..5 {
            let (y, next) =
                model.forward(xs.clone().slice(s![.., t..t + 1]).reshape([2, 2]), state);
            let expected = ys.clone().slice(s![.., t..t + 1]).reshape([2, 3]);
            y.into_data()
                .assert_approx_eq::<f32>(&expected.into_data(), Default::default());
            state = next;
        }
        state
            .into_data()
            .assert_approx_eq::<f32>(&last.into_data(), Default::default());
    }
}
