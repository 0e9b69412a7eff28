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
//! With zoneout (module `zoneout`) `c_t` and `h_t` above are the new values `c̃_t`, `h̃_t`, mixed
//! with `c_{t-1}`, `h_{t-1}` by the step's masks; the backward pass splits `dh` and `dc` first.
//!
//! Layer-normalised ([`crate::Norm`], module `layer_norm`):
//! ```text
//! gates = xp_t + γ_hh ⊙ r̂,  r̂ = LN(h_{t-1} W_hhᵀ)      h_t = o ⊙ tanh(γ_c ⊙ ĉ + β_c),  ĉ = LN(c_t)
//! ```
//! backward: `dn = dh ⊙ o ⊙ (1 − tanh²)` gives `dγ_c = Σ dn ⊙ ĉ`, `dβ_c = Σ dn` and, through the
//! norm, the `c_t` gradient that replaces `dh ⊙ o ⊙ (1 − tanh²c_t)` above; `d(gates)` gives
//! `dγ_hh = Σ d(gates) ⊙ r̂` and `dr`, through the norm from `γ_hh ⊙ d(gates)`, which takes the
//! place of `d(gates)` in `dh_{t-1}` and `dW_hh`.

use crate::layer_norm::{add_scaled, backward_in_place, column_sums, normalise};
use crate::math::{sigmoid, tanh};
use crate::matmul::{matmul, transposed, View};
use crate::rows::{active, block, one, one_mut, run, split, split_mut, take};
use crate::simd::{blocks, multiversion};
use crate::zoneout::{self, add, zone};
use crate::{weight_grad, Buffer, Cell, Grads, Inputs, Norm, NormSaved, Saved};

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

multiversion! {
    /// The first half of a layer-normalised step for `rows` rows: activates `gates [rows, 4H]`
    /// in place and updates `c`.
    fn cell_gates(hidden: usize, gates: &mut [f32], c: &mut [f32]) {
        let n = hidden;
        for (g, c) in gates.chunks_exact_mut(4 * n).zip(c.chunks_exact_mut(n)) {
            let (gi, rest) = g.split_at_mut(n);
            let (gf, rest) = rest.split_at_mut(n);
            let (gg, go) = rest.split_at_mut(n);
            blocks([], [gi, gf, gg, go, c], |[], v| {
                let [gi, gf, gg, go, c] = *v;
                let (i, f, g, o) = (sigmoid(gi), sigmoid(gf), tanh(gg), sigmoid(go));
                *v = [i, f, g, o, f * c + i * g];
            });
        }
    }
}

multiversion! {
    /// The second half: from the activations `act [rows, 4H]` and the normalised `ĉ`, writes
    /// `t = tanh(γ_c ⊙ ĉ + β_c)` to `tanh_c` and `o ⊙ t` to `h`.
    fn cell_output(
        hidden: usize,
        act: &[f32],
        c_hat: &[f32],
        gamma: &[f32],
        beta: &[f32],
        h: &mut [f32],
        tanh_c: &mut [f32],
    ) {
        let n = hidden;
        for (((a, ch), h), tc) in act
            .chunks_exact(4 * n)
            .zip(c_hat.chunks_exact(n))
            .zip(h.chunks_exact_mut(n))
            .zip(tanh_c.chunks_exact_mut(n))
        {
            let o = &a[3 * n..];
            blocks([o, ch, gamma, beta], [h, tc], |&[o, ch, g, b], v| {
                let t = tanh(g * ch + b);
                *v = [o * t, t];
            });
        }
    }
}

