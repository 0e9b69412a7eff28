//! A Burn 0.22 mirror of ember-nn's `CharLm` (LSTM body only, no projection).
//!
//! The module tree reproduces ember's field/variant names so that Burnpack tensor paths match:
//!
//! ```text
//! embedding.weight                      [vocab, embed]
//! body.Lstm.cells.{k}.weight_ih         [4H, in]
//! body.Lstm.cells.{k}.weight_hh         [4H, H]
//! body.Lstm.cells.{k}.bias_ih           [4H]
//! body.Lstm.cells.{k}.bias_hh           [4H]
//! head.weight                           [H, vocab]   (Burn Linear, Row layout: [d_input, d_output])
//! head.bias                             [vocab]
//! ```
//!
//! `cells` is in PyTorch `h_n` row order (`layer·D + direction`); only D = 1 is supported here.

use burn::module::{Initializer, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

/// One LSTM direction/layer with PyTorch's parameters (gates i, f, g, o stacked on dim 0).
#[derive(Module, Debug)]
pub struct LstmCell {
    pub weight_ih: Param<Tensor<2>>,
    pub weight_hh: Param<Tensor<2>>,
    pub bias_ih: Option<Param<Tensor<1>>>,
    pub bias_hh: Option<Param<Tensor<1>>>,
    pub weight_hr: Option<Param<Tensor<2>>>,
}

impl LstmCell {
    pub fn init(input: usize, hidden: usize, device: &Device) -> Self {
        let bound = 1.0 / (hidden as f64).sqrt();
        let u = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        let g = 4 * hidden;
        Self {
            weight_ih: u.init([g, input], device),
            weight_hh: u.init([g, hidden], device),
            bias_ih: Some(u.init([g], device)),
            bias_hh: Some(u.init([g], device)),
            weight_hr: None,
        }
    }

    /// Runs the cell over `x` `[T, in]` (one sequence) from zero state; returns `[T, H]`.
    pub fn run(&self, x: Tensor<2>) -> Tensor<2> {
        assert!(self.weight_hr.is_none(), "proj_size is not supported");
        let [steps, _] = x.dims();
        let w_hh = self.weight_hh.val();
        let [g4, hidden] = w_hh.dims();
        assert_eq!(g4, 4 * hidden);
        let device = x.device();
        // x W_ihᵀ + b_ih + b_hh for every step at once: [T, 4H]
        let mut p = x.matmul(self.weight_ih.val().transpose());
        for b in [&self.bias_ih, &self.bias_hh].into_iter().flatten() {
            p = p + b.val().unsqueeze_dim(0);
        }
        let w_hh_t = w_hh.transpose();
        let mut h = Tensor::<2>::zeros([1, hidden], &device);
        let mut c = Tensor::<2>::zeros([1, hidden], &device);
        let mut outs = Vec::with_capacity(steps);
        for t in 0..steps {
            let gates = p.clone().slice(s![t..t + 1]) + h.clone().matmul(w_hh_t.clone());
            let mut parts = gates.chunk(4, 1).into_iter();
            let (i, f, g, o) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            c = sigmoid(f) * c + sigmoid(i) * g.tanh();
            h = sigmoid(o) * c.clone().tanh();
            outs.push(h.clone());
        }
        Tensor::cat(outs, 0)
    }
}

/// ember's `Recurrent<B, C>` (only the tensor-carrying field matters for paths).
#[derive(Module, Debug)]
pub struct Recurrent {
    pub cells: Vec<LstmCell>,
}

/// ember's `AnyRecurrent`; only `Lstm` is implemented. The variant name is part of the path.
#[derive(Module, Debug)]
pub enum AnyRecurrent {
    Lstm(Recurrent),
}

#[derive(Module, Debug)]
pub struct CharLm {
    pub embedding: Embedding,
    pub body: AnyRecurrent,
    pub dropout: Dropout,
    pub head: Linear,
}

#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub vocab: usize,
    pub embed: usize,
    pub hidden: usize,
    pub layers: usize,
}

impl CharLm {
    pub fn init(d: Dims, device: &Device) -> Self {
        let cells = (0..d.layers)
            .map(|l| LstmCell::init(if l == 0 { d.embed } else { d.hidden }, d.hidden, device))
            .collect();
        Self {
            embedding: EmbeddingConfig::new(d.vocab, d.embed).init(device),
            body: AnyRecurrent::Lstm(Recurrent { cells }),
            dropout: DropoutConfig::new(0.0).init(),
            head: LinearConfig::new(d.hidden, d.vocab).init(device),
        }
    }

    /// Logits `[T, vocab]` for one sequence of token ids.
    pub fn forward(&self, tokens: &[usize], device: &Device) -> Tensor<2> {
        let n = tokens.len();
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), device);
        let x: Tensor<3> = self.embedding.forward(ids); // [1, T, E]
        let [_, _, e] = x.dims();
        let mut x: Tensor<2> = x.reshape([n, e]);
        let AnyRecurrent::Lstm(rec) = &self.body;
        for cell in &rec.cells {
            x = cell.run(x);
        }
        self.head.forward(x)
    }
}
