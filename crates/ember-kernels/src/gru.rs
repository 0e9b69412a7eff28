//! The GRU recurrence (gates r, z, n; the reset gate applied after the `W_hn` product, as
//! PyTorch and cuDNN do):
//!
//! ```text
//! hp = h_{t-1} W_hhᵀ + b_hh          r = σ(xp_r + hp_r)    z = σ(xp_z + hp_z)
//! n = tanh(xp_n + r ⊙ hp_n)          h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
//! ```
//! and its backward pass
//! ```text
//! dh = dy_t + dh_{t+1}    dn = dh(1 − z)(1 − n²)    dz = dh(h_{t-1} − n) z(1 − z)
//! dr = dn ⊙ hp_n ⊙ r(1 − r)
//! d(xp) = [dr, dz, dn]    d(hp) = [dr, dz, dn ⊙ r]   dh_{t-1} = dh ⊙ z + d(hp) W_hh
//! ```

use crate::math::{sigmoid, tanh};
use crate::matmul::{matmul, transposed, View};
use crate::simd::{blocks, multiversion};
use crate::{weight_grad, zero_inactive, Buffer, Cell, Grads, Inputs, Saved};

multiversion! {
    /// One step for `rows` rows: activates `gates [rows, 3H]` in place (r, z, n) from the
    /// recurrent product `hp [rows, 3H]` (without bias) and updates `h`, writing it to `out`
    /// and `hp_n + b_hn` to `hn`.
    fn cell(
        hidden: usize,
        gates: &mut [f32],
        hp: &[f32],
        b_hh: &[f32],
        h: &mut [f32],
        out: &mut [f32],
        hn: &mut [f32],
    ) {
        let n = hidden;
        let (br, rest) = b_hh.split_at(n);
        let (bz, bn) = rest.split_at(n);
        for ((((g, hp), h), out), hn) in gates
            .chunks_exact_mut(3 * n)
            .zip(hp.chunks_exact(3 * n))
            .zip(h.chunks_exact_mut(n))
            .zip(out.chunks_exact_mut(n))
            .zip(hn.chunks_exact_mut(n))
        {
            let (gr, rest) = g.split_at_mut(n);
            let (gz, gn) = rest.split_at_mut(n);
            let (hr, rest) = hp.split_at(n);
            let (hz, hnn) = rest.split_at(n);
            let ins = [hr, hz, hnn, br, bz, bn];
            blocks(ins, [gr, gz, gn, h, out, hn], |&[hr, hz, hn, br, bz, bn], v| {
                let [xr, xz, xn, h, ..] = *v;
                let r = sigmoid(xr + hr + br);
                let z = sigmoid(xz + hz + bz);
                let hn = hn + bn;
                let n = tanh(xn + r * hn);
                let h_new = n + z * (h - n);
                *v = [r, z, n, h_new, h_new, hn];
            });
        }
    }
}

multiversion! {
    /// One step backward for `rows` rows: turns the activations `act [rows, 3H]` into
    /// `d(xp)` in place, writes `d(hp)` and replaces `dh` by its direct part `dh ⊙ z`.
    fn cell_backward(
        hidden: usize,
        act: &mut [f32],
        dhp: &mut [f32],
        dy: &[f32],
        dh: &mut [f32],
        h_prev: &[f32],
        hn: &[f32],
    ) {
        let n = hidden;
        for (((((a, dhp), dy), dh), hp), hn) in act
            .chunks_exact_mut(3 * n)
            .zip(dhp.chunks_exact_mut(3 * n))
            .zip(dy.chunks_exact(n))
            .zip(dh.chunks_exact_mut(n))
            .zip(h_prev.chunks_exact(n))
            .zip(hn.chunks_exact(n))
        {
            let (ar, rest) = a.split_at_mut(n);
            let (az, an) = rest.split_at_mut(n);
            let (dr_h, rest) = dhp.split_at_mut(n);
            let (dz_h, dn_h) = rest.split_at_mut(n);
            let io = [ar, az, an, dr_h, dz_h, dn_h, dh];
            blocks([dy, hp, hn], io, |&[dy, hp, hn], v| {
                let [r, z, n, _, _, _, dh] = *v;
                let dh = dy + dh;
                let dn = dh * (1.0 - z) * (1.0 - n * n);
                let dz = dh * (hp - n) * z * (1.0 - z);
                let dr = dn * hn * r * (1.0 - r);
                *v = [dr, dz, dn, dr, dz, dn * r, dh * z];
            });
        }
    }
}

