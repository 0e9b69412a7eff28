//! The Elman RNN recurrence, `h_t = act(xp_t + h_{t-1} W_hhᵀ)` with `act` = `tanh` or ReLU,
//! and its backward pass: `d(pre) = (dy_t + dh_{t+1}) ⊙ act'`, `dh_{t-1} = d(pre) W_hh`, where
//! `act'` is `1 − h_t²` for `tanh` and `[h_t > 0]` for ReLU.

use crate::math::tanh;
use crate::matmul::{matmul, transposed, View};
use crate::simd::multiversion;
use crate::{weight_grad, zero_inactive, Buffer, Cell, Grads, Inputs, Saved};

multiversion! {
    /// One step for `rows` rows: `pre [rows, H]` becomes `h_t` in place, copied to `h` and `out`.
    fn cell(relu: bool, pre: &mut [f32], h: &mut [f32], out: &mut [f32]) {
        if relu {
            for v in pre.iter_mut() {
                *v = v.max(0.0);
            }
        } else {
            for v in pre.iter_mut() {
                *v = tanh(*v);
            }
        }
        h.copy_from_slice(pre);
        out.copy_from_slice(pre);
    }
}

multiversion! {
    /// One step backward: `act` (`h_t`) becomes `d(pre)` in place, from `dy` and the carried `dh`.
    fn cell_backward(relu: bool, act: &mut [f32], dy: &[f32], dh: &[f32]) {
        if relu {
            for ((a, dy), dh) in act.iter_mut().zip(dy).zip(dh) {
                *a = if *a > 0.0 { dy + dh } else { 0.0 };
            }
        } else {
            for ((a, dy), dh) in act.iter_mut().zip(dy).zip(dh) {
                *a = (dy + dh) * (1.0 - *a * *a);
            }
        }
    }
}

pub(crate) fn forward<X: Buffer>(
    inputs: Inputs<X>,
    relu: bool,
    save: bool,
) -> (Vec<f32>, Option<Saved<X>>) {
    let d = inputs.dims;
    let (steps, n) = (d.steps, d.hidden);
    let bh = d.state_len();
    let mut act = inputs.xp;
    let xp = act.as_mut();
    let w_t = transposed(&inputs.w_hh, n, n);
    let mut h = inputs.h0;
    let mut y = vec![0.0; d.y_len(Cell::Rnn { relu })];
    let mut h_prev = Vec::with_capacity(if save { steps * bh } else { 0 });
    for t in 0..steps {
        let rows = inputs.active[t];
        if save {
            h_prev.extend_from_slice(&h);
        }
        let pre = &mut xp[t * bh..t * bh + rows * n];
        matmul(
            pre,
            View::row_major(&h, rows, n),
            View::row_major(&w_t, n, n),
            true,
        );
        cell(
            relu,
            pre,
            &mut h[..rows * n],
            &mut y[t * bh..t * bh + rows * n],
        );
    }
    y[steps * bh..].copy_from_slice(&h);
    let saved = save.then_some(Saved {
        cell: Cell::Rnn { relu },
        dims: d,
        w_hh: inputs.w_hh,
        active: inputs.active,
        h_prev,
        act,
        extra: Vec::new(),
        tanh_c: Vec::new(),
        h_full: Vec::new(),
        w_hr: Vec::new(),
    });
    (y, saved)
}

pub(crate) fn backward<X: Buffer>(saved: Saved<X>, dy: &[f32], relu: bool) -> Grads<X> {
    let d = saved.dims;
    let (steps, batch, n) = (d.steps, d.batch, d.hidden);
    let bh = d.state_len();
    let mut dh = dy[steps * bh..].to_vec();
    let mut dg_buf = saved.act;
    let dg = dg_buf.as_mut();
    for t in (0..steps).rev() {
        let rows = saved.active[t];
        zero_inactive(dg, t, rows, batch, n);
        let s = t * bh..t * bh + rows * n;
        let step = &mut dg[s.clone()];
        cell_backward(relu, step, &dy[s], &dh[..rows * n]);
        matmul(
            &mut dh[..rows * n],
            View::row_major(step, rows, n),
            View::row_major(&saved.w_hh, n, n),
            false,
        );
    }
    let w_hh = weight_grad(dg, &saved.h_prev, n, n);
    Grads {
        xp: dg_buf,
        w_hh,
        b_hh: Vec::new(),
        w_hr: Vec::new(),
        h0: dh,
        c0: Vec::new(),
    }
}
