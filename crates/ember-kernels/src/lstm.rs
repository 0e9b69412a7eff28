//! The LSTM recurrence (gates i, f, g, o), with PyTorch's optional projection `W_hr`:
//!
//! ```text
//! gates = xp_t + h_{t-1} W_hhᵀ      i, f, o = σ(·)   g = tanh(·)
//! c_t = f ⊙ c_{t-1} + i ⊙ g         h_t = o ⊙ tanh(c_t)   (projected: h_t = (o ⊙ tanh c_t) W_hrᵀ)
//! ```
//! and its backward pass
//! ```text
//! dh = dy_t + dh_{t+1}               (projected: dh ← dh W_hr,  dW_hr += dhᵀ (o ⊙ tanh c_t))
//! dc = dc_{t+1} + dh ⊙ o ⊙ (1 − tanh²c_t)
//! d(gates) = [dc·g·i(1−i), dc·c_{t-1}·f(1−f), dc·i·(1−g²), dh·tanh(c_t)·o(1−o)]
//! dh_{t-1} = d(gates) W_hh            dc_{t-1} = dc ⊙ f
//! ```

use crate::math::{sigmoid, tanh};
use crate::matmul::{matmul, transposed, View};
use crate::simd::{blocks, multiversion};
use crate::{weight_grad, zero_inactive, Buffer, Cell, Grads, Inputs, Saved};

multiversion! {
    /// One step's gates for `rows` rows: activates `gates [rows, 4H]` in place, updates `c`,
    /// and writes `o ⊙ tanh c` to `h` and `tanh c` to `tanh_c`.
    fn cell(hidden: usize, gates: &mut [f32], c: &mut [f32], h: &mut [f32], tanh_c: &mut [f32]) {
        let n = hidden;
        for (((g, c), h), tc) in gates
            .chunks_exact_mut(4 * n)
            .zip(c.chunks_exact_mut(n))
            .zip(h.chunks_exact_mut(n))
            .zip(tanh_c.chunks_exact_mut(n))
        {
            let (gi, rest) = g.split_at_mut(n);
            let (gf, rest) = rest.split_at_mut(n);
            let (gg, go) = rest.split_at_mut(n);
            blocks([], [gi, gf, gg, go, c, h, tc], |[], v| {
                let [gi, gf, gg, go, c, ..] = *v;
                let (i, f, g, o) = (sigmoid(gi), sigmoid(gf), tanh(gg), sigmoid(go));
                let c_new = f * c + i * g;
                let t = tanh(c_new);
                *v = [i, f, g, o, c_new, o * t, t];
            });
        }
    }
}

multiversion! {
    /// One step backward for `rows` rows: turns the activations `act [rows, 4H]` into the gate
    /// gradients in place, from `dL/d(o ⊙ tanh c)` in `dh` and the carried `dc` (updated to
    /// `dc_{t-1}`).
    fn cell_backward(
        hidden: usize,
        act: &mut [f32],
        dh: &[f32],
        dc: &mut [f32],
        c_prev: &[f32],
        tanh_c: &[f32],
    ) {
        let n = hidden;
        for ((((a, dh), dc), cp), tc) in act
            .chunks_exact_mut(4 * n)
            .zip(dh.chunks_exact(n))
            .zip(dc.chunks_exact_mut(n))
            .zip(c_prev.chunks_exact(n))
            .zip(tanh_c.chunks_exact(n))
        {
            let (ai, rest) = a.split_at_mut(n);
            let (af, rest) = rest.split_at_mut(n);
            let (ag, ao) = rest.split_at_mut(n);
            blocks([dh, cp, tc], [ai, af, ag, ao, dc], |&[dh, cp, t], v| {
                let [i, f, g, o, dc] = *v;
                let dct = dc + dh * o * (1.0 - t * t);
                *v = [
                    dct * g * i * (1.0 - i),
                    dct * cp * f * (1.0 - f),
                    dct * i * (1.0 - g * g),
                    dh * t * o * (1.0 - o),
                    dct * f,
                ];
            });
        }
    }
}