pub(crate) fn forward<X: Buffer>(inputs: Inputs<X>, save: bool) -> (Vec<f32>, Option<Saved<X>>) {
    let d = inputs.dims;
    let (steps, batch, n) = (d.steps, d.batch, d.hidden);
    let (bh, g) = (d.state_len(), 3 * n);
    let mut act = inputs.xp;
    let xp = act.as_mut();
    let w_t = transposed(&inputs.w_hh, g, n);
    let b_hh = if inputs.b_hh.is_empty() {
        vec![0.0; g]
    } else {
        inputs.b_hh
    };
    let mut h = inputs.h0;
    let mut hp = vec![0.0; batch * g];
    let mut y = vec![0.0; d.y_len(Cell::Gru)];
    let mut h_prev = Vec::with_capacity(if save { steps * bh } else { 0 });
    let mut hn = vec![0.0; if save { steps * bh } else { bh }];
    for t in 0..steps {
        let rows = inputs.active[t];
        if save {
            h_prev.extend_from_slice(&h);
        }
        matmul(
            &mut hp,
            View::row_major(&h, rows, n),
            View::row_major(&w_t, n, g),
            false,
        );
        let at = if save { t * bh } else { 0 };
        cell(
            n,
            &mut xp[t * batch * g..(t * batch + rows) * g],
            &hp[..rows * g],
            &b_hh,
            &mut h[..rows * n],
            &mut y[t * bh..t * bh + rows * n],
            &mut hn[at..at + rows * n],
        );
    }
    y[steps * bh..].copy_from_slice(&h);
    let saved = save.then_some(Saved {
        cell: Cell::Gru,
        dims: d,
        w_hh: inputs.w_hh,
        active: inputs.active,
        h_prev,
        act,
        extra: hn,
        tanh_c: Vec::new(),
        h_full: Vec::new(),
        w_hr: Vec::new(),
    });
    (y, saved)
}

pub(crate) fn backward<X: Buffer>(saved: Saved<X>, dy: &[f32]) -> Grads<X> {
    let d = saved.dims;
    let (steps, batch, n) = (d.steps, d.batch, d.hidden);
    let (bh, g) = (d.state_len(), 3 * n);
    let mut dh = dy[steps * bh..].to_vec();
    let mut dg_buf = saved.act;
    let dg = dg_buf.as_mut();
    let mut dhp = vec![0.0; steps * batch * g];
    for t in (0..steps).rev() {
        let rows = saved.active[t];
        zero_inactive(dg, t, rows, batch, g);
        let step = t * batch * g..(t * batch + rows) * g;
        let s = t * bh..t * bh + rows * n;
        cell_backward(
            n,
            &mut dg[step.clone()],
            &mut dhp[step.clone()],
            &dy[s.clone()],
            &mut dh[..rows * n],
            &saved.h_prev[s.clone()],
            &saved.extra[s],
        );
        matmul(
            &mut dh[..rows * n],
            View::row_major(&dhp[step], rows, g),
            View::row_major(&saved.w_hh, g, n),
            true,
        );
    }
    let w_hh = weight_grad(&dhp, &saved.h_prev, g, n);
    let mut b_hh = vec![0.0; g];
    for row in dhp.chunks_exact(g) {
        for (b, v) in b_hh.iter_mut().zip(row) {
            *b += v;
        }
    }
    Grads {
        xp: dg_buf,
        w_hh,
        w_hr: Vec::new(),
        b_hh,
        h0: dh,
        c0: Vec::new(),
    }
}
