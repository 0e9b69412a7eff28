//! Importing a PyTorch character model (embedding → RNN/LSTM/GRU → linear head) into a run
//! directory that `ember sample` and `ember eval` use.
//!
//! The `state_dict` may come from `torch.save(model.state_dict())` (`.pt`/`.pth`), a
//! checkpoint dict holding it under `state_dict` or `model_state_dict`, or safetensors. Module
//! names are the user's own: the recurrent layer is the prefix of `weight_ih_l0`, the embedding
//! is the other weight without a bias, and the head is the weight with a bias. A model whose
//! head is tied to its embedding (`model.tie_embeddings`) may hold the shared weight under both
//! names, or under one (safetensors' `save_model`); both import, and a head that differs from
//! the embedding is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_store::{ModuleStore, PytorchStore, SafetensorsStore};
use ember_data::Vocab;
use ember_nn::{CharLm, TorchTensors};

use crate::checkpoint::{BestCheckpoint, BEST_BURNPACK, BEST_CHECKPOINT, BEST_JSON};
use crate::config::{ExperimentConfig, Task};
use crate::export::TorchNames;
use crate::model::{char_lm_config, save_module, RecordFormat};
use crate::run::{
    ensure_free, evaluate, evaluate_streams, prepare_data_in, CONFIG_FILE, VOCAB_FILE,
};
use crate::run_dir::write_model_files;
use crate::TrainError;

