pub mod model;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use model::CharLm;

/// Sum of -log p(target) over the line's predicted tokens, and their count.
pub fn line_nll(model: &CharLm, tokens: &[usize], device: &Device) -> (f64, usize) {
    let inputs = &tokens[..tokens.len() - 1];
    let targets = &tokens[1..];
    let logits = model.forward(inputs, device);
    let [t, v] = logits.dims();
    let lp = log_softmax(logits, 1).into_data().convert::<f32>();
    let lp = lp.as_slice::<f32>().expect("f32 data");
    let mut s = 0.0f64;
    for (k, &y) in targets.iter().enumerate() {
        assert!(k < t && y < v);
        s -= lp[k * v + y] as f64;
    }
    (s, targets.len())
}

#[allow(deprecated)]
pub fn ndarray_device() -> Device {
    Device::ndarray()
}
