//! Dropout on plain `f32` buffers, with masks from a counter-based generator.
//!
//! ```text
//! keep_i = u_i ≥ round(p · 2¹⁶)        y_i = x_i · (keep_i ? 1 / (1 − p) : 0)
//! dx_i   = dy_i · (keep_i ? 1 / (1 − p) : 0)
//! ```
//!
//! `u_i` is a 16-bit half of a Philox word: element `i` of block `b = i / 128` (offset
//! `e = i % 128`) is half `e % 2` (low first) of word `e / 32` of counter `16 b + (e % 32) / 2`,
//! so sixteen counters fill a block with the words laid out as they are computed. Sixteen bits
//! per element halve the generator's work; the drop rate is `p` rounded to a multiple of
//! 2⁻¹⁶.
//!
//! The generator is Philox4×32-10 (Salmon et al., *Parallel random numbers: as easy as
//! 1, 2, 3*, SC 2011), the one cuRAND and PyTorch's CUDA dropout use: element `i`'s draw is a
//! pure function of the key and `i`, so the buffer splits into chunks on rayon's threads
//! with the same mask whatever the thread count, and the mask is kept as one byte per
//! element for the backward pass instead of an `f32` tensor. `1 / (1 − p)` is rounded to
//! `f32` once, and `x · (1 / (1 − p))` is what Burn's `Dropout` computes for a kept element.

use rayon::prelude::*;

use crate::simd::multiversion;

/// Elements per task on rayon's pool (a multiple of the generator's four outputs).
const CHUNK: usize = 1 << 15;

/// Philox counters computed side by side.
const LANES: usize = 16;

/// Elements per vectorised block: eight 16-bit draws from each of [`LANES`] counters.
const BLOCK: usize = 8 * LANES;

/// Philox4×32's first round multiplier (applied to counter word 0).
pub const M0: u32 = 0xD251_1F53;
/// Philox4×32's second round multiplier (applied to counter word 2).
pub const M1: u32 = 0xCD9E_8D57;
/// Philox4×32's increment of key word 0 (the golden ratio as a 32-bit fraction).
pub const W0: u32 = 0x9E37_79B9;
/// Philox4×32's increment of key word 1 (√3 − 1 as a 32-bit fraction).
pub const W1: u32 = 0xBB67_AE85;

/// Philox4×32-10 of `counter` under `key`: four independent uniform 32-bit words.
pub fn philox(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// One dropout draw: its key and its drop probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mask {
    /// The generator's key; the same key gives the same mask.
    pub key: u64,
    /// The probability `p` that an element is zeroed, in `[0, 1)`.
    pub prob: f32,
}

impl Mask {
    /// Draws below this are dropped: `p · 2¹⁶`, rounded.
    pub fn threshold(self) -> u16 {
        (f64::from(self.prob) * 65_536.0)
            .round()
            .min(f64::from(u16::MAX)) as u16
    }

    /// `1 / (1 − p)`, the factor a kept element is scaled by.
    pub fn scale(self) -> f32 {
        (1.0 / (1.0 - f64::from(self.prob))) as f32
    }

    fn key_words(self) -> [u32; 2] {
        [self.key as u32, (self.key >> 32) as u32]
    }
}

/// The key folded from three 24-bit draws `d` (each below 2²⁴):
/// `d₀ · 2⁴⁸ + d₁ · 2²⁴ + d₂` modulo 2⁶⁴ (the bits combine by `xor`), so the low word is
/// `d₁ · 2²⁴ ^ d₂` and the high word `d₀ · 2¹⁶ ^ d₁ / 2⁸`, all modulo 2³², as a GPU kernel without
/// 64-bit integers folds them.
pub fn key_of(d: [u32; 3]) -> u64 {
    d.iter().fold(0u64, |key, &d| (key << 24) ^ u64::from(d))
}

/// Applies dropout to `x`: returns `y` and the mask (1 where kept, 0 where dropped), one byte
/// per element.
///
/// # Panics
/// When `mask.prob` is outside `[0, 1)` (a caller's bug: configs check it).
pub fn forward(x: &[f32], mask: Mask) -> (Vec<f32>, Vec<u8>) {
    assert!(
        (0.0..1.0).contains(&mask.prob),
        "dropout probability {} is outside [0, 1)",
        mask.prob
    );
    let mut y = vec![0.0f32; x.len()];
    let mut keep = vec![0u8; x.len()];
    let run = |((x, y), keep): ((&[f32], &mut [f32]), &mut [u8]), first: usize| {
        forward_chunk(x, y, keep, first as u64, mask);
    };
    if x.len() <= CHUNK {
        run(((x, &mut y), &mut keep), 0);
    } else {
        x.par_chunks(CHUNK)
            .zip(y.par_chunks_mut(CHUNK))
            .zip(keep.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(i, parts)| run(parts, i * CHUNK));
    }
    (y, keep)
}

