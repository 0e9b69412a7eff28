//! The LSTM recurrence (gates i, f, g, o):
//!
//! ```text
//! gates = xp_t + h_{t-1} W_hhᵀ      i, f, o = σ(·)   g = tanh(·)
//! c_t = f ⊙ c_{t-1} + i ⊙ g         h_t = o ⊙ tanh(c_t)
//! ```
//! and its backward pass
//! ```text
//! dh = dy_t + dh_{t+1}               dc = dc_{t+1} + dh ⊙ o ⊙ (1 − tanh²c_t)
//! d(gates) = [dc·g·i(1−i), dc·c_{t-1}·f(1−f), dc·i·(1−g²), dh·tanh(c_t)·o(1−o)]
//! dh_{t-1} = d(gates) W_hh            dc_{t-1} = dc ⊙ f
//! ```

use crate::math::{sigmoid, tanh};
use crate::matmul::{matmul, transposed, View};
use crate::simd::{blocks, multiversion};
use crate::{weight_grad, zero_inactive, Cell, Grads, Inputs, Saved};

multiversion! {
    /// One step's gates for `rows` rows: activates `gates [rows, 4H]` in place and updates
    /// `c` and `h`, writing `h` to `out` and `tanh c` to `tanh_c`.
    fn cell(
        hidden: usize,
        gates: &mut [f32],
        c: &mut [f32],
        h: &mut [f32],
        out: &mut [f32],
        tanh_c: &mut [f32],
    ) {
        let n = hidden;
        for ((((g, c), h), out), tc) in gates
            .chunks_exact_mut(4 * n)
            .zip(c.chunks_exact_mut(n))
            .zip(h.chunks_exact_mut(n))
            .zip(out.chunks_exact_mut(n))
            .zip(tanh_c.chunks_exact_mut(n))
        {
            let (gi, rest) = g.split_at_mut(n);
            let (gf, rest) = rest.split_at_mut(n);
            let (gg, go) = rest.split_at_mut(n);
            blocks([], [gi, gf, gg, go, c, h, out, tc], |[], v| {
                let [gi, gf, gg, go, c, ..] = *v;
                let (i, f, g, o) = (sigmoid(gi), sigmoid(gf), tanh(gg), sigmoid(go));
                let c_new = f * c + i * g;
                let t = tanh(c_new);
                *v = [i, f, g, o, c_new, o * t, o * t, t];
            });
        }
    }
}

multiversion! {
    /// One step backward for `rows` rows: turns the activations `act [rows, 4H]` into the gate
    /// gradients in place, from `dy` and the carried `dh`, `dc` (updated to `dc_{t-1}`).
    fn cell_backward(
        hidden: usize,
        act: &mut [f32],
        dy: &[f32],
        dh: &[f32],
        dc: &mut [f32],
        c_prev: &[f32],
        tanh_c: &[f32],
    ) {
        let n = hidden;
        for (((((a, dy), dh), dc), cp), tc) in act
            .chunks_exact_mut(4 * n)
            .zip(dy.chunks_exact(n))
            .zip(dh.chunks_exact(n))
            .zip(dc.chunks_exact_mut(n))
            .zip(c_prev.chunks_exact(n))
            .zip(tanh_c.chunks_exact(n))
        {
            let (ai, rest) = a.split_at_mut(n);
            let (af, rest) = rest.split_at_mut(n);
            let (ag, ao) = rest.split_at_mut(n);
            blocks([dy, dh, cp, tc], [ai, af, ag, ao, dc], |&[dy, dh, cp, t], v| {
                let [i, f, g, o, dc] = *v;
                let dh = dy + dh;
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

pub(crate) fn forward(inputs: Inputs, save: bool) -> (Vec<f32>, Option<Saved>) {
    let d = inputs.dims;
    let (steps, batch, n) = (d.steps, d.batch, d.hidden);
    let (bh, g) = (d.state_len(), 4 * n);
    let mut xp = inputs.xp;
    let w_t = transposed(&inputs.w_hh, g, n);
    let mut h = inputs.h0;
    let mut c = inputs.c0;
    let mut y = vec![0.0; Cell::Lstm.output_rows(steps) * bh];
    let mut h_prev = Vec::with_capacity(if save { steps * bh } else { 0 });
    let mut c_prev = Vec::with_capacity(h_prev.capacity());
    let mut tanh_c = vec![0.0; if save { steps * bh } else { bh }];
    for t in 0..steps {
        let rows = inputs.active[t];
        if save {
            h_prev.extend_from_slice(&h);
            c_prev.extend_from_slice(&c);
        }
        let gates = &mut xp[t * batch * g..(t * batch + rows) * g];
        matmul(
            gates,
            View::row_major(&h, rows, n),
            View::row_major(&w_t, n, g),
            true,
        );
        let tc = if save { t * bh } else { 0 };
        cell(
            n,
            gates,
            &mut c[..rows * n],
            &mut h[..rows * n],
            &mut y[t * bh..t * bh + rows * n],
            &mut tanh_c[tc..tc + rows * n],
        );
    }
    y[steps * bh..(steps + 1) * bh].copy_from_slice(&h);
    y[(steps + 1) * bh..].copy_from_slice(&c);
    let saved = save.then_some(Saved {
        cell: Cell::Lstm,
        dims: d,
        w_hh: inputs.w_hh,
        active: inputs.active,
        h_prev,
        act: xp,
        extra: c_prev,
        tanh_c,
    });
    (y, saved)
}

pub(crate) fn backward(saved: Saved, dy: &[f32]) -> Grads {
    let d = saved.dims;
    let (steps, batch, n) = (d.steps, d.batch, d.hidden);
    let (bh, g) = (d.state_len(), 4 * n);
    let mut dh = dy[steps * bh..(steps + 1) * bh].to_vec();
    let mut dc = dy[(steps + 1) * bh..].to_vec();
    let mut dg = saved.act;
    for t in (0..steps).rev() {
        let rows = saved.active[t];
        zero_inactive(&mut dg, t, rows, batch, g);
        let step = &mut dg[t * batch * g..(t * batch + rows) * g];
        let s = t * bh..t * bh + rows * n;
        cell_backward(
            n,
            step,
            &dy[s.clone()],
            &dh[..rows * n],
            &mut dc[..rows * n],
            &saved.extra[s.clone()],
            &saved.tanh_c[s],
        );
        matmul(
            &mut dh[..rows * n],
            View::row_major(step, rows, g),
            View::row_major(&saved.w_hh, g, n),
            false,
        );
    }
    let w_hh = weight_grad(&dg, &saved.h_prev, g, n);
    Grads {
        xp: dg,
        w_hh,
        b_hh: Vec::new(),
        h0: dh,
        c0: dc,
    }
}
