//! The affine map `y = x Wᵀ + b` over many rows at once (a recurrent layer's input projection
//! for every step, a language model's head), forward and backward, as `gemm` products on
//! rayon's threads. Written straight into fresh buffers: no zero-fill before the product, no
//! copy of a transposed operand, the bias added by starting from it and its gradient summed in
//! the same pass as nothing else.

use crate::matmul::{matmul_parallel, View};
use crate::ShapeError;

/// How a weight matrix `W` is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[out, in]`: PyTorch's `Linear` and every recurrent weight.
    OutIn,
    /// `[in, out]`: Burn's `Linear`.
    InOut,
}

/// Sizes of one affine map: `x [rows, input]`, `W` (`[output, input]` or `[input, output]`),
/// `b [output]`, `y [rows, output]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AffineDims {
    /// Rows of `x` and `y`.
    pub rows: usize,
    /// Features in.
    pub input: usize,
    /// Features out.
    pub output: usize,
}

impl AffineDims {
    fn check(self, name: &str, got: usize, want: usize) -> Result<(), ShapeError> {
        if got == want {
            Ok(())
        } else {
            Err(ShapeError(format!(
                "affine map {self:?}: {name} has {got} values, expected {want}"
            )))
        }
    }

    /// `W` as the right operand of `x · Wᵀ`: an `[input, output]` view.
    fn w_t<'a>(self, w: &'a [f32], layout: Layout) -> View<'a> {
        match layout {
            Layout::OutIn => View::row_major(w, self.output, self.input).t(),
            Layout::InOut => View::row_major(w, self.input, self.output),
        }
    }
}

/// `y = x Wᵀ + b` (no bias when `b` is `None`), row-major `[rows, output]`.
pub fn affine(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    d: AffineDims,
    layout: Layout,
) -> Result<Vec<f32>, ShapeError> {
    d.check("x", x.len(), d.rows * d.input)?;
    d.check("W", w.len(), d.output * d.input)?;
    let mut y = match b {
        Some(b) => {
            d.check("b", b.len(), d.output)?;
            let mut y = Vec::with_capacity(d.rows * d.output);
            for _ in 0..d.rows {
                y.extend_from_slice(b);
            }
            y
        }
        None => vec![0.0; d.rows * d.output],
    };
    matmul_parallel(
        &mut y,
        View::row_major(x, d.rows, d.input),
        d.w_t(w, layout),
        b.is_some(),
    );
    Ok(y)
}

/// Which gradients [`affine_backward`] computes (a parent that needs none costs nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// `dL/dx`.
    pub x: bool,
    /// `dL/dW`.
    pub w: bool,
    /// `dL/db`.
    pub b: bool,
}

/// The gradients of one affine map; `None` where not [`Wanted`].
#[derive(Debug, Clone, PartialEq)]
pub struct AffineGrads {
    /// `dL/dx = dy W`, `[rows, input]`.
    pub x: Option<Vec<f32>>,
    /// `dL/dW = dyᵀ x`, in `W`'s layout.
    pub w: Option<Vec<f32>>,
    /// `dL/db`: the column sums of `dy`, `[output]`.
    pub b: Option<Vec<f32>>,
}

