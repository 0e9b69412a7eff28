//! The CubeCL kernels: one thread per `(row, unit)` of a `[batch, H]` state, gate blocks side by
//! side in rows of `G·H` (PyTorch's order), all buffers contiguous `f32`.

use cubecl::prelude::*;

/// `σ(x)`.
#[cube]
fn sigmoid(x: f32) -> f32 {
    1.0f32 / (1.0f32 + (-x).exp())
}

/// LSTM step from the gate pre-activations `gates [batch, 4H]` and `c_prev [batch, H]`:
/// `act` gets σ(i), σ(f), tanh(g), σ(o) (kept for the backward pass) and `out [2, batch, H]`
/// gets `h' = o ⊙ tanh c'` then `c' = f ⊙ c + i ⊙ g`.
#[cube(launch)]
pub fn lstm_forward(
    gates: &Array<f32>,
    c_prev: &Array<f32>,
    act: &mut Array<f32>,
    out: &mut Array<f32>,
    hidden: u32,
    units: u32,
) {
    let pos = ABSOLUTE_POS;
    let (h, n) = (hidden as usize, units as usize);
    if pos >= n {
        terminate!();
    }
    let base = (pos / h) * 4 * h + pos % h;
    let i = sigmoid(gates[base]);
    let f = sigmoid(gates[base + h]);
    let g = gates[base + 2 * h].tanh();
    let o = sigmoid(gates[base + 3 * h]);
    let c = f * c_prev[pos] + i * g;
    act[base] = i;
    act[base + h] = f;
    act[base + 2 * h] = g;
    act[base + 3 * h] = o;
    out[pos] = o * c.tanh();
    out[n + pos] = c;
}

/// LSTM step backward: from `d_out [2, batch, H]` (`dh'`, `dc'`), the activations `act`, the
/// new cell state (`out`'s second half) and `c_prev`, writes `d_gates [batch, 4H]` (with respect
/// to the pre-activations) and `d_c_prev [batch, H]`.
#[cube(launch)]
pub fn lstm_backward(
    d_out: &Array<f32>,
    act: &Array<f32>,
    out: &Array<f32>,
    c_prev: &Array<f32>,
    d_gates: &mut Array<f32>,
    d_c_prev: &mut Array<f32>,
    hidden: u32,
    units: u32,
) {
    let pos = ABSOLUTE_POS;
    let (h, n) = (hidden as usize, units as usize);
    if pos >= n {
        terminate!();
    }
    let base = (pos / h) * 4 * h + pos % h;
    let i = act[base];
    let f = act[base + h];
    let g = act[base + 2 * h];
    let o = act[base + 3 * h];
    let tc = out[n + pos].tanh();
    let dh = d_out[pos];
    let dc = d_out[n + pos] + dh * o * (1.0f32 - tc * tc);
    d_gates[base] = dc * g * i * (1.0f32 - i);
    d_gates[base + h] = dc * c_prev[pos] * f * (1.0f32 - f);
    d_gates[base + 2 * h] = dc * i * (1.0f32 - g * g);
    d_gates[base + 3 * h] = dh * tc * o * (1.0f32 - o);
    d_c_prev[pos] = dc * f;
}

/// GRU step from the input part `xp [batch, 3H]` (`W_ih x + b_ih`), the recurrent part
/// `gh [batch, 3H]` (`W_hh h + b_hh`) and `h_prev [batch, H]`: `act` gets r, z, n and `h` gets
/// `h' = (1 − z) ⊙ n + z ⊙ h`, with `n = tanh(xn + r ⊙ hn)`.
#[cube(launch)]
pub fn gru_forward(
    xp: &Array<f32>,
    gh: &Array<f32>,
    h_prev: &Array<f32>,
    act: &mut Array<f32>,
    h_out: &mut Array<f32>,
    hidden: u32,
    units: u32,
) {
    let pos = ABSOLUTE_POS;
    let (h, n) = (hidden as usize, units as usize);
    if pos >= n {
        terminate!();
    }
    let base = (pos / h) * 3 * h + pos % h;
    let r = sigmoid(xp[base] + gh[base]);
    let z = sigmoid(xp[base + h] + gh[base + h]);
    let c = (xp[base + 2 * h] + r * gh[base + 2 * h]).tanh();
    act[base] = r;
    act[base + h] = z;
    act[base + 2 * h] = c;
    h_out[pos] = c + z * (h_prev[pos] - c);
}

/// GRU step backward: from `dh [batch, H]`, the activations, `gh` and `h_prev`, writes the
/// gradients with respect to `xp`, `gh` (both `[batch, 3H]`) and `h_prev`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn gru_backward(
    dh: &Array<f32>,
    act: &Array<f32>,
    gh: &Array<f32>,
    h_prev: &Array<f32>,
    d_xp: &mut Array<f32>,
    d_gh: &mut Array<f32>,
    d_h_prev: &mut Array<f32>,
    hidden: u32,
    units: u32,
) {
    let pos = ABSOLUTE_POS;
    let (h, n) = (hidden as usize, units as usize);
    if pos >= n {
        terminate!();
    }
    let base = (pos / h) * 3 * h + pos % h;
    let r = act[base];
    let z = act[base + h];
    let c = act[base + 2 * h];
    let d = dh[pos];
    let dn = d * (1.0f32 - z) * (1.0f32 - c * c);
    let dz = d * (h_prev[pos] - c) * z * (1.0f32 - z);
    let dr = dn * gh[base + 2 * h] * r * (1.0f32 - r);
    d_xp[base] = dr;
    d_xp[base + h] = dz;
    d_xp[base + 2 * h] = dn;
    d_gh[base] = dr;
    d_gh[base + h] = dz;
    d_gh[base + 2 * h] = dn * r;
    d_h_prev[pos] = d * z;
}
