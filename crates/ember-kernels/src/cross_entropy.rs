//! Mean cross-entropy over the valid rows of `logits [rows, classes]`, forward and backward:
//! PyTorch's `F.cross_entropy(logits, targets, ignore_index=…)` (the mean over the rows not
//! ignored; here 0 when every row is ignored, where PyTorch gives NaN).
//!
//! Each valid row `r` with target `t` costs `lse_r − x[r, t]`, where
//! `lse_r = m + ln Σ_j exp(x[r, j] − m)` and `m` is the row's largest logit. The gradient of the
//! mean, scaled by the upstream gradient `g`, is `(softmax(x_r) − onehot(t)) · g / count` on a
//! valid row and 0 on an ignored one, from the saved `lse`: one pass, no reciprocal. (Burn's
//! composed `log_softmax` differentiates `ln` through `recip`, which NdArray computes with an
//! approximate instruction on the aligned part of the buffer: gradients off by up to 4e-5,
//! differently from run to run.) A NaN or infinite logit makes its row's loss NaN, as in PyTorch.

use rayon::prelude::*;

use crate::math::exp;
use crate::simd::multiversion;
use crate::ShapeError;

/// The loss of one batch, with what [`backward`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// The mean over valid rows (0 when there are none).
    pub loss: f32,
    /// Each row's log-sum-exp (0 on ignored rows).
    pub lse: Vec<f32>,
    /// How many rows are valid.
    pub count: usize,
}

/// The rows' targets: row `r` counts when `valid[r]`, and then `targets[r]` is its class.
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    /// One class id per row (anything on an ignored row).
    pub targets: &'a [i64],
    /// Whether each row counts.
    pub valid: &'a [bool],
}

impl Labels<'_> {
    /// The number of rows, after checking that `logits` holds `rows × classes` values and
    /// every valid row's target is a class.
    fn check(&self, logits: &[f32], classes: usize) -> Result<usize, ShapeError> {
        let rows = self.targets.len();
        if self.valid.len() != rows || logits.len() != rows * classes {
            return Err(ShapeError(format!(
                "cross-entropy of {} logits with {rows} targets, {} mask values and {classes} \
                 classes: expected {rows} × {classes} logits and one mask value per target",
                logits.len(),
                self.valid.len()
            )));
        }
        let outside = self
            .targets
            .iter()
            .zip(self.valid)
            .position(|(&t, &v)| v && !(0..classes as i64).contains(&t));
        match outside {
            Some(r) => Err(ShapeError(format!(
                "target {} of row {r} is not one of the {classes} classes",
                self.targets[r]
            ))),
            None => Ok(rows),
        }
    }
}

/// Elements per task when the rows are split over rayon's threads.
const CHUNK: usize = 1 << 14;

/// Rows per task for rows of `classes` values.
fn rows_per_task(classes: usize) -> usize {
    (CHUNK / classes.max(1)).max(1)
}

/// The loss of `logits [rows, classes]` against `labels`.
pub fn forward(logits: &[f32], classes: usize, labels: Labels) -> Result<Forward, ShapeError> {
    let rows = labels.check(logits, classes)?;
    let mut lse = vec![0.0; rows];
    if classes > 0 {
        let per = rows_per_task(classes);
        lse.par_chunks_mut(per)
            .zip(logits.par_chunks(per * classes))
            .zip(labels.valid.par_chunks(per))
            .for_each(|((lse, x), valid)| log_sum_exp(classes, x, valid, lse));
    }
    let (mut total, mut count) = (0.0f64, 0usize);
    for r in (0..rows).filter(|&r| labels.valid[r]) {
        let t = labels.targets[r] as usize;
        total += f64::from(lse[r]) - f64::from(logits[r * classes + t]);
        count += 1;
    }
    let loss = if count == 0 {
        0.0
    } else {
        (total / count as f64) as f32
    };
    Ok(Forward { loss, lse, count })
}

