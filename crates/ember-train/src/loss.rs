//! Losses that ignore padding.

use burn::prelude::*;

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
    flat_cross_entropy(
        logits.reshape([n, vocab]),
        targets.reshape([n]),
        mask.reshape([n]),
    )
}

/// [`masked_cross_entropy`] of time-major logits `[seq, batch, vocab]` (as
/// `CharLm::forward_time_major` gives them), with `targets` and `mask` batch-major
/// `[batch, seq]` as batches hold them. The same loss; the logits are flattened as they lie,
/// and only the small targets and mask are transposed.
pub fn masked_cross_entropy_time_major<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
    mask: Tensor<B, 2, Bool>,
) -> Tensor<B, 1> {
    let [steps, batch, vocab] = logits.dims();
    let n = batch * steps;
    flat_cross_entropy(
        logits.reshape([n, vocab]),
        targets.swap_dims(0, 1).reshape([n]),
        mask.swap_dims(0, 1).reshape([n]),
    )
}

/// The masked mean over `n` positions: `logits [n, vocab]`, `targets [n]`, `mask [n]` (one
/// autodiff node on the CPU backends; see [`ember_nn::cross_entropy`]).
fn flat_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    mask: Tensor<B, 1, Bool>,
) -> Tensor<B, 1> {
    ember_nn::cross_entropy::masked_cross_entropy(logits, targets, mask)
}

/// Mean squared error and mean absolute error over the valid steps only (PyTorch's
/// `mse_loss` / `l1_loss` on the selected elements).
///
/// `predictions` and `targets` are `[batch, seq, features]`; `targets` may hold NaN at padded
/// steps; `mask` `[batch, seq]` is true at valid steps.
pub fn masked_regression_errors<B: Backend>(
    predictions: Tensor<B, 3>,
    targets: Tensor<B, 3>,
    mask: Tensor<B, 2, Bool>,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let [batch, steps, features] = predictions.dims();
    let weight = mask.float().reshape([batch, steps, 1]);
    let targets = targets.clone().mask_fill(targets.is_nan(), 0.0);
    let diff = (predictions - targets) * weight.clone();
    let count = (weight.sum() * features as f64).clamp_min(1.0);
    let mse = diff.clone().powi_scalar(2).sum() / count.clone();
    let mae = diff.abs().sum() / count;
    (mse, mae)
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

    #[test]
    fn time_major_logits_give_the_same_loss() {
        let d = Default::default();
        let (batch, steps, vocab) = (3, 4, 5);
        let values: Vec<f32> = (0..batch * steps * vocab)
            .map(|i| (i as f32 * 0.37).sin() * 2.0)
            .collect();
        let logits =
            Tensor::<NdArray, 1>::from_floats(&values[..], &d).reshape([batch, steps, vocab]);
        let targets: Vec<i64> = (0..batch * steps).map(|i| (i * 7 % vocab) as i64).collect();
        let targets =
            Tensor::<NdArray, 1, Int>::from_ints(&targets[..], &d).reshape([batch, steps]);
        let valid: Vec<bool> = (0..batch * steps)
            .map(|i| i % steps < 1 + i / steps)
            .collect();
        let mask =
            Tensor::<NdArray, 2, Bool>::from_bool(TensorData::new(valid, [batch, steps]), &d);
        let want: f32 =
            masked_cross_entropy(logits.clone(), targets.clone(), mask.clone()).into_scalar();
        // Time-major and contiguous, as `CharLm::forward_time_major` gives them.
        let time_major = Tensor::<NdArray, 3>::from_data(logits.swap_dims(0, 1).into_data(), &d);
        let got: f32 = masked_cross_entropy_time_major(time_major, targets, mask).into_scalar();
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn regression_errors_skip_padded_steps() {
        let d = Default::default();
        let pred = Tensor::<NdArray, 3>::from_floats([[[1.0], [5.0]], [[2.0], [0.0]]], &d);
        let target = Tensor::<NdArray, 3>::from_floats([[[0.0], [f32::NAN]], [[4.0], [1.0]]], &d);
        let mask = Tensor::<NdArray, 2, Bool>::from_bool(
            TensorData::from([[true, false], [true, true]]),
            &d,
        );
        let (mse, mae) = masked_regression_errors(pred, target, mask);
        // Valid errors: 1, -2, -1.
        assert!((mse.into_scalar() - 2.0).abs() < 1e-6);
        assert!((mae.into_scalar() - 4.0 / 3.0).abs() < 1e-6);
    }
}
