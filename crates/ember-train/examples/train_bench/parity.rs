//! `--task parity`: ember's recurrent layers on a GPU backend against the same layers on Flex
//! (the CPU reference, itself held to PyTorch by the parity tests), forward and gradients.
//!
//! Each case builds a two-layer layer on Flex, copies its weights to the GPU backend under
//! their PyTorch names, runs both on the same input and lengths, and backpropagates the same
//! weighted sum of the outputs and the final state. The outputs, `h_n`, `c_n`, the input's
//! gradient and every parameter's gradient must agree within [`TOLERANCE`], relative to
//! `1 + |Flex|`; NaN or ∞ on either side is a failure. On wgpu and CUDA this runs the CubeCL
//! step kernels (or, with `EMBER_PERSISTENT=1`, the persistent LSTM kernel) and their
//! backward kernels. One JSON line per case; the process fails if any case does.

use burn::backend::flex::FlexDevice;
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use ember_nn::{AnyRecurrent, CellKind, RecurrentConfig, TorchParam, TorchTensors};

/// Largest difference allowed, relative to `1 + |Flex|`.
const TOLERANCE: f32 = 1e-4;
const INPUT: usize = 12;
const HIDDEN: usize = 24;
const STEPS: usize = 9;

/// One layer configuration.
struct Case {
    kind: CellKind,
    proj_size: usize,
    batch: usize,
    /// Per-row lengths (a packed batch), or `None` for full rows.
    lengths: Option<Vec<usize>>,
}

impl Case {
    fn name(&self) -> String {
        let proj = if self.proj_size > 0 {
            format!(" proj_size {}", self.proj_size)
        } else {
            String::new()
        };
        let rows = if self.lengths.is_some() {
            "packed"
        } else {
            "full"
        };
        format!(
            "{} 2x{HIDDEN}{proj}, batch {}, {rows}",
            self.kind, self.batch
        )
    }

    fn config(&self) -> RecurrentConfig {
        RecurrentConfig::new(INPUT, HIDDEN)
            .with_num_layers(2)
            .with_proj_size(self.proj_size)
            .with_batch_first(true)
    }
}

/// The cases: every cell, full and packed, with one row (sampling's and streaming
/// evaluation's shape, where GPU matmuls take other kernels), and the LSTM with a projection.
fn cases() -> Vec<Case> {
    let packed = || Some(vec![STEPS, 7, 7, 4, 1]);
    let mut out = Vec::new();
    for kind in [CellKind::Lstm, CellKind::Gru, CellKind::Rnn] {
        for (batch, lengths) in [(5, None), (5, packed()), (1, None)] {
            out.push(Case {
                kind,
                proj_size: 0,
                batch,
                lengths,
            });
        }
    }
    for batch in [5, 1] {
        out.push(Case {
            kind: CellKind::Lstm,
            proj_size: 8,
            batch,
            lengths: (batch > 1).then(packed).flatten(),
        });
    }
    out
}

/// `n` values in [-1, 1) from a fixed linear congruential sequence.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Forward and backward of `layer` on backend `B`: named results in a fixed order.
fn run<B: AutodiffBackend>(
    layer: &AnyRecurrent<B>,
    case: &Case,
    device: &B::Device,
) -> Vec<(String, Vec<f32>)> {
    let batch = case.batch;
    let x = Tensor::<B, 3>::from_data(
        TensorData::new(values(batch * STEPS * INPUT, 1), [batch, STEPS, INPUT]),
        device,
    )
    .require_grad();
    let lengths = case.lengths.as_deref();
    let (y, state) = layer.forward(x.clone(), lengths, None);
    let weights = |dims: [usize; 3], seed| {
        Tensor::<B, 3>::from_data(
            TensorData::new(values(dims.iter().product(), seed), dims),
            device,
        )
    };
    let mut loss = (y.clone() * weights(y.dims(), 2)).sum()
        + (state.h.clone() * weights(state.h.dims(), 3)).sum();
    if let Some(c) = &state.c {
        loss = loss + (c.clone() * weights(c.dims(), 4)).sum();
    }
    let grads = loss.backward();
    let mut out = vec![
        ("output".to_owned(), host(y.inner())),
        ("h_n".to_owned(), host(state.h.inner())),
    ];
    if let Some(c) = state.c {
        out.push(("c_n".to_owned(), host(c.inner())));
    }
    let dx = x.grad(&grads).map(host).unwrap_or_default();
    out.push(("d input".to_owned(), dx));
    for p in layer.torch_params("") {
        let grad = match &p {
            TorchParam::Matrix(_, t) => t.grad(&grads).map(host),
            TorchParam::Vector(_, t) => t.grad(&grads).map(host),
        };
        out.push((format!("d {}", p.name()), grad.unwrap_or_default()));
    }
    out
}

