//! A recurrent layer whose cell (LSTM, GRU or RNN) is chosen at run time, from a config.
//!
//! Models that ship as one type for every cell ([`crate::CharLm`], ...) hold an
//! [`AnyRecurrent`]; its record names the variant, so a checkpoint says which cell it holds.

use burn::module::Module;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::recurrent::{First, Gru, Lstm, RecurrentConfig, RecurrentState, Rnn, StackMasks};
use crate::torch::{TorchParam, TorchTensors};
use crate::NnError;

/// Which recurrent cell a layer uses (`kind = "lstm"` in a config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// `torch.nn.LSTM` (with `proj_size`).
    #[default]
    Lstm,
    /// `torch.nn.GRU`.
    Gru,
    /// `torch.nn.RNN` (Elman; `tanh` or `relu`).
    Rnn,
}

impl CellKind {
    /// The lowercase name used in configs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lstm => "lstm",
            Self::Gru => "gru",
            Self::Rnn => "rnn",
        }
    }
}

impl std::fmt::Display for CellKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A stacked recurrent layer of any [`CellKind`], with the API of [`crate::Recurrent`].
#[derive(Module, Debug)]
pub enum AnyRecurrent<B: Backend> {
    /// LSTM layers.
    Lstm(Lstm<B>),
    /// GRU layers.
    Gru(Gru<B>),
    /// Elman RNN layers.
    Rnn(Rnn<B>),
}

/// Calls the same method on whichever layer `$self` holds.
macro_rules! each {
    ($self:expr, $layer:ident => $body:expr) => {
        match $self {
            AnyRecurrent::Lstm($layer) => $body,
            AnyRecurrent::Gru($layer) => $body,
            AnyRecurrent::Rnn($layer) => $body,
        }
    };
}

impl RecurrentConfig {
    /// Builds the layer with cells of `kind`.
    pub fn init_any<B: Backend>(
        &self,
        kind: CellKind,
        device: &B::Device,
    ) -> Result<AnyRecurrent<B>, NnError> {
        Ok(match kind {
            CellKind::Lstm => AnyRecurrent::Lstm(self.init(device)?),
            CellKind::Gru => AnyRecurrent::Gru(self.init(device)?),
            CellKind::Rnn => AnyRecurrent::Rnn(self.init(device)?),
        })
    }
}

impl<B: Backend> AnyRecurrent<B> {
    /// The cell kind.
    pub fn kind(&self) -> CellKind {
        match self {
            Self::Lstm(_) => CellKind::Lstm,
            Self::Gru(_) => CellKind::Gru,
            Self::Rnn(_) => CellKind::Rnn,
        }
    }

    /// Width of each direction's output.
    pub fn output_size(&self) -> usize {
        each!(self, l => l.output_size())
    }

    /// Number of directions (2 when bidirectional).
    pub fn directions(&self) -> usize {
        each!(self, l => l.directions())
    }

    /// See [`crate::Recurrent::zoneout`].
    pub fn zoneout(&self) -> [f64; 2] {
        each!(self, l => l.zoneout())
    }

    /// See [`crate::Recurrent::layer_norm`].
    pub fn layer_norm(&self) -> bool {
        each!(self, l => l.layer_norm())
    }

    /// A zero state for `batch` sequences.
    pub fn zero_state(&self, batch: usize, device: &B::Device) -> RecurrentState<B> {
        each!(self, l => l.zero_state(batch, device))
    }

    /// See [`crate::Recurrent::forward`].
    pub fn forward(
        &self,
        input: Tensor<B, 3>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        each!(self, l => l.forward(input, lengths, state))
    }

    /// See [`crate::Recurrent::forward_time_major`].
    pub fn forward_time_major(
        &self,
        input: Tensor<B, 3>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        each!(self, l => l.forward_time_major(input, lengths, state))
    }

    /// See [`crate::Recurrent::forward_tokens`].
    pub fn forward_tokens(
        &self,
        table: Tensor<B, 2>,
        tokens: Tensor<B, 2, Int>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        each!(self, l => l.forward_tokens(table, tokens, lengths, state))
    }

    /// See [`crate::Recurrent::forward_with_masks`].
    pub fn forward_with_masks(
        &self,
        first: First<B>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
        masks: &StackMasks<B>,
    ) -> Result<(Tensor<B, 3>, RecurrentState<B>), NnError> {
        each!(self, l => l.forward_with_masks(first, lengths, state, masks))
    }

    /// See [`crate::Recurrent::check_masks`].
    pub fn check_masks(
        &self,
        masks: &StackMasks<B>,
        steps: usize,
        batch: usize,
    ) -> Result<(), NnError> {
        each!(self, l => l.check_masks(masks, steps, batch))
    }

    /// [`Self::forward_with_masks`] for masks known to fit.
    pub(crate) fn run_masked(
        &self,
        first: First<B>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
        masks: &StackMasks<B>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        each!(self, l => l.run_masked(first, lengths, state, masks))
    }

    /// See [`crate::Recurrent::load_torch`].
    pub fn load_torch(self, prefix: &str, tensors: &mut TorchTensors) -> Result<Self, NnError> {
        Ok(match self {
            Self::Lstm(l) => Self::Lstm(l.load_torch(prefix, tensors)?),
            Self::Gru(l) => Self::Gru(l.load_torch(prefix, tensors)?),
            Self::Rnn(l) => Self::Rnn(l.load_torch(prefix, tensors)?),
        })
    }

    /// See [`crate::Recurrent::torch_params`].
    pub fn torch_params(&self, prefix: &str) -> Vec<TorchParam<B>> {
        each!(self, l => l.torch_params(prefix))
    }
}

impl<B: Backend> AnyRecurrentRecord<B> {
    /// The cell kind a saved layer holds.
    pub fn kind(&self) -> CellKind {
        match self {
            Self::Lstm(_) => CellKind::Lstm,
            Self::Gru(_) => CellKind::Gru,
            Self::Rnn(_) => CellKind::Rnn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn every_kind_runs_with_its_state_shape() {
        let device = Default::default();
        let config = RecurrentConfig::new(3, 5).with_num_layers(2);
        for kind in [CellKind::Lstm, CellKind::Gru, CellKind::Rnn] {
            let layer = config.init_any::<NdArray>(kind, &device).unwrap();
            assert_eq!(layer.kind(), kind);
            let x = Tensor::<NdArray, 3>::ones([4, 2, 3], &device);
            let (y, state) = layer.forward(x, None, None);
            assert_eq!(y.dims(), [4, 2, 5]);
            assert_eq!(state.h.dims(), [2, 2, 5]);
            assert_eq!(state.c.is_some(), kind == CellKind::Lstm, "{kind}");
            assert_eq!(layer.clone().into_record().kind(), kind);
        }
    }
}
