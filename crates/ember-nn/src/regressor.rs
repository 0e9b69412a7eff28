//! The sequence regressor: a stacked LSTM, GRU or RNN (or the hand-written [`ScratchRnn`])
//! reading a series and predicting a value at every step.

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cell::times_transposed;
use crate::dropout::dropout;
use crate::layer::{AnyRecurrent, CellKind};
use crate::recurrent::{RecurrentConfig, RecurrentState};
use crate::rnn::Nonlinearity;
use crate::scratch::{ScratchRnn, ScratchRnnConfig};
use crate::NnError;

/// What runs over time in a [`SeriesRegressor`] (`kind = "lstm"` in a config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    /// Stacked `torch.nn.LSTM` layers (with `proj_size`).
    #[default]
    Lstm,
    /// Stacked `torch.nn.GRU` layers.
    Gru,
    /// Stacked `torch.nn.RNN` layers.
    Rnn,
    /// The hand-written two-head [`ScratchRnn`]; `num_layers` counts its shared layers.
    Scratch,
}

impl BodyKind {
    /// The recurrent cell of a stacked body; `None` for the scratch RNN.
    pub fn cell(self) -> Option<CellKind> {
        match self {
            Self::Lstm => Some(CellKind::Lstm),
            Self::Gru => Some(CellKind::Gru),
            Self::Rnn => Some(CellKind::Rnn),
            Self::Scratch => None,
        }
    }

    /// The lowercase name used in configs and messages.
    pub fn name(self) -> &'static str {
        self.cell().map_or("scratch", CellKind::name)
    }
}

impl std::fmt::Display for BodyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<CellKind> for BodyKind {
    fn from(kind: CellKind) -> Self {
        match kind {
            CellKind::Lstm => Self::Lstm,
            CellKind::Gru => Self::Gru,
            CellKind::Rnn => Self::Rnn,
        }
    }
}

/// Configuration of a [`SeriesRegressor`].
#[derive(Config, Debug, PartialEq)]
pub struct SeriesRegressorConfig {
    /// Features per input step.
    #[config(default = 1)]
    pub input_size: usize,
    /// Values predicted per step.
    #[config(default = 1)]
    pub output_size: usize,
    /// What runs over time.
    #[config(default = "BodyKind::Lstm")]
    pub body: BodyKind,
    /// Hidden size of each recurrent layer (the scratch RNN's state width).
    #[config(default = 64)]
    pub hidden_size: usize,
    /// Stacked recurrent layers (the scratch RNN's shared layers).
    #[config(default = 1)]
    pub num_layers: usize,
    /// LSTM only: projection size of `h` (0 means none). With `proj_size == output_size` the
    /// projection is the output: no linear head follows.
    #[config(default = 0)]
    pub proj_size: usize,
    /// RNN only: `tanh` or `relu`.
    #[config(default = "Nonlinearity::Tanh")]
    pub nonlinearity: Nonlinearity,
    /// Dropout between recurrent layers and before the head, in training only.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// LSTM and GRU only: LayerNorm cells (see [`crate::layer_norm`]). An option, so that a
    /// `model.json` written before it still loads: `None` means off.
    pub layer_norm: Option<bool>,
}