/// Tensors of a PyTorch file: name → (shape, row-major f32 values).
type Raw = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn bad(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::BadCheckpoint {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn collect<S: ModuleStore>(store: &mut S, path: &Path) -> Result<Raw, TrainError> {
    let snapshots = store
        .get_all_snapshots()
        .map_err(|e| bad(path, e.to_string()))?;
    snapshots
        .iter()
        .map(|(name, snap)| {
            let data = snap
                .to_data()
                .map_err(|e| bad(path, format!("{name}: {e:?}")))?;
            Ok((
                name.clone(),
                (snap.shape.to_vec(), data.iter::<f32>().collect()),
            ))
        })
        .collect()
}

/// Reads every tensor of a `.safetensors` file or a PyTorch `.pt`/`.pth`/`.bin` pickle.
pub fn read_torch_file(path: &Path) -> Result<Raw, TrainError> {
    if !path.is_file() {
        return Err(TrainError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    if path.extension().is_some_and(|e| e == "safetensors") {
        return collect(&mut SafetensorsStore::from_file(path), path);
    }
    let raw = collect(&mut PytorchStore::from_file(path), path)?;
    if raw.keys().any(|k| k.ends_with("weight_ih_l0")) {
        return Ok(raw);
    }
    for key in ["state_dict", "model_state_dict", "model"] {
        let nested = collect(
            &mut PytorchStore::from_file(path).with_top_level_key(key),
            path,
        );
        if let Ok(nested) = nested {
            if nested.keys().any(|k| k.ends_with("weight_ih_l0")) {
                return Ok(nested);
            }
        }
    }
    Ok(raw)
}

/// Where each part of the model sits in the file.
type Layout = TorchNames;

fn find_layout(raw: &Raw, path: &Path) -> Result<Layout, TrainError> {
    let recurrent: Vec<&String> = raw.keys().filter(|k| k.ends_with("weight_ih_l0")).collect();
    let recurrent = match recurrent.as_slice() {
        [one] => one.trim_end_matches("weight_ih_l0").to_owned(),
        [] => {
            return Err(bad(
                path,
                "no recurrent layer (no tensor named *weight_ih_l0)",
            ))
        }
        many => return Err(bad(path, format!("several recurrent layers: {many:?}"))),
    };
    let others: Vec<&String> = raw
        .keys()
        .filter(|k| !k.starts_with(&recurrent) && k.ends_with("weight"))
        .collect();
    let with_bias =
        |k: &&String| raw.contains_key(&format!("{}bias", k.trim_end_matches("weight")));
    let heads: Vec<&String> = others.iter().copied().filter(with_bias).collect();
    let embeddings: Vec<&String> = others.iter().copied().filter(|k| !with_bias(k)).collect();
    // A head tied to the embedding is saved under one name only by safetensors' `save_model`
    // (the first in sorted order): the embedding's, leaving the head's bias alone, or the
    // head's, which then serves as both.
    let lone_biases: Vec<&String> = raw
        .keys()
        .filter(|k| !k.starts_with(&recurrent) && k.ends_with("bias"))
        .filter(|k| !raw.contains_key(&format!("{}weight", k.trim_end_matches("bias"))))
        .collect();
    match (embeddings.as_slice(), heads.as_slice(), lone_biases.as_slice()) {
        ([embedding], [head], _) => Ok(Layout {
            recurrent,
            embedding: (*embedding).clone(),
            head: head.trim_end_matches("weight").to_owned(),
        }),
        ([embedding], [], [bias]) => Ok(Layout {
            recurrent,
            embedding: (*embedding).clone(),
            head: bias.trim_end_matches("bias").to_owned(),
        }),
        ([], [head], _) => Ok(Layout {
            recurrent,
            embedding: (*head).clone(),
            head: head.trim_end_matches("weight").to_owned(),
        }),
        _ => Err(bad(
            path,
            format!(
                "expected one embedding weight (no bias) and one linear head (weight and bias) besides {recurrent}*, found {others:?}"
            ),
        )),
    }
}

/// Builds the [`CharLm`] of `config` and `vocab` from a PyTorch file, with the file's names for
/// its parts; every tensor must be used and have the shape the config implies.
pub fn char_lm_from_torch<B: Backend>(
    path: &Path,
    config: &ExperimentConfig,
    vocab: &Vocab,
    device: &B::Device,
) -> Result<(CharLm<B>, TorchNames), TrainError> {
    let raw = read_torch_file(path)?;
    let layout = find_layout(&raw, path)?;
    let mut model = char_lm_config(&config.model, vocab.len()).init::<B>(device)?;
    let head_weight = format!("{}weight", layout.head);
    let tied = model.is_tied();
    if !tied && (layout.embedding == head_weight || !raw.contains_key(&head_weight)) {
        return Err(bad(
            path,
            format!(
                "the file holds one weight for the embedding and the head ({}), as a tied model saves it: set model.tie_embeddings = true in the config",
                layout.embedding
            ),
        ));
    }
    let mut tensors = TorchTensors::new();
    for (name, (shape, values)) in raw {
        // PyTorch's Linear weight is [out, in]; Burn's is [in, out].
        let (shape, values) = if name == head_weight && !tied {
            ember_nn::torch::transpose(&shape, &values)
        } else {
            (shape, values)
        };
        tensors.insert(name, shape, values);
    }
    let wrap = |e: ember_nn::NnError| {
        match e {
        ember_nn::NnError::TensorShape { .. } => bad(
            path,
            format!(
                "{e}: check the [model] table of the config (kind = \"{}\", hidden_size, num_layers, proj_size, embed_dim)",
                config.model.kind
            ),
        ),
        other => bad(path, other.to_string()),
    }
    };
    let t = &mut tensors;
    model.body = model.body.load_torch(&layout.recurrent, t).map_err(wrap)?;
    model.embedding.weight = t
        .replace(model.embedding.weight, &layout.embedding)
        .map_err(wrap)?;
    let head_bias = format!("{}bias", layout.head);
    if tied {
        if let Some((_, values)) = t.remove(&head_weight) {
            let table: Vec<f32> = model.embedding.weight.val().into_data().iter().collect();
            if values != table {
                return Err(bad(
                    path,
                    format!(
                        "{head_weight} differs from {}, so the file's head is not tied to its embedding: set model.tie_embeddings = false",
                        layout.embedding
                    ),
                ));
            }
        }
        model.tied_bias = t.replace_opt(model.tied_bias, &head_bias).map_err(wrap)?;
    } else if let Some(head) = model.head.take() {
        let weight = t.replace(head.weight, &head_weight).map_err(wrap)?;
        let bias = t.replace_opt(head.bias, &head_bias).map_err(wrap)?;
        model.head = Some(burn::nn::Linear { weight, bias });
    }
    let unused = t.remaining();
    if !unused.is_empty() {
        return Err(bad(
            path,
            format!("tensors the config has no place for: {unused:?}"),
        ));
    }
    Ok((model, layout))
}

/// What an import wrote.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// Validation loss of the imported model on the config's validation split.
    pub valid_loss: f64,
}

/// Imports `from` into a new run directory `out` with `config`, and evaluates it on the
/// config's validation split (so `best.json` holds a real figure). The vocabulary is `vocab`
/// when given (a user's, [`Vocab::from_user_file`], or ember's: it must hold every character of
/// the data), else the one ember builds from the data. The run keeps the file's tensor names
/// ([`TorchNames`]), so `ember export` writes them back.
pub fn import<B: Backend>(
    from: &Path,
    config: &ExperimentConfig,
    vocab: Option<&Vocab>,
    out: &Path,
    overwrite: bool,
    device: &B::Device,
) -> Result<ImportSummary, TrainError> {
    ensure_free(out, overwrite)?;
    let data = prepare_data_in(config, vocab)?;
    let vocab = &data.vocab;
    let (model, names) = char_lm_from_torch::<B>(from, config, vocab, device)?;
    let valid_loss = match &data.streams {
        Some(streams) => evaluate_streams(&model, &streams.valid, device),
        None => evaluate(
            &model,
            &data.valid,
            vocab.pad_id(),
            config.train.batch_size,
            device,
        ),
    };
    std::fs::create_dir_all(out).map_err(TrainError::io(out))?;
    std::fs::write(out.join(CONFIG_FILE), config.to_toml())
        .map_err(TrainError::io(out.join(CONFIG_FILE)))?;
    vocab.save(&out.join(VOCAB_FILE))?;
    names.save(out)?;
    for (file, format) in [
        (BEST_CHECKPOINT, RecordFormat::Mpk),
        (BEST_BURNPACK, RecordFormat::Burnpack),
    ] {
        save_module(&model, &out.join(file), format).map_err(|e| bad(&out.join(file), e))?;
    }
    write_model_files(
        out,
        Task::Language,
        "CharLm",
        &char_lm_config(&config.model, vocab.len()),
    )?;
    let best = BestCheckpoint {
        epoch: 0,
        valid_loss,
        checkpoint: format!("imported from {}", from.display()),
    };
    let json = serde_json::to_string_pretty(&best).expect("serialisable");
    std::fs::write(out.join(BEST_JSON), json).map_err(TrainError::io(out.join(BEST_JSON)))?;
    Ok(ImportSummary {
        dir: out.to_owned(),
        valid_loss,
    })
}
