//! Safe wrappers around the `gemm` crate's strided f32 matrix product.

use gemm::Parallelism;

/// A read-only strided matrix view: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// The row-major `[rows, cols]` matrix at the start of `data`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "matrix view past its buffer");
        }
    }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`, with `dst` row-major
/// `[lhs.rows, rhs.cols]` at the start of the slice.
pub(crate) fn matmul(dst: &mut [f32], lhs: View, rhs: View, accumulate: bool) {
    product(dst, lhs, rhs, accumulate, Parallelism::None);
}

/// [`matmul`] on every thread of rayon's global pool (the one Burn's CPU backends use): for the
/// large products of a pass (weight gradients, input projections), where two threads halve the
/// time (LSTM T100 B32 H256: backward 34–38 → 29–32 ms). Products under [`PARALLEL_WORK`]
/// multiply-adds stay on the calling thread.
pub(crate) fn matmul_parallel(dst: &mut [f32], lhs: View, rhs: View, accumulate: bool) {
    let work = lhs.rows * lhs.cols * rhs.cols;
    let parallelism = if work < PARALLEL_WORK {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    product(dst, lhs, rhs, accumulate, parallelism);
}

/// Multiply-adds below which a product is not worth handing to other threads.
const PARALLEL_WORK: usize = 1 << 18;

fn product(dst: &mut [f32], lhs: View, rhs: View, accumulate: bool, parallelism: Parallelism) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(k, rhs.rows, "inner dimensions differ");
    assert!(dst.len() >= m * n, "output buffer too small");
    lhs.check();
    rhs.check();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // `matmul` keeps the per-step products on one thread: split over rayon, products this
    // small ([batch, H] × [H, G·H]) were slower.
    // SAFETY: the views were checked to lie inside their slices, `dst` holds `m × n` values,
    // and `dst` (a unique borrow) cannot overlap the shared borrows `lhs` and `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A row-major copy of the transpose of the row-major `[rows, cols]` matrix `a`, [`BAND`]
/// columns of `a` at a time: each row of the band goes to `BAND` rows of `t`, and `BAND`
/// output rows (a power-of-two stride apart for `W_hh`) still fit one L1 cache set. 16 did not:
/// `W_hh` of H256 took 1.2 ms, as long as one value at a time; with 8, 0.35 ms.
pub(crate) fn transposed(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; rows * cols];
    for c0 in (0..cols).step_by(BAND) {
        let c1 = (c0 + BAND).min(cols);
        for (r, row) in a.chunks_exact(cols).enumerate().take(rows) {
            for (c, &v) in (c0..c1).zip(&row[c0..c1]) {
                t[c * rows + r] = v;
            }
        }
    }
    t
}

/// Columns per band of [`transposed`].
const BAND: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_the_definition() {
        let (m, k, n) = (3, 4, 5);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 - 3.0).collect();
        let at = transposed(&a, m, k);
        let expect = |r: usize, c: usize| (0..k).map(|i| a[r * k + i] * b[i * n + c]).sum::<f32>();
        let mut d = vec![1.0; m * n];
        matmul(
            &mut d,
            View::row_major(&a, m, k),
            View::row_major(&b, k, n),
            true,
        );
        let mut e = vec![7.0; m * n];
        matmul(
            &mut e,
            View::row_major(&at, k, m).t(),
            View::row_major(&b, k, n),
            false,
        );
        for r in 0..m {
            for c in 0..n {
                assert_eq!(d[r * n + c], 1.0 + expect(r, c));
                assert_eq!(e[r * n + c], expect(r, c));
            }
        }
    }

    #[test]
    fn a_transpose_over_a_partial_band_matches_the_definition() {
        let (rows, cols) = (37, 21);
        let a: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let t = transposed(&a, rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(t[c * rows + r], a[r * cols + c]);
            }
        }
    }
}
