//! Dropout on wgpu as one autodiff node: one CubeCL kernel draws the Philox mask and applies
//! it.
//!
//! ```text
//! y_i = x_i · (u_i ≥ round(p · 2¹⁶) ? 1 / (1 − p) : 0)        dx_i = dy_i · (same factor)
//! ```
//!
//! `u_i` is element `i`'s 16-bit Philox4×32-10 draw, laid out as in [`ember_kernels::dropout`]:
//! for the same key the kernel's mask is the CPU's, bit for bit. The key is three 24-bit draws
//! of the backend's own generator (so `B::seed` makes masks repeatable), made and read on the
//! device: nothing waits for the GPU. The backward pass runs the same kernel with the same key
//! on the incoming gradient, so no mask is kept at all: counter-based draws are cheaper to
//! recompute than to store and read back (FlashAttention's dropout does the same). One thread
//! computes one Philox counter, the eight draws of which cover elements `128 b + 32 w + 2 l + h`
//! (`w` the word, `h` its half), so sixteen neighbouring threads read and write 32 neighbouring
//! values per word.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Distribution, Tensor, TensorMetadata};
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use ember_kernels::dropout::{Mask, M0, M1, W0, W1};

use super::{empty, grid, primitive, CubeBridge};

/// The high word of the 64-bit product `a · b`, from 16-bit halves (WGSL has no 64-bit
/// integers); the low word is the wrapping `a * b`.
#[cube]
fn mul_hi(a: u32, b: u32) -> u32 {
    let al = a & 0xFFFFu32;
    let ah = a >> 16u32;
    let bl = b & 0xFFFFu32;
    let bh = b >> 16u32;
    let lh = al * bh;
    let hl = ah * bl;
    let mid = ((al * bl) >> 16u32) + (lh & 0xFFFFu32) + (hl & 0xFFFFu32);
    ah * bh + (lh >> 16u32) + (hl >> 16u32) + (mid >> 16u32)
}

/// Both 16-bit halves of Philox word `word` onto elements `i` and `i + 1` (those below `n`):
/// `y = x · (draw ≥ threshold ? scale : 0)`, a product, so a dropped NaN stays NaN, as in
/// PyTorch.
#[cube]
#[allow(clippy::too_many_arguments)]
fn apply_word(
    x: &Array<f32>,
    y: &mut Array<f32>,
    i: usize,
    n: usize,
    word: u32,
    threshold: u32,
    scale: f32,
) {
    if i < n {
        y[i] = x[i] * select((word & 0xFFFFu32) >= threshold, scale, 0.0f32);
    }
    if i + 1 < n {
        y[i + 1] = x[i + 1] * select((word >> 16u32) >= threshold, scale, 0.0f32);
    }
}

/// Dropout of the `n` values of `x` into `y`, one thread per Philox counter (`counters` of
/// them, sixteen per block of 128 values); `key` holds the three 24-bit draws the key is
/// folded from ([`ember_kernels::dropout::key_of`]).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn dropout_kernel(
    x: &Array<f32>,
    key: &Array<f32>,
    y: &mut Array<f32>,
    threshold: u32,
    scale: f32,
    n: u32,
    counters: u32,
) {
    let counter = ABSOLUTE_POS as u32;
    if counter >= counters {
        terminate!();
    }
    let d0 = u32::cast_from(key[0]);
    let d1 = u32::cast_from(key[1]);
    let d2 = u32::cast_from(key[2]);
    let mut k0 = (d1 << 24u32) ^ d2;
    let mut k1 = (d0 << 16u32) ^ (d1 >> 8u32);
    let mut c0 = counter;
    let mut c1 = 0u32;
    let mut c2 = 0u32;
    let mut c3 = 0u32;
    #[unroll]
    for _ in 0..10u32 {
        let hi0 = mul_hi(M0, c0);
        let lo0 = M0 * c0;
        let hi1 = mul_hi(M1, c2);
        let lo1 = M1 * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += W0;
        k1 += W1;
    }
    let n = n as usize;
    let first = ((counter / 16u32) * 128u32 + (counter % 16u32) * 2u32) as usize;
    apply_word(x, y, first, n, c0, threshold, scale);
    apply_word(x, y, first + 32, n, c1, threshold, scale);
    apply_word(x, y, first + 64, n, c2, threshold, scale);
    apply_word(x, y, first + 96, n, c3, threshold, scale);
}

/// One draw's parameters: its key (three 24-bit draws, on the device) and the mask's threshold
/// and scale.
#[derive(Debug, Clone)]
pub(super) struct Draw<B: CubeBridge> {
    key: CubeTensor<B::Runtime>,
    threshold: u32,
    scale: f32,
}

