//! Zoneout (Krueger et al., 2016), as haste runs it: at each step each unit of the state keeps
//! its previous value with probability `p` instead of taking the cell's new one:
//!
//! ```text
//! training:   h_t = m_t ⊙ h_{t−1} + (1 − m_t) ⊙ h̃_t,   m_t ~ Bernoulli(p)   (1: keep)
//! inference:  m_t = p everywhere (the expectation)
//! ```
//!
//! and the same for an LSTM's `c` with its own masks. `h̃_t`, `c̃_t` are the cell's step from
//! the zoned `h_{t−1}`, `c_{t−1}`; the step's output is the zoned `h_t`. Backward, from the
//! gradient `dh_t` of the zoned state: the cell's step gets `(1 − m_t) ⊙ dh_t`, and
//! `m_t ⊙ dh_t` goes straight to `dh_{t−1}`.

use crate::simd::{blocks, multiversion};

multiversion! {
    /// `new ← m ⊙ prev + (1 − m) ⊙ new`, element by element.
    pub(crate) fn zone(new: &mut [f32], prev: &[f32], mask: &[f32]) {
        blocks([prev, mask], [new], |&[prev, m], v| {
            let [new] = *v;
            *v = [new + m * (prev - new)];
        });
    }
}

multiversion! {
    /// The backward of [`zone`]: `carry ← m ⊙ grad` (to `prev`), `grad ← (1 − m) ⊙ grad` (to
    /// `new`).
    pub(crate) fn split(grad: &mut [f32], carry: &mut [f32], mask: &[f32]) {
        blocks([mask], [grad, carry], |&[m], v| {
            let [g, _] = *v;
            *v = [g - m * g, m * g];
        });
    }
}

/// The start of a zoned step's backward pass for a cell that adds the step's output gradient
/// `dy` to `dh` itself (GRU, RNN): adds it here instead, so that `dh` holds the whole gradient
/// of the zoned `h_t`, [`split`]s that into `dh` and `carry`, and returns what the cell should
/// add in place of `dy`: `zeros`.
pub(crate) fn split_output<'a>(
    dh: &mut [f32],
    dy: &[f32],
    carry: &mut [f32],
    mask: &[f32],
    zeros: &'a [f32],
) -> &'a [f32] {
    add(dh, dy);
    split(dh, carry, mask);
    zeros
}

/// `into += from`, element by element.
pub(crate) fn add(into: &mut [f32], from: &[f32]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}