/// The gradient through dropout: `dy` scaled where `keep` is 1 and zeroed elsewhere, in place.
///
/// # Panics
/// When `dy` and `keep` differ in length (a caller's bug: one tensor's buffers).
pub fn backward(dy: &mut [f32], keep: &[u8], scale: f32) {
    assert_eq!(
        dy.len(),
        keep.len(),
        "a gradient and its mask have one length"
    );
    if dy.len() <= CHUNK {
        backward_chunk(dy, keep, scale);
    } else {
        dy.par_chunks_mut(CHUNK)
            .zip(keep.par_chunks(CHUNK))
            .for_each(|(dy, keep)| backward_chunk(dy, keep, scale));
    }
}

multiversion! {
    /// Dropout over one chunk whose first element has index `first` (a multiple of [`BLOCK`]).
    fn forward_chunk(x: &[f32], y: &mut [f32], keep: &mut [u8], first: u64, mask: Mask) {
        let threshold = mask.threshold();
        let scale = mask.scale();
        let key = mask.key_words();
        for (block, ((x, y), keep)) in x
            .chunks(BLOCK)
            .zip(y.chunks_mut(BLOCK))
            .zip(keep.chunks_mut(BLOCK))
            .enumerate()
        {
            let words = draws(key, first / BLOCK as u64 + block as u64);
            for (((x, y), keep), &w) in x.iter().zip(y.iter_mut()).zip(keep.iter_mut()).zip(&words) {
                let kept = w >= threshold;
                *keep = u8::from(kept);
                // A product, as PyTorch's and Burn's: a dropped NaN stays NaN.
                *y = x * if kept { scale } else { 0.0 };
            }
        }
    }
}

multiversion! {
    /// [`backward`] over one chunk.
    fn backward_chunk(dy: &mut [f32], keep: &[u8], scale: f32) {
        for (g, &k) in dy.iter_mut().zip(keep) {
            *g *= if k != 0 { scale } else { 0.0 };
        }
    }
}

