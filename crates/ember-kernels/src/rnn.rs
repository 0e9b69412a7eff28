//! The Elman RNN recurrence, `h_t = act(xp_t + h_{t-1} W_hhᵀ)` with `act` = `tanh` or ReLU,
//! and its backward pass: `d(pre) = (dy_t + dh_{t+1}) ⊙ act'`, `dh_{t-1} = d(pre) W_hh`, where
//! `act'` is `1 − h_t²` for `tanh` and `[h_t > 0]` for ReLU. With zoneout (module `zoneout`)
//! that `h_t` is the new value `h̃_t`, mixed with `h_{t-1}` by the step's mask; the backward pass
//! splits `dh` first.

use crate::math::tanh;
use crate::matmul::{matmul, transposed, View};
use crate::rows::{active, one, one_mut, run, split, split_mut, take};
use crate::simd::multiversion;
use crate::zoneout::{self, add, zone};
use crate::{weight_grad, Buffer, Cell, Grads, Inputs, Saved};

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

/// One part's rows of the forward pass's buffers (per step: `[rows, H]` blocks).
struct Forward<'a> {
    active: Vec<usize>,
    xp: Vec<&'a mut [f32]>,
    /// `T + 1` blocks: the outputs, then `h_n`.
    out: Vec<&'a mut [f32]>,
    h0: &'a [f32],
    /// `h_{t-1}` per step (an empty list when not saving).
    h_prev: Vec<&'a mut [f32]>,
    /// Zoneout masks per step (an empty list: none).
    zone_h: Vec<&'a [f32]>,
}

fn forward_part(n: usize, relu: bool, w_t: &[f32], mut p: Forward) {
    let save = !p.h_prev.is_empty();
    let mut h = p.h0.to_vec();
    let zoned = !p.zone_h.is_empty();
    let mut prev = vec![0.0; if zoned { h.len() } else { 0 }];
    for (t, &rows) in p.active.iter().enumerate() {
        if save {
            p.h_prev[t].copy_from_slice(&h);
        }
        if zoned {
            prev[..rows * n].copy_from_slice(&h[..rows * n]);
        }
        let pre = &mut p.xp[t][..rows * n];
        matmul(
            pre,
            View::row_major(&h, rows, n),
            View::row_major(w_t, n, n),
            true,
        );
        cell(relu, pre, &mut h[..rows * n], &mut p.out[t][..rows * n]);
        if zoned {
            let out = &mut p.out[t][..rows * n];
            zone(out, &prev[..rows * n], &p.zone_h[t][..rows * n]);
            h[..rows * n].copy_from_slice(out);
        }
    }
    one_mut(&mut p.out).copy_from_slice(&h);
}

pub(crate) fn forward<X: Buffer>(
    inputs: Inputs<X>,
    relu: bool,
    save: bool,
    cuts: &[usize],
) -> (Vec<f32>, Option<Saved<X>>) {
    let d = inputs.dims;
    let (steps, batch, n) = (d.steps, d.batch, d.hidden);
    let bh = d.state_len();
    let mut act = inputs.xp;
    let w_t = transposed(&inputs.w_hh, n, n);
    let mut y = vec![0.0; d.y_len(Cell::Rnn { relu })];
    let mut h_prev = vec![0.0; if save { steps * bh } else { 0 }];
    {
        let mut xp = split_mut(act.as_mut(), batch, n, cuts);
        let mut out = split_mut(&mut y, batch, n, cuts);
        let mut h0 = split(&inputs.h0, batch, n, cuts);
        let mut hp = split_mut(&mut h_prev, batch, n, cuts);
        let mut zh = split(&inputs.zone_h, batch, n, cuts);
        let parts = active(&inputs.active, cuts)
            .into_iter()
            .enumerate()
            .map(|(k, active)| Forward {
                active,
                xp: take(&mut xp, k),
                out: take(&mut out, k),
                h0: one(&mut take(&mut h0, k)),
                h_prev: take(&mut hp, k),
                zone_h: take(&mut zh, k),
            })
            .collect();
        run(parts, |part| forward_part(n, relu, &w_t, part));
    }
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
        zone_h: inputs.zone_h,
        zone_c: Vec::new(),
        norm: Default::default(),
    });
    (y, saved)
}

/// One part's rows of the backward pass's buffers.
struct Backward<'a> {
    active: Vec<usize>,
    /// The saved outputs, turned into the pre-activation gradients in place.
    dg: Vec<&'a mut [f32]>,
    /// `T + 1` blocks: `dL/d(outputs)`, then `dL/dh_n`.
    dy: Vec<&'a [f32]>,
    dh0: &'a mut [f32],
    zone_h: Vec<&'a [f32]>,
}

fn backward_part(n: usize, relu: bool, w_hh: &[f32], mut b: Backward) {
    let steps = b.active.len();
    let mut dh = b.dy[steps].to_vec();
    let zoned = !b.zone_h.is_empty();
    let len = if zoned { dh.len() } else { 0 };
    let (mut carry, zeros) = (vec![0.0; len], vec![0.0; len]);
    for t in (0..steps).rev() {
        let (rows, r) = (b.active[t], ..b.active[t] * n);
        b.dg[t][rows * n..].fill(0.0);
        let dy = if zoned {
            zoneout::split_output(
                &mut dh[r],
                &b.dy[t][r],
                &mut carry[r],
                &b.zone_h[t][r],
                &zeros[r],
            )
        } else {
            &b.dy[t][r]
        };
        let step = &mut b.dg[t][..rows * n];
        cell_backward(relu, step, dy, &dh[..rows * n]);
        matmul(
            &mut dh[..rows * n],
            View::row_major(step, rows, n),
            View::row_major(w_hh, n, n),
            false,
        );
        if zoned {
            add(&mut dh[..rows * n], &carry[..rows * n]);
        }
    }
    b.dh0.copy_from_slice(&dh);
}

pub(crate) fn backward<X: Buffer>(
    saved: Saved<X>,
    dy: &[f32],
    relu: bool,
    cuts: &[usize],
) -> Grads<X> {
    let d = saved.dims;
    let (batch, n) = (d.batch, d.hidden);
    let mut dg_buf = saved.act;
    let mut h0 = vec![0.0; batch * n];
    {
        let mut dg = split_mut(dg_buf.as_mut(), batch, n, cuts);
        let mut dyp = split(dy, batch, n, cuts);
        let mut dh0 = split_mut(&mut h0, batch, n, cuts);
        let mut zh = split(&saved.zone_h, batch, n, cuts);
        let parts = active(&saved.active, cuts)
            .into_iter()
            .enumerate()
            .map(|(k, active)| Backward {
                active,
                dg: take(&mut dg, k),
                dy: take(&mut dyp, k),
                dh0: one_mut(&mut take(&mut dh0, k)),
                zone_h: take(&mut zh, k),
            })
            .collect();
        run(parts, |part| backward_part(n, relu, &saved.w_hh, part));
    }
    let w_hh = weight_grad(dg_buf.as_ref(), &saved.h_prev, n, n);
    Grads {
        xp: dg_buf,
        w_hh,
        b_hh: Vec::new(),
        w_hr: Vec::new(),
        h0,
        c0: Vec::new(),
        norm: Default::default(),
    }
}
