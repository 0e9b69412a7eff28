//! Stacked, optionally bidirectional recurrent layers with PyTorch's semantics, for any cell,
//! and the one loop over time ([`run_direction`]).

use std::marker::PhantomData;

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use burn::tensor::module::embedding;

use crate::cell::{CellOptions, CellSpec, CellState, RecurrentCell, ZoneMasks};
use crate::dropout::{dropout, locked_dropout, matrix_mask, zone_mask};
use crate::gru::GruCell;
use crate::lstm::LstmCell;
use crate::packing::Packing;
use crate::rnn::{Nonlinearity, RnnCell};
use crate::torch::{TorchParam, TorchTensors};
use crate::NnError;

/// `torch.nn.LSTM` in Burn.
pub type Lstm<B> = Recurrent<B, LstmCell<B>>;
/// `torch.nn.GRU` in Burn.
pub type Gru<B> = Recurrent<B, GruCell<B>>;
/// `torch.nn.RNN` (Elman, tanh or relu) in Burn.
pub type Rnn<B> = Recurrent<B, RnnCell<B>>;

/// Configuration of a recurrent layer, named as in PyTorch's `nn.RNN`/`nn.LSTM`/`nn.GRU`.
#[derive(Config, Debug, PartialEq)]
pub struct RecurrentConfig {
    /// Features per input step.
    pub input_size: usize,
    /// Hidden size `H` (the width of `c`, and of `h` without projection).
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
    /// The dropout between layers as variational (locked) dropout: one mask per sequence and
    /// feature, shared by every step (see [`crate::dropout::locked_mask`]), instead of
    /// PyTorch's one mask per element.
    #[config(default = false)]
    pub variational: bool,
    /// Weight-drop: DropConnect on every cell's recurrent weight `W_hh`, one mask per forward
    /// pass, in training only (see [`crate::dropout::matrix_mask`]).
    #[config(default = 0.0)]
    pub weight_drop: f64,
    /// Zoneout of `h`: at each step each unit keeps its previous value with this probability,
    /// in training; in inference the expectation (see [`ZoneMasks`]). 0 means none.
    #[config(default = 0.0)]
    pub zoneout: f64,
    /// LSTM only: zoneout of the cell state `c`, as [`Self::zoneout`]. 0 means none.
    #[config(default = 0.0)]
    pub zoneout_cell: f64,
    /// LSTM and GRU only: LayerNorm cells, the gate pre-activations and an LSTM's cell state
    /// normalised (see [`crate::layer_norm`]).
    #[config(default = false)]
    pub layer_norm: bool,
    /// Add a reverse direction and concatenate both directions' outputs.
    #[config(default = false)]
    pub bidirectional: bool,
    /// LSTM only: width of the projected `h = W_hr (o ⊙ tanh(c))`; 0 means none.
    #[config(default = 0)]
    pub proj_size: usize,
    /// RNN only: `tanh` or `relu`.
    #[config(default = "Nonlinearity::Tanh")]
    pub nonlinearity: Nonlinearity,
}

impl RecurrentConfig {
    /// Checks the sizes as PyTorch does, with errors naming the key.
    pub fn validate(&self, supports_projection: bool) -> Result<(), NnError> {
        for (key, v) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
        ] {
            if v == 0 {
                return Err(NnError::ZeroSize { key });
            }
        }
        if self.proj_size > 0 && !supports_projection {
            return Err(NnError::ProjUnsupported);
        }
        if self.proj_size >= self.hidden_size && self.proj_size > 0 {
            return Err(NnError::ProjTooLarge {
                proj_size: self.proj_size,
                hidden_size: self.hidden_size,
            });
        }
        for p in [self.dropout, self.weight_drop] {
            if !(0.0..1.0).contains(&p) {
                return Err(NnError::BadDropout(p));
            }
        }
        for (key, p) in [
            ("zoneout", self.zoneout),
            ("zoneout_cell", self.zoneout_cell),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(NnError::BadRate { key, value: p });
            }
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

