//! Times one layer's recurrence forward and backward: `recurrence [lstm|gru|rnn|ln-lstm|ln-gru]
//! [steps] [batch] [hidden]` (defaults: the char-LM's T100, batch 32, H256; `ln-`: layer-normalised).
//! Prints milliseconds per pass and the SIMD level.

use std::time::Instant;

use ember_kernels::{backward, forward, simd_level, Cell, Dims, Inputs, Norm};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map(String::as_str).unwrap_or("lstm");
    let cell = match name.trim_start_matches("ln-") {
        "gru" => Cell::Gru,
        "rnn" => Cell::Rnn { relu: false },
        _ => Cell::Lstm,
    };
    let num =
        |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let dims = Dims {
        steps: num(1, 100),
        batch: num(2, 32),
        hidden: num(3, 256),
        output: num(3, 256),
    };
    let g = cell.gates() * dims.hidden;
    let fill = |n: usize| {
        (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect::<Vec<f32>>()
    };
    let inputs = Inputs {
        cell,
        dims,
        xp: fill(dims.steps * dims.batch * g),
        w_hh: fill(g * dims.hidden).iter().map(|w| w * 0.1).collect(),
        w_hr: Vec::new(),
        b_hh: Vec::new(),
        h0: vec![0.0; dims.state_len()],
        c0: if cell == Cell::Lstm {
            vec![0.0; dims.state_len()]
        } else {
            Vec::new()
        },
        active: Vec::new(),
        zone_h: Vec::new(),
        zone_c: Vec::new(),
        norm: if name.starts_with("ln-") {
            let lstm = cell == Cell::Lstm;
            Norm {
                gamma_hh: vec![1.0; g],
                gamma_c: vec![1.0; if lstm { dims.hidden } else { 0 }],
                beta_c: vec![0.0; if lstm { dims.hidden } else { 0 }],
            }
        } else {
            Norm::default()
        },
    };
    let (mut fwd, mut bwd) = (0.0, 0.0);
    let reps = 10;
    for rep in 0..reps + 2 {
        let start = Instant::now();
        let (y, saved) = forward(inputs.clone(), true).expect("valid");
        let mid = Instant::now();
        let dy = vec![1e-3; y.len()];
        backward(saved.expect("saved"), &dy).expect("valid");
        if rep >= 2 {
            fwd += (mid - start).as_secs_f64();
            bwd += mid.elapsed().as_secs_f64();
        }
    }
    println!(
        "{cell:?} {dims:?} simd level {}: forward {:.2} ms, backward {:.2} ms",
        simd_level(),
        fwd * 1e3 / reps as f64,
        bwd * 1e3 / reps as f64
    );
}
