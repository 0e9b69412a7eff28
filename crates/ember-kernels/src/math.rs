//! `exp`, `σ` and `tanh` on `f32` as branch-free polynomials, so the gate loops vectorise
//! (libm's `expf`/`tanhf` are scalar calls). Cephes' `expf` reduction and polynomial: within
//! 2 ulp of `f32::exp` on `[-87, 88]`; `σ` and `tanh` built on it are within about `2e-7`
//! (absolute) of libm's.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split in two so `x − n ln 2` stays exact.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `1.5 · 2²³`: adding it rounds an `f32` of magnitude below `2²²` to an integer, which then
/// sits in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// `eˣ`, with `x` clamped to `[-87.3, 88.7]` (so `e^-100` is `1.2e-38`, not 0). Only float
/// and `u32` arithmetic, no `floor` or float-to-int cast, so it vectorises on every level.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let k = x * LOG2_E + ROUND;
    let n = k - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2ⁿ: n's bits, minus ROUND's, plus the exponent bias, into the exponent field.
    let scale = k.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23;
    y * f32::from_bits(scale)
}

/// The logistic function `1 / (1 + e⁻ˣ)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 1 − 2 / (e²ˣ + 1)`.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-40_000..=40_000).map(|i| i as f32 * 2.5e-3)
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        for x in grid().filter(|x| (-87.0..=88.0).contains(x)) {
            let (a, b) = (exp(x), x.exp());
            assert!(
                (a - b).abs() <= 2.5 * f32::EPSILON * b,
                "exp({x}): {a} vs {b}"
            );
        }
    }

    #[test]
    fn sigmoid_and_tanh_match_libm() {
        for x in grid().chain([-200.0, 200.0, f32::MAX, f32::MIN]) {
            let s = 1.0 / (1.0 + (-x).exp());
            assert!(
                (sigmoid(x) - s).abs() < 3e-7,
                "sigmoid({x}): {} vs {s}",
                sigmoid(x)
            );
            assert!(
                (tanh(x) - x.tanh()).abs() < 3e-7,
                "tanh({x}): {} vs {}",
                tanh(x),
                x.tanh()
            );
        }
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(sigmoid(0.0), 0.5);
    }
}
