//! Layer normalisation of one row at a time, as `torch.nn.functional.layer_norm` over the last
//! axis (biased variance, `ε = 1e-5`), for the LayerNorm LSTM and GRU (haste's `LayerNormLSTM`,
//! Ba et al., 2016):
//!
//! ```text
//! x̂ = (x − μ) ⊙ s,   s = 1 / √(σ² + ε)       (μ, σ² the row's mean and biased variance)
//! dx = s ⊙ (dx̂ − mean(dx̂) − x̂ ⊙ mean(dx̂ ⊙ x̂))
//! ```
//! The gain `γ` (and bias `β`) are the callers': they multiply `x̂` and scale `dx̂`. [`forward`]
//! and [`backward`] are the whole `γ ⊙ LN(x)` over many rows (a LayerNorm cell's input side, all
//! steps at once), on rayon's threads.

use rayon::prelude::*;

use crate::simd::{blocks, multiversion};

/// `ε` of PyTorch's `layer_norm`.
pub const EPS: f32 = 1e-5;

/// Lanes of the partial sums: independent accumulators, so the sums vectorise.
const LANES: usize = 16;

/// `Σ a_i b_i` (`b` empty: `Σ a_i`) with [`LANES`] partial sums.
#[inline(always)]
fn dot(a: &[f32], b: Option<&[f32]>) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = a.len() / LANES;
    for c in 0..chunks {
        let x = &a[c * LANES..(c + 1) * LANES];
        match b {
            Some(b) => {
                let y = &b[c * LANES..(c + 1) * LANES];
                for l in 0..LANES {
                    acc[l] += x[l] * y[l];
                }
            }
            None => {
                for l in 0..LANES {
                    acc[l] += x[l];
                }
            }
        }
    }
    let mut tail = 0.0;
    for i in chunks * LANES..a.len() {
        tail += a[i] * b.map_or(1.0, |b| b[i]);
    }
    acc.iter().sum::<f32>() + tail
}

multiversion! {
    /// Normalises each row of `v [rows, width]` in place (`v ← x̂`) and writes its `s` to
    /// `scale [rows]`.
    pub(crate) fn normalise(width: usize, v: &mut [f32], scale: &mut [f32]) {
        for (row, s) in v.chunks_exact_mut(width).zip(scale.iter_mut()) {
            let mean = dot(row, None) / width as f32;
            blocks([], [&mut *row], |[], x| {
                x[0] -= mean;
            });
            let var = dot(row, Some(row)) / width as f32;
            let inv = 1.0 / (var + EPS).sqrt();
            blocks([], [&mut *row], |[], x| {
                x[0] *= inv;
            });
            *s = inv;
        }
    }
}

multiversion! {
    /// The backward pass of [`normalise`] for each row: turns `dx̂` in `grad [rows, width]` into
    /// `dx` in place, from the rows' `x̂` and `s`.
    pub(crate) fn normalise_backward(width: usize, grad: &mut [f32], x_hat: &[f32], scale: &[f32]) {
        for ((g, x), &s) in grad
            .chunks_exact_mut(width)
            .zip(x_hat.chunks_exact(width))
            .zip(scale)
        {
            let mean_g = dot(g, None) / width as f32;
            let mean_gx = dot(g, Some(x)) / width as f32;
            blocks([x], [g], |&[x], v| {
                v[0] = s * (v[0] - mean_g - x * mean_gx);
            });
        }
    }
}

