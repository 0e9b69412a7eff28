//! A stacked LSTM with the parameters, shapes and semantics of `torch.nn.LSTM`.

use burn::module::{Initializer, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::cell::{run_direction, CellState, RecurrentCell};
use crate::NnError;

/// Configuration of an [`Lstm`], named as in `torch.nn.LSTM`.
#[derive(Config, Debug, PartialEq)]
pub struct LstmConfig {
    /// Features per input step.
    pub input_size: usize,
    /// Width of the cell state `c` (and of `h` when there is no projection).
    pub hidden_size: usize,
    /// Number of stacked layers.
    #[config(default = 1)]
    pub num_layers: usize,
    /// Whether the layers have the biases `b_ih` and `b_hh`.
    #[config(default = true)]
    pub bias: bool,
    /// Input and output are `[batch, seq, features]` instead of `[seq, batch, features]`.
    #[config(default = false)]
    pub batch_first: bool,
    /// Dropout on the outputs of every layer but the last, in training only.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Run a second, reversed direction and concatenate the outputs.
    #[config(default = false)]
    pub bidirectional: bool,
    /// Width of the projected hidden state `h = W_hr (o ⊙ tanh(c))`; 0 means no projection.
    #[config(default = 0)]
    pub proj_size: usize,
}

impl LstmConfig {
    /// Checks the sizes the way PyTorch does, with an error naming the key.
    pub fn validate(&self) -> Result<(), NnError> {
        for (key, v) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
        ] {
            if v == 0 {
                return Err(NnError::ZeroSize { key });
            }
        }
        if self.proj_size >= self.hidden_size && self.proj_size != 0 {
            return Err(NnError::ProjTooLarge {
                proj_size: self.proj_size,
                hidden_size: self.hidden_size,
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(NnError::BadDropout(self.dropout));
        }
        Ok(())
    }

    /// Width of `h` and of each direction's output.
    pub fn output_size(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }

    /// Builds the layer with PyTorch's initialisation, every weight and bias `U(-1/√H, 1/√H)`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Lstm<B>, NnError> {
        self.validate()?;
        let directions = if self.bidirectional { 2 } else { 1 };
        let h = self.hidden_size;
        let h_out = self.output_size();
        let bound = 1.0 / (h as f64).sqrt();
        let uniform = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        let mut cells = Vec::with_capacity(self.num_layers * directions);
        for layer in 0..self.num_layers {
            let in_size = if layer == 0 {
                self.input_size
            } else {
                h_out * directions
            };
            for _ in 0..directions {
                cells.push(LstmCell {
                    weight_ih: uniform.init([4 * h, in_size], device),
                    weight_hh: uniform.init([4 * h, h_out], device),
                    bias_ih: self.bias.then(|| uniform.init([4 * h], device)),
                    bias_hh: self.bias.then(|| uniform.init([4 * h], device)),
                    weight_hr: (self.proj_size > 0).then(|| uniform.init([h_out, h], device)),
                });
            }
        }
        Ok(Lstm {
            cells,
            dropout: DropoutConfig::new(self.dropout).init(),
            hidden_size: h,
            output_size: h_out,
            num_layers: self.num_layers,
            directions,
            batch_first: self.batch_first,
        })
    }
}

/// One direction of one LSTM layer, with PyTorch's parameter shapes (gate order i, f, g, o):
///
/// ```text
/// i = σ(W_ii x + b_ii + W_hi h + b_hi)      f = σ(W_if x + b_if + W_hf h + b_hf)
/// g = tanh(W_ig x + b_ig + W_hg h + b_hg)   o = σ(W_io x + b_io + W_ho h + b_ho)
/// c' = f ⊙ c + i ⊙ g                        h' = o ⊙ tanh(c')   (then h' = W_hr h' with proj_size)
/// ```
#[derive(Module, Debug)]
pub struct LstmCell<B: Backend> {
    /// `W_ih`, `[4H, in]`: the four gates' input weights stacked i, f, g, o.
    pub weight_ih: Param<Tensor<B, 2>>,
    /// `W_hh`, `[4H, H_out]`.
    pub weight_hh: Param<Tensor<B, 2>>,
    /// `b_ih`, `[4H]`.
    pub bias_ih: Option<Param<Tensor<B, 1>>>,
    /// `b_hh`, `[4H]`.
    pub bias_hh: Option<Param<Tensor<B, 1>>>,
    /// `W_hr`, `[P, H]`, only with `proj_size > 0`.
    pub weight_hr: Option<Param<Tensor<B, 2>>>,
}

impl<B: Backend> RecurrentCell<B> for LstmCell<B> {
    fn input_projection(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [steps, batch, input] = x.dims();
        let mut p = x
            .reshape([steps * batch, input])
            .matmul(self.weight_ih.val().transpose());
        // Both biases are constant per step, so they are added once here.
        for b in [&self.bias_ih, &self.bias_hh].into_iter().flatten() {
            p = p + b.val().unsqueeze_dim(0);
        }
        let gates = p.dims()[1];
        p.reshape([steps, batch, gates])
    }

    fn step(&self, projected: Tensor<B, 2>, state: &CellState<B>) -> CellState<B> {
        let gates = projected + state.h.clone().matmul(self.weight_hh.val().transpose());
        let [i, f, g, o] = <[Tensor<B, 2>; 4]>::try_from(gates.chunk(4, 1))
            .expect("an LSTM step has four gate blocks");
        let c_prev = state.c.clone().expect("an LSTM state carries c");
        let c = sigmoid(f) * c_prev + sigmoid(i) * g.tanh();
        let mut h = sigmoid(o) * c.clone().tanh();
        if let Some(w_hr) = &self.weight_hr {
            h = h.matmul(w_hr.val().transpose());
        }
        CellState { h, c: Some(c) }
    }
}

/// The state of an [`Lstm`], shaped as PyTorch's `(h_n, c_n)`.
#[derive(Debug, Clone)]
pub struct LstmState<B: Backend> {
    /// `[D·num_layers, batch, H_out]`, row `layer·D + direction`.
    pub h: Tensor<B, 3>,
    /// `[D·num_layers, batch, H]`.
    pub c: Tensor<B, 3>,
}

impl<B: Backend> LstmState<B> {
    /// The same state cut from the autodiff graph (truncated BPTT).
    pub fn detach(self) -> Self {
        Self {
            h: self.h.detach(),
            c: self.c.detach(),
        }
    }
}

/// A stacked, optionally bidirectional LSTM (see [`LstmCell`] for the math).
#[derive(Module, Debug)]
pub struct Lstm<B: Backend> {
    /// One cell per layer and direction, in PyTorch's `h_n` row order (`layer·D + direction`).
    pub cells: Vec<LstmCell<B>>,
    dropout: Dropout,
    hidden_size: usize,
    output_size: usize,
    num_layers: usize,
    directions: usize,
    batch_first: bool,
}

impl<B: Backend> Lstm<B> {
    /// Width of `h` per direction (`proj_size` if set, else `hidden_size`).
    pub fn output_size(&self) -> usize {
        self.output_size
    }

    /// A zero state for `batch` sequences.
    pub fn zero_state(&self, batch: usize, device: &B::Device) -> LstmState<B> {
        let rows = self.num_layers * self.directions;
        LstmState {
            h: Tensor::zeros([rows, batch, self.output_size], device),
            c: Tensor::zeros([rows, batch, self.hidden_size], device),
        }
    }

    /// Runs the LSTM like `torch.nn.LSTM`.
    ///
    /// `input` is `[batch, seq, in]` with `batch_first` (else `[seq, batch, in]`). `lengths`, when
    /// given, holds each sequence's number of valid steps (1..=seq): padded steps never touch the
    /// state and their outputs are zero, as with `pack_padded_sequence`. A missing `state` means
    /// zeros. Returns the output `[batch, seq, D·H_out]` (or seq-first) and `(h_n, c_n)`.
    pub fn forward(
        &self,
        input: Tensor<B, 3>,
        lengths: Option<&[usize]>,
        state: Option<LstmState<B>>,
    ) -> (Tensor<B, 3>, LstmState<B>) {
        let device = input.device();
        let mut x = if self.batch_first {
            input.swap_dims(0, 1)
        } else {
            input
        };
        let [steps, batch, _] = x.dims();
        let valid = lengths.map(|l| valid_mask::<B>(l, steps, &device));
        let state = state.unwrap_or_else(|| self.zero_state(batch, &device));
        let (mut h_n, mut c_n) = (Vec::new(), Vec::new());
        for layer in 0..self.num_layers {
            if layer > 0 {
                x = self.dropout.forward(x);
            }
            let mut outs = Vec::with_capacity(self.directions);
            for dir in 0..self.directions {
                let row = layer * self.directions + dir;
                let s0 = CellState {
                    h: state.h.clone().slice(s![row..row + 1]).squeeze_dim(0),
                    c: Some(state.c.clone().slice(s![row..row + 1]).squeeze_dim(0)),
                };
                let (out, s) =
                    run_direction(&self.cells[row], x.clone(), s0, valid.as_ref(), dir == 1);
                outs.push(out);
                h_n.push(s.h);
                c_n.push(s.c.expect("an LSTM state carries c"));
            }
            x = Tensor::cat(outs, 2);
        }
        let out = if self.batch_first {
            x.swap_dims(0, 1)
        } else {
            x
        };
        let state = LstmState {
            h: Tensor::stack(h_n, 0),
            c: Tensor::stack(c_n, 0),
        };
        (out, state)
    }
}

/// A time-major `[seq, batch]` mask, 1.0 where `t < lengths[b]`.
fn valid_mask<B: Backend>(lengths: &[usize], steps: usize, device: &B::Device) -> Tensor<B, 2> {
    assert!(
        lengths.iter().all(|&l| (1..=steps).contains(&l)),
        "every length must be in 1..={steps}, got {lengths:?}"
    );
    let batch = lengths.len();
    let data: Vec<f32> = (0..steps)
        .flat_map(|t| lengths.iter().map(move |&l| if t < l { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(data, [steps, batch]), device)
}
