//! The character language model: token embedding → stacked LSTM, GRU or RNN → linear head over
//! the vocabulary.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::embedding;

use crate::affine::{affine, Layout};
use crate::dropout::{dropout, locked_mask, row_mask};
use crate::layer::{AnyRecurrent, CellKind};
use crate::recurrent::{First, RecurrentConfig, RecurrentState, StackMasks};
use crate::rnn::Nonlinearity;
use crate::NnError;

/// Configuration of a [`CharLm`].
#[derive(Config, Debug, PartialEq)]
pub struct CharLmConfig {
    /// Number of tokens, special tokens included.
    pub vocab_size: usize,
    /// Width of the token embedding.
    #[config(default = 32)]
    pub embed_dim: usize,
    /// The recurrent cell.
    #[config(default = "CellKind::Lstm")]
    pub kind: CellKind,
    /// Recurrent hidden size.
    #[config(default = 128)]
    pub hidden_size: usize,
    /// Number of stacked recurrent layers.
    #[config(default = 1)]
    pub num_layers: usize,
    /// LSTM only: projection size of `h` (0 means none).
    #[config(default = 0)]
    pub proj_size: usize,
    /// RNN only: `tanh` or `relu`.
    #[config(default = "Nonlinearity::Tanh")]
    pub nonlinearity: Nonlinearity,
    /// Dropout between recurrent layers and before the head, in training only.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// `dropout` as variational (locked) dropout: one mask per sequence and feature, shared by
    /// every step (see [`crate::dropout::locked_mask`]), instead of one per element.
    ///
    /// This and the three keys below are options so that a `model.json` written before them
    /// still loads: `None` means off.
    pub variational: Option<bool>,
    /// Embedding dropout: drops whole rows of the embedding table, in training only (see
    /// [`crate::dropout::row_mask`]).
    pub embed_dropout: Option<f64>,
    /// Variational dropout on the embeddings fed to the first layer, in training only.
    pub input_dropout: Option<f64>,
    /// Weight-drop on every layer's `W_hh`, in training only (see
    /// [`crate::dropout::matrix_mask`]).
    pub weight_drop: Option<f64>,
    /// Zoneout of every layer's `h` (see [`crate::ZoneMasks`]); an option like the keys above.
    pub zoneout: Option<f64>,
    /// LSTM only: zoneout of every layer's cell state `c`.
    pub zoneout_cell: Option<f64>,
    /// Tied input and output embeddings: the head's weight is the embedding table (Press &
    /// Wolf 2017, AWD-LSTM), `logits = h Eᵀ + b`, so the body's output width (`hidden_size`, or
    /// an LSTM's `proj_size`) must equal `embed_dim`; the head keeps its own bias. An option
    /// like the keys above.
    pub tie_embeddings: Option<bool>,
    /// LSTM and GRU only: LayerNorm cells (see [`crate::layer_norm`]). An option like the keys
    /// above.
    pub layer_norm: Option<bool>,
}

impl CharLmConfig {
    /// Builds the model; an impossible size is an error naming the key.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<CharLm<B>, NnError> {
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("embed_dim", self.embed_dim),
        ] {
            if v == 0 {
                return Err(NnError::ZeroSize { key });
            }
        }
        let variational = self.variational.unwrap_or(false);
        let embed_dropout = self.embed_dropout.unwrap_or(0.0);
        let input_dropout = self.input_dropout.unwrap_or(0.0);
        for p in [embed_dropout, input_dropout] {
            if !(0.0..1.0).contains(&p) {
                return Err(NnError::BadDropout(p));
            }
        }
        let body = RecurrentConfig::new(self.embed_dim, self.hidden_size)
            .with_num_layers(self.num_layers)
            .with_proj_size(self.proj_size)
            .with_nonlinearity(self.nonlinearity)
            .with_dropout(self.dropout)
            .with_variational(variational)
            .with_weight_drop(self.weight_drop.unwrap_or(0.0))
            .with_zoneout(self.zoneout.unwrap_or(0.0))
            .with_zoneout_cell(self.zoneout_cell.unwrap_or(0.0))
            .with_layer_norm(self.layer_norm.unwrap_or(false))
            .with_batch_first(true)
            .init_any(self.kind, device)?;
        let width = body.output_size();
        let head = LinearConfig::new(width, self.vocab_size).init(device);
        let (head, tied_bias) = if self.tie_embeddings.unwrap_or(false) {
            if width != self.embed_dim {
                return Err(NnError::TiedWidths {
                    embed_dim: self.embed_dim,
                    width,
                    fix: match self.kind {
                        CellKind::Lstm => format!("model.proj_size = {}", self.embed_dim),
                        _ => format!("model.hidden_size = {}", self.embed_dim),
                    },
                });
            }
            (None, head.bias)
        } else {
            (Some(head), None)
        };
        Ok(CharLm {
            embedding: EmbeddingConfig::new(self.vocab_size, self.embed_dim).init(device),
            head,
            tied_bias,
            body,
            dropout: DropoutConfig::new(self.dropout).init(),
            variational,
            embed_dropout,
            input_dropout,
        })
    }
}

