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
//! With zoneout (module `zoneout`) `h_t` above is the new value `h̃_t`, mixed with `h_{t-1}` by
//! the step's mask; the backward pass splits `dh` first.
//!
//! Layer-normalised ([`crate::Norm`]): `hp = γ_hh ⊙ r̂ + b_hh`, `r̂ = LN(h_{t-1} W_hhᵀ)`;
//! backward, `dγ_hh = Σ d(hp) ⊙ r̂` and `dr`, through the norm from `γ_hh ⊙ d(hp)`, takes the
//! place of `d(hp)` in `dh_{t-1}` and `dW_hh`.

use crate::layer_norm::{backward_in_place, column_sums, normalise, scale_rows};
use crate::math::{sigmoid, tanh};
use crate::matmul::{matmul, transposed, View};
use crate::rows::{active, block, one, one_mut, run, split, split_mut, take};
use crate::simd::{blocks, multiversion};
use crate::zoneout::{self, add, zone};
use crate::{weight_grad, Buffer, Cell, Grads, Inputs, Norm, NormSaved, Saved};

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

/// One part's rows of the forward pass's buffers (per step: `[rows, ·]` blocks).
struct Forward<'a> {
    active: Vec<usize>,
    xp: Vec<&'a mut [f32]>,
    /// `T + 1` blocks: the outputs, then `h_n`.
    out: Vec<&'a mut [f32]>,
    h0: &'a [f32],
    /// Saved per step (empty lists when not saving): `h_{t-1}` and `W_hn h_{t-1} + b_hn`.
    h_prev: Vec<&'a mut [f32]>,
    hn: Vec<&'a mut [f32]>,
    /// Zoneout masks per step (an empty list: none).
    zone_h: Vec<&'a [f32]>,
    /// Layer-normalised and saving: `r̂` and its scales per step (empty lists: not).
    r_hat: Vec<&'a mut [f32]>,
    r_scale: Vec<&'a mut [f32]>,
}

