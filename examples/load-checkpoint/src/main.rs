//! Loads an ember run's best character model into a plain Burn app and generates text from
//! it: `load-checkpoint RUN_DIR [COUNT] [SEED]`.

use std::error::Error;
use std::path::Path;

use burn::backend::NdArray;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::Distribution;
use ember_nn::{CharLm, CharLmConfig};

type B = NdArray;

/// `vocab.json` of a run: id 0 is `<pad>`, 1 `<s>`, 2 `</s>`, then `chars` in order.
#[derive(Config, Debug)]
struct VocabFile {
    /// `ember-vocab/1`.
    format: String,
    /// The special tokens, ids 0 to 2.
    specials: Vec<String>,
    /// The characters, ids 3 onwards.
    chars: Vec<char>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let run = args
        .next()
        .ok_or("usage: load-checkpoint RUN_DIR [COUNT] [SEED]")?;
    let count: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let seed: u64 = args.next().map_or(Ok(0), |a| a.parse())?;
    let run = Path::new(&run);
    let device = Default::default();

    let config = CharLmConfig::load(run.join("model.json"))?;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let model: CharLm<B> =
        config
            .init(&device)?
            .load_file(run.join("best.mpk"), &recorder, &device)?;

    let vocab = VocabFile::load(run.join("vocab.json"))?;
    B::seed(&device, seed);
    for _ in 0..count {
        println!("{}", generate(&model, &vocab.chars, 40, &device));
    }
    Ok(())
}

/// Draws one line from `<s>` until `</s>` (at most `max_len` characters). The Gumbel-max
/// trick, `argmax(logits - ln(-ln U))` with `U` uniform, draws from `softmax(logits)`.
fn generate(model: &CharLm<B>, chars: &[char], max_len: usize, device: &Device<B>) -> String {
    let (mut token, mut state, mut text) = (1, None, String::new());
    for _ in 0..max_len {
        let input = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![token], [1, 1]), device);
        let (logits, next) = model.forward(input, state);
        state = Some(next);
        let uniform = Tensor::random(logits.shape(), Distribution::Uniform(1e-9, 1.0), device);
        let gumbel = uniform.log().neg().log().neg();
        token = (logits + gumbel).argmax(2).into_scalar().elem::<i64>();
        if token < 3 {
            break; // `</s>` (or a special token the model should never pick)
        }
        text.push(chars[token as usize - 3]);
    }
    text
}