/// A character-level language model: `logits = head(dropout(body(embedding(tokens))))`, where
/// the body is a stacked LSTM, GRU or RNN.
///
/// In training, with the AWD-LSTM regularisers of its config (each off by default):
///
/// ```text
/// E' = E ⊙ m_e / (1 − p_e)                  m_e ~ Bernoulli(1 − p_e), one per token row
/// x_t = E'[token_t] ⊙ m_i / (1 − p_i)       m_i ~ Bernoulli(1 − p_i), one per sequence
/// h_t = body(x_t), its layers' outputs dropped with p (one mask per sequence if variational),
///       each W_hh multiplied by M / (1 − p_w), M ~ Bernoulli(1 − p_w) per weight (weight-drop)
/// logits_t = W (h_t ⊙ m_o / (1 − p)) + b    m_o per element, or one per sequence if variational
/// ```
///
/// With tied embeddings the head's `W` is the embedding table `E` itself (not `E'`), so
/// `logits_t = (h_t ⊙ m_o / (1 − p)) Eᵀ + b` and `E`'s gradient sums both uses.
///
/// Initialised as PyTorch initialises `nn.Embedding`, `nn.LSTM`/`nn.GRU`/`nn.RNN` and
/// `nn.Linear`:
/// - embedding `N(0, 1)`;
/// - every recurrent weight and bias `U(−1/√H, 1/√H)`;
/// - head weight and bias `U(−1/√in, 1/√in)` (`nn.Linear`'s Kaiming-uniform with `a = √5`),
///   `in` the body's output width; a tied head's bias likewise (PyTorch's
///   `decoder.weight = encoder.weight` keeps the decoder's bias).
#[derive(Module, Debug)]
pub struct CharLm<B: Backend> {
    /// Token embedding, `[vocab, embed_dim]`.
    pub embedding: Embedding<B>,
    /// The recurrent body.
    pub body: AnyRecurrent<B>,
    dropout: Dropout,
    /// Projection to next-token logits; `None` when the head is tied to the embedding table.
    pub head: Option<Linear<B>>,
    /// The tied head's bias, `[vocab]` (`None` unless tied).
    pub tied_bias: Option<Param<Tensor<B, 1>>>,
    variational: bool,
    embed_dropout: f64,
    input_dropout: f64,
}

/// The dropout masks of one training step of a [`CharLm`], scaled (`m / (1 − p)`); `None`
/// where that dropout is off or drawn inside. Training draws them ([`CharLm::draw_masks`]); a
/// test fixes them to compare with a reference ([`CharLm::forward_with_masks`]).
#[derive(Debug, Clone)]
pub struct DropMasks<B: Backend> {
    /// Embedding dropout, `[vocab, 1]`.
    pub embed: Option<Tensor<B, 2>>,
    /// Variational dropout of the first layer's input, `[1, batch, embed_dim]`.
    pub input: Option<Tensor<B, 3>>,
    /// Between layers and on the recurrent weights (see [`StackMasks`]); `None`: the body
    /// draws its own.
    pub stack: Option<StackMasks<B>>,
    /// Before the head, `[1, batch, width]`; `None`: [`crate::dropout::dropout`] per element
    /// with the config's `dropout`.
    pub output: Option<Tensor<B, 3>>,
}