multiversion! {
    /// `dn = dh ⊙ o ⊙ (1 − t²)`: the gradient of `γ_c ⊙ ĉ + β_c`, from the activations `act
    /// [rows, 4H]` (their `o`) and `t` in `tanh_c`.
    fn output_backward(hidden: usize, act: &[f32], dh: &[f32], tanh_c: &[f32], dn: &mut [f32]) {
        let n = hidden;
        for (((a, dh), tc), dn) in act
            .chunks_exact(4 * n)
            .zip(dh.chunks_exact(n))
            .zip(tanh_c.chunks_exact(n))
            .zip(dn.chunks_exact_mut(n))
        {
            let o = &a[3 * n..];
            blocks([o, dh, tc], [dn], |&[o, dh, t], v| {
                v[0] = dh * o * (1.0 - t * t);
            });
        }
    }
}

multiversion! {
    /// [`cell_backward`] of a layer-normalised step: `dc_h` is the gradient that reaches `c_t`
    /// through the output's norm, `tanh_c` holds `t`.
    fn cell_backward_norm(
        hidden: usize,
        act: &mut [f32],
        dh: &[f32],
        dc_h: &[f32],
        dc: &mut [f32],
        c_prev: &[f32],
        tanh_c: &[f32],
    ) {
        let n = hidden;
        for (((((a, dh), dch), dc), cp), tc) in act
            .chunks_exact_mut(4 * n)
            .zip(dh.chunks_exact(n))
            .zip(dc_h.chunks_exact(n))
            .zip(dc.chunks_exact_mut(n))
            .zip(c_prev.chunks_exact(n))
            .zip(tanh_c.chunks_exact(n))
        {
            let (ai, rest) = a.split_at_mut(n);
            let (af, rest) = rest.split_at_mut(n);
            let (ag, ao) = rest.split_at_mut(n);
            blocks([dh, dch, cp, tc], [ai, af, ag, ao, dc], |&[dh, dch, cp, t], v| {
                let [i, f, g, o, dc] = *v;
                let dct = dc + dch;
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

/// One part's rows of the forward pass's buffers (per step: `[rows, ·]` blocks).
struct Forward<'a> {
    active: Vec<usize>,
    xp: Vec<&'a mut [f32]>,
    /// `T + 1` blocks: the outputs, then `h_n`.
    out: Vec<&'a mut [f32]>,
    c_n: &'a mut [f32],
    h0: &'a [f32],
    c0: &'a [f32],
    /// Saved per step (empty lists when not saving; `h_full` only when projected).
    h_prev: Vec<&'a mut [f32]>,
    c_prev: Vec<&'a mut [f32]>,
    tanh_c: Vec<&'a mut [f32]>,
    h_full: Vec<&'a mut [f32]>,
    /// Zoneout masks per step (empty lists: none).
    zone_h: Vec<&'a [f32]>,
    zone_c: Vec<&'a [f32]>,
    /// Layer-normalised and saving: `r̂`, `ĉ` and their scales per step (empty lists: not).
    r_hat: Vec<&'a mut [f32]>,
    r_scale: Vec<&'a mut [f32]>,
    c_hat: Vec<&'a mut [f32]>,
    c_scale: Vec<&'a mut [f32]>,
}

/// The weights every part reads.
struct Weights<'a> {
    hidden: usize,
    output: usize,
    /// `W_hhᵀ [H_out, 4H]`, `W_hrᵀ [H, H_out]` (empty unless projected).
    w_t: &'a [f32],
    w_hr_t: &'a [f32],
    norm: &'a Norm,
}

fn forward_part(w: &Weights, mut p: Forward) {
    let (n, out_w, g) = (w.hidden, w.output, 4 * w.hidden);
    let (save, projected) = (!p.tanh_c.is_empty(), !w.w_hr_t.is_empty());
    let (mut h, mut c) = (p.h0.to_vec(), p.c0.to_vec());
    let mut tanh_c = vec![0.0; if save { 0 } else { c.len() }];
    let mut h_full = vec![0.0; if save && projected { 0 } else { c.len() }];
    let (zoned_h, zoned_c) = (!p.zone_h.is_empty(), !p.zone_c.is_empty());
    let mut c_old = vec![0.0; if zoned_c { c.len() } else { 0 }];
    let (normed, rows_all) = (w.norm.is_on(), c.len() / n.max(1));
    let scratch = |len: usize| vec![0.0; if normed && !save { len } else { 0 }];
    let (mut r_tmp, mut rs_tmp) = (scratch(rows_all * g), scratch(rows_all));
    let (mut c_tmp, mut cs_tmp) = (scratch(rows_all * n), scratch(rows_all));
    for (t, &rows) in p.active.iter().enumerate() {
        if save {
            p.h_prev[t].copy_from_slice(&h);
            p.c_prev[t].copy_from_slice(&c);
        }
        let gates = &mut p.xp[t][..rows * g];
        if normed {
            let r = block(&mut p.r_hat, t, &mut r_tmp, rows * g);
            matmul(
                r,
                View::row_major(&h, rows, out_w),
                View::row_major(w.w_t, out_w, g),
                false,
            );
            normalise(g, r, block(&mut p.r_scale, t, &mut rs_tmp, rows));
            add_scaled(g, gates, r, &w.norm.gamma_hh);
        } else {
            matmul(
                gates,
                View::row_major(&h, rows, out_w),
                View::row_major(w.w_t, out_w, g),
                true,
            );
        }
        let tc = if save {
            &mut p.tanh_c[t][..rows * n]
        } else {
            &mut tanh_c[..rows * n]
        };
        let hf = if save && projected {
            &mut p.h_full[t][..rows * n]
        } else {
            &mut h_full[..rows * n]
        };
        if zoned_c {
            c_old[..rows * n].copy_from_slice(&c[..rows * n]);
        }
        if normed {
            cell_gates(n, gates, &mut c[..rows * n]);
            let c_hat = block(&mut p.c_hat, t, &mut c_tmp, rows * n);
            c_hat.copy_from_slice(&c[..rows * n]);
            normalise(n, c_hat, block(&mut p.c_scale, t, &mut cs_tmp, rows));
            let (gamma, beta) = (&w.norm.gamma_c, &w.norm.beta_c);
            cell_output(n, gates, c_hat, gamma, beta, hf, tc);
        } else {
            cell(n, gates, &mut c[..rows * n], hf, tc);
        }
        if zoned_c {
            zone(
                &mut c[..rows * n],
                &c_old[..rows * n],
                &p.zone_c[t][..rows * n],
            );
        }
        let out = &mut p.out[t][..rows * out_w];
        if projected {
            matmul(
                out,
                View::row_major(hf, rows, n),
                View::row_major(w.w_hr_t, n, out_w),
                false,
            );
        } else {
            out.copy_from_slice(hf);
        }
        if zoned_h {
            zone(out, &h[..rows * out_w], &p.zone_h[t][..rows * out_w]);
        }
        h[..rows * out_w].copy_from_slice(out);
    }
    one_mut(&mut p.out).copy_from_slice(&h);
    p.c_n.copy_from_slice(&c);
}

pub(crate) fn forward<X: Buffer>(
    inputs: Inputs<X>,
    save: bool,
    cuts: &[usize],
) -> (Vec<f32>, Option<Saved<X>>) {
    let d = inputs.dims;
    let (steps, batch, n, p) = (d.steps, d.batch, d.hidden, d.output);
    let (bh, bp, g) = (batch * n, batch * p, 4 * n);
    let projected = !inputs.w_hr.is_empty();
    let mut act = inputs.xp;
    let w_t = transposed(&inputs.w_hh, g, p);
    let w_hr_t = if projected {
        transposed(&inputs.w_hr, p, n)
    } else {
        Vec::new()
    };
    let mut y = vec![0.0; d.y_len(Cell::Lstm)];
    let saved = |keep: bool, width: usize| vec![0.0; if save && keep { steps * width } else { 0 }];
    let mut h_prev = saved(true, bp);
    let mut c_prev = saved(true, bh);
    let mut tanh_c = saved(true, bh);
    let mut h_full = saved(projected, bh);
    let normed = inputs.norm.is_on();
    let mut r_hat = saved(normed, batch * g);
    let mut r_scale = saved(normed, batch);
    let mut c_hat = saved(normed, bh);
    let mut c_scale = saved(normed, batch);
    {
        let (hs, cs) = y.split_at_mut((steps + 1) * bp);
        let mut xp = split_mut(act.as_mut(), batch, g, cuts);
        let mut out = split_mut(hs, batch, p, cuts);
        let mut c_n = split_mut(cs, batch, n, cuts);
        let mut h0 = split(&inputs.h0, batch, p, cuts);
        let mut c0 = split(&inputs.c0, batch, n, cuts);
        let mut hp = split_mut(&mut h_prev, batch, p, cuts);
        let mut cp = split_mut(&mut c_prev, batch, n, cuts);
        let mut tc = split_mut(&mut tanh_c, batch, n, cuts);
        let mut hf = split_mut(&mut h_full, batch, n, cuts);
        let mut zh = split(&inputs.zone_h, batch, p, cuts);
        let mut zc = split(&inputs.zone_c, batch, n, cuts);
        let mut rh = split_mut(&mut r_hat, batch, g, cuts);
        let mut rs = split_mut(&mut r_scale, batch, 1, cuts);
        let mut ch = split_mut(&mut c_hat, batch, n, cuts);
        let mut cs = split_mut(&mut c_scale, batch, 1, cuts);
        let parts = active(&inputs.active, cuts)
            .into_iter()
            .enumerate()
            .map(|(k, active)| Forward {
                active,
                xp: take(&mut xp, k),
                out: take(&mut out, k),
                c_n: one_mut(&mut take(&mut c_n, k)),
                h0: one(&mut take(&mut h0, k)),
                c0: one(&mut take(&mut c0, k)),
                h_prev: take(&mut hp, k),
                c_prev: take(&mut cp, k),
                tanh_c: take(&mut tc, k),
                h_full: take(&mut hf, k),
                zone_h: take(&mut zh, k),
                zone_c: take(&mut zc, k),
                r_hat: take(&mut rh, k),
                r_scale: take(&mut rs, k),
                c_hat: take(&mut ch, k),
                c_scale: take(&mut cs, k),
            })
            .collect();
        let w = Weights {
            hidden: n,
            output: p,
            w_t: &w_t,
            w_hr_t: &w_hr_t,
            norm: &inputs.norm,
        };
        run(parts, |part| forward_part(&w, part));
    }
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
        h_full,
        zone_h: inputs.zone_h,
        zone_c: inputs.zone_c,
        norm: NormSaved {
            params: inputs.norm,
            r_hat,
            r_scale,
            c_hat,
            c_scale,
        },
    });
    (y, saved)
}

/// One part's rows of the backward pass's buffers.
struct Backward<'a> {
    active: Vec<usize>,
    /// The saved activations, turned into the gate gradients in place.
    dg: Vec<&'a mut [f32]>,
    /// `T + 1` blocks: `dL/d(outputs)`, then `dL/dh_n`.
    dy: Vec<&'a [f32]>,
    dc_n: &'a [f32],
    c_prev: Vec<&'a [f32]>,
    tanh_c: Vec<&'a [f32]>,
    /// Projected: `dL/dh_t` per step, for `dW_hr`.
    dh_out: Vec<&'a mut [f32]>,
    dh0: &'a mut [f32],
    dc0: &'a mut [f32],
    zone_h: Vec<&'a [f32]>,
    zone_c: Vec<&'a [f32]>,
    /// Layer-normalised (empty lists: not): the saved `r̂` and `ĉ`, overwritten per step by
    /// the gradients `dr` and `dc` that leave each norm, and their scales.
    r_hat: Vec<&'a mut [f32]>,
    r_scale: Vec<&'a [f32]>,
    c_hat: Vec<&'a mut [f32]>,
    c_scale: Vec<&'a [f32]>,
    /// Layer-normalised: this part's sums `dγ_hh [4H]`, `dγ_c [H]`, `dβ_c [H]`, one after the
    /// other.
    dnorm: &'a mut [f32],
}

