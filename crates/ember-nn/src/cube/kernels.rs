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

/// Elman RNN step from the input part `xp [batch, H]` (`W_ih x + b_ih + b_hh`) and the
/// recurrent part `gh [batch, H]` (`W_hh h`): `h' = tanh(xp + gh)`, or `relu` when `relu`.
#[cube(launch)]
pub fn rnn_forward(
    xp: &Array<f32>,
    gh: &Array<f32>,
    h_out: &mut Array<f32>,
    units: u32,
    #[comptime] relu: bool,
) {
    let pos = ABSOLUTE_POS;
    if pos >= units as usize {
        terminate!();
    }
    let pre = xp[pos] + gh[pos];
    if relu {
        let mut y = 0.0f32;
        if pre > 0.0f32 {
            y = pre;
        }
        h_out[pos] = y;
    } else {
        h_out[pos] = pre.tanh();
    }
}

/// Elman RNN step backward: the gradient with respect to the pre-activation `xp + gh`, from
/// `dh [batch, H]` and the step's output `h`: `dh ⊙ (1 − h²)`, or `dh ⊙ [h > 0]` (PyTorch's
/// `relu` backward: 0 at 0) when `relu`.
#[cube(launch)]
pub fn rnn_backward(
    dh: &Array<f32>,
    h: &Array<f32>,
    d_pre: &mut Array<f32>,
    units: u32,
    #[comptime] relu: bool,
) {
    let pos = ABSOLUTE_POS;
    if pos >= units as usize {
        terminate!();
    }
    let y = h[pos];
    if relu {
        let mut d = 0.0f32;
        if y > 0.0f32 {
            d = dh[pos];
        }
        d_pre[pos] = d;
    } else {
        d_pre[pos] = dh[pos] * (1.0f32 - y * y);
    }
}

/// A whole LSTM sequence in one launch (persistent over time): one cube per batch row, its
/// units split over the cube's threads, `h` shared between them through shared memory.
///
/// Reads `xp [T, B, 4H]` (input projection with both biases), `w_t = W_hhᵀ [H, 4H]`,
/// `h0`, `c0 [B, H]` and `active [T]` (rows running at each step; the rest keep their state
/// and output zeros). Writes the activations `act [T, B, 4H]`, the states `hs`, `cs
/// [T + 1, B, H]` (step 0: `h0`, `c0`) and `y`: outputs `[T, B, H]`, then `h_n`, then `c_n`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn lstm_sequence_forward(
    xp: &Array<f32>,
    w_t: &Array<f32>,
    h0: &Array<f32>,
    c0: &Array<f32>,
    active: &Array<u32>,
    act: &mut Array<f32>,
    hs: &mut Array<f32>,
    cs: &mut Array<f32>,
    y: &mut Array<f32>,
    steps: u32,
    batch: u32,
    #[comptime] hidden: usize,
) {
    let h = hidden;
    let b = CUBE_POS;
    let rows = batch as usize;
    let len = steps as usize;
    let first = UNIT_POS as usize;
    let stride = CUBE_DIM as usize;
    let mut h_sh = SharedMemory::<f32>::new(hidden);
    for j in range_stepped(first, h, stride) {
        let v = h0[b * h + j];
        h_sh[j] = v;
        hs[b * h + j] = v;
        cs[b * h + j] = c0[b * h + j];
    }
    sync_cube();
    for t in 0..len {
        let run = b < active[t] as usize;
        let row = t * rows + b;
        let prev = row * h;
        let next = (row + rows) * h;
        for j in range_stepped(first, h, stride) {
            let base = row * 4 * h + j;
            if run {
                let mut ai = xp[base];
                let mut af = xp[base + h];
                let mut ag = xp[base + 2 * h];
                let mut ao = xp[base + 3 * h];
                for k in 0..h {
                    let hk = h_sh[k];
                    let w = k * 4 * h + j;
                    ai += w_t[w] * hk;
                    af += w_t[w + h] * hk;
                    ag += w_t[w + 2 * h] * hk;
                    ao += w_t[w + 3 * h] * hk;
                }
                let i = sigmoid(ai);
                let f = sigmoid(af);
                let g = ag.tanh();
                let o = sigmoid(ao);
                let c = f * cs[prev + j] + i * g;
                let hn = o * c.tanh();
                act[base] = i;
                act[base + h] = f;
                act[base + 2 * h] = g;
                act[base + 3 * h] = o;
                cs[next + j] = c;
                hs[next + j] = hn;
                y[prev + j] = hn;
            } else {
                act[base] = 0.0f32;
                act[base + h] = 0.0f32;
                act[base + 2 * h] = 0.0f32;
                act[base + 3 * h] = 0.0f32;
                cs[next + j] = cs[prev + j];
                hs[next + j] = hs[prev + j];
                y[prev + j] = 0.0f32;
            }
        }
        sync_cube();
        for j in range_stepped(first, h, stride) {
            h_sh[j] = hs[next + j];
        }
        sync_cube();
    }
    let last = (len * rows + b) * h;
    let tail = len * rows * h;
    for j in range_stepped(first, h, stride) {
        y[tail + b * h + j] = hs[last + j];
        y[tail + rows * h + b * h + j] = cs[last + j];
    }
}