/// The [`BLOCK`] 16-bit draws of block `block`, in element order (see the module's doc).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn draws(key: [u32; 2], block: u64) -> [u16; BLOCK] {
    // Word-major lanes, so each round is the same operation over sixteen lanes.
    let mut c = [[0u32; LANES]; 4];
    for lane in 0..LANES {
        let n = block * LANES as u64 + lane as u64;
        c[0][lane] = n as u32;
        c[1][lane] = (n >> 32) as u32;
    }
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let mut next = [[0u32; LANES]; 4];
        for lane in 0..LANES {
            let p0 = u64::from(M0) * u64::from(c[0][lane]);
            let p1 = u64::from(M1) * u64::from(c[2][lane]);
            next[0][lane] = (p1 >> 32) as u32 ^ c[1][lane] ^ k[0];
            next[1][lane] = p1 as u32;
            next[2][lane] = (p0 >> 32) as u32 ^ c[3][lane] ^ k[1];
            next[3][lane] = p0 as u32;
        }
        c = next;
    }
    let mut out = [0u16; BLOCK];
    for (w, word) in c.iter().enumerate() {
        for (lane, v) in word.iter().enumerate() {
            out[w * 2 * LANES + 2 * lane] = *v as u16;
            out[w * 2 * LANES + 2 * lane + 1] = (v >> 16) as u16;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's known answers for Philox4×32-10 (`kat_vectors`).
    #[test]
    fn philox_gives_random123s_known_answers() {
        assert_eq!(
            philox([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    /// The fold's words are the ones its doc gives, for draws with every bit set and none.
    #[test]
    fn the_key_of_three_draws_has_the_documented_words() {
        for d in [
            [0xFF_FFFF, 0xFF_FFFF, 0xFF_FFFF],
            [1, 2, 3],
            [0xAB_CDEF, 0x12_3456, 0],
        ] {
            let key = key_of(d);
            assert_eq!(key as u32, (d[1] << 24) ^ d[2], "{d:?}: low word");
            assert_eq!(
                (key >> 32) as u32,
                (d[0] << 16) ^ (d[1] >> 8),
                "{d:?}: high word"
            );
        }
        assert_ne!(key_of([1, 2, 3]), key_of([1, 3, 2]));
    }

    /// Element `i`'s draw by the module doc's definition, from [`philox`] alone.
    fn draw(key: [u32; 2], i: u64) -> u16 {
        let (block, e) = (i / BLOCK as u64, i % BLOCK as u64);
        let n = block * LANES as u64 + (e % 32) / 2;
        let word = philox([n as u32, (n >> 32) as u32, 0, 0], key)[(e / 32) as usize];
        if e % 2 == 0 {
            word as u16
        } else {
            (word >> 16) as u16
        }
    }

    #[test]
    fn the_blocked_draws_are_the_defined_halves_of_philoxs_words() {
        let key = [0x1234_5678, 0x9abc_def0];
        // Counters that cross 2³², where the high counter word starts to count.
        let block = (1u64 << 32) / LANES as u64 - 1;
        for b in [0, 1, block, block + 1] {
            let words = draws(key, b);
            for (e, w) in words.iter().enumerate() {
                assert_eq!(
                    *w,
                    draw(key, b * BLOCK as u64 + e as u64),
                    "block {b} element {e}"
                );
            }
        }
    }

    fn input(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37).sin() + 1.5).collect()
    }

    #[test]
    fn the_drop_rate_is_p_within_five_standard_deviations() {
        let n = 200_003;
        let x = input(n);
        for prob in [0.1f32, 0.2, 0.5, 0.9] {
            let (y, keep) = forward(&x, Mask { key: 7, prob });
            let dropped = keep.iter().filter(|&&k| k == 0).count() as f64;
            let sd = (n as f64 * f64::from(prob) * (1.0 - f64::from(prob))).sqrt();
            let expected = n as f64 * f64::from(prob);
            assert!(
                (dropped - expected).abs() < 5.0 * sd,
                "p = {prob}: dropped {dropped}, expected {expected} ± {sd}"
            );
            let scale = Mask { key: 7, prob }.scale();
            for ((x, y), k) in x.iter().zip(&y).zip(&keep) {
                let want = x * if *k == 1 { scale } else { 0.0 };
                assert_eq!(y.to_bits(), want.to_bits());
            }
        }
    }

    #[test]
    fn a_dropped_nan_or_infinity_stays_nan_as_in_pytorch() {
        let x = [f32::NAN, f32::INFINITY, -1.0, 2.0];
        let (y, keep) = forward(&x.repeat(64), Mask { key: 1, prob: 0.5 });
        for (i, (y, k)) in y.iter().zip(&keep).enumerate() {
            match (i % 4, *k) {
                (0, _) | (1, 0) => assert!(y.is_nan(), "element {i}: {y}"),
                (1, _) => assert_eq!(*y, f32::INFINITY),
                _ => assert!(y.is_finite()),
            }
        }
    }

    #[test]
    fn probability_zero_keeps_everything_unscaled() {
        let x = input(1000);
        let (y, keep) = forward(&x, Mask { key: 3, prob: 0.0 });
        assert!(keep.iter().all(|&k| k == 1));
        assert_eq!(y, x);
    }

    #[test]
    fn one_key_gives_one_mask_and_another_key_another() {
        let x = input(3 * CHUNK + 17);
        let a = forward(&x, Mask { key: 11, prob: 0.3 });
        let b = forward(&x, Mask { key: 11, prob: 0.3 });
        let c = forward(&x, Mask { key: 12, prob: 0.3 });
        assert_eq!(a.1, b.1);
        let same = a.1.iter().zip(&c.1).filter(|(u, v)| u == v).count();
        // Two independent masks at p = 0.3 agree on 0.58 of the elements.
        let share = same as f64 / x.len() as f64;
        assert!((share - 0.58).abs() < 0.02, "masks agree on {share}");
    }

    #[test]
    fn chunks_on_threads_give_the_mask_of_one_pass() {
        let n = 2 * CHUNK + 100;
        let x = input(n);
        let mask = Mask { key: 5, prob: 0.25 };
        let (_, keep) = forward(&x, mask);
        for (i, k) in keep.iter().enumerate() {
            let u = draw(mask.key_words(), i as u64);
            assert_eq!(*k == 1, u >= mask.threshold(), "element {i}");
        }
    }

    #[test]
    fn backward_scales_kept_gradients_and_zeroes_the_rest() {
        let n = CHUNK + 33;
        let x = input(n);
        let mask = Mask { key: 9, prob: 0.4 };
        let (_, keep) = forward(&x, mask);
        let mut dy = x.clone();
        backward(&mut dy, &keep, mask.scale());
        for ((g, x), k) in dy.iter().zip(&x).zip(&keep) {
            let want = x * if *k == 1 { mask.scale() } else { 0.0 };
            assert_eq!(g.to_bits(), want.to_bits());
        }
    }
}