/// The largest relative difference of `got` from `want`, and where; ∞ for NaN, ∞ or a
/// length mismatch.
fn worst(got: &[(String, Vec<f32>)], want: &[(String, Vec<f32>)]) -> (f32, String) {
    let mut worst = (0.0f32, String::from("-"));
    for ((name, g), (_, w)) in got.iter().zip(want) {
        let d = if g.len() != w.len() || w.is_empty() {
            f32::INFINITY
        } else {
            g.iter()
                .zip(w)
                .map(|(a, b)| {
                    let d = (a - b).abs() / (1.0 + b.abs());
                    if d.is_finite() {
                        d
                    } else {
                        f32::INFINITY
                    }
                })
                .fold(0.0, f32::max)
        };
        if d > worst.0 || (d.is_infinite() && worst.0.is_finite()) {
            worst = (d, name.clone());
        }
    }
    if got.len() != want.len() {
        worst = (f32::INFINITY, "result count".into());
    }
    worst
}

/// One case on backend `G` against Flex: its JSON line and whether it passed.
fn check<G: AutodiffBackend>(case: &Case, device: &G::Device) -> Result<(String, bool), String> {
    type Cpu = Autodiff<Flex>;
    let config = case.config();
    let reference = config
        .init_any::<Cpu>(case.kind, &FlexDevice)
        .map_err(|e| e.to_string())?;
    let mut tensors = TorchTensors::new();
    for p in reference.torch_params("") {
        let (shape, values) = p.to_host();
        tensors.insert(p.name(), shape, values);
    }
    let gpu = config
        .init_any::<G>(case.kind, device)
        .and_then(|l| l.load_torch("", &mut tensors))
        .map_err(|e| e.to_string())?;
    let want = run::<Cpu>(&reference, case, &FlexDevice);
    let got = run::<G>(&gpu, case, device);
    let (max, at) = worst(&got, &want);
    let ok = max <= TOLERANCE;
    let persistent = std::env::var("EMBER_PERSISTENT").is_ok_and(|v| v == "1");
    let max = if max.is_finite() {
        format!("{max:.3e}")
    } else {
        "null".into()
    };
    Ok((
        format!(
            "{{\"parity\":\"{}\",\"backend\":\"{}\",\"persistent\":{persistent},\"max_rel\":{max},\"worst\":\"{at}\",\"tolerance\":{TOLERANCE:e},\"ok\":{ok}}}",
            case.name(),
            G::name(device),
        ),
        ok,
    ))
}

/// Runs every case on `G`, printing one JSON line each; an error names the failed cases.
pub fn all<G: AutodiffBackend>(device: &G::Device) -> Result<(), String> {
    let mut failed = Vec::new();
    for case in cases() {
        let (line, ok) = check::<G>(&case, device)?;
        println!("{line}");
        if !ok {
            failed.push(case.name());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "parity: {} beyond {TOLERANCE:e} of Flex",
            failed.join("; ")
        ))
    }
}