impl<B: CubeBridge> Draw<B> {
    /// A fresh draw with probability `prob` from the backend's generator, on `device`.
    fn new(prob: f64, device: &B::Device) -> Self {
        let key = Tensor::<B, 1>::random([3], Distribution::Uniform(0.0, 16_777_216.0), device);
        Self::with_key(B::to_cube(primitive(key)), prob)
    }

    /// The draw of `key` (three 24-bit values as `f32`) with probability `prob`.
    fn with_key(key: CubeTensor<B::Runtime>, prob: f64) -> Self {
        let mask = Mask {
            key: 0,
            prob: prob as f32,
        };
        Self {
            key,
            threshold: u32::from(mask.threshold()),
            scale: mask.scale(),
        }
    }

    /// `x` (any shape, read as flat) with this draw's mask applied, flat.
    fn apply(&self, x: FloatTensor<B>) -> FloatTensor<B> {
        let x = B::to_cube(x);
        let n = x.shape().num_elements();
        let n32 = u32::try_from(n).expect("dropout of fewer than 2³² values");
        let y = empty(&x, vec![n]);
        // Every counter of a partial last block: its elements lie in all of them.
        let (count, dim, counters) = grid(n.div_ceil(128) * 16);
        dropout_kernel::launch::<B::Runtime>(
            &x.client.clone(),
            count,
            dim,
            x.into_array_arg(),
            self.key.clone().into_array_arg(),
            y.clone().into_array_arg(),
            self.threshold,
            self.scale,
            n32,
            counters,
        );
        B::from_cube(y)
    }
}

/// The dropout node; one parent, `x`. Its state is the draw, not a mask.
#[derive(Debug)]
struct DropoutStep;

impl<B: CubeBridge> Backward<B, 1> for DropoutStep {
    type State = Draw<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        let dx = ops.state.apply(dy);
        if let [Some(parent)] = &ops.parents {
            grads.register::<B>(parent.id, dx);
        }
    }
}

/// Dropout of the flat `x` with probability `prob` as one node of `Autodiff<B, C>`'s graph.
pub(super) fn tracked<B: CubeBridge, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    prob: f64,
) -> FloatTensor<Autodiff<B, C>> {
    let node = x.node.clone();
    let draw = Draw::<B>::new(prob, &B::float_device(&x.primitive));
    let y = draw.apply(x.primitive);
    match DropoutStep.prepare::<C>([node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(draw, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::wgpu::WgpuDevice;
    use burn::backend::Wgpu;
    use burn::tensor::TensorData;

    use super::*;
    use crate::fused::tensor;

    /// `n` values of `x`, with a NaN, an infinity and a negative infinity among them.
    fn inputs(n: usize) -> Vec<f32> {
        let mut x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        x[5] = f32::NAN;
        x[17] = f32::INFINITY;
        x[130] = f32::NEG_INFINITY;
        x
    }

    /// For the same key, the kernel's output is `ember_kernels::dropout`'s (whose Philox is
    /// checked against Random123's known answers): every mask bit, product and NaN, for a
    /// length that ends inside a block and inside a counter.
    #[test]
    fn the_kernel_draws_the_cpu_mask_for_the_same_key() {
        let device = WgpuDevice::default();
        let n = 5 * 128 + 37;
        let x = inputs(n);
        for (draws, prob) in [([1u32, 2, 3], 0.3), ([16_000_000, 9_999_999, 77], 0.5)] {
            let key = Tensor::<Wgpu, 1>::from_data(
                TensorData::new(draws.map(|d| d as f32).to_vec(), [3]),
                &device,
            );
            let draw = Draw::<Wgpu>::with_key(<Wgpu as CubeBridge>::to_cube(primitive(key)), prob);
            let xt = Tensor::<Wgpu, 1>::from_data(TensorData::new(x.clone(), [n]), &device);
            let got: Vec<f32> = tensor::<Wgpu, 1>(draw.apply(primitive(xt)))
                .into_data()
                .iter::<f32>()
                .collect();
            let mask = Mask {
                key: ember_kernels::dropout::key_of(draws),
                prob: prob as f32,
            };
            let (want, keep) = ember_kernels::dropout::forward(&x, mask);
            assert_eq!(got.len(), n);
            for i in 0..n {
                let same = if want[i].is_nan() {
                    got[i].is_nan()
                } else {
                    got[i].to_bits() == want[i].to_bits()
                };
                assert!(
                    same,
                    "key {draws:?}, element {i}: kernel {} vs CPU {} (kept {})",
                    got[i], want[i], keep[i]
                );
            }
            let dropped = keep.iter().filter(|k| **k == 0).count() as f64 / n as f64;
            assert!((dropped - prob).abs() < 0.08, "drop rate {dropped}");
        }
    }
}
