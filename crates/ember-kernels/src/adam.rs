//! One Adam step over a parameter, its gradient and both moments in a single pass.
//!
//! Burn's `Adam` runs about a dozen tensor ops per parameter, each a pass over memory with a
//! fresh buffer; this is the same arithmetic, in the same order and precision, element by
//! element, so the values match Burn's to the last bit:
//!
//! ```text
//! m ← β₁ m + (1 − β₁) g            v ← β₂ v + (1 − β₂) g²
//! s = √(1 − β₂ᵗ)                   c = s / (1 − β₁ᵗ)
//! p ← p − lr · (c m) / (√v + ε s)
//! ```

use rayon::prelude::*;

/// Elements per task on rayon's pool; smaller parameters run on the calling thread.
const CHUNK: usize = 1 << 15;

/// Adam's hyper-parameters and the step's number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// The learning rate.
    pub lr: f32,
    /// The first moment's decay `β₁`.
    pub beta_1: f32,
    /// The second moment's decay `β₂`.
    pub beta_2: f32,
    /// `ε`, added to `√v̂`.
    pub epsilon: f32,
    /// The step's number `t`, from 1 (the moments are zero before step 1).
    pub time: i32,
}

/// Updates `param` and the moments `m`, `v` in place from `grad`, all of one length.
///
/// # Panics
/// When the slices differ in length (a caller's bug: they are one parameter's buffers).
pub fn adam(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], step: AdamStep) {
    let n = param.len();
    assert!(
        grad.len() == n && m.len() == n && v.len() == n,
        "a parameter, its gradient and its moments have one length"
    );
    if n <= CHUNK {
        update(param, grad, m, v, step);
    } else {
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| update(p, g, m, v, step));
    }
}

/// The update over one stretch of the buffers.
fn update(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
    let (keep_1, keep_2) = (1.0 - s.beta_1, 1.0 - s.beta_2);
    let correction_2 = (1.0 - s.beta_2.powi(s.time)).sqrt();
    let factor = correction_2 / (1.0 - s.beta_1.powi(s.time));
    let floor = s.epsilon * correction_2;
    for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(m).zip(v) {
        *m = *m * s.beta_1 + g * keep_1;
        *v = *v * s.beta_2 + g * g * keep_2;
        *p -= *m * factor / (v.sqrt() + floor) * s.lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one element at a time.
    fn reference(p: f32, g: f32, m: f32, v: f32, s: AdamStep) -> [f32; 3] {
        let m = s.beta_1 * m + (1.0 - s.beta_1) * g;
        let v = s.beta_2 * v + (1.0 - s.beta_2) * g * g;
        let m_hat = m / (1.0 - s.beta_1.powi(s.time));
        let v_hat = v / (1.0 - s.beta_2.powi(s.time));
        [p - s.lr * m_hat / (v_hat.sqrt() + s.epsilon), m, v]
    }

    #[test]
    fn matches_the_definition_on_and_off_the_pool() {
        for n in [7, 3 * CHUNK + 5] {
            let step = AdamStep {
                lr: 0.01,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
                time: 3,
            };
            let f = |i: usize, k: f32| (i as f32 * k).sin() * 0.5;
            let mut p: Vec<f32> = (0..n).map(|i| f(i, 0.37)).collect();
            let g: Vec<f32> = (0..n).map(|i| f(i, 1.3)).collect();
            let mut m: Vec<f32> = (0..n).map(|i| f(i, 0.7) * 0.1).collect();
            let mut v: Vec<f32> = (0..n).map(|i| f(i, 0.9).abs() * 0.01).collect();
            let want: Vec<[f32; 3]> = (0..n)
                .map(|i| reference(p[i], g[i], m[i], v[i], step))
                .collect();
            adam(&mut p, &g, &mut m, &mut v, step);
            for (i, w) in want.iter().enumerate() {
                for (got, want) in [p[i], m[i], v[i]].into_iter().zip(w) {
                    assert!(
                        (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                        "n {n}, element {i}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