fn forward_part(n: usize, w_t: &[f32], b_hh: &[f32], gamma: &[f32], mut p: Forward) {
    let g = 3 * n;
    let save = !p.hn.is_empty();
    let mut h = p.h0.to_vec();
    let rows_all = h.len() / n.max(1);
    let mut hp = vec![0.0; rows_all * g];
    let normed = !gamma.is_empty();
    let scratch = |len: usize| vec![0.0; if normed && !save { len } else { 0 }];
    let (mut r_tmp, mut rs_tmp) = (scratch(rows_all * g), scratch(rows_all));
    let mut hn = vec![0.0; if save { 0 } else { h.len() }];
    let zoned = !p.zone_h.is_empty();
    let mut prev = vec![0.0; if zoned { h.len() } else { 0 }];
    for (t, &rows) in p.active.iter().enumerate() {
        if save {
            p.h_prev[t].copy_from_slice(&h);
        }
        if zoned {
            prev[..rows * n].copy_from_slice(&h[..rows * n]);
        }
        if normed {
            let r = block(&mut p.r_hat, t, &mut r_tmp, rows * g);
            let scale = block(&mut p.r_scale, t, &mut rs_tmp, rows);
            matmul(
                r,
                View::row_major(&h, rows, n),
                View::row_major(w_t, n, g),
                false,
            );
            normalise(g, r, scale);
            scale_rows(g, &mut hp[..rows * g], r, gamma);
        } else {
            matmul(
                &mut hp,
                View::row_major(&h, rows, n),
                View::row_major(w_t, n, g),
                false,
            );
        }
        let hn = if save {
            &mut p.hn[t][..rows * n]
        } else {
            &mut hn[..rows * n]
        };
        cell(
            n,
            &mut p.xp[t][..rows * g],
            &hp[..rows * g],
            b_hh,
            &mut h[..rows * n],
            &mut p.out[t][..rows * n],
            hn,
        );
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
    save: bool,
    cuts: &[usize],
) -> (Vec<f32>, Option<Saved<X>>) {
    let d = inputs.dims;
    let (steps, batch, n) = (d.steps, d.batch, d.hidden);
    let (bh, g) = (d.state_len(), 3 * n);
    let mut act = inputs.xp;
    let w_t = transposed(&inputs.w_hh, g, n);
    let b_hh = if inputs.b_hh.is_empty() {
        vec![0.0; g]
    } else {
        inputs.b_hh
    };
    let mut y = vec![0.0; d.y_len(Cell::Gru)];
    let mut h_prev = vec![0.0; if save { steps * bh } else { 0 }];
    let mut hn = vec![0.0; if save { steps * bh } else { 0 }];
    let normed = inputs.norm.is_on();
    let mut r_hat = vec![0.0; if save && normed { steps * batch * g } else { 0 }];
    let mut r_scale = vec![0.0; if save && normed { steps * batch } else { 0 }];
    {
        let mut xp = split_mut(act.as_mut(), batch, g, cuts);
        let mut out = split_mut(&mut y, batch, n, cuts);
        let mut h0 = split(&inputs.h0, batch, n, cuts);
        let mut hp = split_mut(&mut h_prev, batch, n, cuts);
        let mut hns = split_mut(&mut hn, batch, n, cuts);
        let mut zh = split(&inputs.zone_h, batch, n, cuts);
        let mut rh = split_mut(&mut r_hat, batch, g, cuts);
        let mut rs = split_mut(&mut r_scale, batch, 1, cuts);
        let parts = active(&inputs.active, cuts)
            .into_iter()
            .enumerate()
            .map(|(k, active)| Forward {
                active,
                xp: take(&mut xp, k),
                out: take(&mut out, k),
                h0: one(&mut take(&mut h0, k)),
                h_prev: take(&mut hp, k),
                hn: take(&mut hns, k),
                zone_h: take(&mut zh, k),
                r_hat: take(&mut rh, k),
                r_scale: take(&mut rs, k),
            })
            .collect();
        let gamma = &inputs.norm.gamma_hh;
        run(parts, |part| forward_part(n, &w_t, &b_hh, gamma, part));
    }
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
        zone_h: inputs.zone_h,
        zone_c: Vec::new(),
        norm: NormSaved {
            params: inputs.norm,
            r_hat,
            r_scale,
            ..NormSaved::default()
        },
    });
    (y, saved)
}

/// One part's rows of the backward pass's buffers.
struct Backward<'a> {
    active: Vec<usize>,
    /// The saved activations, turned into the gate gradients in place.
    dg: Vec<&'a mut [f32]>,
    /// `dL/d(W_hh h_{t-1} + b_hh)` per step.
    dhp: Vec<&'a mut [f32]>,
    /// `T + 1` blocks: `dL/d(outputs)`, then `dL/dh_n`.
    dy: Vec<&'a [f32]>,
    h_prev: Vec<&'a [f32]>,
    hn: Vec<&'a [f32]>,
    dh0: &'a mut [f32],
    zone_h: Vec<&'a [f32]>,
    /// Layer-normalised (empty lists: not): the saved `r̂`, overwritten per step by the
    /// gradient `dr` that leaves the norm, and its scales.
    r_hat: Vec<&'a mut [f32]>,
    r_scale: Vec<&'a [f32]>,
    /// Layer-normalised: this part's sum `dγ_hh [3H]`.
    dgamma: &'a mut [f32],
}