/// `dL/dlogits [rows, classes]` for the loss [`forward`] gave (`lse`, `count`), scaled by `g`,
/// the gradient flowing into the loss.
pub fn backward(
    logits: &[f32],
    classes: usize,
    labels: Labels,
    forward: &Forward,
    g: f32,
) -> Result<Vec<f32>, ShapeError> {
    let rows = labels.check(logits, classes)?;
    if forward.lse.len() != rows {
        return Err(ShapeError(format!(
            "{} log-sum-exps for {rows} rows",
            forward.lse.len()
        )));
    }
    let mut dx = vec![0.0; rows * classes];
    if classes == 0 || forward.count == 0 {
        return Ok(dx);
    }
    let scale = g / forward.count as f32;
    let per = rows_per_task(classes);
    dx.par_chunks_mut(per * classes)
        .zip(logits.par_chunks(per * classes))
        .zip(forward.lse.par_chunks(per))
        .zip(labels.valid.par_chunks(per))
        .zip(labels.targets.par_chunks(per))
        .for_each(|((((dx, x), lse), valid), targets)| {
            softmax_rows(classes, x, lse, valid, scale, dx);
            for (r, (&v, &t)) in valid.iter().zip(targets).enumerate() {
                if v {
                    dx[r * classes + t as usize] -= scale;
                }
            }
        });
    Ok(dx)
}

/// Lanes of the partial sums in [`log_sum_exp`]: the order of the sum is fixed, whatever the
/// instruction set or the buffer's alignment.
const LANES: usize = 16;

multiversion! {
    /// `lse[r]` of each valid row of `x [rows, classes]`.
    fn log_sum_exp(classes: usize, x: &[f32], valid: &[bool], lse: &mut [f32]) {
        for ((row, &v), out) in x.chunks_exact(classes).zip(valid).zip(lse.iter_mut()) {
            if !v {
                continue;
            }
            // `max` passes over a NaN, but `exp` of it is NaN: the row's loss is NaN either way.
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut acc = [0.0f32; LANES];
            let mut blocks = row.chunks_exact(LANES);
            for block in &mut blocks {
                for (a, &x) in acc.iter_mut().zip(block) {
                    *a += exp(x - m);
                }
            }
            for (a, &x) in acc.iter_mut().zip(blocks.remainder()) {
                *a += exp(x - m);
            }
            *out = m + acc.iter().sum::<f32>().ln();
        }
    }
}