impl<B: Backend> CharLm<B> {
    /// Next-token logits `[batch, seq, vocab]` for `tokens` `[batch, seq]`, from `state`
    /// (zeros when `None`), and the state after the last step.
    ///
    /// Sequences padded at the end need no lengths here: a unidirectional recurrent layer's outputs at
    /// valid steps never depend on later padding, and the loss masks the padded steps.
    pub fn forward(
        &self,
        tokens: Tensor<B, 2, Int>,
        state: Option<RecurrentState<B>>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        self.forward_packed(tokens, None, state)
    }

    /// [`Self::forward`] where `lengths`, when given, holds each sequence's valid steps: the
    /// recurrent body then runs packed (padded steps cost nothing and the final state is each
    /// sequence's last valid step; see [`crate::Recurrent::forward`]).
    pub fn forward_packed(
        &self,
        tokens: Tensor<B, 2, Int>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        let (logits, state) = self.forward_time_major(tokens, lengths, state);
        (logits.swap_dims(0, 1), state)
    }

    /// [`Self::forward_packed`] with the logits time-major, `[seq, batch, vocab]`, as the model
    /// computes them. A loss that reads them so (`ember_train::loss`'s time-major
    /// cross-entropy) flattens them without a copy, forward and backward; the batch-major
    /// view of [`Self::forward`] is a transpose, which a flattening copies element by element.
    pub fn forward_time_major(
        &self,
        tokens: Tensor<B, 2, Int>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        let masks = self.draw_masks(tokens.dims()[0], &tokens.device());
        self.forward_masked(tokens, lengths, state, masks)
    }

    /// The masks of one training step for `batch` sequences: those of the regularisers that are
    /// on, in training only (all `None` otherwise).
    pub fn draw_masks(&self, batch: usize, device: &B::Device) -> DropMasks<B> {
        let [vocab, embed] = self.embedding.weight.dims();
        let width = self.body.output_size();
        DropMasks {
            embed: row_mask(self.embed_dropout, vocab, device),
            input: locked_mask(self.input_dropout, batch, embed, device),
            stack: None,
            output: if self.variational {
                locked_mask(self.dropout.prob, batch, width, device)
            } else {
                None
            },
        }
    }

    /// [`Self::forward_time_major`] with the dropout masks given (see [`DropMasks`]); masks whose
    /// shapes do not fit the model and `tokens` are an error.
    pub fn forward_with_masks(
        &self,
        tokens: Tensor<B, 2, Int>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
        masks: DropMasks<B>,
    ) -> Result<(Tensor<B, 3>, RecurrentState<B>), NnError> {
        let [batch, steps] = tokens.dims();
        let [vocab, embed] = self.embedding.weight.dims();
        let width = self.body.output_size();
        let fits = |what: &'static str, expected: Vec<usize>, found: Option<Vec<usize>>| match found
        {
            Some(found) if found != expected => Err(NnError::MaskShapes {
                what,
                expected: vec![expected],
                found: vec![found],
            }),
            _ => Ok(()),
        };
        fits(
            "embedding",
            vec![vocab, 1],
            masks.embed.as_ref().map(|m| m.dims().to_vec()),
        )?;
        fits(
            "input",
            vec![1, batch, embed],
            masks.input.as_ref().map(|m| m.dims().to_vec()),
        )?;
        fits(
            "output",
            vec![1, batch, width],
            masks.output.as_ref().map(|m| m.dims().to_vec()),
        )?;
        if let Some(stack) = &masks.stack {
            self.body.check_masks(stack, steps, batch)?;
        }
        Ok(self.forward_masked(tokens, lengths, state, masks))
    }

    /// Whether the head's weight is the embedding table.
    pub fn is_tied(&self) -> bool {
        self.head.is_none()
    }

    /// The head's weight in PyTorch's `[vocab, width]` layout (the embedding table when tied).
    pub fn head_weight(&self) -> Tensor<B, 2> {
        match &self.head {
            Some(head) => head.weight.val().transpose(),
            None => self.embedding.weight.val(),
        }
    }

    /// The head's bias `[vocab]`, if it has one.
    pub fn head_bias(&self) -> Option<Tensor<B, 1>> {
        match &self.head {
            Some(head) => head.bias.as_ref().map(|b| b.val()),
            None => self.tied_bias.as_ref().map(|b| b.val()),
        }
    }

    /// The head's weight as stored, its bias and the weight's layout.
    fn head_parts(&self) -> (Tensor<B, 2>, Option<Tensor<B, 1>>, Layout) {
        match &self.head {
            Some(head) => (head.weight.val(), self.head_bias(), Layout::InOut),
            None => (self.embedding.weight.val(), self.head_bias(), Layout::OutIn),
        }
    }