/// The backward pass of one part, with `W_hh [4H, H_out]` and `W_hr [H_out, H]` (empty unless
/// projected).
fn backward_part(
    hidden: usize,
    output: usize,
    w_hh: &[f32],
    w_hr: &[f32],
    norm: &Norm,
    mut b: Backward,
) {
    let (n, p, g) = (hidden, output, 4 * hidden);
    let projected = !w_hr.is_empty();
    let normed = norm.is_on();
    let steps = b.active.len();
    let mut dh = b.dy[steps].to_vec();
    let mut dc = b.dc_n.to_vec();
    let mut dh_full = vec![0.0; dc.len()];
    let (zoned_h, zoned_c) = (!b.zone_h.is_empty(), !b.zone_c.is_empty());
    let mut carry_h = vec![0.0; if zoned_h { dh.len() } else { 0 }];
    let mut carry_c = vec![0.0; if zoned_c { dc.len() } else { 0 }];
    let mut dn = vec![0.0; if normed { dc.len() } else { 0 }];
    let (dgamma_hh, rest) = b.dnorm.split_at_mut(if normed { g } else { 0 });
    let (dgamma_c, dbeta_c) = rest.split_at_mut(rest.len() / 2);
    for t in (0..steps).rev() {
        let rows = b.active[t];
        b.dg[t][rows * g..].fill(0.0);
        for (total, dy) in dh[..rows * p].iter_mut().zip(b.dy[t]) {
            *total += dy;
        }
        if zoned_h {
            zoneout::split(
                &mut dh[..rows * p],
                &mut carry_h[..rows * p],
                &b.zone_h[t][..rows * p],
            );
        }
        if zoned_c {
            zoneout::split(
                &mut dc[..rows * n],
                &mut carry_c[..rows * n],
                &b.zone_c[t][..rows * n],
            );
        }
        let dhf = &mut dh_full[..rows * n];
        if projected {
            b.dh_out[t][..rows * p].copy_from_slice(&dh[..rows * p]);
            let w_hr = View::row_major(w_hr, p, n);
            matmul(dhf, View::row_major(&dh, rows, p), w_hr, false);
        } else {
            dhf.copy_from_slice(&dh[..rows * n]);
        }
        let step = &mut b.dg[t][..rows * g];
        let (c_prev, tanh_c) = (&b.c_prev[t][..rows * n], &b.tanh_c[t][..rows * n]);
        let dr = if normed {
            let dn = &mut dn[..rows * n];
            output_backward(n, step, dhf, tanh_c, dn);
            let dc_h = &mut b.c_hat[t][..rows * n];
            let c_scale = &b.c_scale[t][..rows];
            backward_in_place(n, dn, &norm.gamma_c, dc_h, c_scale, dgamma_c, dbeta_c);
            cell_backward_norm(n, step, dhf, dc_h, &mut dc[..rows * n], c_prev, tanh_c);
            let dr = &mut b.r_hat[t][..rows * g];
            let r_scale = &b.r_scale[t][..rows];
            backward_in_place(g, step, &norm.gamma_hh, dr, r_scale, dgamma_hh, &mut []);
            &*dr
        } else {
            cell_backward(n, step, dhf, &mut dc[..rows * n], c_prev, tanh_c);
            &*step
        };
        matmul(
            &mut dh[..rows * p],
            View::row_major(dr, rows, g),
            View::row_major(w_hh, g, p),
            false,
        );
        if zoned_h {
            add(&mut dh[..rows * p], &carry_h[..rows * p]);
        }
        if zoned_c {
            add(&mut dc[..rows * n], &carry_c[..rows * n]);
        }
    }
    b.dh0.copy_from_slice(&dh);
    b.dc0.copy_from_slice(&dc);
}