multiversion! {
    /// `dx[r, j] = exp(x[r, j] − lse[r]) · scale` on valid rows, 0 on the others.
    fn softmax_rows(classes: usize, x: &[f32], lse: &[f32], valid: &[bool], scale: f32, dx: &mut [f32]) {
        for (((row, out), &l), &v) in x
            .chunks_exact(classes)
            .zip(dx.chunks_exact_mut(classes))
            .zip(lse)
            .zip(valid)
        {
            if v {
                for (d, &x) in out.iter_mut().zip(row) {
                    *d = exp(x - l) * scale;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rows × classes` logits in `[-4, 4)`, the targets, and every third row ignored.
    fn batch(rows: usize, classes: usize) -> (Vec<f32>, Vec<i64>, Vec<bool>) {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let x = (0..rows * classes)
            .map(|_| (next() % 8000) as f32 / 1000.0 - 4.0)
            .collect();
        let t = (0..rows)
            .map(|_| (next() % classes as u64) as i64)
            .collect();
        let v = (0..rows).map(|r| r % 3 != 1).collect();
        (x, t, v)
    }

    /// The loss and its gradient in `f64`, straight from the definition.
    fn reference(x: &[f32], classes: usize, t: &[i64], v: &[bool], g: f64) -> (f64, Vec<f64>) {
        let count = v.iter().filter(|v| **v).count() as f64;
        let mut loss = 0.0;
        let mut dx = vec![0.0; x.len()];
        for (r, row) in x.chunks(classes).enumerate().filter(|(r, _)| v[*r]) {
            let lse = row.iter().map(|&x| f64::from(x).exp()).sum::<f64>().ln();
            loss += lse - f64::from(row[t[r] as usize]);
            for (j, &x) in row.iter().enumerate() {
                let onehot = if j as i64 == t[r] { 1.0 } else { 0.0 };
                dx[r * classes + j] = ((f64::from(x) - lse).exp() - onehot) * g / count;
            }
        }
        (loss / count, dx)
    }

    /// `|a − b| ≤ tol · (1 + |b|)`, false on NaN or ∞.
    fn close(a: f64, b: f64, tol: f64) -> bool {
        a.is_finite() && b.is_finite() && (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn loss_and_gradient_match_the_definition() {
        // 700 rows of 37 classes: several rayon tasks, and rows that end mid-block.
        for (rows, classes) in [(1, 1), (5, 3), (7, 16), (700, 37), (9, 70)] {
            let (x, t, v) = batch(rows, classes);
            let labels = Labels {
                targets: &t,
                valid: &v,
            };
            let f = forward(&x, classes, labels).expect("valid");
            let (loss, dx) = reference(&x, classes, &t, &v, 0.7);
            assert!(
                close(f64::from(f.loss), loss, 2e-6),
                "{rows}×{classes}: loss {} vs {loss}",
                f.loss
            );
            assert_eq!(f.count, v.iter().filter(|v| **v).count());
            let got = backward(&x, classes, labels, &f, 0.7).expect("valid");
            for (i, (a, b)) in got.iter().zip(&dx).enumerate() {
                assert!(
                    close(f64::from(*a), *b, 2e-6),
                    "{rows}×{classes}: dx[{i}] {a} vs {b}"
                );
            }
            let ignored = (0..rows).filter(|r| !v[*r]);
            assert!(ignored
                .flat_map(|r| &got[r * classes..(r + 1) * classes])
                .all(|d| *d == 0.0));
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_bits_on_any_buffer() {
        let (x, t, v) = batch(300, 65);
        let labels = Labels {
            targets: &t,
            valid: &v,
        };
        let f = forward(&x, 65, labels).expect("valid");
        let dx = backward(&x, 65, labels, &f, 1.0).expect("valid");
        // The same values at every offset of a larger buffer: other alignments.
        for shift in 1..8 {
            let mut moved = vec![0.0; shift];
            moved.extend_from_slice(&x);
            let g = forward(&moved[shift..], 65, labels).expect("valid");
            assert_eq!(g.loss.to_bits(), f.loss.to_bits(), "shift {shift}");
            let d = backward(&moved[shift..], 65, labels, &g, 1.0).expect("valid");
            assert!(d.iter().zip(&dx).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn a_nan_logit_makes_the_loss_nan_and_nothing_valid_gives_zero() {
        let (mut x, t, v) = batch(4, 5);
        x[2] = f32::NAN;
        let labels = Labels {
            targets: &t,
            valid: &v,
        };
        assert!(forward(&x, 5, labels).expect("valid").loss.is_nan());
        x[2] = f32::INFINITY;
        assert!(forward(&x, 5, labels).expect("valid").loss.is_nan());
        let none = [false; 4];
        let labels = Labels {
            targets: &t,
            valid: &none,
        };
        let f = forward(&x, 5, labels).expect("valid");
        assert_eq!((f.loss, f.count), (0.0, 0));
        let dx = backward(&x, 5, labels, &f, 1.0).expect("valid");
        assert!(dx.iter().all(|d| *d == 0.0));
    }

    #[test]
    fn a_target_outside_the_classes_or_a_wrong_size_is_refused() {
        let x = vec![0.0; 6];
        let (t, v) = (vec![0, 3], vec![true, true]);
        let labels = Labels {
            targets: &t,
            valid: &v,
        };
        let e = forward(&x, 3, labels).expect_err("class 3 of 3");
        assert!(e.0.contains("target 3 of row 1"), "{e}");
        // An ignored row may hold anything (padding's negative ignore value).
        let (t, v) = (vec![0, -100], vec![true, false]);
        let labels = Labels {
            targets: &t,
            valid: &v,
        };
        assert!(forward(&x, 3, labels).is_ok());
        assert!(forward(&x[..5], 3, labels).is_err());
    }
}
