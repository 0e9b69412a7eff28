//! Forward + backward throughput of one ember recurrent layer, alone (no embedding, head or
//! optimiser): the Rust half of `cargo xtask bench-layer`, which runs PyTorch's layer on the
//! same shapes and prints the ratio.
//!
//! `cargo run --release -p ember-nn --example layer_bench -- --cell lstm --backend ndarray`
//! prints one JSON line: `{"impl":"ember",...,"tokens_per_s":...}`.

use std::time::Instant;

use burn::backend::flex::FlexDevice;
use burn::backend::ndarray::NdArrayDevice;
use burn::backend::{Autodiff, Flex, NdArray};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use ember_nn::{GruCell, LstmCell, Recurrent, RecurrentCell, RecurrentConfig, RnnCell};

struct Args {
    cell: String,
    backend: String,
    layers: usize,
    hidden: usize,
    input: usize,
    batch: usize,
    seq: usize,
    steps: usize,
    warmup: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        cell: "lstm".into(),
        backend: "ndarray".into(),
        layers: 2,
        hidden: 256,
        input: 256,
        batch: 32,
        seq: 100,
        steps: 10,
        warmup: 2,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let [key, value] = pair else {
            return Err(format!("{pair:?}: every option takes a value"));
        };
        let num = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{key} {value}: {e}"))
        };
        match key.as_str() {
            "--cell" => a.cell = value.clone(),
            "--backend" => a.backend = value.clone(),
            "--layers" => a.layers = num()?,
            "--hidden" => a.hidden = num()?,
            "--input" => a.input = num()?,
            "--batch" => a.batch = num()?,
            "--seq" => a.seq = num()?,
            "--steps" => a.steps = num()?,
            "--warmup" => a.warmup = num()?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

/// Seconds per forward + backward step of `C` on backend `B`, after `warmup` untimed steps.
fn time_layer<B: AutodiffBackend, C: RecurrentCell<B>>(a: &Args, device: &B::Device) -> f64 {
    B::seed(device, 0);
    let layer: Recurrent<B, C> = RecurrentConfig::new(a.input, a.hidden)
        .with_num_layers(a.layers)
        .with_batch_first(true)
        .init(device)
        .expect("valid sizes");
    let x = Tensor::<B, 3>::random([a.batch, a.seq, a.input], Distribution::Default, device);
    // ndarray and flex run eagerly: the step's work is done when backward returns.
    let step = || {
        let (out, _) = layer.forward(x.clone().require_grad(), None, None);
        out.mean().backward()
    };
    for _ in 0..a.warmup {
        step();
    }
    let start = Instant::now();
    for _ in 0..a.steps {
        step();
    }
    start.elapsed().as_secs_f64() / a.steps as f64
}

fn run<B: AutodiffBackend>(a: &Args, device: &B::Device) -> Result<f64, String> {
    Ok(match a.cell.as_str() {
        "lstm" => time_layer::<B, LstmCell<B>>(a, device),
        "gru" => time_layer::<B, GruCell<B>>(a, device),
        "rnn" => time_layer::<B, RnnCell<B>>(a, device),
        other => return Err(format!("unknown --cell {other} (lstm, gru or rnn)")),
    })
}

fn main() {
    let result = parse().and_then(|a| {
        let secs = match a.backend.as_str() {
            "ndarray" => run::<Autodiff<NdArray>>(&a, &NdArrayDevice::Cpu)?,
            "flex" => run::<Autodiff<Flex>>(&a, &FlexDevice)?,
            other => return Err(format!("unknown --backend {other} (ndarray or flex)")),
        };
        Ok((a, secs))
    });
    match result {
        Ok((a, secs)) => println!(
            "{{\"impl\":\"ember\",\"backend\":\"{}\",\"cell\":\"{}\",\"layers\":{},\"hidden\":{},\"input\":{},\"batch\":{},\"seq\":{},\"step_s\":{secs:.6},\"tokens_per_s\":{:.1}}}",
            a.backend, a.cell, a.layers, a.hidden, a.input, a.batch, a.seq, (a.batch * a.seq) as f64 / secs
        ),
        Err(e) => {
            eprintln!("layer_bench: {e}");
            std::process::exit(2);
        }
    }
}