pub(crate) fn backward<X: Buffer>(saved: Saved<X>, dy: &[f32], cuts: &[usize]) -> Grads<X> {
    let d = saved.dims;
    let (steps, batch, n, p) = (d.steps, d.batch, d.hidden, d.output);
    let (bh, bp, g) = (batch * n, batch * p, 4 * n);
    let projected = !saved.w_hr.is_empty();
    let mut dg_buf = saved.act;
    let mut dh_out = vec![0.0; if projected { steps * bp } else { 0 }];
    let (mut h0, mut c0) = (vec![0.0; bp], vec![0.0; bh]);
    let NormSaved {
        params: norm,
        mut r_hat,
        r_scale,
        mut c_hat,
        c_scale,
    } = saved.norm;
    let normed = norm.is_on();
    let sums = if normed { g + 2 * n } else { 0 };
    let mut dnorm = vec![0.0; (cuts.len() - 1) * sums];
    {
        let (dys, dcs) = dy.split_at((steps + 1) * bp);
        let mut dg = split_mut(dg_buf.as_mut(), batch, g, cuts);
        let mut dyp = split(dys, batch, p, cuts);
        let mut dc_n = split(dcs, batch, n, cuts);
        let mut cp = split(&saved.extra, batch, n, cuts);
        let mut tc = split(&saved.tanh_c, batch, n, cuts);
        let mut dho = split_mut(&mut dh_out, batch, p, cuts);
        let mut dh0 = split_mut(&mut h0, batch, p, cuts);
        let mut dc0 = split_mut(&mut c0, batch, n, cuts);
        let mut zh = split(&saved.zone_h, batch, p, cuts);
        let mut zc = split(&saved.zone_c, batch, n, cuts);
        let mut rh = split_mut(&mut r_hat, batch, g, cuts);
        let mut rs = split(&r_scale, batch, 1, cuts);
        let mut ch = split_mut(&mut c_hat, batch, n, cuts);
        let mut cs = split(&c_scale, batch, 1, cuts);
        let mut dnorms = dnorm.chunks_mut(sums.max(1));
        let parts = active(&saved.active, cuts)
            .into_iter()
            .enumerate()
            .map(|(k, active)| Backward {
                active,
                dg: take(&mut dg, k),
                dy: take(&mut dyp, k),
                dc_n: one(&mut take(&mut dc_n, k)),
                c_prev: take(&mut cp, k),
                tanh_c: take(&mut tc, k),
                dh_out: take(&mut dho, k),
                dh0: one_mut(&mut take(&mut dh0, k)),
                dc0: one_mut(&mut take(&mut dc0, k)),
                zone_h: take(&mut zh, k),
                zone_c: take(&mut zc, k),
                r_hat: take(&mut rh, k),
                r_scale: take(&mut rs, k),
                c_hat: take(&mut ch, k),
                c_scale: take(&mut cs, k),
                dnorm: dnorms.next().unwrap_or_default(),
            })
            .collect();
        let (w_hh, w_hr) = (&saved.w_hh, &saved.w_hr);
        run(parts, |part| backward_part(n, p, w_hh, w_hr, &norm, part));
    }
    let (w_hh, norm) = if normed {
        let total = column_sums(sums, &dnorm, &[]);
        let (gamma_hh, rest) = total.split_at(g);
        let (gamma_c, beta_c) = rest.split_at(n);
        let grads = Norm {
            gamma_hh: gamma_hh.to_vec(),
            gamma_c: gamma_c.to_vec(),
            beta_c: beta_c.to_vec(),
        };
        // `r_hat` now holds `dr`, the gradient of `h_{t-1} W_hhᵀ`.
        (weight_grad(&r_hat, &saved.h_prev, g, p), grads)
    } else {
        let w_hh = weight_grad(dg_buf.as_ref(), &saved.h_prev, g, p);
        (w_hh, Norm::default())
    };
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
        h0,
        c0,
        norm,
    }
}
