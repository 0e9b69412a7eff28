//! CPU kernels of ember's recurrent layers: the recurrence of an LSTM, GRU or Elman RNN over a
//! whole sequence, forward and backward (BPTT), on plain `f32` buffers.
//!
//! The input projection `x W_ihᵀ + b` is done outside, for all steps at once; these kernels
//! take it as `xp [T, batch, G·H]` and do the rest: per step one `[rows, H] × [H, G·H]`
//! product with `W_hhᵀ` (the `gemm` crate, AVX-512 when the CPU has it) and one fused loop
//! over the gates (vectorised, [`math`]'s `exp`/`σ`/`tanh`). The backward pass reuses the
//! forward's buffers in place and ends with one large product for `dW_hh`.
//!
//! Threads: a batch of 16 rows or more runs in two parts, each on its own thread of rayon's
//! pool, over its own rows of the shared buffers (module `rows`: rows never meet, so the parts need
//! no synchronisation between steps); `dW_hh` is one product on the pool's threads after them.
//! `RAYON_NUM_THREADS=1` keeps everything on one thread (LSTM T100 B32 H256, kernel alone:
//! forward 48–53 → 22–24 ms, backward 37–38 → 25–26 ms with two threads).
//!
//! Packed sequences: with `active`, step `t` runs only rows `0..active[t]`; the other rows
//! keep their state, output zeros and get no gradient, so each row's final state is that of
//! its last valid step (sort the batch longest first, as `pack_padded_sequence` does). For a
//! reversed direction pass the time-flipped input and `active`.
//!
//! Zoneout: with masks `zone_h` (and an LSTM's `zone_c`), each step's new state is mixed
//! with the previous one unit by unit (module `zoneout`); no masks, no zoneout.
//!
//! Layer normalisation (an LSTM's or GRU's [`Norm`]): the recurrent product `h_{t-1} W_hhᵀ` is
//! normalised over its `G·H` values (gain `γ_hh`, module `layer_norm`) before it joins `xp`, and an
//! LSTM's `c_t` is normalised (gain `γ_c`, bias `β_c`) before its `tanh`. The input side's norm
//! is in `xp`, done outside with the projection.
//!
//! Tensors are row-major. The forward output `y` holds the outputs `[T, batch, H_out]`, then
//! `h_n [batch, H_out]` and, for an LSTM, `c_n [batch, H]` ([`Dims::y_len`] values); the
//! backward pass takes `dL/dy` of that layout. `H_out` is `H`, or an LSTM's `proj_size`.

pub mod adam;
pub mod affine;
pub mod cross_entropy;
pub mod dropout;
mod gru;
pub mod layer_norm;
mod lstm;
pub mod math;
mod matmul;
mod rnn;
mod rows;
mod simd;
mod zoneout;

pub use simd::level as simd_level;

/// The recurrent cell, with PyTorch's gate order and equations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// `torch.nn.LSTM`: gates i, f, g, o; with `proj_size`, `h = W_hr (o ⊙ tanh c)`.
    Lstm,
    /// `torch.nn.GRU`: gates r, z, n, reset applied after the `W_hn` product.
    Gru,
    /// `torch.nn.RNN`: `tanh` or, with `relu`, ReLU.
    Rnn {
        /// ReLU instead of `tanh`.
        relu: bool,
    },
}

impl Cell {
    /// Gate blocks `G` in `xp` and `W_hh`.
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn { .. } => 1,
        }
    }
}

/// Sizes of one recurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Time steps `T`.
    pub steps: usize,
    /// Sequences `batch`.
    pub batch: usize,
    /// Hidden size `H`.
    pub hidden: usize,
    /// Width `H_out` of `h`: an LSTM's `proj_size`, else `H`.
    pub output: usize,
}

impl Dims {
    /// Values in one `[batch, H_out]` state `h`.
    pub fn state_len(self) -> usize {
        self.batch * self.output
    }

    /// Values in the forward output `y` of `cell`: `T + 1` blocks of `[batch, H_out]` and, for
    /// an LSTM, `c_n [batch, H]`.
    pub fn y_len(self, cell: Cell) -> usize {
        let c = if cell == Cell::Lstm {
            self.batch * self.hidden
        } else {
            0
        };
        (self.steps + 1) * self.state_len() + c
    }
}