pub(crate) fn forward<X: Buffer>(inputs: Inputs<X>, save: bool) -> (Vec<f32>, Option<Saved<X>>) {
    let d = inputs.dims;
    let (steps, batch, n, p) = (d.steps, d.batch, d.hidden, d.output);
    let (bh, bp, g) = (batch * n, batch * p, 4 * n);
    let projected = !inputs.w_hr.is_empty();
    let mut act = inputs.xp;
    let xp = act.as_mut();
    let w_t = transposed(&inputs.w_hh, g, p);
    let w_hr_t = transposed(&inputs.w_hr, p, n);
    let mut h = inputs.h0;
    let mut c = inputs.c0;
    let mut y = vec![0.0; d.y_len(Cell::Lstm)];
    let mut h_prev = Vec::with_capacity(if save { steps * bp } else { 0 });
    let mut c_prev = Vec::with_capacity(if save { steps * bh } else { 0 });
    let per_step = |keep: bool| vec![0.0; if save && keep { steps * bh } else { bh }];
    let (mut tanh_c, mut h_full) = (per_step(true), per_step(projected));
    for t in 0..steps {
        let rows = inputs.active[t];
        if save {
            h_prev.extend_from_slice(&h);
            c_prev.extend_from_slice(&c);
        }
        let gates = &mut xp[t * batch * g..(t * batch + rows) * g];
        matmul(
            gates,
            View::row_major(&h, rows, p),
            View::row_major(&w_t, p, g),
            true,
        );
        let tc = if save { t * bh } else { 0 };
        let hf = if save && projected { t * bh } else { 0 };
        let hf = &mut h_full[hf..hf + rows * n];
        cell(
            n,
            gates,
            &mut c[..rows * n],
            hf,
            &mut tanh_c[tc..tc + rows * n],
        );
        let out = &mut y[t * bp..t * bp + rows * p];
        if projected {
            matmul(
                out,
                View::row_major(hf, rows, n),
                View::row_major(&w_hr_t, n, p),
                false,
            );
        } else {
            out.copy_from_slice(hf);
        }
        h[..rows * p].copy_from_slice(out);
    }
    y[steps * bp..(steps + 1) * bp].copy_from_slice(&h);
    y[(steps + 1) * bp..].copy_from_slice(&c);
    let saved = save.then_some(Saved {
        cell: Cell::Lstm,
        dims: d,
        w_hh: inputs.w_hh,
        w_hr: inputs.w_hr,
        active: inputs.active,
        h_prev,
        act,
        extra: c_prev,
        tanh_c,
        h_full: if projected { h_full } else { Vec::new() },
    });
    (y, saved)
}

pub(crate) fn backward<X: Buffer>(saved: Saved<X>, dy: &[f32]) -> Grads<X> {
    let d = saved.dims;
    let (steps, batch, n, p) = (d.steps, d.batch, d.hidden, d.output);
    let (bh, bp, g) = (batch * n, batch * p, 4 * n);
    let projected = !saved.w_hr.is_empty();
    let mut dh = dy[steps * bp..(steps + 1) * bp].to_vec();
    let mut dc = dy[(steps + 1) * bp..].to_vec();
    let mut dg_buf = saved.act;
    let dg = dg_buf.as_mut();
    // dL/dh_t of every step (the projection's output), for dW_hr; and dL/d(o ⊙ tanh c).
    let mut dh_out = vec![0.0; if projected { steps * bp } else { 0 }];
    let mut dh_full = vec![0.0; bh];
    for t in (0..steps).rev() {
        let rows = saved.active[t];
        zero_inactive(dg, t, rows, batch, g);
        for (total, dy) in dh[..rows * p].iter_mut().zip(&dy[t * bp..]) {
            *total += dy;
        }
        let dhf = &mut dh_full[..rows * n];
        if projected {
            dh_out[t * bp..t * bp + rows * p].copy_from_slice(&dh[..rows * p]);
            let w_hr = View::row_major(&saved.w_hr, p, n);
            matmul(dhf, View::row_major(&dh, rows, p), w_hr, false);
        } else {
            dhf.copy_from_slice(&dh[..rows * n]);
        }
        let step = &mut dg[t * batch * g..(t * batch + rows) * g];
        let s = t * bh..t * bh + rows * n;
        let (c_prev, tanh_c) = (&saved.extra[s.clone()], &saved.tanh_c[s]);
        cell_backward(n, step, dhf, &mut dc[..rows * n], c_prev, tanh_c);
        matmul(
            &mut dh[..rows * p],
            View::row_major(step, rows, g),
            View::row_major(&saved.w_hh, g, p),
            false,
        );
    }
    let w_hh = weight_grad(dg, &saved.h_prev, g, p);
    let w_hr = if projected {
        weight_grad(&dh_out, &saved.h_full, p, n)
    } else {
        Vec::new()
    };
    Grads {
        xp: dg_buf,
        w_hh,
        w_hr,
        b_hh: Vec::new(),
        h0: dh,
        c0: dc,
    }
}