/// The backward pass of [`affine`] from `dy = dL/dy [rows, output]`.
pub fn affine_backward(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    d: AffineDims,
    layout: Layout,
    wanted: Wanted,
) -> Result<AffineGrads, ShapeError> {
    d.check("dy", dy.len(), d.rows * d.output)?;
    d.check("x", x.len(), d.rows * d.input)?;
    d.check("W", w.len(), d.output * d.input)?;
    let dy_view = View::row_major(dy, d.rows, d.output);
    let x_view = View::row_major(x, d.rows, d.input);
    let dx = wanted.x.then(|| {
        let mut dx = vec![0.0; d.rows * d.input];
        matmul_parallel(&mut dx, dy_view, d.w_t(w, layout).t(), false);
        dx
    });
    let dw = wanted.w.then(|| {
        let mut dw = vec![0.0; d.output * d.input];
        match layout {
            Layout::OutIn => matmul_parallel(&mut dw, dy_view.t(), x_view, false),
            Layout::InOut => matmul_parallel(&mut dw, x_view.t(), dy_view, false),
        }
        dw
    });
    let db = wanted.b.then(|| {
        let mut db = vec![0.0; d.output];
        for row in dy.chunks_exact(d.output.max(1)) {
            for (sum, v) in db.iter_mut().zip(row) {
                *sum += v;
            }
        }
        db
    });
    Ok(AffineGrads {
        x: dx,
        w: dw,
        b: db,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `W [output, input]` as `[input, output]`.
    fn transpose(w: &[f32], output: usize, input: usize) -> Vec<f32> {
        (0..input * output)
            .map(|k| w[(k % output) * input + k / output])
            .collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn forward_and_backward_match_the_definition_in_both_layouts() {
        // Large enough that the products run on rayon's threads.
        let d = AffineDims {
            rows: 300,
            input: 37,
            output: 41,
        };
        let value = |i: usize, m: usize| ((i * 7919 + m) % 997) as f32 / 997.0 - 0.5;
        let x: Vec<f32> = (0..d.rows * d.input).map(|i| value(i, 1)).collect();
        let w: Vec<f32> = (0..d.output * d.input).map(|i| value(i, 2)).collect();
        let b: Vec<f32> = (0..d.output).map(|i| value(i, 3)).collect();
        let dy: Vec<f32> = (0..d.rows * d.output).map(|i| value(i, 4)).collect();
        let dot = |r: usize, o: usize| -> f32 {
            (0..d.input)
                .map(|i| x[r * d.input + i] * w[o * d.input + i])
                .sum()
        };
        let want_y: Vec<f32> = (0..d.rows * d.output)
            .map(|k| b[k % d.output] + dot(k / d.output, k % d.output))
            .collect();
        let want_dx: Vec<f32> = (0..d.rows * d.input)
            .map(|k| {
                let (r, i) = (k / d.input, k % d.input);
                (0..d.output)
                    .map(|o| dy[r * d.output + o] * w[o * d.input + i])
                    .sum()
            })
            .collect();
        let want_dw: Vec<f32> = (0..d.output * d.input)
            .map(|k| {
                let (o, i) = (k / d.input, k % d.input);
                (0..d.rows)
                    .map(|r| dy[r * d.output + o] * x[r * d.input + i])
                    .sum()
            })
            .collect();
        let want_db: Vec<f32> = (0..d.output)
            .map(|o| (0..d.rows).map(|r| dy[r * d.output + o]).sum())
            .collect();
        let all = Wanted {
            x: true,
            w: true,
            b: true,
        };
        for layout in [Layout::OutIn, Layout::InOut] {
            let w = match layout {
                Layout::OutIn => w.clone(),
                Layout::InOut => transpose(&w, d.output, d.input),
            };
            close(&affine(&x, &w, Some(&b), d, layout).unwrap(), &want_y);
            let no_bias = affine(&x, &w, None, d, layout).unwrap();
            let y_minus_b: Vec<f32> = want_y
                .iter()
                .enumerate()
                .map(|(k, y)| y - b[k % d.output])
                .collect();
            close(&no_bias, &y_minus_b);
            let g = affine_backward(&dy, &x, &w, d, layout, all).unwrap();
            close(g.x.as_deref().unwrap(), &want_dx);
            let dw = match layout {
                Layout::OutIn => want_dw.clone(),
                Layout::InOut => transpose(&want_dw, d.output, d.input),
            };
            close(g.w.as_deref().unwrap(), &dw);
            close(g.b.as_deref().unwrap(), &want_db);
            let only_w = Wanted {
                x: false,
                w: true,
                b: false,
            };
            let g = affine_backward(&dy, &x, &w, d, layout, only_w).unwrap();
            assert!(g.x.is_none() && g.b.is_none() && g.w.is_some());
        }
    }

    #[test]
    fn wrong_lengths_are_errors_naming_the_buffer() {
        let d = AffineDims {
            rows: 2,
            input: 3,
            output: 4,
        };
        let err = affine(&[0.0; 6], &[0.0; 11], None, d, Layout::OutIn).unwrap_err();
        assert!(
            err.to_string().contains("W has 11 values, expected 12"),
            "{err}"
        );
        let err = affine(&[0.0; 6], &[0.0; 12], Some(&[0.0; 3]), d, Layout::OutIn).unwrap_err();
        assert!(err.to_string().contains("b has 3 values"), "{err}");
    }
}