/// A buffer of `f32` values that the kernels may own and overwrite: a `Vec<f32>`, or a caller's
/// own storage (ember-nn passes a Burn CPU tensor's bytes, so the projected input is not copied).
pub trait Buffer:
    AsRef<[f32]> + AsMut<[f32]> + Clone + std::fmt::Debug + Send + Sync + 'static
{
}

impl<T: AsRef<[f32]> + AsMut<[f32]> + Clone + std::fmt::Debug + Send + Sync + 'static> Buffer
    for T
{
}

/// The inputs of one forward pass; `X` holds the projected input.
#[derive(Debug, Clone)]
pub struct Inputs<X: Buffer = Vec<f32>> {
    /// The cell.
    pub cell: Cell,
    /// Sizes.
    pub dims: Dims,
    /// The projected input `[T, batch, G·H]` (GRU: `x W_ihᵀ + b_ih`; LSTM and RNN: both
    /// biases added). Consumed: the kernel overwrites it with the gate activations.
    pub xp: X,
    /// `W_hh`, `[G·H, H_out]`.
    pub w_hh: Vec<f32>,
    /// LSTM with `proj_size` only: `W_hr`, `[H_out, H]`; otherwise empty.
    pub w_hr: Vec<f32>,
    /// GRU only: `b_hh`, `[3H]`, or empty for none.
    pub b_hh: Vec<f32>,
    /// `h_0`, `[batch, H_out]`.
    pub h0: Vec<f32>,
    /// LSTM only: `c_0`, `[batch, H]`.
    pub c0: Vec<f32>,
    /// Packed sequences: rows running at each step (non-increasing for a forward direction),
    /// `T` values; empty when every row runs every step.
    pub active: Vec<usize>,
    /// Zoneout of `h`: per step, row and unit, how much of `h_{t-1}` the new `h_t` keeps
    /// (`h_t = m ⊙ h_{t-1} + (1 − m) ⊙ h̃_t`), `[T, batch, H_out]`: 0/1 draws in training, the
    /// rate `p` in inference. Empty: no zoneout.
    pub zone_h: Vec<f32>,
    /// LSTM only: zoneout of `c`, `[T, batch, H]`, as [`Self::zone_h`]. Empty: none.
    pub zone_c: Vec<f32>,
    /// Layer normalisation inside the recurrence (LSTM and GRU); the default: none.
    pub norm: Norm,
}

/// The gains and bias of a LayerNorm LSTM's or GRU's recurrence (haste's `LayerNormLSTM`,
/// `LayerNormGRU`, in PyTorch's gate order):
///
/// ```text
/// LSTM: gates = xp_t + LN(h_{t-1} W_hhᵀ) ⊙ γ_hh      h_t = o ⊙ tanh(LN(c_t) ⊙ γ_c + β_c)
/// GRU:  hp = LN(h_{t-1} W_hhᵀ) ⊙ γ_hh + b_hh        (then the GRU step as without)
/// ```
/// where `LN` normalises each row over its values (`ε = 1e-5`, biased variance). Also the
/// layout of their gradients in [`Grads::norm`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Norm {
    /// `γ_hh`, `[G·H]`. Empty: no layer normalisation at all.
    pub gamma_hh: Vec<f32>,
    /// LSTM only: `γ_c`, `[H]`.
    pub gamma_c: Vec<f32>,
    /// LSTM only: `β_c`, `[H]`.
    pub beta_c: Vec<f32>,
}

impl Norm {
    /// Whether the recurrence is layer-normalised.
    pub fn is_on(&self) -> bool {
        !self.gamma_hh.is_empty()
    }
}