    /// Builds the layer with cells `C` (e.g. `config.init::<B, LstmCell<B>>()`, or through the
    /// aliases: `let lstm: Lstm<B> = config.init(&device)?`).
    pub fn init<B: Backend, C: RecurrentCell<B>>(
        &self,
        device: &B::Device,
    ) -> Result<Recurrent<B, C>, NnError> {
        self.validate(C::SUPPORTS_PROJECTION)?;
        if self.zoneout_cell > 0.0 && !C::HAS_CELL_STATE {
            return Err(NnError::ZoneoutCellUnsupported);
        }
        let directions = if self.bidirectional { 2 } else { 1 };
        let output_size = self.output_size();
        let options = CellOptions {
            nonlinearity: self.nonlinearity,
            layer_norm: self.layer_norm,
        };
        let mut cells = Vec::with_capacity(self.num_layers * directions);
        for layer in 0..self.num_layers {
            let spec = CellSpec {
                input_size: if layer == 0 {
                    self.input_size
                } else {
                    output_size * directions
                },
                hidden_size: self.hidden_size,
                output_size,
                bias: self.bias,
            };
            for _ in 0..directions {
                cells.push(C::init(spec, &options, device)?);
            }
        }
        Ok(Recurrent {
            cells,
            dropout: DropoutConfig::new(self.dropout).init(),
            variational: self.variational,
            weight_drop: self.weight_drop,
            zoneout: self.zoneout,
            zoneout_cell: self.zoneout_cell,
            hidden_size: self.hidden_size,
            output_size,
            num_layers: self.num_layers,
            directions,
            batch_first: self.batch_first,
            backend: PhantomData,
        })
    }
}

/// The state of a recurrent layer, shaped as PyTorch's `h_n` (and `c_n` for an LSTM).
#[derive(Debug, Clone)]
pub struct RecurrentState<B: Backend> {
    /// `[D·num_layers, batch, H_out]`, row `layer·D + direction`.
    pub h: Tensor<B, 3>,
    /// `[D·num_layers, batch, H]` for an LSTM; `None` otherwise.
    pub c: Option<Tensor<B, 3>>,
}

impl<B: Backend> RecurrentState<B> {
    /// The same state cut from the autodiff graph (truncated BPTT).
    pub fn detach(self) -> Self {
        Self {
            h: self.h.detach(),
            c: self.c.map(Tensor::detach),
        }
    }

    fn row(&self, row: usize) -> CellState<B> {
        CellState {
            h: self.h.clone().slice(s![row..row + 1]).squeeze_dim(0),
            c: self
                .c
                .clone()
                .map(|c| c.slice(s![row..row + 1]).squeeze_dim(0)),
        }
    }
}

/// A stack of recurrent layers of cell `C` (see [`Lstm`], [`Gru`], [`Rnn`]).
#[derive(Module, Debug)]
pub struct Recurrent<B: Backend, C: Module<B>> {
    /// One cell per layer and direction, in PyTorch's `h_n` row order (`layer·D + direction`).
    pub cells: Vec<C>,
    dropout: Dropout,
    variational: bool,
    weight_drop: f64,
    zoneout: f64,
    zoneout_cell: f64,
    hidden_size: usize,
    output_size: usize,
    num_layers: usize,
    directions: usize,
    batch_first: bool,
    backend: PhantomData<B>,
}

impl<B: Backend, C: RecurrentCell<B>> Recurrent<B, C> {
    /// Width of `h` per direction (`proj_size` if set, else `hidden_size`).
    pub fn output_size(&self) -> usize {
        self.output_size
    }

    /// Number of directions (2 when bidirectional).
    pub fn directions(&self) -> usize {
        self.directions
    }

    /// The zoneout rates of `h` and `c` (0: none).
    pub fn zoneout(&self) -> [f64; 2] {
        [self.zoneout, self.zoneout_cell]
    }

    /// Whether the cells are LayerNorm cells (their parameters include the `ln_*` gains).
    pub fn layer_norm(&self) -> bool {
        self.cells.first().is_some_and(|c| {
            c.torch_params("", "")
                .iter()
                .any(|p| p.name().starts_with("ln_"))
        })
    }

    /// PyTorch's name suffix of cell `row`: `_l{layer}` plus `_reverse` for direction 1.
    fn torch_suffix(&self, row: usize) -> String {
        let reverse = if row % self.directions == 1 {
            "_reverse"
        } else {
            ""
        };
        format!("_l{}{reverse}", row / self.directions)
    }

