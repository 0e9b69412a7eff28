//! Losses that ignore padding.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Mean next-token cross-entropy over the valid positions only, like PyTorch's
/// `cross_entropy(..., ignore_index=pad)`: the sum over valid tokens divided by their number
/// (Burn's `pad_tokens` option divides by all positions instead).
///
/// `logits` is `[batch, seq, vocab]`, `targets` `[batch, seq]`, `mask` true at valid steps.
pub fn masked_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2, Bool>,
) -> Tensor<B, 1> {
    let [batch, steps, vocab] = logits.dims();
    let n = batch * steps;
    // Padded targets hold a negative ignore value: point them at class 0 for the gather;
    // the mask then drops them.
    let targets = targets.mask_fill(mask.clone().bool_not(), 0);
    let nll = log_softmax(logits.reshape([n, vocab]), 1)
        .gather(1, targets.reshape([n, 1]))
        .neg()
        .reshape([n]);
    let mask = mask.reshape([n]).float();
    (nll * mask.clone()).sum() / mask.sum().clamp_min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn matches_pytorch_ignore_index_fixture() {
        // PyTorch: logits [1,2,3], targets [0, -100 ignored]: loss = -log_softmax(l0)[0] only.
        let d = Default::default();
        let logits = Tensor::<NdArray, 3>::from_floats([[[1.0, 2.0, 3.0], [5.0, -1.0, 0.0]]], &d);
        let targets = Tensor::<NdArray, 2, Int>::from_ints([[0, -100]], &d);
        let mask = Tensor::<NdArray, 2, Bool>::from_bool(TensorData::from([[true, false]]), &d);
        let loss: f32 = masked_cross_entropy(logits, targets, mask).into_scalar();
        let expected = -(1.0f32 - (1f32.exp() + 2f32.exp() + 3f32.exp()).ln());
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    }
}
