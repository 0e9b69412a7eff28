//! One recurrent core: the cell abstraction and the single loop over time.
//!
//! A cell splits its math in two, as cuDNN and PyTorch do:
//! `input_projection` maps the whole input sequence through `W_ih` in one matmul (bias
//! included), and `step` does one time step from that projected input and the previous
//! state: one `[batch, hidden] × [hidden, gates·hidden]` matmul and the gate nonlinearities.
//! [`run_direction`] is the only loop over time in the crate.

use burn::prelude::*;

/// The state a recurrent cell carries from one step to the next.
#[derive(Debug, Clone)]
pub struct CellState<B: Backend> {
    /// Hidden (output) state `h`, `[batch, H_out]`.
    pub h: Tensor<B, 2>,
    /// Cell state `c` of an LSTM, `[batch, H]`; `None` for cells without one.
    pub c: Option<Tensor<B, 2>>,
}

impl<B: Backend> CellState<B> {
    /// Keep `self` where `keep` is 1 and take `new` where it is 0 (`keep` is `[batch, 1]`).
    fn blend(self, new: Self, take_new: &Tensor<B, 2>) -> Self {
        let pick = |old: Tensor<B, 2>, new: Tensor<B, 2>| {
            let m = take_new.clone().expand(old.dims());
            old.clone() + (new - old) * m
        };
        Self {
            h: pick(self.h, new.h),
            c: match (self.c, new.c) {
                (Some(o), Some(n)) => Some(pick(o, n)),
                (_, c) => c,
            },
        }
    }

    /// The same state cut from the autodiff graph (truncated BPTT).
    pub fn detach(self) -> Self {
        Self {
            h: self.h.detach(),
            c: self.c.map(Tensor::detach),
        }
    }
}

/// The per-step math of one direction of one recurrent layer.
pub trait RecurrentCell<B: Backend> {
    /// Projects the whole time-major input `[T, batch, in]` to `[T, batch, gates·H]`
    /// with one matmul, adding the input bias.
    fn input_projection(&self, x: Tensor<B, 3>) -> Tensor<B, 3>;

    /// One time step from the projected input `[batch, gates·H]` and the previous state.
    fn step(&self, projected: Tensor<B, 2>, state: &CellState<B>) -> CellState<B>;
}

/// Runs `cell` over a time-major input `[T, batch, in]` from `state`.
///
/// `valid` is an optional time-major mask `[T, batch]` (1.0 at real steps, 0.0 at padding):
/// padded steps leave the state unchanged and emit zeros, exactly as PyTorch's packed
/// sequences do, so the reverse direction (`reverse = true`) starts at each sequence's own last
/// valid step. Returns the outputs `[T, batch, H_out]` and the final state.
pub fn run_direction<B: Backend, C: RecurrentCell<B>>(
    cell: &C,
    x: Tensor<B, 3>,
    mut state: CellState<B>,
    valid: Option<&Tensor<B, 2>>,
    reverse: bool,
) -> (Tensor<B, 3>, CellState<B>) {
    let [steps, batch, _] = x.dims();
    let projected = cell.input_projection(x);
    let mut outputs = Vec::with_capacity(steps);
    let order: Box<dyn Iterator<Item = usize>> = if reverse {
        Box::new((0..steps).rev())
    } else {
        Box::new(0..steps)
    };
    for t in order {
        let p_t = projected.clone().slice(s![t..t + 1]).squeeze_dim::<2>(0);
        let new = cell.step(p_t, &state);
        match valid {
            None => {
                outputs.push(new.h.clone());
                state = new;
            }
            Some(mask) => {
                let m = mask.clone().slice(s![t..t + 1]).reshape([batch, 1]);
                outputs.push(new.h.clone() * m.clone().expand(new.h.dims()));
                state = state.blend(new, &m);
            }
        }
    }
    if reverse {
        outputs.reverse();
    }
    (Tensor::stack(outputs, 0), state)
}
