//! The kernels against a plain `f64` implementation of the same equations: outputs, and every
//! gradient against central finite differences of a weighted sum of the outputs.

use super::*;

/// A small deterministic generator of values in `[-scale, scale)`.
struct Lcg(u64);

impl Lcg {
    fn values(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `LN(v) ⊙ γ (+ β)` in `f64`: PyTorch's `layer_norm` over all of `v` (`ε = 1e-5`).
fn layer_norm(v: &[f64], gamma: &[f64], beta: &[f64]) -> Vec<f64> {
    let len = v.len() as f64;
    let mean = v.iter().sum::<f64>() / len;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / len;
    let s = 1.0 / (var + 1e-5).sqrt();
    (0..v.len())
        .map(|k| (v[k] - mean) * s * gamma[k] + beta.get(k).copied().unwrap_or(0.0))
        .collect()
}

/// Arguments of a [`Problem`].
const ARGS: usize = 9;

/// One problem: the inputs as `f64`, in the order xp, w_hh, b_hh, h0, c0, w_hr, γ_hh, γ_c, β_c
/// (the last three empty unless layer-normalised).
struct Problem {
    cell: Cell,
    dims: Dims,
    active: Vec<usize>,
    args: [Vec<f64>; ARGS],
    /// Zoneout masks of `h` and `c` (empty: none).
    zone: [Vec<f64>; 2],
}

impl Problem {
    fn new(cell: Cell, dims: Dims, active: Vec<usize>, seed: u64) -> Self {
        let mut rng = Lcg(seed);
        let g = cell.gates() * dims.hidden;
        let (bh, bp) = (dims.batch * dims.hidden, dims.state_len());
        let projected = dims.output != dims.hidden;
        let args = [
            rng.values(dims.steps * dims.batch * g, 1.0),
            rng.values(g * dims.output, 0.6),
            if cell == Cell::Gru {
                rng.values(g, 0.5)
            } else {
                Vec::new()
            },
            rng.values(bp, 0.8),
            if cell == Cell::Lstm {
                rng.values(bh, 0.8)
            } else {
                Vec::new()
            },
            if projected {
                rng.values(dims.output * dims.hidden, 0.6)
            } else {
                Vec::new()
            },
            Vec::new(),
            Vec::new(),
            Vec::new(),
        ];
        Self {
            cell,
            dims,
            active,
            args,
            zone: [Vec::new(), Vec::new()],
        }
    }

    /// With zoneout masks of 1 (keep), 0 (take the new value) and, as in inference, 0.3,
    /// for `h` and (LSTM) `c`.
    fn zoned(mut self, seed: u64) -> Self {
        let mut rng = Lcg(seed);
        let mut masks = |n: usize| -> Vec<f64> {
            rng.values(n, 1.0)
                .into_iter()
                .map(|v| match v {
                    v if v < -0.3 => 1.0,
                    v if v > 0.3 => 0.0,
                    _ => 0.3,
                })
                .collect()
        };
        let d = self.dims;
        let rows = d.steps * d.batch;
        self.zone = [
            masks(rows * d.output),
            if self.cell == Cell::Lstm {
                masks(rows * d.hidden)
            } else {
                Vec::new()
            },
        ];
        self
    }

    /// Layer-normalised, with gains in `[0.5, 1.5)` and a bias in `[-0.5, 0.5)`.
    fn normed(mut self, seed: u64) -> Self {
        let mut rng = Lcg(seed);
        let gains = |rng: &mut Lcg, n: usize| -> Vec<f64> {
            rng.values(n, 0.5).into_iter().map(|v| 1.0 + v).collect()
        };
        let n = self.dims.hidden;
        self.args[6] = gains(&mut rng, self.cell.gates() * n);
        if self.cell == Cell::Lstm {
            self.args[7] = gains(&mut rng, n);
            self.args[8] = rng.values(n, 0.5);
        }
        self
    }

    fn rows(&self, t: usize) -> usize {
        self.active.get(t).copied().unwrap_or(self.dims.batch)
    }

    /// `y` by the textbook equations, in `f64`.
    fn reference(&self, a: &[Vec<f64>; ARGS]) -> Vec<f64> {
        let Dims {
            steps,
            batch,
            hidden: n,
            output: p,
        } = self.dims;
        let g = self.cell.gates() * n;
        let [xp, w, b, h0, c0, w_hr, gamma_hh, gamma_c, beta_c] = a;
        let normed = !gamma_hh.is_empty();
        let [zh, zc] = &self.zone;
        let (mut h, mut c) = (h0.clone(), c0.clone());
        let mut y = vec![0.0; self.dims.y_len(self.cell)];
        for t in 0..steps {
            for r in 0..self.rows(t) {
                let x = &xp[(t * batch + r) * g..(t * batch + r + 1) * g];
                let hr = h[r * p..(r + 1) * p].to_vec();
                let mut rec: Vec<f64> = (0..g)
                    .map(|k| (0..p).map(|i| w[k * p + i] * hr[i]).sum())
                    .collect();
                if normed {
                    rec = layer_norm(&rec, gamma_hh, &[]);
                }
                let mut new = match self.cell {
                    Cell::Lstm => {
                        let gate = |q: usize, j: usize| x[q * n + j] + rec[q * n + j];
                        let mut c_new = vec![0.0; n];
                        let mut o = vec![0.0; n];
                        for j in 0..n {
                            let (i, f) = (sig(gate(0, j)), sig(gate(1, j)));
                            o[j] = sig(gate(3, j));
                            c_new[j] = f * c[r * n + j] + i * gate(2, j).tanh();
                        }
                        let c_out = if normed {
                            layer_norm(&c_new, gamma_c, beta_c)
                        } else {
                            c_new.clone()
                        };
                        for (j, &cn) in c_new.iter().enumerate() {
                            let m = zc.get((t * batch + r) * n + j).copied().unwrap_or(0.0);
                            c[r * n + j] = m * c[r * n + j] + (1.0 - m) * cn;
                        }
                        (0..n).map(|j| o[j] * c_out[j].tanh()).collect::<Vec<f64>>()
                    }
                    Cell::Gru => (0..n)
                        .map(|j| {
                            let hp = |q: usize| rec[q * n + j] + b[q * n + j];
                            let rr = sig(x[j] + hp(0));
                            let z = sig(x[n + j] + hp(1));
                            let nn = (x[2 * n + j] + rr * hp(2)).tanh();
                            (1.0 - z) * nn + z * hr[j]
                        })
                        .collect(),
                    Cell::Rnn { relu } => (0..n)
                        .map(|j| {
                            let pre = x[j] + rec[j];
                            if relu {
                                pre.max(0.0)
                            } else {
                                pre.tanh()
                            }
                        })
                        .collect(),
                };
                if !w_hr.is_empty() {
                    new = (0..p)
                        .map(|k| (0..n).map(|j| w_hr[k * n + j] * new[j]).sum())
                        .collect();
                }
                if !zh.is_empty() {
                    for (k, v) in new.iter_mut().enumerate() {
                        let m = zh[(t * batch + r) * p + k];
                        *v = m * hr[k] + (1.0 - m) * *v;
                    }
                }
                y[(t * batch + r) * p..][..p].copy_from_slice(&new);
                h[r * p..(r + 1) * p].copy_from_slice(&new);
            }
        }
        let bp = batch * p;
        y[steps * bp..(steps + 1) * bp].copy_from_slice(&h);
        if self.cell == Cell::Lstm {
            y[(steps + 1) * bp..].copy_from_slice(&c);
        }
        y
    }

    /// The kernel's inputs, in `f32`.
    fn inputs(&self) -> Inputs {
        let f = |v: &Vec<f64>| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        Inputs {
            cell: self.cell,
            dims: self.dims,
            xp: f(&self.args[0]),
            w_hh: f(&self.args[1]),
            b_hh: f(&self.args[2]),
            h0: f(&self.args[3]),
            c0: f(&self.args[4]),
            w_hr: f(&self.args[5]),
            active: self.active.clone(),
            zone_h: f(&self.zone[0]),
            zone_c: f(&self.zone[1]),
            norm: Norm {
                gamma_hh: f(&self.args[6]),
                gamma_c: f(&self.args[7]),
                beta_c: f(&self.args[8]),
            },
        }
    }

    fn kernel(&self, save: bool) -> (Vec<f32>, Option<Saved>) {
        forward(self.inputs(), save).expect("valid inputs")
    }
}

fn check(cell: Cell, active: Vec<usize>, seed: u64) {
    check_sized(cell, 4, active, seed);
}

/// Checks `cell` with `H = 4` and `H_out = output`.
fn check_sized(cell: Cell, output: usize, active: Vec<usize>, seed: u64) {
    let dims = Dims {
        steps: 5,
        batch: 3,
        hidden: 4,
        output,
    };
    check_problem(Problem::new(cell, dims, active, seed), seed);
}

/// Checks `p`'s outputs against [`Problem::reference`] and its gradients against finite
/// differences.
fn check_problem(p: Problem, seed: u64) {
    let cell = p.cell;
    let expect = p.reference(&p.args);
    let (y, saved) = p.kernel(true);
    assert_eq!(y.len(), expect.len());
    for (k, (a, b)) in y.iter().zip(&expect).enumerate() {
        assert!((*a as f64 - b).abs() < 2e-6, "{cell:?} y[{k}]: {a} vs {b}");
    }
    let weights = Lcg(seed + 1).values(y.len(), 1.0);
    let dy: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
    let grads = backward(saved.expect("saved"), &dy).expect("valid dy");
    let loss = |a: &[Vec<f64>; ARGS]| {
        p.reference(a)
            .iter()
            .zip(&weights)
            .map(|(y, w)| y * w)
            .sum::<f64>()
    };
    let got = [
        &grads.xp,
        &grads.w_hh,
        &grads.b_hh,
        &grads.h0,
        &grads.c0,
        &grads.w_hr,
        &grads.norm.gamma_hh,
        &grads.norm.gamma_c,
        &grads.norm.beta_c,
    ];
    let names = [
        "xp", "w_hh", "b_hh", "h0", "c0", "w_hr", "gamma_hh", "gamma_c", "beta_c",
    ];
    for (k, name) in names.iter().enumerate() {
        assert_eq!(got[k].len(), p.args[k].len(), "{cell:?} d{name} size");
        for i in 0..p.args[k].len() {
            let eps = 1e-5;
            let mut a = p.args.clone();
            a[k][i] += eps;
            let up = loss(&a);
            a[k][i] -= 2.0 * eps;
            let fd = (up - loss(&a)) / (2.0 * eps);
            let g = got[k][i] as f64;
            assert!(
                (g - fd).abs() < 1e-4 * (1.0 + fd.abs()),
                "{cell:?} d{name}[{i}]: kernel {g} vs finite differences {fd}"
            );
        }
    }
}

const CELLS: [Cell; 4] = [
    Cell::Lstm,
    Cell::Gru,
    Cell::Rnn { relu: false },
    Cell::Rnn { relu: true },
];

#[test]
fn full_batches_match_the_equations_and_finite_differences() {
    for (s, cell) in CELLS.into_iter().enumerate() {
        check(cell, Vec::new(), 10 + s as u64);
    }
}

#[test]
fn packed_batches_freeze_finished_rows() {
    for (s, cell) in CELLS.into_iter().enumerate() {
        // Forward direction (longest first) and a time-flipped reverse direction.
        check(cell, vec![3, 3, 2, 1, 1], 20 + s as u64);
        check(cell, vec![1, 1, 2, 3, 3], 30 + s as u64);
    }
}

#[test]
fn projected_lstm_matches_the_equations_and_finite_differences() {
    check_sized(Cell::Lstm, 2, Vec::new(), 40);
    check_sized(Cell::Lstm, 1, vec![3, 2, 2, 1, 1], 41);
}

/// Zoneout (masks of 0, 1 and an inference-like rate), full and packed, forward and time-flipped,
/// with a hidden size over one 16-lane block and a projected LSTM.
#[test]
fn zoneout_matches_the_equations_and_finite_differences() {
    for (s, cell) in CELLS.into_iter().enumerate() {
        for (k, active) in [Vec::new(), vec![3, 3, 2, 1, 1], vec![1, 1, 2, 3, 3]]
            .into_iter()
            .enumerate()
        {
            let seed = 50 + 10 * s as u64 + k as u64;
            let dims = Dims {
                steps: 5,
                batch: 3,
                hidden: 4,
                output: 4,
            };
            check_problem(Problem::new(cell, dims, active, seed).zoned(seed + 3), seed);
        }
        let wide = Dims {
            steps: 3,
            batch: 2,
            hidden: 17,
            output: 17,
        };
        check_problem(Problem::new(cell, wide, Vec::new(), 90).zoned(91), 90);
    }
    let projected = Dims {
        steps: 5,
        batch: 3,
        hidden: 4,
        output: 2,
    };
    let p = Problem::new(Cell::Lstm, projected, vec![3, 2, 2, 1, 1], 95).zoned(96);
    check_problem(p, 95);
}

#[test]
fn inference_gives_the_same_outputs() {
    for (k, cell) in CELLS.into_iter().chain([Cell::Lstm, Cell::Gru]).enumerate() {
        let p = Problem::new(
            cell,
            Dims {
                steps: 4,
                batch: 2,
                hidden: 3,
                output: 3,
            },
            vec![2, 2, 1, 0],
            7,
        );
        // The last two: layer-normalised.
        let p = if k >= CELLS.len() { p.normed(8) } else { p };
        let (with, saved) = p.kernel(true);
        let (without, none) = p.kernel(false);
        assert!(saved.is_some() && none.is_none());
        assert_eq!(with, without);
    }
}

#[test]
fn wrong_sizes_are_refused() {
    let p = Problem::new(
        Cell::Gru,
        Dims {
            steps: 2,
            batch: 2,
            hidden: 3,
            output: 3,
        },
        Vec::new(),
        1,
    );
    let mut inputs = Inputs {
        cell: Cell::Gru,
        dims: p.dims,
        xp: vec![0.0; 2 * 2 * 9],
        w_hh: vec![0.0; 9 * 3],
        w_hr: Vec::new(),
        b_hh: Vec::new(),
        h0: vec![0.0; 5],
        c0: Vec::new(),
        active: Vec::new(),
        zone_h: Vec::new(),
        zone_c: Vec::new(),
        norm: Norm::default(),
    };
    let err = forward(inputs.clone(), false).unwrap_err();
    assert_eq!(err.0, "h0 has 5 values, expected 6");
    inputs.h0 = vec![0.0; 6];
    inputs.active = vec![3, 1];
    assert!(forward(inputs.clone(), false)
        .unwrap_err()
        .0
        .contains("3 active rows"));
    inputs.active = Vec::new();
    inputs.zone_h = vec![0.0; 5];
    let err = forward(inputs.clone(), false).unwrap_err();
    assert_eq!(err.0, "zone_h has 5 values, expected 12");
    inputs.zone_h = Vec::new();
    inputs.zone_c = vec![0.0; 12];
    let err = forward(inputs.clone(), false).unwrap_err();
    assert!(err.0.contains("only an LSTM"), "{err}");
    inputs.zone_c = Vec::new();
    inputs.norm.gamma_hh = vec![1.0; 8];
    let err = forward(inputs.clone(), false).unwrap_err();
    assert_eq!(err.0, "norm.gamma_hh has 8 values, expected 9");
    inputs.norm.gamma_hh = Vec::new();
    inputs.norm.gamma_c = vec![1.0; 3];
    let err = forward(inputs.clone(), false).unwrap_err();
    assert_eq!(err.0, "norm.gamma_c without norm.gamma_hh");
    inputs.cell = Cell::Rnn { relu: false };
    inputs.dims.hidden = 3;
    inputs.xp = vec![0.0; 2 * 2 * 3];
    inputs.w_hh = vec![0.0; 9];
    inputs.norm = Norm {
        gamma_hh: vec![1.0; 3],
        ..Norm::default()
    };
    let err = forward(inputs, false).unwrap_err();
    assert!(err.0.contains("not an RNN"), "{err}");
}

/// Layer normalisation (LSTM with and without projection, GRU): full, packed and time-flipped,
/// with and without zoneout, and hidden sizes over one 16-lane block (`G·H` 68 and 51 values).
#[test]
fn layer_norm_matches_the_equations_and_finite_differences() {
    let cells = [(Cell::Lstm, 4), (Cell::Lstm, 2), (Cell::Gru, 4)];
    for (s, (cell, output)) in cells.into_iter().enumerate() {
        for (k, active) in [Vec::new(), vec![3, 3, 2, 1, 1], vec![1, 1, 2, 3, 3]]
            .into_iter()
            .enumerate()
        {
            let seed = 200 + 10 * s as u64 + k as u64;
            let dims = Dims {
                steps: 5,
                batch: 3,
                hidden: 4,
                output,
            };
            let p = Problem::new(cell, dims, active, seed).normed(seed + 5);
            let p = if k == 2 { p.zoned(seed + 3) } else { p };
            check_problem(p, seed);
        }
        let wide = Dims {
            steps: 3,
            batch: 2,
            hidden: 17,
            output: if output == 4 { 17 } else { 5 },
        };
        check_problem(
            Problem::new(cell, wide, vec![2, 2, 1], 290).normed(291),
            290,
        );
    }
}

/// A batch cut into parts (each on its own thread) gives what one part gives: outputs and
/// every gradient, full, packed (later parts idle for the last steps) and time-flipped
/// packing, for two and three parts.
#[test]
fn a_batch_in_parts_matches_one_part() {
    let lengths: [Vec<usize>; 3] = [
        vec![20; 6],
        vec![20, 17, 11, 9, 3, 1],
        vec![1, 3, 9, 11, 17, 20],
    ];
    let cells = [
        (Cell::Lstm, 4),
        (Cell::Lstm, 2),
        (Cell::Gru, 4),
        (Cell::Rnn { relu: false }, 4),
        (Cell::Rnn { relu: true }, 4),
    ];
    for (seed, (cell, output)) in cells.into_iter().enumerate() {
        for (k, active) in lengths.iter().enumerate() {
            let dims = Dims {
                steps: 6,
                batch: 20,
                hidden: 4,
                output,
            };
            let p = Problem::new(cell, dims, active.clone(), seed as u64 + 7);
            // Zoneout on the second and third packings, layer norm on the first and third.
            let p = if k > 0 { p.zoned(seed as u64 + 17) } else { p };
            let p = if k != 1 && !matches!(cell, Cell::Rnn { .. }) {
                p.normed(seed as u64 + 27)
            } else {
                p
            };
            let inputs = || p.inputs();
            let one = [0, 20];
            let (y1, saved1) = forward_in_parts(inputs(), true, &one).expect("valid");
            let dy: Vec<f32> = Lcg(seed as u64)
                .values(y1.len(), 1.0)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let g1 = backward_in_parts(saved1.expect("saved"), &dy, &one).expect("valid");
            for cuts in [vec![0, 10, 20], vec![0, 7, 13, 20]] {
                let (y2, saved2) = forward_in_parts(inputs(), true, &cuts).expect("valid");
                let g2 = backward_in_parts(saved2.expect("saved"), &dy, &cuts).expect("valid");
                let close = |what: &str, a: &[f32], b: &[f32]| {
                    assert_eq!(a.len(), b.len(), "{cell:?} {what}");
                    for (k, (x, y)) in a.iter().zip(b).enumerate() {
                        assert!(
                            (x - y).abs() < 1e-5,
                            "{cell:?} {active:?} {cuts:?} {what}[{k}]: {x} vs {y}"
                        );
                    }
                };
                close("y", &y1, &y2);
                close("dxp", &g1.xp, &g2.xp);
                close("dw_hh", &g1.w_hh, &g2.w_hh);
                close("dw_hr", &g1.w_hr, &g2.w_hr);
                close("db_hh", &g1.b_hh, &g2.b_hh);
                close("dh0", &g1.h0, &g2.h0);
                close("dc0", &g1.c0, &g2.c0);
                close("dgamma_hh", &g1.norm.gamma_hh, &g2.norm.gamma_hh);
                close("dgamma_c", &g1.norm.gamma_c, &g2.norm.gamma_c);
                close("dbeta_c", &g1.norm.beta_c, &g2.norm.beta_c);
            }
        }
    }
}

/// `γ ⊙ LN(x)` over many rows (more than one task of rows, a width over one 16-lane block):
/// `y` against [`layer_norm`] in `f64`, `dx` and `dγ` against finite differences.
#[test]
fn row_layer_norm_matches_the_equations_and_finite_differences() {
    let (rows, width) = (70, 19);
    let mut rng = Lcg(400);
    let x = rng.values(rows * width, 2.0);
    let gamma: Vec<f64> = rng.values(width, 0.5).iter().map(|v| 1.0 + v).collect();
    let weights = rng.values(rows * width, 1.0);
    let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let reference = |x: &[f64], gamma: &[f64]| -> Vec<f64> {
        x.chunks(width)
            .flat_map(|row| layer_norm(row, gamma, &[]))
            .collect()
    };
    let (y, saved) = layer_norm::forward(&f(&x), &f(&gamma));
    for (k, (a, b)) in y.iter().zip(reference(&x, &gamma)).enumerate() {
        assert!((*a as f64 - b).abs() < 2e-6, "y[{k}]: {a} vs {b}");
    }
    let (dx, dgamma) = layer_norm::backward(&f(&weights), &saved, &f(&gamma));
    let loss = |x: &[f64], gamma: &[f64]| -> f64 {
        reference(x, gamma)
            .iter()
            .zip(&weights)
            .map(|(y, w)| y * w)
            .sum()
    };
    let eps = 1e-5;
    for i in (0..x.len()).step_by(7) {
        let (mut up, mut down) = (x.clone(), x.clone());
        up[i] += eps;
        down[i] -= eps;
        let fd = (loss(&up, &gamma) - loss(&down, &gamma)) / (2.0 * eps);
        let g = dx[i] as f64;
        assert!(
            (g - fd).abs() < 1e-4 * (1.0 + fd.abs()),
            "dx[{i}]: {g} vs {fd}"
        );
    }
    for i in 0..width {
        let (mut up, mut down) = (gamma.clone(), gamma.clone());
        up[i] += eps;
        down[i] -= eps;
        let fd = (loss(&x, &up) - loss(&x, &down)) / (2.0 * eps);
        let g = dgamma[i] as f64;
        assert!(
            (g - fd).abs() < 1e-4 * (1.0 + fd.abs()),
            "dgamma[{i}]: {g} vs {fd}"
        );
    }
}