    /// [`Self::forward_with_masks`] for masks known to fit.
    fn forward_masked(
        &self,
        tokens: Tensor<B, 2, Int>,
        lengths: Option<&[usize]>,
        state: Option<RecurrentState<B>>,
        masks: DropMasks<B>,
    ) -> (Tensor<B, 3>, RecurrentState<B>) {
        // Time-major inside: transposing the token ids and the logits is cheaper than
        // transposing the hidden states (and their gradients). Without input dropout, the body
        // looks the tokens up in its first layer's projection of the embedding table.
        let tokens = tokens.swap_dims(0, 1);
        let table = match masks.embed {
            Some(m) => self.embedding.weight.val() * m,
            None => self.embedding.weight.val(),
        };
        let first = match masks.input {
            Some(m) => First::Features(embedding(table, tokens) * m),
            None => First::Tokens(table, tokens),
        };
        let (h, state) = match (&masks.stack, first) {
            (Some(stack), first) => self.body.run_masked(first, lengths, state, stack),
            (None, First::Features(x)) => self.body.forward_time_major(x, lengths, state),
            (None, First::Tokens(table, tokens)) => {
                self.body.forward_tokens(table, tokens, lengths, state)
            }
        };
        let h = match masks.output {
            Some(m) => h * m,
            None => dropout(&self.dropout, h),
        };
        let [steps, batch, width] = h.dims();
        // The head as one affine map over every step (one autodiff node on the CPU backends).
        let (weight, bias, layout) = self.head_parts();
        let logits = affine(h.reshape([steps * batch, width]), weight, bias, layout);
        let vocab = logits.dims()[1];
        (logits.reshape([steps, batch, vocab]), state)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::flex::FlexDevice;
    use burn::backend::Flex;

    use super::*;

    fn values<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
        t.into_data().iter::<f32>().collect()
    }

    /// `v` lies in `[−bound, bound]` and its largest `|value|` reaches `bound · 10^(−6/n)`
    /// (a uniform draw of `n` values falls short of that with probability 10⁻⁶), so a wider or
    /// a narrower initialiser fails.
    fn uniform_within(what: &str, v: &[f32], bound: f32) {
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let reach = bound * 1e-6f32.powf(1.0 / v.len() as f32);
        assert!(
            v.iter().all(|x| x.is_finite() && x.abs() <= bound) && max >= reach,
            "{what}: largest |value| {max}, PyTorch's bound {bound}"
        );
    }

    #[test]
    fn every_layer_starts_as_pytorch_initialises_it() {
        let device = FlexDevice;
        for kind in [CellKind::Lstm, CellKind::Gru, CellKind::Rnn] {
            let (vocab, embed, hidden) = (60, 48, 100);
            let lm: CharLm<Flex> = CharLmConfig::new(vocab)
                .with_kind(kind)
                .with_embed_dim(embed)
                .with_hidden_size(hidden)
                .with_num_layers(2)
                .init(&device)
                .expect("a valid config");
            let e = values(lm.embedding.weight.val());
            let mean = e.iter().sum::<f32>() / e.len() as f32;
            let sd = (e.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / e.len() as f32).sqrt();
            // 2880 draws of N(0, 1): the mean's standard error is 0.019.
            assert!(
                mean.abs() < 0.1 && (sd - 1.0).abs() < 0.06,
                "{kind:?} embedding: mean {mean}, sd {sd}"
            );
            let recurrent = 1.0 / (hidden as f32).sqrt();
            for p in lm.body.torch_params("") {
                uniform_within(&format!("{kind:?} {}", p.name()), &p.to_host().1, recurrent);
            }
            let head = 1.0 / (hidden as f32).sqrt();
            uniform_within("head.weight", &values(lm.head_weight()), head);
            let bias = lm.head_bias().expect("the head has a bias");
            uniform_within("head.bias", &values(bias), head);
        }
    }