    /// Takes every parameter from a PyTorch `state_dict` of the same configuration: keys
    /// `{prefix}weight_ih_l0`, ..., where `prefix` is the module's name in the user's model
    /// (`"rnn."`, or `""` for a bare `nn.LSTM`). Used tensors are removed from `tensors`; a
    /// missing or mis-shaped one is an error naming it.
    pub fn load_torch(mut self, prefix: &str, tensors: &mut TorchTensors) -> Result<Self, NnError> {
        let cells = std::mem::take(&mut self.cells);
        self.cells = cells
            .into_iter()
            .enumerate()
            .map(|(row, cell)| cell.load_torch(prefix, &self.torch_suffix(row), tensors))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Every parameter under its PyTorch `state_dict` name (after `prefix`), in PyTorch's order.
    pub fn torch_params(&self, prefix: &str) -> Vec<TorchParam<B>> {
        self.cells
            .iter()
            .enumerate()
            .flat_map(|(row, cell)| cell.torch_params(prefix, &self.torch_suffix(row)))
            .collect()
    }

    /// A zero state for `batch` sequences.
    pub fn zero_state(&self, batch: usize, device: &B::Device) -> RecurrentState<B> {
        let rows = self.num_layers * self.directions;
        RecurrentState {
            h: Tensor::zeros([rows, batch, self.output_size], device),
            c: C::HAS_CELL_STATE.then(|| Tensor::zeros([rows, batch, self.hidden_size], device)),
        }
    }

    /// Runs the layers like PyTorch's `forward`.
    ///
    /// `input` is `[batch, seq, in]` with `batch_first` (else `[seq, batch, in]`). `lengths`,
    /// when given, holds each sequence's number of valid steps (1..=seq): the result is exactly
    /// `pack_padded_sequence` → layer → `pad_packed_sequence`. Padded steps cost no compute,
    /// never touch the state, and their outputs are zero; `h_n`/`c_n` are each sequence's last
    /// valid step, and the reverse direction starts there. A missing `state` means zeros.
    /// Returns the output `[batch, seq, D·H_out]` (or seq-first) and the final state.
    pub fn forward(
        &self,
        input: Tensor<B, 3>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        let swap = |t: Tensor<B, 3>| {
            if self.batch_first {
                t.swap_dims(0, 1)
            } else {
                t
            }
        };
        let (out, state) = self.forward_time_major(swap(input), lengths, state);
        (swap(out), state)
    }

    /// [`Self::forward`] on a time-major input `[seq, batch, in]`, whatever `batch_first` says,
    /// returning a time-major output `[seq, batch, D·H_out]`. A caller that can produce and
    /// consume time-major tensors (the char-LM embeds transposed tokens) saves the two
    /// batch/time transposes and their gradients.
    pub fn forward_time_major(
        &self,
        x: Tensor<B, 3>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        self.run(First::Features(x), lengths, state, None)
    }

    /// [`Self::forward_time_major`] on token ids `[seq, batch]` looked up in `table
    /// [vocab, in]`. The first layer projects the table, not the sequence: each direction's
    /// `table W_ihᵀ + b` (`[vocab, G·H]`, a small product) is indexed by the tokens. The
    /// values are those of projecting the looked-up embeddings, without that layer's
    /// `[seq·batch, in] × [in, G·H]` products (forward, and both of the backward pass); the
    /// gradient of the table is a sum of rows per token. With fewer tokens than table rows
    /// (sampling, one step at a time) the tokens are looked up first, as usual.
    pub fn forward_tokens(
        &self,
        table: Tensor<B, 2>,
        tokens: Tensor<B, 2, Int>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        let first = if tokens.dims().iter().product::<usize>() < table.dims()[0] {
            First::Features(embedding(table, tokens))
        } else {
            First::Tokens(table, tokens)
        };
        self.run(first, lengths, state, None)
    }

    /// [`Self::forward_time_major`] (`first` features) or [`Self::forward_tokens`] (`first`
    /// tokens, looked up as given) with the stack's dropout masks given instead of drawn (see
    /// [`StackMasks`]). A test fixes the masks of a reference this way. Masks that do not fit
    /// (see [`Self::check_masks`]) are an error.
    pub fn forward_with_masks(
        &self,
        first: First<B>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
        masks: &StackMasks<B>,
    ) -> Result<(Tensor<B, 3>, RecurrentState<B>), NnError> {
        let (steps, batch, _) = first.shape();
        self.check_masks(masks, steps, batch)?;
        Ok(self.run_masked(first, lengths, state, masks))
    }

    /// [`Self::forward_with_masks`] for masks known to fit.
    pub(crate) fn run_masked(
        &self,
        first: First<B>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
        masks: &StackMasks<B>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        self.run(first, lengths, state, Some(masks))
    }

    /// Whether `masks` fit this stack for `steps` steps of `batch` sequences: `num_layers − 1`
    /// between-layer masks of `[1, batch, D·H_out]`; no weight-drop masks or one of `W_hh`'s
    /// shape per cell; no zoneout masks of `h` or one `[steps, batch, H_out]` per cell; no
    /// zoneout masks of `c` or (LSTM) one `[steps, batch, H]` per cell.
    pub fn check_masks(
        &self,
        masks: &StackMasks<B>,
        steps: usize,
        batch: usize,
    ) -> Result<(), NnError> {
        let width = self.directions * self.output_size;
        let between = vec![vec![1, batch, width]; self.num_layers - 1];
        let found: Vec<Vec<usize>> = masks.between.iter().map(|m| m.dims().to_vec()).collect();
        if found != between {
            return Err(NnError::MaskShapes {
                what: "between-layer",
                expected: between,
                found,
            });
        }
        let recurrent: Vec<Vec<usize>> = self
            .cells
            .iter()
            .map(|c| c.recurrent_weight_dims().to_vec())
            .collect();
        let found: Vec<Vec<usize>> = masks.recurrent.iter().map(|m| m.dims().to_vec()).collect();
        if !found.is_empty() && found != recurrent {
            return Err(NnError::MaskShapes {
                what: "weight-drop",
                expected: recurrent,
                found,
            });
        }
        let cells = self.cells.len();
        let zoned = [
            ("zoneout (h)", &masks.zone_h, self.output_size, true),
            (
                "zoneout (c)",
                &masks.zone_c,
                self.hidden_size,
                C::HAS_CELL_STATE,
            ),
        ];
        for (what, given, width, allowed) in zoned {
            let found: Vec<Vec<usize>> = given.iter().map(|m| m.dims().to_vec()).collect();
            let expected = if allowed {
                vec![vec![steps, batch, width]; cells]
            } else {
                Vec::new()
            };
            if !found.is_empty() && found != expected {
                return Err(NnError::MaskShapes {
                    what,
                    expected,
                    found,
                });
            }
        }
        Ok(())
    }

    /// The cell of `row` with its weight-drop mask applied, if any: given, or drawn in training.
    fn dropped_cell(
        &self,
        row: usize,
        masks: Option<&StackMasks<B>>,
        device: &B::Device,
    ) -> Option<C> {
        let cell = &self.cells[row];
        let mask = match masks {
            Some(m) => m.recurrent.get(row).cloned(),
            None => matrix_mask(self.weight_drop, cell.recurrent_weight_dims(), device),
        };
        mask.map(|m| cell.with_recurrent_mask(m))
    }

    /// The zoneout masks of cell `row` for `steps` steps of `batch` sequences: given (in the
    /// caller's batch order, sorted here as the batch is), or drawn (see [`zone_mask`]).
    fn zone_masks(
        &self,
        row: usize,
        masks: Option<&StackMasks<B>>,
        [steps, batch]: [usize; 2],
        packing: Option<&Packing>,
        device: &B::Device,
    ) -> ZoneMasks<B> {
        match masks {
            Some(m) => {
                let sorted = |t: Option<&Tensor<B, 3>>| {
                    t.cloned().map(|t| match packing {
                        Some(p) => p.sort(t, 1),
                        None => t,
                    })
                };
                ZoneMasks {
                    h: sorted(m.zone_h.get(row)),
                    c: sorted(m.zone_c.get(row)),
                }
            }
            None => ZoneMasks {
                h: zone_mask(self.zoneout, [steps, batch, self.output_size], device),
                c: if C::HAS_CELL_STATE {
                    zone_mask(self.zoneout_cell, [steps, batch, self.hidden_size], device)
                } else {
                    None
                },
            },
        }
    }

    fn run(
        &self,
        first: First<B>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
        masks: Option<&StackMasks<B>>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        let (steps, batch, device) = first.shape();
        if let Some(l) = lengths {
            assert_eq!(l.len(), batch, "one length per sequence");
        }
        let packing = lengths.map(|l| Packing::new(l, steps));
        let state = state.unwrap_or_else(|| self.zero_state(batch, &device));
        let (first, state) = match &packing {
            Some(p) => (
                match first {
                    First::Features(x) => First::Features(p.sort(x, 1)),
                    First::Tokens(table, tokens) => First::Tokens(table, p.sort(tokens, 1)),
                },
                RecurrentState {
                    h: p.sort(state.h, 1),
                    c: state.c.map(|c| p.sort(c, 1)),
                },
            ),
            None => (first, state),
        };
        let (mut h_n, mut c_n) = (Vec::new(), Vec::new());
        let mut x: Option<Tensor<B, 3>> = None;
        for layer in 0..self.num_layers {
            // Between layers, one dropout mask for both directions.
            let input = x.map(|x| match masks {
                Some(masks) => {
                    let mask = masks.between[layer - 1].clone();
                    x * match &packing {
                        Some(p) => p.sort(mask, 1),
                        None => mask,
                    }
                }
                None if self.variational => locked_dropout(&self.dropout, x),
                None => dropout(&self.dropout, x),
            });
            let mut outs = Vec::with_capacity(self.directions);
            for dir in 0..self.directions {
                let row = layer * self.directions + dir;
                let dropped = self.dropped_cell(row, masks, &device);
                let zone = self.zone_masks(row, masks, [steps, batch], packing.as_ref(), &device);
                let cell = dropped.as_ref().unwrap_or(&self.cells[row]);
                let projected = match (&input, &first) {
                    (Some(x), _) => cell.input_projection(x.clone()),
                    (None, First::Features(input)) => cell.input_projection(input.clone()),
                    (None, First::Tokens(table, tokens)) => {
                        let table = cell.input_projection(table.clone().unsqueeze_dim(0));
                        embedding(table.squeeze_dim(0), tokens.clone())
                    }
                };
                let (out, s) = run_projected(
                    cell,
                    projected,
                    state.row(row),
                    packing.as_ref(),
                    dir == 1,
                    &zone,
                );
                outs.push(out);
                h_n.push(s.h);
                c_n.extend(s.c);
            }
            x = Some(Tensor::cat(outs, 2));
        }
        let mut x = x.expect("a stack has at least one layer");
        let mut state = RecurrentState {
            h: Tensor::stack(h_n, 0),
            c: (!c_n.is_empty()).then(|| Tensor::stack(c_n, 0)),
        };
        if let Some(p) = &packing {
            x = p.unsort(x, 1);
            state = RecurrentState {
                h: p.unsort(state.h, 1),
                c: state.c.map(|c| p.unsort(c, 1)),
            };
        }
        (x, state)
    }
}

/// The dropout masks of a stack, given instead of drawn, each already scaled by `1 / (1 − p)`.
#[derive(Debug, Clone)]
pub struct StackMasks<B: Backend> {
    /// Between layers: one `[1, batch, D·H_out]` per boundary (`num_layers − 1` of them), each
    /// shared by every step, in the caller's batch order.
    pub between: Vec<Tensor<B, 3>>,
    /// Weight-drop: one mask of `W_hh`'s shape per cell (row `layer·D + direction`), or none.
    pub recurrent: Vec<Tensor<B, 2>>,
    /// Zoneout of `h`: one `[T, batch, H_out]` per cell (see [`ZoneMasks`]: 1 keeps the
    /// previous value, not scaled), in the caller's batch order, or none.
    pub zone_h: Vec<Tensor<B, 3>>,
    /// Zoneout of an LSTM's `c`: one `[T, batch, H]` per cell, or none.
    pub zone_c: Vec<Tensor<B, 3>>,
}

/// The input of a stack's first layer.
pub enum First<B: Backend> {
    /// Features `[seq, batch, in]`.
    Features(Tensor<B, 3>),
    /// An embedding table `[vocab, in]` and token ids `[seq, batch]`.
    Tokens(Tensor<B, 2>, Tensor<B, 2, Int>),
}

impl<B: Backend> First<B> {
    /// Steps, batch and device.
    fn shape(&self) -> (usize, usize, B::Device) {
        match self {
            First::Features(x) => {
                let [steps, batch, _] = x.dims();
                (steps, batch, x.device())
            }
            First::Tokens(_, tokens) => {
                let [steps, batch] = tokens.dims();
                (steps, batch, tokens.device())
            }
        }
    }
}

/// Runs `cell` over a time-major input `[T, batch, in]` from `state`: the only loop over time.
/// A cell with a fused recurrence (every cell, projected LSTM included, on the CPU backends;
/// see [`crate::fused`]) runs it as one operation instead, packed or not.
///
/// With `packing`, the batch is sorted longest first and step `t` runs the cell on the
/// `packing.active_at(t)` sequences still going; the others keep their state and emit zeros.
/// The reverse direction (`reverse = true`) walks `t` down from `T-1`, so each sequence starts
/// at its own last valid step from its initial state. Returns outputs `[T, batch, H_out]` and
/// the final state.
pub fn run_direction<B: Backend, C: RecurrentCell<B>>(
    cell: &C,
    x: Tensor<B, 3>,
    state: CellState<B>,
    packing: Option<&Packing>,
    reverse: bool,
) -> (Tensor<B, 3>, CellState<B>) {
    run_projected(
        cell,
        cell.input_projection(x),
        state,
        packing,
        reverse,
        &ZoneMasks::none(),
    )
}

/// [`run_direction`] from the projected input `[T, batch, gates·H]`, with zoneout.
fn run_projected<B: Backend, C: RecurrentCell<B>>(
    cell: &C,
    projected: Tensor<B, 3>,
    state: CellState<B>,
    packing: Option<&Packing>,
    reverse: bool,
    zone: &ZoneMasks<B>,
) -> (Tensor<B, 3>, CellState<B>) {
    let steps = projected.dims()[0];
    // The fused path runs forward in time: a reverse direction gets the time-flipped input
    // (and active rows), so rows of short sequences start late, from their initial state.
    let mut active: Vec<usize> =
        packing.map_or_else(Vec::new, |p| (0..steps).map(|t| p.active_at(t)).collect());
    let time = |t: Tensor<B, 3>| if reverse { t.flip([0]) } else { t };
    if reverse {
        active.reverse();
    }
    let stepped = if reverse {
        zone.flipped()
    } else {
        zone.clone()
    };
    match cell.fused_recurrence(time(projected), &state, &active, &stepped) {
        Ok((out, last)) => (time(out), last),
        Err(projected) => run_steps(cell, time(projected), state, packing, reverse, zone),
    }
}

/// The loop over time of [`run_direction`], one [`RecurrentCell::step`] per step, from the
/// projected input `[T, batch, gates·H]`, each step's new state zoned by `zone`.
pub(crate) fn run_steps<B: Backend, C: RecurrentCell<B>>(
    cell: &C,
    projected: Tensor<B, 3>,
    mut state: CellState<B>,
    packing: Option<&Packing>,
    reverse: bool,
    zone: &ZoneMasks<B>,
) -> (Tensor<B, 3>, CellState<B>) {
    let [steps, batch, _] = projected.dims();
    let mut outputs = Vec::with_capacity(steps);
    let order: Box<dyn Iterator<Item = usize>> = if reverse {
        Box::new((0..steps).rev())
    } else {
        Box::new(0..steps)
    };
    for t in order {
        let active = packing.map_or(batch, |p| p.active_at(t));
        if active == 0 {
            outputs.push(Tensor::zeros([batch, state.h.dims()[1]], &state.h.device()));
            continue;
        }
        let p_t = projected
            .clone()
            .slice(s![t..t + 1, 0..active])
            .squeeze_dim::<2>(0);
        let prev = if active == batch {
            state.clone()
        } else {
            state.rows(0, active)
        };
        let new = cell.step(p_t, &prev);
        let new = if zone.is_none() {
            new
        } else {
            zone.apply(t, &prev, new)
        };
        outputs.push(if active < batch {
            let pad = Tensor::zeros([batch - active, new.h.dims()[1]], &new.h.device());
            Tensor::cat(vec![new.h.clone(), pad], 0)
        } else {
            new.h.clone()
        });
        state = state.replace_head(new);
    }
    if reverse {
        outputs.reverse();
    }
    (Tensor::stack(outputs, 0), state)
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexDevice;
    use burn::backend::ndarray::NdArrayDevice;
    use burn::backend::{Autodiff, Flex, NdArray};
    use burn::tensor::backend::AutodiffBackend;
    use burn::tensor::Distribution;

    use super::*;

    /// Outputs, final state and the gradients of the table and every parameter, through
    /// `forward_tokens` (`table_first`) or through a lookup and `forward_time_major`.
    fn run<B: AutodiffBackend, C: RecurrentCell<B>>(
        layer: &Recurrent<B, C>,
        table: &Tensor<B::InnerBackend, 2>,
        tokens: &Tensor<B, 2, Int>,
        lengths: Option<&[usize]>,
        table_first: bool,
    ) -> Vec<Vec<f32>> {
        let table = Tensor::<B, 2>::from_inner(table.clone()).require_grad();
        let (y, state) = if table_first {
            layer.forward_tokens(table.clone(), tokens.clone(), lengths, None)
        } else {
            let x = embedding(table.clone(), tokens.clone());
            layer.forward_time_major(x, lengths, None)
        };
        let n = y.dims().iter().product::<usize>();
        let weights: Vec<f32> = (0..n)
            .map(|i| (i * 37 % 101) as f32 / 101.0 - 0.5)
            .collect();
        let weights = Tensor::<B, 3>::from_data(TensorData::new(weights, y.dims()), &y.device());
        let loss = (y.clone() * weights.detach()).sum() + state.h.clone().sum() * 0.5;
        let grads = loss.backward();
        let values = |t: Tensor<B::InnerBackend, 2>| t.into_data().iter::<f32>().collect();
        let mut all: Vec<Vec<f32>> = vec![
            y.inner().into_data().iter::<f32>().collect(),
            state.h.inner().into_data().iter::<f32>().collect(),
            values(table.grad(&grads).expect("the table is tracked")),
        ];
        for param in layer.torch_params("") {
            all.push(match param {
                TorchParam::Matrix(_, w) => values(w.grad(&grads).expect("tracked")),
                TorchParam::Vector(_, b) => values(b.grad(&grads).expect("tracked").unsqueeze()),
            });
        }
        all
    }

    fn table_first_matches_lookup_first<B: AutodiffBackend>(device: &B::Device) {
        let (steps, batch, vocab, embed) = (7, 5, 6, 4);
        let table = Tensor::random([vocab, embed], Distribution::Default, device);
        let ids: Vec<i64> = (0..steps * batch).map(|i| (i * 7 % vocab) as i64).collect();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [steps, batch]), device);
        let lengths: &[usize] = &[3, 7, 1, 7, 5];
        for (bidirectional, lengths) in [
            (false, None),
            (true, None),
            (false, Some(lengths)),
            (true, Some(lengths)),
        ] {
            let layer: Lstm<B> = RecurrentConfig::new(embed, 8)
                .with_num_layers(2)
                .with_bidirectional(bidirectional)
                .init(device)
                .expect("valid sizes");
            let a = run(&layer, &table, &tokens, lengths, true);
            let b = run(&layer, &table, &tokens, lengths, false);
            assert_eq!(a.len(), b.len());
            for (k, (x, y)) in a.iter().zip(&b).enumerate() {
                assert_eq!(x.len(), y.len());
                for (u, v) in x.iter().zip(y) {
                    assert!(
                        (u - v).abs() < 1e-4,
                        "bidirectional {bidirectional}, {lengths:?}, #{k}: {u} vs {v}"
                    );
                }
            }
        }
    }

    #[test]
    fn projecting_the_table_matches_projecting_the_looked_up_embeddings() {
        table_first_matches_lookup_first::<Autodiff<Flex>>(&FlexDevice);
        table_first_matches_lookup_first::<Autodiff<NdArray>>(&NdArrayDevice::Cpu);
    }
}