impl SeriesRegressorConfig {
    /// Builds the model; an impossible size is an error naming the key.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<SeriesRegressor<B>, NnError> {
        for (key, v) in [
            ("input_size", self.input_size),
            ("output_size", self.output_size),
        ] {
            if v == 0 {
                return Err(NnError::ZeroSize { key });
            }
        }
        let (body, head) = match self.body.cell() {
            Some(kind) => {
                let layers = RecurrentConfig::new(self.input_size, self.hidden_size)
                    .with_num_layers(self.num_layers)
                    .with_proj_size(self.proj_size)
                    .with_nonlinearity(self.nonlinearity)
                    .with_dropout(self.dropout)
                    .with_layer_norm(self.layer_norm.unwrap_or(false))
                    .with_batch_first(true)
                    .init_any(kind, device)?;
                let head = (layers.output_size() != self.output_size).then(|| {
                    LinearConfig::new(layers.output_size(), self.output_size).init(device)
                });
                (SeriesBody::Stacked(layers), head)
            }
            None => {
                if self.proj_size > 0 {
                    return Err(NnError::ProjUnsupported);
                }
                if self.layer_norm.unwrap_or(false) {
                    return Err(NnError::LayerNormUnsupported);
                }
                let scratch =
                    ScratchRnnConfig::new(self.input_size, self.hidden_size, self.output_size)
                        .with_shared_layers(self.num_layers)
                        .init(device)?;
                (SeriesBody::Scratch(scratch), None)
            }
        };
        Ok(SeriesRegressor {
            body,
            dropout: DropoutConfig::new(self.dropout).init(),
            head,
        })
    }
}

/// The part of a [`SeriesRegressor`] that runs over time.
// Burn's `Module` derive has no `Box` support; the variants are built once per model.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum SeriesBody<B: Backend> {
    /// Stacked LSTM, GRU or RNN layers.
    Stacked(AnyRecurrent<B>),
    /// The hand-written two-head RNN, whose output head gives the prediction.
    Scratch(ScratchRnn<B>),
}

/// A per-step regressor: `y_t = head(dropout(body(x)_t))`.
///
/// ```text
/// h_t = body(x_1 … x_t)        stacked LSTM / GRU / RNN, or the scratch RNN
/// y_t = W h_t + b              linear head; none when the body already gives output_size
///                              values (an LSTM with proj_size = output_size, the scratch RNN)
/// ```
///
/// Last-step regression reads `y` at each sequence's last valid step; seq2seq reads every step.
#[derive(Module, Debug)]
pub struct SeriesRegressor<B: Backend> {
    /// What runs over time.
    pub body: SeriesBody<B>,
    dropout: Dropout,
    /// Output layer; `None` when the body's output is the prediction.
    pub head: Option<Linear<B>>,
}

impl<B: Backend> SeriesRegressor<B> {
    /// Predictions `[batch, seq, out]` for `inputs` `[batch, seq, in]` from `state` (zeros when
    /// `None`), and the state after the last step. `lengths` packs a stacked body (PyTorch's
    /// packed-sequence semantics); the scratch RNN runs every step, so padding must come last.
    /// The scratch RNN's state is `h` of shape `[1, batch, hidden]`.
    pub fn forward(
        &self,
        inputs: Tensor<B, 3>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        match &self.body {
            SeriesBody::Stacked(layers) => {
                let (h, state) = layers.forward(inputs, lengths, state);
                let y = match &self.head {
                    Some(head) => linear(head, dropout(&self.dropout, h)),
                    None => h,
                };
                (y, state)
            }
            SeriesBody::Scratch(rnn) => {
                let (y, h) = rnn.forward_seq(inputs, state.map(|s| s.h.squeeze_dim(0)));
                (
                    y,
                    RecurrentState {
                        h: h.unsqueeze_dim(0),
                        c: None,
                    },
                )
            }
        }
    }

    /// What runs over time.
    pub fn body_kind(&self) -> BodyKind {
        match &self.body {
            SeriesBody::Stacked(layers) => layers.kind().into(),
            SeriesBody::Scratch(_) => BodyKind::Scratch,
        }
    }
}

