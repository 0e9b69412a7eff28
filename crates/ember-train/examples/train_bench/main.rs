//! Training (and sampling) throughput of ember's models, step for step the workloads of the
//! PyTorch reference `bench.py`: the Rust half of `cargo xtask bench`.
//!
//! A training step is forward, loss, backward and an Adam step, with the loss read back to the
//! host (so a GPU step is finished when it is timed). Prints one JSON line:
//! `cargo run --release -p ember-train --example train_bench -- --task charlm --model lstm --backend ndarray`.
//!
//! `--task parity --backend wgpu` (or `cuda`) checks the GPU kernels against Flex instead
//! ([`parity`]): the device check (`tools/gpu/check.py`) runs it first.

mod parity;

use std::time::Instant;

use burn::backend::flex::FlexDevice;
use burn::backend::ndarray::NdArrayDevice;
use burn::backend::wgpu::WgpuDevice;
use burn::backend::{Autodiff, Flex, NdArray, Wgpu};
use burn::data::dataloader::batcher::Batcher;
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use ember_data::{SequenceBatch, SequenceBatcher, TokenSequence, Vocab};
use ember_nn::{
    BodyKind, CellKind, CharLm, CharLmConfig, ClipGlobalNorm, FusedAdam, SeriesRegressor,
    SeriesRegressorConfig,
};
use ember_train::loss::masked_cross_entropy_time_major;
use ember_train::{sample, SampleOptions};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The allocator of the `ember` binary, so the bench times what `cargo xtask train` runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The workload, with `bench.py`'s defaults.
#[derive(Debug, Clone)]
struct Args {
    task: String,
    model: String,
    backend: String,
    layers: usize,
    hidden: usize,
    embed: Option<usize>,
    /// Dropout between layers and before the head (`bench.py --dropout`).
    dropout: f64,
    /// The gradients' global L2 norm clip, 0 for none (`bench.py --clip`).
    clip: f64,
    batch: usize,
    seq: usize,
    min_len: usize,
    vocab: usize,
    proj_size: usize,
    steps: usize,
    warmup: usize,
    gen_len: usize,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let get = |name: &str| {
            argv.chunks(2)
                .find(|p| p[0] == name)
                .and_then(|p| p.get(1).cloned())
        };
        for pair in argv.chunks(2) {
            let known = [
                "--task",
                "--model",
                "--backend",
                "--layers",
                "--hidden",
                "--embed",
                "--dropout",
                "--clip",
                "--batch",
                "--seq",
                "--min-len",
                "--vocab",
                "--proj-size",
                "--steps",
                "--warmup",
                "--gen-len",
            ];
            if pair.len() != 2 || !known.contains(&pair[0].as_str()) {
                return Err(format!("{pair:?}: options are {} VALUE", known.join(", ")));
            }
        }
        let num = |name: &str, default: usize| -> Result<usize, String> {
            get(name).map_or(Ok(default), |v| {
                v.parse().map_err(|e| format!("{name} {v}: {e}"))
            })
        };
        let fraction = |name: &str| -> Result<f64, String> {
            get(name).map_or(Ok(0.0), |v| {
                v.parse().map_err(|e| format!("{name} {v}: {e}"))
            })
        };
        let task = get("--task").unwrap_or_else(|| "charlm".into());
        // bench.py's TASK_DEFAULTS: (layers, hidden, batch, seq, vocab).
        let (layers, hidden, batch, seq, vocab) = match task.as_str() {
            "charlm" | "sample" | "parity" => (2, 256, 32, 100, 65),
            "names" | "packed" => (1, 128, 64, 15, 28),
            "seq2seq" => (1, 64, 32, 50, 1),
            other => {
                return Err(format!(
                    "unknown --task {other} (charlm, names, packed, seq2seq, sample, parity)"
                ))
            }
        };
        Ok(Self {
            model: get("--model").unwrap_or_else(|| "lstm".into()),
            backend: get("--backend").unwrap_or_else(|| "ndarray".into()),
            layers: num("--layers", layers)?,
            hidden: num("--hidden", hidden)?,
            embed: get("--embed")
                .map(|v| v.parse().map_err(|e| format!("--embed {v}: {e}")))
                .transpose()?,
            dropout: fraction("--dropout")?,
            clip: fraction("--clip")?,
            batch: num("--batch", batch)?,
            seq: num("--seq", seq)?,
            min_len: num("--min-len", 3)?,
            vocab: num("--vocab", vocab)?,
            proj_size: num("--proj-size", 1)?,
            steps: num("--steps", 20)?,
            warmup: num("--warmup", 3)?,
            gen_len: num("--gen-len", 1000)?,
            task,
        })
    }

    fn cell(&self) -> Result<CellKind, String> {
        match self.model.as_str() {
            "lstm" => Ok(CellKind::Lstm),
            "gru" => Ok(CellKind::Gru),
            "rnn" => Ok(CellKind::Rnn),
            other => Err(format!("unknown --model {other} (lstm, gru or rnn)")),
        }
    }

    fn char_lm(&self) -> Result<CharLmConfig, String> {
        Ok(CharLmConfig::new(self.vocab)
            .with_kind(self.cell()?)
            .with_embed_dim(self.embed.unwrap_or(self.hidden))
            .with_hidden_size(self.hidden)
            .with_num_layers(self.layers)
            .with_dropout(self.dropout))
    }

    /// The global-norm clip, when asked for.
    fn clip(&self) -> Option<f32> {
        (self.clip > 0.0).then_some(self.clip as f32)
    }
}