/// Backward of [`lstm_sequence_forward`], in reverse time, one cube per batch row: from `dy`
/// (the layout of `y`), `W_hh [4H, H]` and the saved `act`, `cs`, writes `dxp [T, B, 4H]`
/// (the gradient of the gate pre-activations) and, carried over the steps, `dh` and `dc
/// [B, H]`, which end as the gradients of `h0` and `c0`. The step's `dh_prev = dgates W_hh`
/// reads the gate gradients from shared memory.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn lstm_sequence_backward(
    dy: &Array<f32>,
    w: &Array<f32>,
    act: &Array<f32>,
    cs: &Array<f32>,
    active: &Array<u32>,
    dxp: &mut Array<f32>,
    dh: &mut Array<f32>,
    dc: &mut Array<f32>,
    steps: u32,
    batch: u32,
    #[comptime] hidden: usize,
) {
    let h = hidden;
    let b = CUBE_POS;
    let rows = batch as usize;
    let len = steps as usize;
    let first = UNIT_POS as usize;
    let stride = CUBE_DIM as usize;
    let tail = len * rows * h;
    let mut dg_sh = SharedMemory::<f32>::new(hidden * 4);
    for j in range_stepped(first, h, stride) {
        dh[b * h + j] = dy[tail + b * h + j];
        dc[b * h + j] = dy[tail + rows * h + b * h + j];
    }
    for s in 0..len {
        let t = len - 1 - s;
        let run = b < active[t] as usize;
        let row = t * rows + b;
        for j in range_stepped(first, h, stride) {
            let base = row * 4 * h + j;
            if run {
                let i = act[base];
                let f = act[base + h];
                let g = act[base + 2 * h];
                let o = act[base + 3 * h];
                let c = cs[(row + rows) * h + j];
                let tc = c.tanh();
                let dht = dh[b * h + j] + dy[row * h + j];
                let dct = dc[b * h + j] + dht * o * (1.0f32 - tc * tc);
                let di = dct * g * i * (1.0f32 - i);
                let df = dct * cs[row * h + j] * f * (1.0f32 - f);
                let dg = dct * i * (1.0f32 - g * g);
                let d_o = dht * tc * o * (1.0f32 - o);
                dxp[base] = di;
                dxp[base + h] = df;
                dxp[base + 2 * h] = dg;
                dxp[base + 3 * h] = d_o;
                dg_sh[j] = di;
                dg_sh[j + h] = df;
                dg_sh[j + 2 * h] = dg;
                dg_sh[j + 3 * h] = d_o;
                dc[b * h + j] = dct * f;
            } else {
                dxp[base] = 0.0f32;
                dxp[base + h] = 0.0f32;
                dxp[base + 2 * h] = 0.0f32;
                dxp[base + 3 * h] = 0.0f32;
            }
        }
        sync_cube();
        if run {
            for j in range_stepped(first, h, stride) {
                let mut acc = 0.0f32;
                for k in 0..4 * h {
                    acc += dg_sh[k] * w[k * h + j];
                }
                dh[b * h + j] = acc;
            }
        }
        sync_cube();
    }
}

/// Layer norm of each row of `x [rows, width]`, one thread per row (`ε = 1e-5`, biased
/// variance): `x_hat` gets `x̂ = (x − μ)·s`, `scale` each row's `s = 1/√(σ² + ε)` and `y`
/// `γ ⊙ x̂`. `inv_width` is `1 / width`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn norm_forward(
    x: &Array<f32>,
    gamma: &Array<f32>,
    x_hat: &mut Array<f32>,
    scale: &mut Array<f32>,
    y: &mut Array<f32>,
    width: u32,
    rows: u32,
    inv_width: f32,
) {
    let row = ABSOLUTE_POS;
    let w = width as usize;
    if row >= rows as usize {
        terminate!();
    }
    let base = row * w;
    let mut sum = 0.0f32;
    for k in 0..w {
        sum += x[base + k];
    }
    let mean = sum * inv_width;
    let mut squares = 0.0f32;
    for k in 0..w {
        let d = x[base + k] - mean;
        squares += d * d;
    }
    let s = 1.0f32 / (squares * inv_width + 1e-5f32).sqrt();
    for k in 0..w {
        let v = (x[base + k] - mean) * s;
        x_hat[base + k] = v;
        y[base + k] = gamma[k] * v;
    }
    scale[row] = s;
}

/// The backward pass of [`norm_forward`], one thread per row: `dx = s ⊙ (γ ⊙ dy − mean(γ ⊙ dy)
/// − x̂ ⊙ mean(γ ⊙ dy ⊙ x̂))`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn norm_backward(
    dy: &Array<f32>,
    x_hat: &Array<f32>,
    scale: &Array<f32>,
    gamma: &Array<f32>,
    dx: &mut Array<f32>,
    width: u32,
    rows: u32,
    inv_width: f32,
) {
    let row = ABSOLUTE_POS;
    let w = width as usize;
    if row >= rows as usize {
        terminate!();
    }
    let base = row * w;
    let mut sum_g = 0.0f32;
    let mut sum_gx = 0.0f32;
    for k in 0..w {
        let g = gamma[k] * dy[base + k];
        sum_g += g;
        sum_gx += g * x_hat[base + k];
    }
    let mean_g = sum_g * inv_width;
    let mean_gx = sum_gx * inv_width;
    let s = scale[row];
    for k in 0..w {
        dx[base + k] = s * (gamma[k] * dy[base + k] - mean_g - x_hat[base + k] * mean_gx);
    }
}
