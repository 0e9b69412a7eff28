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
//! `ember import` reads the same names back. A run imported from a user's own model keeps
//! that model's names ([`TorchNames`], in [`TORCH_NAMES_FILE`]), so its export loads back into
//! the user's class (`encoder`/`rnn`/`decoder`, say) unchanged.

use std::path::Path;

use burn::prelude::*;
use ember_nn::CharLm;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The file of a run directory that names an imported model's tensors.
pub const TORCH_NAMES_FILE: &str = "torch_names.json";

/// Name prefix of the embedding in an exported `state_dict`.
pub const EMBED: &str = "embed.";
/// Name prefix of the recurrent layers.
pub const RNN: &str = "rnn.";
/// Name prefix of the output head.
pub const HEAD: &str = "head.";

/// The PyTorch names of a character model's three parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorchNames {
    /// The embedding's weight (`embed.weight`, `encoder.weight`, ...).
    pub embedding: String,
    /// The prefix of the recurrent layers' tensors (`rnn.`).
    pub recurrent: String,
    /// The prefix of the head's `weight` and `bias` (`head.`, `decoder.`, ...).
    pub head: String,
}

impl Default for TorchNames {
    /// Ember's own: `embed.weight`, `rnn.*`, `head.*`.
    fn default() -> Self {
        Self {
            embedding: format!("{EMBED}weight"),
            recurrent: RNN.to_owned(),
            head: HEAD.to_owned(),
        }
    }
}

impl TorchNames {
    /// The names kept in run directory `dir` ([`TORCH_NAMES_FILE`]), else ember's own.
    pub fn of_run(dir: &Path) -> Result<Self, TrainError> {
        let path = dir.join(TORCH_NAMES_FILE);
        if !path.is_file() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
        serde_json::from_str(&text).map_err(|e| TrainError::BadCheckpoint {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes them into run directory `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        let path = dir.join(TORCH_NAMES_FILE);
        let json = serde_json::to_string_pretty(self).expect("serialisable");
        std::fs::write(&path, json).map_err(TrainError::io(&path))
    }
}

/// Every parameter of `model` under its PyTorch name in `names`, with PyTorch's shape and
/// row-major values.
pub fn torch_state_dict<B: Backend>(
    model: &CharLm<B>,
    names: &TorchNames,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let host = |data: TensorData| (data.shape.to_vec(), data.iter::<f32>().collect::<Vec<_>>());
    let mut out = Vec::new();
    let (shape, values) = host(model.embedding.weight.val().to_data());
    out.push((names.embedding.clone(), shape, values));
    for p in model.body.torch_params(&names.recurrent) {
        let (shape, values) = p.to_host();
        out.push((p.name().to_owned(), shape, values));
    }
    // A tied head's weight is the embedding table, written under both names as PyTorch's
    // `state_dict()` of a tied model holds it (once where an import found it under one name).
    let head_weight = format!("{}weight", names.head);
    if head_weight != names.embedding {
        let (shape, values) = host(model.head_weight().to_data());
        out.push((head_weight, shape, values));
    }
    if let Some(bias) = model.head_bias() {
        let (shape, values) = host(bias.to_data());
        out.push((format!("{}bias", names.head), shape, values));
    }
    out
}

/// Writes [`torch_state_dict`] of `model` under `names` to the safetensors file `to`
/// (float32); returns the number of tensors written.
pub fn export_safetensors<B: Backend>(
    model: &CharLm<B>,
    names: &TorchNames,
    to: &Path,
) -> Result<usize, TrainError> {
    let tensors = torch_state_dict(model, names);
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