multiversion! {
    /// The backward pass of `y = γ ⊙ x̂ (+ β)` with [`normalise`], row by row, in place: from
    /// `dy [rows, width]` turns each row's `x̂` in `x_hat` into `dx`, and adds `Σ dy ⊙ x̂` to
    /// `dgamma` and (when not empty) `Σ dy` to `dbeta` (`[width]` each).
    pub(crate) fn backward_in_place(
        width: usize,
        dy: &[f32],
        gamma: &[f32],
        x_hat: &mut [f32],
        scale: &[f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
    ) {
        for ((dy, xh), &s) in dy
            .chunks_exact(width)
            .zip(x_hat.chunks_exact_mut(width))
            .zip(scale)
        {
            blocks([dy, &*xh], [&mut *dgamma], |&[d, x], v| {
                v[0] += d * x;
            });
            if !dbeta.is_empty() {
                blocks([dy], [&mut *dbeta], |&[d], v| {
                    v[0] += d;
                });
            }
            let (mut sum_g, mut sum_gx) = ([0.0f32; LANES], [0.0f32; LANES]);
            let whole = width - width % LANES;
            for c in (0..whole).step_by(LANES) {
                for l in 0..LANES {
                    let g = gamma[c + l] * dy[c + l];
                    sum_g[l] += g;
                    sum_gx[l] += g * xh[c + l];
                }
            }
            let (mut tail_g, mut tail_gx) = (0.0, 0.0);
            for i in whole..width {
                let g = gamma[i] * dy[i];
                tail_g += g;
                tail_gx += g * xh[i];
            }
            let mean_g = (sum_g.iter().sum::<f32>() + tail_g) / width as f32;
            let mean_gx = (sum_gx.iter().sum::<f32>() + tail_gx) / width as f32;
            blocks([dy, gamma], [xh], |&[d, g], v| {
                v[0] = s * (g * d - mean_g - v[0] * mean_gx);
            });
        }
    }
}

multiversion! {
    /// `into ← into + γ ⊙ x̂` for each row of `into [rows, width]`, `x̂` alike, `γ [width]`.
    pub(crate) fn add_scaled(width: usize, into: &mut [f32], x_hat: &[f32], gamma: &[f32]) {
        for (row, x) in into.chunks_exact_mut(width).zip(x_hat.chunks_exact(width)) {
            blocks([x, gamma], [row], |&[x, g], v| {
                v[0] += g * x;
            });
        }
    }
}

multiversion! {
    /// `into ← γ ⊙ from` for each row of `into [rows, width]`, `from` alike, `γ [width]`.
    pub(crate) fn scale_rows(width: usize, into: &mut [f32], from: &[f32], gamma: &[f32]) {
        for (row, x) in into.chunks_exact_mut(width).zip(from.chunks_exact(width)) {
            blocks([x, gamma], [row], |&[x, g], v| {
                v[0] = g * x;
            });
        }
    }
}

/// Rows per task of [`forward`] and [`backward`].
const ROWS_PER_TASK: usize = 64;

/// What [`forward`] keeps for [`backward`]: `x̂` and each row's scale `1/√(σ² + ε)`.
#[derive(Debug, Clone)]
pub struct Normalised {
    /// `x̂`, as `x`.
    pub x_hat: Vec<f32>,
    /// One scale per row.
    pub scale: Vec<f32>,
}

/// `y = γ ⊙ LN(x)` for each row of `x [rows, width]`, `γ [width]`, and what [`backward`] needs.
///
/// # Panics
/// If `x` is not whole rows of `γ`'s width.
pub fn forward(x: &[f32], gamma: &[f32]) -> (Vec<f32>, Normalised) {
    let width = gamma.len();
    assert!(
        width > 0 && x.len().is_multiple_of(width),
        "layer norm: {} values are not rows of {width}",
        x.len()
    );
    let mut x_hat = x.to_vec();
    let mut scale = vec![0.0; x.len() / width];
    let mut y = vec![0.0; x.len()];
    let block = ROWS_PER_TASK * width;
    x_hat
        .par_chunks_mut(block)
        .zip(scale.par_chunks_mut(ROWS_PER_TASK))
        .zip(y.par_chunks_mut(block))
        .for_each(|((xh, s), y)| {
            normalise(width, xh, s);
            scale_rows(width, y, xh, gamma);
        });
    (y, Normalised { x_hat, scale })
}

/// The backward pass of [`forward`]: `dL/dx` and `dL/dγ` from `dy = dL/dy`.
///
/// # Panics
/// If `dy` does not have the shape of the forward pass's `x`.
pub fn backward(dy: &[f32], saved: &Normalised, gamma: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let width = gamma.len();
    assert_eq!(
        dy.len(),
        saved.x_hat.len(),
        "layer norm: dy has the shape of x"
    );
    let dgamma = column_sums(width, dy, &saved.x_hat);
    let mut dx = vec![0.0; dy.len()];
    let block = ROWS_PER_TASK * width;
    dx.par_chunks_mut(block)
        .zip(dy.par_chunks(block))
        .zip(saved.x_hat.par_chunks(block))
        .zip(saved.scale.par_chunks(ROWS_PER_TASK))
        .for_each(|(((dx, dy), xh), s)| {
            scale_rows(width, dx, dy, gamma);
            normalise_backward(width, dx, xh, s);
        });
    (dx, dgamma)
}

/// `Σ_rows a ⊙ b` over rows of `width` values (`b` empty: `Σ_rows a`): the gradient of a gain
/// (or bias) shared by every row.
pub(crate) fn column_sums(width: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; width];
    if width == 0 {
        return out;
    }
    if b.is_empty() {
        for row in a.chunks_exact(width) {
            for (o, v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
    } else {
        for (ra, rb) in a.chunks_exact(width).zip(b.chunks_exact(width)) {
            for ((o, x), y) in out.iter_mut().zip(ra).zip(rb) {
                *o += x * y;
            }
        }
    }
    out
}
