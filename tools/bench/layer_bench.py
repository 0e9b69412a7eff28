#!/usr/bin/env python3
"""Forward + backward throughput of one PyTorch recurrent layer alone: the PyTorch half of
`cargo xtask bench-layer` (the Rust half is crates/ember-nn/examples/layer_bench.rs).

Same work as the Rust side: x = randn(batch, seq, input) requiring grad, out, _ = layer(x),
out.mean().backward(); `--warmup` untimed steps, then `--steps` timed ones. Prints one JSON line.
"""
import argparse
import json
import time

import torch
import torch.nn as nn

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cell", choices=list(CELLS), default="lstm")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--input", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=100)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    layer = CELLS[a.cell](a.input, a.hidden, num_layers=a.layers, batch_first=True)
    x = torch.randn(a.batch, a.seq, a.input)

    def step():
        xi = x.clone().requires_grad_(True)
        out, _ = layer(xi)
        layer.zero_grad(set_to_none=True)
        out.mean().backward()

    for _ in range(a.warmup):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    secs = (time.perf_counter() - start) / a.steps
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "threads": a.threads, "cell": a.cell,
        "layers": a.layers, "hidden": a.hidden, "input": a.input, "batch": a.batch, "seq": a.seq,
        "step_s": round(secs, 6), "tokens_per_s": round(a.batch * a.seq / secs, 1),
    }))


if __name__ == "__main__":
    main()