    #[test]
    fn a_tied_head_is_the_embedding_table_with_its_own_bias() {
        let device = FlexDevice;
        let (vocab, embed) = (30, 8);
        let tied = |kind: CellKind, hidden: usize, proj: usize| {
            CharLmConfig::new(vocab)
                .with_kind(kind)
                .with_embed_dim(embed)
                .with_hidden_size(hidden)
                .with_proj_size(proj)
                .with_tie_embeddings(Some(true))
                .init::<Flex>(&device)
        };
        for lm in [
            tied(CellKind::Lstm, 20, embed),
            tied(CellKind::Gru, embed, 0),
        ] {
            let lm = lm.expect("the widths fit");
            assert!(lm.is_tied());
            assert_eq!(
                lm.num_params(),
                lm.embedding.num_params() + lm.body.num_params() + vocab,
                "a tied head adds only its bias"
            );
            assert_eq!(
                values(lm.head_weight()),
                values(lm.embedding.weight.val()),
                "the head reads the embedding table"
            );
            let bias = lm.head_bias().expect("a tied head keeps its bias");
            uniform_within("tied bias", &values(bias), 1.0 / (embed as f32).sqrt());
            let tokens = Tensor::<Flex, 2, Int>::from_data([[1, 2, 3], [4, 5, 6]], &device);
            let (logits, _) = lm.forward(tokens.clone(), None);
            // The last step's logits, recomputed from the body's output and the table.
            let (h, _) = lm.body.forward_tokens(
                lm.embedding.weight.val(),
                tokens.swap_dims(0, 1),
                None,
                None,
            );
            let want = h
                .narrow(0, 2, 1)
                .reshape([2, embed])
                .matmul(lm.embedding.weight.val().transpose())
                + lm.head_bias().unwrap().unsqueeze::<2>();
            let got = logits.slice([0..2, 2..3]).reshape([2, vocab]);
            let worst = values(got - want).iter().fold(0.0f32, |m, d| {
                if d.is_finite() {
                    m.max(d.abs())
                } else {
                    f32::INFINITY
                }
            });
            assert!(worst < 1e-5, "tied logits differ by {worst}");
        }
        let err = tied(CellKind::Lstm, 20, 0).map(|_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model.tie_embeddings needs the recurrent output as wide as model.embed_dim (8), but it is 20: set model.proj_size = 8"
        );
        let err = tied(CellKind::Rnn, 20, 0).map(|_| ()).unwrap_err();
        assert!(
            err.to_string().ends_with("set model.hidden_size = 8"),
            "{err}"
        );
    }

    #[test]
    fn masks_that_do_not_fit_are_an_error_naming_them() {
        let device = FlexDevice;
        let lm: CharLm<Flex> = CharLmConfig::new(10)
            .with_embed_dim(4)
            .with_hidden_size(6)
            .with_num_layers(2)
            .init(&device)
            .expect("a valid config");
        let tokens = Tensor::<Flex, 2, Int>::zeros([3, 5], &device);
        let ones = |shape: [usize; 3]| Tensor::<Flex, 3>::ones(shape, &device);
        let masks = |between: Vec<Tensor<Flex, 3>>, recurrent: Vec<Tensor<Flex, 2>>| DropMasks {
            embed: None,
            input: None,
            stack: Some(StackMasks {
                between,
                recurrent,
                zone_h: Vec::new(),
                zone_c: Vec::new(),
            }),
            output: None,
        };
        let fitting = masks(vec![ones([1, 3, 6])], vec![]);
        assert!(lm
            .forward_with_masks(tokens.clone(), None, None, fitting)
            .is_ok());
        let wrong_batch = masks(vec![ones([1, 2, 6])], vec![]);
        let err = lm.forward_with_masks(tokens.clone(), None, None, wrong_batch);
        assert!(
            matches!(
                err,
                Err(NnError::MaskShapes {
                    what: "between-layer",
                    ..
                })
            ),
            "{err:?}"
        );
        let one_cell = masks(vec![ones([1, 3, 6])], vec![Tensor::ones([24, 6], &device)]);
        let err = lm.forward_with_masks(tokens.clone(), None, None, one_cell);
        assert!(
            matches!(
                err,
                Err(NnError::MaskShapes {
                    what: "weight-drop",
                    ..
                })
            ),
            "{err:?}"
        );
        let mut output = masks(vec![ones([1, 3, 6])], vec![]);
        output.output = Some(ones([1, 3, 5]));
        let err = lm.forward_with_masks(tokens, None, None, output);
        assert!(
            matches!(err, Err(NnError::MaskShapes { what: "output", .. })),
            "{err:?}"
        );
    }
}
