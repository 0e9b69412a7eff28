//! A trained character model as a PyTorch `state_dict` in safetensors: `embed.weight`,
//! `rnn.weight_ih_l0`, …, `head.weight`, `head.bias`, with PyTorch's layouts, so that
//! `model.load_state_dict(safetensors.torch.load_file(path))` loads it into
//!
//! ```python
//! class CharModel(torch.nn.Module):
//!     def __init__(self, vocab, embed, hidden, layers, cell=torch.nn.LSTM):
//!         super().__init__()
//!         self.embed = torch.nn.Embedding(vocab, embed)
//!         self.rnn = cell(embed, hidden, num_layers=layers, batch_first=True)
//!         self.head = torch.nn.Linear(hidden, vocab)
//! ```
//!
//! `ember import` reads the same names back.

use std::path::Path;

use burn::prelude::*;
use ember_nn::CharLm;
use safetensors::tensor::{Dtype, TensorView};

use crate::TrainError;

/// Name prefix of the embedding in an exported `state_dict`.
pub const EMBED: &str = "embed.";
/// Name prefix of the recurrent layers.
pub const RNN: &str = "rnn.";
/// Name prefix of the output head.
pub const HEAD: &str = "head.";

/// Every parameter of `model` under its PyTorch name, with PyTorch's shape and row-major values.
pub fn torch_state_dict<B: Backend>(model: &CharLm<B>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let host = |data: TensorData| (data.shape.to_vec(), data.iter::<f32>().collect::<Vec<_>>());
    let mut out = Vec::new();
    let (shape, values) = host(model.embedding.weight.val().to_data());
    out.push((format!("{EMBED}weight"), shape, values));
    for p in model.body.torch_params(RNN) {
        let (shape, values) = p.to_host();
        out.push((p.name().to_owned(), shape, values));
    }
    // Burn's Linear weight is [in, out]; PyTorch's is [out, in].
    let (shape, values) = host(model.head.weight.val().transpose().to_data());
    out.push((format!("{HEAD}weight"), shape, values));
    if let Some(bias) = &model.head.bias {
        let (shape, values) = host(bias.val().to_data());
        out.push((format!("{HEAD}bias"), shape, values));
    }
    out
}

/// Writes [`torch_state_dict`] of `model` to the safetensors file `to` (float32); returns the
/// number of tensors written.
pub fn export_safetensors<B: Backend>(model: &CharLm<B>, to: &Path) -> Result<usize, TrainError> {
    let tensors = torch_state_dict(model);
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), data)| {
            TensorView::new(Dtype::F32, shape.clone(), data).map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrainError::Io {
            path: to.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
    safetensors::serialize_to_file(views, None, to).map_err(|e| TrainError::Io {
        path: to.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(tensors.len())
}
