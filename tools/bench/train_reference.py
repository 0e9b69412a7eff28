#!/usr/bin/env python3
"""PyTorch reference of `ember train` for character language models, on the data of an ember run.

Given a run directory written by `ember train` (``--run DIR``), this script trains the same model
with the same loop in plain PyTorch on the CPU and reports its training throughput, wall time and
validation loss, so that `cargo xtask bench-e2e` can put them next to ember's. It reads from the
run directory, never from its own guesses:

  config.toml   the experiment config ember trained with (overrides merged): data, model, train
  vocab.json    the vocabulary: id 0 = <pad>, 1 = <s>, 2 = </s>, then `chars` in order (id 3, 4, ...)
  split.json    lines data: which line indices (of the data file's trimmed non-blank lines) train and
                which validate; text data has no split.json: the text is cut by position, as ember
                does (the last round(n * valid_fraction) characters validate)

The data file itself is `data.path` of the config, relative to the working directory (as for
ember), else to the repository root.

The loop, as ember's (crates/ember-train/src/run.rs, strategy.rs, ember-data):

  model   nn.Embedding(V, embed_dim) -> nn.LSTM/GRU/RNN(embed_dim, hidden_size, num_layers,
          batch_first=True, dropout=p between layers when num_layers > 1; LSTM proj_size, RNN
          nonlinearity as configured) -> nn.Dropout(p) -> nn.Linear(hidden or proj, V).
          torch.manual_seed(train.seed) before the model is built. The AWD keys (embed_dropout,
          input_dropout, variational_dropout, weight_drop) and zoneout (zoneout, zoneout_cell) act
          as in ember: see CharLm below.
  lines   each line is <s> + chars + </s>; input = all but the last token, target = all but the
          first. Training batches of train.batch_size are drawn in a new random order every epoch
          (the last batch may be smaller), padded to the batch's longest line: inputs with <pad>
          (0), targets with -100; loss = cross_entropy(ignore_index=-100), the mean over non-pad
          targets. No packing: the padded steps run through the RNN and are masked in the loss
          (ember's language models do the same). With data.bucket_by_length the batches are fixed
          once (shuffle, pools of 32 batches sorted by length, cut, batch order shuffled) and only
          their order is redrawn each epoch.
  text    stateful (data.stateful, the default): the training part is cut into train.batch_size
          contiguous streams (the remainder dropped), chunk k holds steps k*seq_len..(k+1)*seq_len
          of every stream (the last chunk is shorter), served in order; the hidden state is
          carried, detached, from each chunk to the next and starts from zeros at every epoch.
          Loss = mean cross-entropy over every position of the chunk. Stateless text: the part is
          cut into non-overlapping chunks of seq_len predictions, trained like lines (shuffled,
          padded batches, zero state).
  step    lr of the schedule for this global step (constant, cosine, step, exponential, linear
          warm-up: ember's Schedule::rate_at) -> zero_grad -> forward -> loss -> backward ->
          clip_grad_norm_(params, train.grad_clip) when > 0 (the global norm), or each parameter's
          own norm clipped to train.grad_clip_per_param -> optimizer.step(). Optimizers:
          Adam(betas 0.9/0.999, eps 1e-8), AdamW(same, weight_decay 0.01), SGD(momentum, no
          dampening), as ember's.
  valid   after every epoch, model.eval(), no grad: lines (and stateless text) in batches of
          train.batch_size in file order; stateful text as min(batch_size, len/2) streams in
          order with the state carried. Validation loss = sum of NLL over all valid targets /
          their number (ember's token-weighted mean over batches, which is the same).
  save    after every epoch the model and optimizer state are written to a scratch directory and
          the best epoch's model is copied to best.pt (ember writes an epoch checkpoint, best.mpk
          + best.bpk, metrics.csv and its learner state), then the directory is removed.

Figures (same definitions as ember's metrics.csv):
  train_tokens_per_s  valid target tokens of the training pass / seconds of the training pass
                      (from the start of the epoch to the end of its last optimizer step: batching
                      included, validation excluded), over all epochs together (every epoch has
                      the same tokens, so this is the harmonic mean of the per-epoch figures, the
                      way xtask aggregates ember's per-epoch train_tokens_per_second).
  wall_s              from reading the data to the end of the last epoch (data preparation, model
                      construction, every epoch with its validation and checkpoint). Python's
                      start-up and `import torch` (1-2 s) are not in it; ember's figure in
                      bench-e2e is its whole process.
  valid_losses        per epoch, nats per character; final_valid_loss is the last one.

Where this knowingly differs from ember:
  - Random streams: the split and vocabulary are ember's, but the initial weights, the dropout
    masks and the shuffled batch order come from torch's generator seeded with train.seed, not
    from Burn's. Same distributions (PyTorch's default initialisers, which ember's cells copy;
    Burn's Embedding is N(0, 1) and Linear U(-1/sqrt(in), 1/sqrt(in)) as torch's), different
    draws: the losses agree in range, not digit for digit.
  - Burn's data loader shuffles with its own RNG: same batch size and batch count per epoch,
    different batch contents and order. With bucket_by_length the bucketing is the same algorithm
    with another RNG, so the batches differ too.
  - ember computes in its own kernels (Flex backend by default, RAYON_NUM_THREADS threads);
    torch uses its CPU kernels with --threads intra-op threads (torch.set_num_threads).
  - Checkpoints: torch.save of the state dicts, not Burn's MessagePack records; ember also
    writes loss.svg, train.log and burn-train's logs.
  - Early stopping (train.patience) is honoured as ember does (stop after `patience` epochs
    without a lower validation loss); with a few epochs it rarely triggers.

Usage:
  OMP_NUM_THREADS=2 python tools/bench/train_reference.py --run /tmp/e2e/names-lstm --epochs 1 --json
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, BOS, EOS = 0, 1, 2
IGNORE = -100
REPO = Path(__file__).resolve().parents[2]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=Path, help="an ember run directory (made by `ember train`)")
    p.add_argument("--epochs", type=int, default=None, help="epochs [default: the run's config]")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="train for the epochs that fit in SECONDS (epochs' own seconds, training and validation): "
        "after the first epoch the run is cut to floor(SECONDS / its seconds) epochs, at most the "
        "config's, and the schedule is stretched over those, as a user fitting a run into SECONDS would",
    )
    p.add_argument("--json", action="store_true", help="print one JSON line at the end")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines on stderr")
    return p.parse_args()


def load_run(run: Path):
    config = tomllib.loads((run / "config.toml").read_text(encoding="utf-8"))
    vocab = json.loads((run / "vocab.json").read_text(encoding="utf-8"))
    if vocab.get("specials") != ["<pad>", "<s>", "</s>"]:
        sys.exit(f"{run}/vocab.json: unexpected special tokens {vocab.get('specials')}")
    split_path = run / "split.json"
    split = json.loads(split_path.read_text(encoding="utf-8")) if split_path.exists() else None
    return config, vocab["chars"], split


def data_file(path: str) -> Path:
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return REPO / p


def encoder(chars):
    ids = {c: i + 3 for i, c in enumerate(chars)}

    def encode(text):
        try:
            return [ids[c] for c in text]
        except KeyError as e:
            sys.exit(f"character {e} is not in the run's vocabulary: was the data file changed?")

    return encode


def rust_round(x: float) -> int:
    """f64::round for x >= 0: halves away from zero (Python's round() rounds halves to even)."""
    return int(math.floor(x + 0.5))


def lines_of(text: str):
    """ember-data's read_lines: str::lines (split at \\n, a trailing \\r dropped), trimmed, non-blank."""
    return [l.strip() for l in text.split("\n") if l.strip()]


def random_chunks(ids, seq_len):
    """ember-data's random_chunks: ids[k*seq_len ..= (k+1)*seq_len] for k = 0, 1, ..."""
    return [ids[s : s + seq_len + 1] for s in range(0, max(len(ids) - 1, 0), seq_len)]


def stream_tensor(ids, streams):
    """`streams` contiguous streams of len(ids) // streams ids each, as a [streams, per] tensor."""
    per = len(ids) // streams
    if per < 2:
        sys.exit(f"{len(ids)} ids are too few for {streams} streams")
    return torch.tensor(ids[: streams * per], dtype=torch.long).view(streams, per)


def stream_chunks(data, seq_len):
    """ember-data's stream_chunks: (inputs, targets) [streams, steps] in order."""
    per = data.shape[1]
    start, out = 0, []
    while start + 1 < per:
        steps = min(seq_len, per - 1 - start)
        out.append((data[:, start : start + steps], data[:, start + 1 : start + 1 + steps]))
        start += steps
    return out


def pad_batch(seqs):
    """Inputs padded with <pad>, targets with -100, and the number of real targets."""
    steps = max(len(s) for s in seqs) - 1
    inputs = [s[:-1] + [PAD] * (steps + 1 - len(s)) for s in seqs]
    targets = [s[1:] + [IGNORE] * (steps + 1 - len(s)) for s in seqs]
    tokens = sum(len(s) - 1 for s in seqs)
    return torch.tensor(inputs, dtype=torch.long), torch.tensor(targets, dtype=torch.long), tokens


def bucketed_batches(lengths, batch_size, gen):
    """ember-data's bucketed_batches, drawn with torch's generator."""
    order = torch.randperm(len(lengths), generator=gen).tolist()
    pool_size = batch_size * 32
    batches = []
    for p in range(0, len(order), pool_size):
        pool = sorted(order[p : p + pool_size], key=lambda i: lengths[i])
        batches.extend(pool[b : b + batch_size] for b in range(0, len(pool), batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def bernoulli_scale(shape, p, like):
    """A dropout mask of `shape`: 1 / (1 - p) with probability 1 - p, else 0 (torch's generator)."""
    return like.new_empty(shape).bernoulli_(1.0 - p) / (1.0 - p)


class CharLm(nn.Module):
    """ember's CharLm: embedding -> recurrent body -> dropout -> linear head, with AWD-LSTM's
    regularisers as ember applies them in training (docs/regularisers.md):

      embed_dropout        whole rows of the embedding table, E'[v] = E[v] * m[v] / (1 - p)
      input_dropout        the embeddings, one mask per sequence and feature (locked)
      variational_dropout  `dropout` between layers and before the head, one mask per sequence
      weight_drop          every layer's W_hh * M / (1 - p), one mask per forward pass (DropConnect)
      zoneout              every layer's h_t = m * h_{t-1} + (1 - m) * h~_t, m ~ Bernoulli(p) per step
                           and unit in training, m = p in evaluation (Krueger et al. 2016)
      zoneout_cell         the same for an LSTM's c
      tie_embeddings       the head's weight is the embedding table (decoder.weight = encoder.weight)

    With variational_dropout, weight_drop or zoneout the body is a stack of one-layer modules (so a
    mask can go between layers and W_hh can be swapped through torch.func.functional_call, as AWD's
    WeightDrop does); with zoneout each layer runs step by step (torch.lstm_cell's equations,
    torch.gru_cell, torch.rnn_*_cell), as a PyTorch user writes it, since nn.LSTM has no zoneout.
    The state keeps nn.LSTM's [layers, batch, features] layout either way.
    """

    def __init__(self, vocab_size, m):
        super().__init__()
        kind = m.get("kind", "lstm")
        embed, hidden, layers = m.get("embed_dim", 32), m.get("hidden_size", 128), m.get("num_layers", 1)
        p = float(m.get("dropout", 0.0))
        proj = int(m.get("proj_size", 0))
        self.p = p
        self.variational = bool(m.get("variational_dropout") or False)
        self.embed_p = float(m.get("embed_dropout") or 0.0)
        self.input_p = float(m.get("input_dropout") or 0.0)
        self.weight_p = float(m.get("weight_drop") or 0.0)
        self.zone_h = float(m.get("zoneout") or 0.0)
        self.zone_c = float(m.get("zoneout_cell") or 0.0)
        self.kind = kind
        self.nonlinearity = m.get("nonlinearity", "tanh")
        self.stacked = self.variational or self.weight_p > 0 or self.zone_h > 0 or self.zone_c > 0
        self.embedding = nn.Embedding(vocab_size, embed)

        def body(inputs, count, dropout):
            common = dict(batch_first=True, dropout=dropout)
            if kind == "lstm":
                return nn.LSTM(inputs, hidden, count, proj_size=proj, **common)
            if kind == "gru":
                return nn.GRU(inputs, hidden, count, **common)
            if kind == "rnn":
                return nn.RNN(inputs, hidden, count, nonlinearity=m.get("nonlinearity", "tanh"), **common)
            sys.exit(f"model.kind = {kind!r} is not a character language model body")

        if self.stacked:
            width = proj or hidden
            self.layers = nn.ModuleList([body(embed if i == 0 else width, 1, 0.0) for i in range(layers)])
        else:
            self.body = body(embed, layers, p if layers > 1 else 0.0)
        self.dropout = nn.Dropout(p)
        self.head = nn.Linear(proj or hidden, vocab_size)
        if m.get("tie_embeddings"):
            # tie_embeddings: the head's weight is the embedding table (AWD-LSTM's tie_weights).
            assert (proj or hidden) == embed, "tie_embeddings needs an output embed_dim wide"
            self.head.weight = self.embedding.weight

    def drop(self, x):
        """`dropout` on [batch, time, features] outputs: locked over time when variational."""
        if not self.training or self.p <= 0:
            return x
        if self.variational:
            return x * bernoulli_scale((x.shape[0], 1, x.shape[2]), self.p, x)
        return self.dropout(x)

    def run_stack(self, x, state):
        def layer_state(i):
            if state is None:
                return None
            if isinstance(state, tuple):
                return tuple(s[i : i + 1] for s in state)
            return state[i : i + 1]

        finals = []
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.drop(x)
            if self.zone_h > 0 or self.zone_c > 0:
                w = layer.weight_hh_l0
                if self.training and self.weight_p > 0:
                    w = w * bernoulli_scale(w.shape, self.weight_p, w)
                x, s = self.run_zoned(layer, w, x, layer_state(i))
            elif self.training and self.weight_p > 0:
                w = layer.weight_hh_l0
                weights = {"weight_hh_l0": w * bernoulli_scale(w.shape, self.weight_p, w)}
                x, s = torch.func.functional_call(layer, weights, (x, layer_state(i)))
            else:
                x, s = layer(x, layer_state(i))
            finals.append(s)
        if isinstance(finals[0], tuple):
            return x, tuple(torch.cat(parts, 0) for parts in zip(*finals))
        return x, torch.cat(finals, 0)

    def run_zoned(self, layer, w_hh, x, state):
        """One one-layer `layer` over x [batch, time, in] step by step with zoneout, its W_hh
        replaced by `w_hh`; returns the outputs and the final state as `layer` would."""
        batch, steps, _ = x.shape
        lstm = self.kind == "lstm"
        w_hr = getattr(layer, "weight_hr_l0", None)
        width = w_hr.shape[0] if w_hr is not None else layer.hidden_size
        if state is None:
            h = x.new_zeros(batch, width)
            c = x.new_zeros(batch, layer.hidden_size) if lstm else None
        elif lstm:
            h, c = state[0][0], state[1][0]
        else:
            h, c = state[0], None

        def masks(p, features):
            """[time, batch, features] 0/1 draws (1 keeps the old value) or, evaluating, p."""
            if p <= 0:
                return None
            if self.training:
                return x.new_empty(steps, batch, features).bernoulli_(p)
            return [p] * steps

        def zone(old, new, m):
            return new if m is None else new + m * (old - new)

        m_h, m_c = masks(self.zone_h, width), masks(self.zone_c, layer.hidden_size) if lstm else None
        xp = x @ layer.weight_ih_l0.t() + layer.bias_ih_l0  # every step's input projection at once
        outs = []
        for t in range(steps):
            if lstm:
                gates = xp[:, t] + h @ w_hh.t() + layer.bias_hh_l0
                i, f, g, o = gates.chunk(4, 1)
                c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h_new = torch.sigmoid(o) * torch.tanh(c_new)
                if w_hr is not None:
                    h_new = h_new @ w_hr.t()
                c = zone(c, c_new, None if m_c is None else m_c[t])
            elif self.kind == "gru":
                h_new = torch.gru_cell(x[:, t], h, layer.weight_ih_l0, w_hh, layer.bias_ih_l0, layer.bias_hh_l0)
            else:
                cell = torch.rnn_relu_cell if self.nonlinearity == "relu" else torch.rnn_tanh_cell
                h_new = cell(x[:, t], h, layer.weight_ih_l0, w_hh, layer.bias_ih_l0, layer.bias_hh_l0)
            h = zone(h, h_new, None if m_h is None else m_h[t])
            outs.append(h)
        out = torch.stack(outs, 1)
        return out, ((h[None], c[None]) if lstm else h[None])

    def forward(self, tokens, state=None):
        table = self.embedding.weight
        if self.training and self.embed_p > 0:
            table = table * bernoulli_scale((table.shape[0], 1), self.embed_p, table)
        x = F.embedding(tokens, table)
        if self.training and self.input_p > 0:
            x = x * bernoulli_scale((x.shape[0], 1, x.shape[2]), self.input_p, x)
        if self.stacked:
            h, state = self.run_stack(x, state)
        else:
            h, state = self.body(x, state)
        return self.head(self.drop(h)), state


def detach(state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def rate_at(t, s, steps_per_epoch, total_steps):
    """ember's Schedule::rate_at: the learning rate of optimiser step s (0-based)."""
    base = t.get("learning_rate", 3e-3)
    warmup = t.get("warmup_steps", 0)
    if s < warmup:
        return base * (s + 1) / warmup
    epoch = s // max(steps_per_epoch, 1)
    kind = t.get("schedule", "constant")
    gamma = t.get("gamma", 0.5)
    if kind == "constant":
        return base
    if kind == "cosine":
        lo = t.get("min_learning_rate", 0.0)
        span = max(total_steps - warmup, 1)
        x = min((s - warmup) / span, 1.0)
        return lo + (base - lo) * (1.0 + math.cos(math.pi * x)) / 2.0
    if kind == "step":
        return base * gamma ** (epoch // max(t.get("step_epochs", 1), 1))
    if kind == "exponential":
        return base * gamma**epoch
    sys.exit(f"train.schedule = {kind!r} is unknown")


def optimizer_of(t, params):
    kind = t.get("optimizer", "adam")
    lr = t.get("learning_rate", 3e-3)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=t.get("momentum", 0.9), dampening=0.0)
    sys.exit(f"train.optimizer = {kind!r} is unknown")


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    config, chars, split = load_run(args.run)
    d, m, t = config["data"], config.get("model", {}), config.get("train", {})
    kind = d.get("kind", "lines")
    if kind not in ("lines", "text"):
        sys.exit(f"{args.run}: data.kind = {kind!r} is not a character language model (lines or text)")
    epochs = args.epochs or t.get("epochs", 10)
    batch_size = t.get("batch_size", 64)
    seed = t.get("seed", 42)
    encode = encoder(chars)
    vocab_size = 3 + len(chars)
    text = data_file(d["path"]).read_text(encoding="utf-8")

    # Data, as ember prepares it.
    stateful = kind == "text" and d.get("stateful", True)
    train_seqs = valid_seqs = train_streams = valid_streams = None
    if kind == "lines":
        lines = lines_of(text)
        if split is None or split["total"] != len(lines):
            sys.exit(f"{args.run}/split.json does not match the {len(lines)} lines of {d['path']}")
        seqs = [[BOS] + encode(l) + [EOS] for l in lines]
        train_seqs = [seqs[i] for i in split["train"]]
        valid_seqs = [seqs[i] for i in split["valid"]]
    else:
        ids = encode(text)
        n = len(ids)
        n_valid = min(max(rust_round(n * d.get("valid_fraction", 0.1)), 1), n - 1)
        train_ids, valid_ids = ids[: n - n_valid], ids[n - n_valid :]
        seq_len = d.get("seq_len", 100)
        if stateful:
            train_streams = stream_chunks(stream_tensor(train_ids, batch_size), seq_len)
            valid_count = max(min(batch_size, len(valid_ids) // 2), 1)
            valid_streams = stream_chunks(stream_tensor(valid_ids, valid_count), seq_len)
        else:
            train_seqs = random_chunks(train_ids, seq_len)
            valid_seqs = random_chunks(valid_ids, seq_len)

    gen = torch.Generator().manual_seed(seed)
    fixed_batches = None
    if train_seqs is not None and d.get("bucket_by_length", False):
        fixed_batches = bucketed_batches([len(s) - 1 for s in train_seqs], batch_size, gen)
    if train_streams is not None:
        steps_per_epoch = len(train_streams)
    elif fixed_batches is not None:
        steps_per_epoch = len(fixed_batches)
    else:
        steps_per_epoch = math.ceil(len(train_seqs) / batch_size)
    total_steps = steps_per_epoch * epochs
    valid_batches = None
    if valid_seqs is not None:
        valid_batches = [pad_batch(valid_seqs[i : i + batch_size]) for i in range(0, len(valid_seqs), batch_size)]

    torch.manual_seed(seed)
    model = CharLm(vocab_size, m)
    params = [p for p in model.parameters()]
    opt = optimizer_of(t, params)
    clip = float(t.get("grad_clip", 1.0))
    clip_each = float(t.get("grad_clip_per_param", 0.0))
    patience = t.get("patience", 0)

    def train_batches():
        if train_streams is not None:
            for x, y in train_streams:
                yield x, y, y.numel()
        elif fixed_batches is not None:
            for b in torch.randperm(len(fixed_batches), generator=gen).tolist():
                yield pad_batch([train_seqs[i] for i in fixed_batches[b]])
        else:
            order = torch.randperm(len(train_seqs), generator=gen).tolist()
            for i in range(0, len(order), batch_size):
                yield pad_batch([train_seqs[j] for j in order[i : i + batch_size]])

    def validate():
        model.eval()
        nll, count, state = 0.0, 0, None
        with torch.no_grad():
            if valid_streams is not None:
                for x, y in valid_streams:
                    logits, state = model(x, state)
                    nll += F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1), reduction="sum").item()
                    count += y.numel()
            else:
                for x, y, n in valid_batches:
                    logits, _ = model(x)
                    nll += F.cross_entropy(
                        logits.reshape(-1, vocab_size), y.reshape(-1), ignore_index=IGNORE, reduction="sum"
                    ).item()
                    count += n
        model.train()
        return nll / count

    scratch = Path(tempfile.mkdtemp(prefix="ember-ref-"))
    step, train_tokens, train_seconds = 0, 0, 0.0
    valid_losses, train_losses, epoch_seconds, tps = [], [], [], []
    best, since_best = math.inf, 0
    try:
        model.train()
        epoch = 0
        while epoch < epochs:
            epoch += 1
            epoch_started = time.perf_counter()
            nll_sum, tokens, state = 0.0, 0, None
            for x, y, n in train_batches():
                for g in opt.param_groups:
                    g["lr"] = rate_at(t, step, steps_per_epoch, total_steps)
                step += 1
                opt.zero_grad(set_to_none=True)
                logits, next_state = model(x, state)
                loss = F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1), ignore_index=IGNORE)
                loss.backward()
                if clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                elif clip_each > 0:
                    for p in params:
                        torch.nn.utils.clip_grad_norm_([p], clip_each)
                opt.step()
                if stateful:
                    state = detach(next_state)
                nll_sum += loss.item() * n
                tokens += n
            seconds = time.perf_counter() - epoch_started
            train_tokens += tokens
            train_seconds += seconds
            valid = validate()
            torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step}, scratch / f"epoch-{epoch}.pt")
            is_best = valid < best
            if is_best:
                best, since_best = valid, 0
                shutil.copyfile(scratch / f"epoch-{epoch}.pt", scratch / "best.pt")
            else:
                since_best += 1
            valid_losses.append(valid)
            train_losses.append(nll_sum / tokens)
            epoch_seconds.append(time.perf_counter() - epoch_started)
            tps.append(tokens / seconds)
            if args.time_budget is not None and epoch == 1:
                fit = max(1, min(epochs, int(args.time_budget // epoch_seconds[0])))
                if fit < epochs:
                    epochs, total_steps = fit, steps_per_epoch * fit
            if not args.quiet:
                print(
                    f"epoch {epoch}: train loss {nll_sum / tokens:.4f}, valid loss {valid:.4f}"
                    f"{' (best so far)' if is_best else ''}; {tokens / seconds:.0f} tokens/s, {epoch_seconds[-1]:.1f} s",
                    file=sys.stderr,
                )
            if patience > 0 and since_best >= patience:
                break
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wall = time.perf_counter() - started

    result = {
        "impl": "torch",
        "config": config.get("name"),
        "epochs": len(valid_losses),
        "train_tokens_per_s": train_tokens / train_seconds,
        "wall_s": wall,
        "final_valid_loss": valid_losses[-1],
        "valid_losses": valid_losses,
        "train_losses": train_losses,
        "epoch_seconds": epoch_seconds,
        "epoch_tokens_per_s": tps,
        "steps_per_epoch": steps_per_epoch,
        "best_valid_loss": min(valid_losses),
        "planned_epochs": epochs,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['config']}: {result['epochs']} epoch(s), {result['train_tokens_per_s']:.0f} training tokens/s, "
            f"{wall:.1f} s, final valid loss {result['final_valid_loss']:.4f} (torch {torch.__version__}, {args.threads} threads)"
        )


if __name__ == "__main__":
    main()
