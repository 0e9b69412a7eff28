"""Loads a model written by `ember export` into torch.nn and scores a names file the way
`ember eval --run RUN --data FILE` does (mean NLL per token after <s>, </s> included).

    python tools/export/eval_in_torch.py --run runs/names-lstm --weights names.safetensors \
        --data valid.txt --embed 32 --hidden 128 --layers 1 --cell lstm
"""
import argparse
import json

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


class CharModel(torch.nn.Module):
    def __init__(self, vocab, embed, hidden, layers, cell):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embed)
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.rnn = rnn(embed, hidden, num_layers=layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, x):
        return self.head(self.rnn(self.embed(x))[0])


def main():
    p = argparse.ArgumentParser()
    for flag in ["--run", "--weights", "--data", "--cell"]:
        p.add_argument(flag, required=flag != "--cell", default="lstm")
    for flag in ["--embed", "--hidden", "--layers"]:
        p.add_argument(flag, type=int, required=True)
    a = p.parse_args()
    vocab = json.load(open(f"{a.run}/vocab.json"))
    first = len(vocab["specials"])
    ids = {c: first + i for i, c in enumerate(vocab["chars"])}
    model = CharModel(first + len(ids), a.embed, a.hidden, a.layers, a.cell)
    model.load_state_dict(load_file(a.weights))
    nll, n = 0.0, 0
    with torch.no_grad():
        for line in open(a.data, encoding="utf-8"):
            if not line.strip():
                continue
            x = torch.tensor([[1] + [ids[c] for c in line.rstrip("\n")] + [2]])
            logits = model(x[:, :-1])[0]
            nll += F.cross_entropy(logits, x[0, 1:], reduction="sum").item()
            n += x.shape[1] - 1
    print(f"loss {nll / n:.6f} nats per token over {n} tokens")


if __name__ == "__main__":
    main()