/// What the backward pass needs, kept by the forward pass.
#[derive(Debug, Clone)]
pub struct Saved<X: Buffer = Vec<f32>> {
    cell: Cell,
    dims: Dims,
    w_hh: Vec<f32>,
    w_hr: Vec<f32>,
    active: Vec<usize>,
    /// `h_{t-1}` of every step and row, `[T, batch, H_out]`.
    h_prev: Vec<f32>,
    /// Gate activations `[T, batch, G·H]` (RNN: `h_t`).
    act: X,
    /// LSTM: `c_{t-1}`; GRU: `W_hn h_{t-1} + b_hn`; RNN: empty. `[T, batch, H]`.
    extra: Vec<f32>,
    /// LSTM: `tanh c_t`, `[T, batch, H]`; otherwise empty.
    tanh_c: Vec<f32>,
    /// LSTM with `proj_size`: `o ⊙ tanh c_t` before the projection, `[T, batch, H]`.
    h_full: Vec<f32>,
    /// The zoneout masks of the forward pass (empty: none).
    zone_h: Vec<f32>,
    zone_c: Vec<f32>,
    /// Layer normalisation (see [`NormSaved`]).
    norm: NormSaved,
}

/// What the backward pass of a layer-normalised recurrence keeps (all empty without).
#[derive(Debug, Clone, Default)]
struct NormSaved {
    /// The gains and bias.
    params: Norm,
    /// The normalised recurrent products `[T, batch, G·H]` and their `1/√(σ² + ε)`, `[T, batch]`.
    r_hat: Vec<f32>,
    r_scale: Vec<f32>,
    /// LSTM: the normalised `c_t`, `[T, batch, H]`, and their scales `[T, batch]`.
    c_hat: Vec<f32>,
    c_scale: Vec<f32>,
}

/// The gradients of one backward pass.
#[derive(Debug, Clone)]
pub struct Grads<X: Buffer = Vec<f32>> {
    /// `dL/dxp`, `[T, batch, G·H]`.
    pub xp: X,
    /// `dL/dW_hh`, `[G·H, H_out]`.
    pub w_hh: Vec<f32>,
    /// LSTM with `proj_size`: `dL/dW_hr`, `[H_out, H]`; otherwise empty.
    pub w_hr: Vec<f32>,
    /// GRU: `dL/db_hh`, `[3H]`; otherwise empty.
    pub b_hh: Vec<f32>,
    /// `dL/dh_0`, `[batch, H_out]`.
    pub h0: Vec<f32>,
    /// LSTM: `dL/dc_0`, `[batch, H]`; otherwise empty.
    pub c0: Vec<f32>,
    /// Layer-normalised: `dL/dγ_hh` and, for an LSTM, `dL/dγ_c`, `dL/dβ_c`; otherwise empty.
    pub norm: Norm,
}

/// Why the inputs cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError(pub String);

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "recurrence inputs: {}", self.0)
    }
}

impl std::error::Error for ShapeError {}

impl<X: Buffer> Inputs<X> {
    fn check(&self) -> Result<(), ShapeError> {
        let Dims {
            steps,
            batch,
            hidden,
            output,
        } = self.dims;
        let projected = output != hidden || !self.w_hr.is_empty();
        if projected && self.cell != Cell::Lstm {
            return Err(ShapeError(format!(
                "only an LSTM has a projection ({:?} with H {hidden}, H_out {output})",
                self.cell
            )));
        }
        let g = self.cell.gates() * hidden;
        let mut expect = vec![
            ("xp", self.xp.as_ref().len(), steps * batch * g),
            ("w_hh", self.w_hh.len(), g * output),
            ("h0", self.h0.len(), batch * output),
        ];
        if self.cell == Cell::Lstm {
            expect.push(("c0", self.c0.len(), batch * hidden));
        }
        if projected {
            expect.push(("w_hr", self.w_hr.len(), output * hidden));
        }
        if self.cell == Cell::Gru && !self.b_hh.is_empty() {
            expect.push(("b_hh", self.b_hh.len(), g));
        }
        if !self.active.is_empty() {
            expect.push(("active", self.active.len(), steps));
        }
        if !self.zone_h.is_empty() {
            expect.push(("zone_h", self.zone_h.len(), steps * batch * output));
        }
        if !self.zone_c.is_empty() {
            if self.cell != Cell::Lstm {
                return Err(ShapeError(format!(
                    "only an LSTM has a cell state to zone out ({:?})",
                    self.cell
                )));
            }
            expect.push(("zone_c", self.zone_c.len(), steps * batch * hidden));
        }
        if self.norm.is_on() {
            match self.cell {
                Cell::Rnn { .. } => {
                    return Err(ShapeError(
                        "layer normalisation is for an LSTM or GRU, not an RNN".into(),
                    ))
                }
                Cell::Lstm => {
                    expect.push(("norm.gamma_hh", self.norm.gamma_hh.len(), g));
                    expect.push(("norm.gamma_c", self.norm.gamma_c.len(), hidden));
                    expect.push(("norm.beta_c", self.norm.beta_c.len(), hidden));
                }
                Cell::Gru => expect.push(("norm.gamma_hh", self.norm.gamma_hh.len(), g)),
            }
        } else if !self.norm.gamma_c.is_empty() || !self.norm.beta_c.is_empty() {
            return Err(ShapeError("norm.gamma_c without norm.gamma_hh".into()));
        }
        for (name, got, want) in expect {
            if got != want {
                return Err(ShapeError(format!(
                    "{name} has {got} values, expected {want}"
                )));
            }
        }
        if let Some(&a) = self.active.iter().find(|&&a| a > batch) {
            return Err(ShapeError(format!("{a} active rows in a batch of {batch}")));
        }
        Ok(())
    }
}