/// What one run measured.
struct Measured {
    /// Padded positions (for names: batch × longest) per second.
    tokens_per_s: f64,
    /// Non-padding positions per second.
    real_tokens_per_s: f64,
}

/// Times `steps` calls of `step` after `warmup`; `step` returns (padded, real) positions.
fn time_steps(a: &Args, mut step: impl FnMut(usize) -> (usize, usize)) -> Measured {
    for i in 0..a.warmup {
        step(i);
    }
    let (mut padded, mut real) = (0, 0);
    let start = Instant::now();
    for i in 0..a.steps {
        let (p, r) = step(a.warmup + i);
        padded += p;
        real += r;
    }
    let secs = start.elapsed().as_secs_f64();
    Measured {
        tokens_per_s: padded as f64 / secs,
        real_tokens_per_s: real as f64 / secs,
    }
}

/// Random token batches: `charlm` full length, `names`/`packed` lengths uniform in
/// `[min_len, seq]` (ids from 3, so never padding).
fn token_batches<B: Backend>(a: &Args, count: usize, device: &B::Device) -> Vec<SequenceBatch<B>> {
    let mut rng = StdRng::seed_from_u64(0);
    let batcher = SequenceBatcher::new(0);
    (0..count)
        .map(|_| {
            let items = (0..a.batch)
                .map(|_| {
                    let len = if a.task == "charlm" {
                        a.seq
                    } else {
                        rng.random_range(a.min_len..=a.seq)
                    };
                    TokenSequence {
                        tokens: (0..=len).map(|_| rng.random_range(3..a.vocab)).collect(),
                    }
                })
                .collect();
            batcher.batch(items, device)
        })
        .collect()
}

fn train_char_lm<B: AutodiffBackend>(a: &Args, device: &B::Device) -> Result<Measured, String> {
    B::seed(device, 0);
    let mut model: CharLm<B> = a.char_lm()?.init(device).map_err(|e| e.to_string())?;
    let mut optim = ClipGlobalNorm::new(
        FusedAdam::new(0.9, 0.999, 1e-8).init::<B, CharLm<B>>(None),
        a.clip(),
    );
    let batches = token_batches::<B>(a, 4, device);
    let packed = a.task == "packed";
    Ok(time_steps(a, |i| {
        let batch = batches[i % batches.len()].clone();
        let real = batch.num_tokens();
        let padded = batch.lengths.len() * batch.inputs.dims()[1];
        // Time-major logits and loss, the path `cargo xtask train` runs, with lengths when
        // packed.
        let lengths = packed.then_some(batch.lengths.as_slice());
        let (logits, _) = model.forward_time_major(batch.inputs, lengths, None);
        let loss = masked_cross_entropy_time_major(logits, batch.targets, batch.mask);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model.clone(), grads);
        loss.into_scalar();
        (padded, real)
    }))
}