/// `head.forward(x)` for `x [batch, seq, in]`, through [`times_transposed`] so that a
/// one-value head avoids the matrix-vector kernels wgpu cannot run.
fn linear<B: Backend>(head: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, steps, input] = x.dims();
    let weight = head.weight.val().transpose();
    let out = weight.dims()[0];
    let y = times_transposed(x.reshape([batch * steps, input]), weight);
    let y = match &head.bias {
        Some(b) => y + b.val().unsqueeze_dim(0),
        None => y,
    };
    y.reshape([batch, steps, out])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    #[test]
    fn proj_size_one_is_its_own_head_and_state_carries() {
        let device = Default::default();
        let model = SeriesRegressorConfig::new()
            .with_hidden_size(8)
            .with_proj_size(1)
            .init::<NdArray>(&device)
            .unwrap();
        assert!(model.head.is_none());
        let x = Tensor::<NdArray, 3>::random([2, 6, 1], Distribution::Default, &device);
        let (whole, _) = model.forward(x.clone(), None, None);
        assert_eq!(whole.dims(), [2, 6, 1]);
        let (a, state) = model.forward(x.clone().slice(s![.., 0..4]), None, None);
        let (b, _) = model.forward(x.slice(s![.., 4..6]), None, Some(state));
        Tensor::cat(vec![a, b], 1)
            .into_data()
            .assert_approx_eq::<f32>(&whole.into_data(), Default::default());
    }

    #[test]
    fn one_value_products_match_matmul() {
        let device = Default::default();
        let head = burn::nn::LinearConfig::new(5, 1).init::<NdArray>(&device);
        let x = Tensor::<NdArray, 3>::random([2, 3, 5], Distribution::Default, &device);
        linear(&head, x.clone())
            .into_data()
            .assert_approx_eq::<f32>(&head.forward(x).into_data(), Default::default());
        let x = Tensor::<NdArray, 2>::random([4, 1], Distribution::Default, &device);
        let w = Tensor::<NdArray, 2>::random([6, 1], Distribution::Default, &device);
        times_transposed(x.clone(), w.clone())
            .into_data()
            .assert_approx_eq::<f32>(&x.matmul(w.transpose()).into_data(), Default::default());
    }

    #[test]
    fn every_body_predicts_every_step() {
        let device = Default::default();
        for body in [BodyKind::Gru, BodyKind::Rnn, BodyKind::Scratch] {
            let model = SeriesRegressorConfig::new()
                .with_body(body)
                .with_hidden_size(5)
                .with_num_layers(2)
                .init::<NdArray>(&device)
                .unwrap();
            assert_eq!(model.body_kind(), body);
            let x = Tensor::<NdArray, 3>::random([3, 4, 1], Distribution::Default, &device);
            let (y, state) = model.forward(x, None, None);
            assert_eq!(y.dims(), [3, 4, 1]);
            assert_eq!(state.h.dims()[1], 3);
        }
        let err = SeriesRegressorConfig::new()
            .with_body(BodyKind::Scratch)
            .with_proj_size(1)
            .init::<NdArray>(&device)
            .unwrap_err();
        assert_eq!(err, NnError::ProjUnsupported);
    }

    #[test]
    fn layer_norm_reaches_an_lstm_or_gru_body_and_is_refused_elsewhere() {
        let device = Default::default();
        for body in [BodyKind::Lstm, BodyKind::Gru] {
            let model = SeriesRegressorConfig::new()
                .with_body(body)
                .with_hidden_size(5)
                .with_layer_norm(Some(true))
                .init::<NdArray>(&device)
                .unwrap();
            match &model.body {
                SeriesBody::Stacked(layers) => assert!(layers.layer_norm(), "{body}"),
                SeriesBody::Scratch(_) => panic!("{body}: a stacked body"),
            }
            let x = Tensor::<NdArray, 3>::random([3, 4, 1], Distribution::Default, &device);
            assert_eq!(model.forward(x, None, None).0.dims(), [3, 4, 1]);
        }
        for body in [BodyKind::Rnn, BodyKind::Scratch] {
            let err = SeriesRegressorConfig::new()
                .with_body(body)
                .with_layer_norm(Some(true))
                .init::<NdArray>(&device)
                .unwrap_err();
            assert_eq!(err, NnError::LayerNormUnsupported, "{body}");
        }
    }
}