fn backward_part(n: usize, w_hh: &[f32], gamma: &[f32], mut b: Backward) {
    let g = 3 * n;
    let normed = !gamma.is_empty();
    let steps = b.active.len();
    let mut dh = b.dy[steps].to_vec();
    let zoned = !b.zone_h.is_empty();
    let len = if zoned { dh.len() } else { 0 };
    let (mut carry, zeros) = (vec![0.0; len], vec![0.0; len]);
    for t in (0..steps).rev() {
        let (rows, r) = (b.active[t], ..b.active[t] * n);
        b.dg[t][rows * g..].fill(0.0);
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
        cell_backward(
            n,
            &mut b.dg[t][..rows * g],
            &mut b.dhp[t][..rows * g],
            dy,
            &mut dh[..rows * n],
            &b.h_prev[t][..rows * n],
            &b.hn[t][..rows * n],
        );
        let dr = if normed {
            let dr = &mut b.r_hat[t][..rows * g];
            let (dhp, scale) = (&b.dhp[t][..rows * g], &b.r_scale[t][..rows]);
            backward_in_place(g, dhp, gamma, dr, scale, b.dgamma, &mut []);
            &*dr
        } else {
            &b.dhp[t][..rows * g]
        };
        matmul(
            &mut dh[..rows * n],
            View::row_major(dr, rows, g),
            View::row_major(w_hh, g, n),
            true,
        );
        if zoned {
            add(&mut dh[..rows * n], &carry[..rows * n]);
        }
    }
    b.dh0.copy_from_slice(&dh);
}

pub(crate) fn backward<X: Buffer>(saved: Saved<X>, dy: &[f32], cuts: &[usize]) -> Grads<X> {
    let d = saved.dims;
    let (steps, batch, n) = (d.steps, d.batch, d.hidden);
    let g = 3 * n;
    let mut dg_buf = saved.act;
    let mut dhp = vec![0.0; steps * batch * g];
    let mut h0 = vec![0.0; batch * n];
    let NormSaved {
        params: norm,
        mut r_hat,
        r_scale,
        ..
    } = saved.norm;
    let normed = norm.is_on();
    let sums = if normed { g } else { 0 };
    let mut dgamma = vec![0.0; (cuts.len() - 1) * sums];
    {
        let mut dg = split_mut(dg_buf.as_mut(), batch, g, cuts);
        let mut dhps = split_mut(&mut dhp, batch, g, cuts);
        let mut dyp = split(dy, batch, n, cuts);
        let mut hp = split(&saved.h_prev, batch, n, cuts);
        let mut hns = split(&saved.extra, batch, n, cuts);
        let mut dh0 = split_mut(&mut h0, batch, n, cuts);
        let mut zh = split(&saved.zone_h, batch, n, cuts);
        let mut rh = split_mut(&mut r_hat, batch, g, cuts);
        let mut rs = split(&r_scale, batch, 1, cuts);
        let mut dgammas = dgamma.chunks_mut(sums.max(1));
        let parts = active(&saved.active, cuts)
            .into_iter()
            .enumerate()
            .map(|(k, active)| Backward {
                active,
                dg: take(&mut dg, k),
                dhp: take(&mut dhps, k),
                dy: take(&mut dyp, k),
                h_prev: take(&mut hp, k),
                hn: take(&mut hns, k),
                dh0: one_mut(&mut take(&mut dh0, k)),
                zone_h: take(&mut zh, k),
                r_hat: take(&mut rh, k),
                r_scale: take(&mut rs, k),
                dgamma: dgammas.next().unwrap_or_default(),
            })
            .collect();
        let gamma = &norm.gamma_hh;
        run(parts, |part| backward_part(n, &saved.w_hh, gamma, part));
    }
    let (w_hh, norm) = if normed {
        let grads = Norm {
            gamma_hh: column_sums(g, &dgamma, &[]),
            ..Norm::default()
        };
        // `r_hat` now holds `dr`, the gradient of `h_{t-1} W_hhᵀ`.
        (weight_grad(&r_hat, &saved.h_prev, g, n), grads)
    } else {
        (weight_grad(&dhp, &saved.h_prev, g, n), Norm::default())
    };
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
        h0,
        c0: Vec::new(),
        norm,
    }
}