fn train_seq2seq<B: AutodiffBackend>(a: &Args, device: &B::Device) -> Result<Measured, String> {
    B::seed(device, 0);
    let (body, proj) = match a.cell()? {
        CellKind::Lstm => (BodyKind::Lstm, a.proj_size),
        CellKind::Gru => (BodyKind::Gru, 0),
        CellKind::Rnn => (BodyKind::Rnn, 0),
    };
    let mut model: SeriesRegressor<B> = SeriesRegressorConfig::new()
        .with_body(body)
        .with_hidden_size(a.hidden)
        .with_num_layers(a.layers)
        .with_proj_size(proj)
        .init(device)
        .map_err(|e| e.to_string())?;
    let mut optim = ClipGlobalNorm::new(
        FusedAdam::new(0.9, 0.999, 1e-8).init::<B, SeriesRegressor<B>>(None),
        a.clip(),
    );
    let mut rng = StdRng::seed_from_u64(0);
    let wave: Vec<Vec<f32>> = (0..a.batch)
        .map(|_| {
            let (phase, period) = (
                rng.random::<f32>() * std::f32::consts::TAU,
                10.0 + rng.random::<f32>() * 40.0,
            );
            (0..=a.seq)
                .map(|t| (phase + t as f32 * std::f32::consts::TAU / period).sin())
                .collect()
        })
        .collect();
    let part = |from: usize| -> Tensor<B, 3> {
        let flat: Vec<f32> = wave
            .iter()
            .flat_map(|w| w[from..from + a.seq].to_vec())
            .collect();
        Tensor::from_data(TensorData::new(flat, [a.batch, a.seq, 1]), device)
    };
    let (x, y) = (part(0), part(1));
    Ok(time_steps(a, |_| {
        let (pred, _) = model.forward(x.clone(), None, None);
        let loss = (pred - y.clone()).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model.clone(), grads);
        loss.into_scalar();
        (a.batch * a.seq, a.batch * a.seq)
    }))
}

/// Characters per second of `ember sample`'s generation loop (batch 1, state carried, host
/// sampling), as `bench.py --task sample`.
fn sample_chars<B: AutodiffBackend>(a: &Args, device: &B::Device) -> Result<Measured, String> {
    B::seed(device, 0);
    let model: CharLm<B> = a.char_lm()?.init(device).map_err(|e| e.to_string())?;
    let model = model.valid();
    let chars: String = (0..a.vocab.saturating_sub(3))
        .map(|i| char::from_u32(if i == 0 { 10 } else { 32 + i as u32 }).unwrap_or('?'))
        .collect();
    let vocab = Vocab::from_texts([chars.as_str()]);
    let options = |max_len| SampleOptions {
        n: 1,
        temperature: 0.8,
        top_k: None,
        prefix: String::new(),
        seed: 0,
        max_len,
        continuous: true,
    };
    let device = device.clone();
    sample(&model, &vocab, &options(50), &device).map_err(|e| e.to_string())?;
    let start = Instant::now();
    sample(&model, &vocab, &options(a.gen_len), &device).map_err(|e| e.to_string())?;
    let rate = a.gen_len as f64 / start.elapsed().as_secs_f64();
    Ok(Measured {
        tokens_per_s: rate,
        real_tokens_per_s: rate,
    })
}

/// The task on backend `B`: what it measured, or `None` for `parity` (which prints its own
/// lines).
fn run<B: AutodiffBackend>(a: &Args, device: &B::Device) -> Result<Option<Measured>, String> {
    match a.task.as_str() {
        "charlm" | "names" | "packed" => train_char_lm::<B>(a, device).map(Some),
        "seq2seq" => train_seq2seq::<B>(a, device).map(Some),
        "parity" => parity::all::<B>(device).map(|()| None),
        _ => sample_chars::<B>(a, device).map(Some),
    }
}

/// Peak resident set size of this process in MiB (`VmHWM`).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    ember_train::memory::keep_freed_pages();
    let result = Args::parse().and_then(|a| {
        let m = match a.backend.as_str() {
            "ndarray" => run::<Autodiff<NdArray>>(&a, &NdArrayDevice::Cpu)?,
            "flex" => run::<Autodiff<Flex>>(&a, &FlexDevice)?,
            "wgpu" => run::<Autodiff<Wgpu>>(&a, &WgpuDevice::default())?,
            #[cfg(feature = "cuda")]
            "cuda" => run::<Autodiff<burn::backend::Cuda>>(&a, &Default::default())?,
            #[cfg(not(feature = "cuda"))]
            "cuda" => return Err("built without CUDA: build with --features ember-train/cuda (cargo xtask bench --backends cuda does)".into()),
            other => return Err(format!("unknown --backend {other} (ndarray, flex, wgpu or cuda)")),
        };
        Ok((a, m))
    });
    match result {
        Ok((_, None)) => {}
        Ok((a, Some(m))) => println!(
            "{{\"impl\":\"ember\",\"backend\":\"{}\",\"task\":\"{}\",\"model\":\"{}\",\"layers\":{},\"hidden\":{},\"dropout\":{},\"clip\":{},\"batch\":{},\"seq\":{},\"steps\":{},\"tokens_per_s\":{:.1},\"real_tokens_per_s\":{:.1},\"peak_rss_mb\":{:.1}}}",
            a.backend, a.task, a.model, a.layers, a.hidden, a.dropout, a.clip, a.batch, a.seq, a.steps,
            m.tokens_per_s, m.real_tokens_per_s, peak_rss_mb()
        ),
        Err(e) => {
            eprintln!("train_bench: {e}");
            std::process::exit(2);
        }
    }
}