/// Runs the recurrence: `y` (see the crate docs) and, when `save`, what [`backward`] needs.
pub fn forward<X: Buffer>(
    inputs: Inputs<X>,
    save: bool,
) -> Result<(Vec<f32>, Option<Saved<X>>), ShapeError> {
    let cuts = rows::cuts(inputs.dims.batch);
    forward_in_parts(inputs, save, &cuts)
}

/// [`forward`] with the batch cut into parts at `cuts` (see [`rows`]).
fn forward_in_parts<X: Buffer>(
    mut inputs: Inputs<X>,
    save: bool,
    cuts: &[usize],
) -> Result<(Vec<f32>, Option<Saved<X>>), ShapeError> {
    inputs.check()?;
    if inputs.active.is_empty() {
        inputs.active = vec![inputs.dims.batch; inputs.dims.steps];
    }
    Ok(match inputs.cell {
        Cell::Lstm => lstm::forward(inputs, save, cuts),
        Cell::Gru => gru::forward(inputs, save, cuts),
        Cell::Rnn { relu } => rnn::forward(inputs, relu, save, cuts),
    })
}

/// BPTT from `dy = dL/dy` (the shape of [`forward`]'s `y`).
pub fn backward<X: Buffer>(saved: Saved<X>, dy: &[f32]) -> Result<Grads<X>, ShapeError> {
    let cuts = rows::cuts(saved.dims.batch);
    backward_in_parts(saved, dy, &cuts)
}

/// [`backward`] with the batch cut into parts at `cuts`.
fn backward_in_parts<X: Buffer>(
    saved: Saved<X>,
    dy: &[f32],
    cuts: &[usize],
) -> Result<Grads<X>, ShapeError> {
    let d = saved.dims;
    let want = d.y_len(saved.cell);
    if dy.len() != want {
        return Err(ShapeError(format!(
            "dy has {} values, expected {want}",
            dy.len()
        )));
    }
    Ok(match saved.cell {
        Cell::Lstm => lstm::backward(saved, dy, cuts),
        Cell::Gru => gru::backward(saved, dy, cuts),
        Cell::Rnn { relu } => rnn::backward(saved, dy, relu, cuts),
    })
}

/// `dW = Σ_t dgᵀ h_{t-1}`: `[gates, H]` from `dg [rows, gates]` and `h_prev [rows, H]`
/// (`H` = `hidden`).
fn weight_grad(dg: &[f32], h_prev: &[f32], gates: usize, hidden: usize) -> Vec<f32> {
    let rows = h_prev.len() / hidden.max(1);
    let mut dw = vec![0.0; gates * hidden];
    matmul::matmul_parallel(
        &mut dw,
        matmul::View::row_major(dg, rows, gates).t(),
        matmul::View::row_major(h_prev, rows, hidden),
        false,
    );
    dw
}

#[cfg(test)]
mod tests;
