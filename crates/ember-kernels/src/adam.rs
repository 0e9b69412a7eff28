//! One Adam or AdamW step over a parameter, its gradient and both moments in a single pass.
//!
//! Burn's `Adam` and `AdamW` run about a dozen tensor ops per parameter, each a pass over
//! memory with a fresh buffer; this is the same arithmetic, in the same order and precision,
//! element by element, so the values match Burn's to the last bit:
//!
//! ```text
//! both:   m ← β₁ m + (1 − β₁) g            v ← β₂ v + (1 − β₂) g²
//! Adam:   s = √(1 − β₂ᵗ)   c = s / (1 − β₁ᵗ)   p ← p − lr · (c m) / (√v + ε s)
//! AdamW:  p ← k p − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε),   k = 1 − lr · λ
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
    /// Which update.
    pub rule: Rule,
}

/// The update a step applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Adam, as Burn's `Adam` computes it.
    Adam,
    /// AdamW, as Burn's `AdamW` computes it: the parameter is first scaled by `keep`,
    /// `1 − lr · weight_decay` (rounded from `f64`, as Burn does).
    AdamW {
        /// The factor the parameter keeps.
        keep: f32,
    },
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
    let (correction_1, correction_2) = (1.0 - s.beta_1.powi(s.time), 1.0 - s.beta_2.powi(s.time));
    let elements = param.iter_mut().zip(grad).zip(m).zip(v);
    match s.rule {
        Rule::Adam => {
            let root = correction_2.sqrt();
            let (factor, floor) = (root / correction_1, s.epsilon * root);
            for (((p, &g), m), v) in elements {
                *m = *m * s.beta_1 + g * keep_1;
                *v = *v * s.beta_2 + g * g * keep_2;
                *p -= *m * factor / (v.sqrt() + floor) * s.lr;
            }
        }
        Rule::AdamW { keep } => {
            for (((p, &g), m), v) in elements {
                *m = *m * s.beta_1 + g * keep_1;
                *v = *v * s.beta_2 + g * g * keep_2;
                let delta = *m / correction_1 / ((*v / correction_2).sqrt() + s.epsilon);
                *p = *p * keep - delta * s.lr;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one element at a time (AdamW: decoupled decay `λ`).
    fn reference(p: f32, g: f32, m: f32, v: f32, s: AdamStep, decay: f32) -> [f32; 3] {
        let m = s.beta_1 * m + (1.0 - s.beta_1) * g;
        let v = s.beta_2 * v + (1.0 - s.beta_2) * g * g;
        let m_hat = m / (1.0 - s.beta_1.powi(s.time));
        let v_hat = v / (1.0 - s.beta_2.powi(s.time));
        let p = p * (1.0 - s.lr * decay);
        [p - s.lr * m_hat / (v_hat.sqrt() + s.epsilon), m, v]
    }

    #[test]
    fn matches_the_definition_on_and_off_the_pool() {
        let rules = [
            (Rule::Adam, 0.0),
            (
                Rule::AdamW {
                    keep: 1.0 - 0.01 * 0.1,
                },
                0.1,
            ),
        ];
        let cases = rules
            .into_iter()
            .flat_map(|r| [7, 3 * CHUNK + 5].map(|n| (n, r)));
        for (n, (rule, decay)) in cases {
            let step = AdamStep {
                lr: 0.01,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-8,
                time: 3,
                rule,
            };
            let f = |i: usize, k: f32| (i as f32 * k).sin() * 0.5;
            let mut p: Vec<f32> = (0..n).map(|i| f(i, 0.37)).collect();
            let g: Vec<f32> = (0..n).map(|i| f(i, 1.3)).collect();
            let mut m: Vec<f32> = (0..n).map(|i| f(i, 0.7) * 0.1).collect();
            let mut v: Vec<f32> = (0..n).map(|i| f(i, 0.9).abs() * 0.01).collect();
            let want: Vec<[f32; 3]> = (0..n)
                .map(|i| reference(p[i], g[i], m[i], v[i], step, decay))
                .collect();
            adam(&mut p, &g, &mut m, &mut v, step);
            for (i, w) in want.iter().enumerate() {
                for (got, want) in [p[i], m[i], v[i]].into_iter().zip(w) {
                    assert!(
                        (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                        "{rule:?}, n {n}, element {i}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
