#!/usr/bin/env python3
"""Peer benchmark (not part of the product): greedy generation with a key/value cache in PyTorch.

`deno task bench --only generate` runs this beside its own generation benchmark
(bench/generate_bench.ts), in the same invocation, and prints our tokens/s over PyTorch's.
It is the loop a PyTorch user writes: the bench LLaMA of bench/peer_torch.py with H heads,
batch 1, float32, `torch.inference_mode()`; the prompt (the first half of the context) goes
through in one forward pass that fills each layer's cache, then each new token is the argmax
of the last logits and goes through alone, attending to the cached keys and values
(preallocated [1, H, T, d/H] buffers, written in place). Timing, as ours: prefill plus all
new tokens, new tokens / seconds, the median of `--rounds` rounds after one warm-up.

    .venv-ref/bin/python bench/peer_generate_torch.py --shapes "192,8,257,128,6"

Prints one JSON object: {"torch": version, "threads": n, "results": [{"shape": [...],
"tokensPerSec": x, "ids": [...]}]}. Exit status 2 when torch cannot be imported.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time


def parse_shapes(text: str) -> list[list[int]]:
    return [[int(x) for x in part.split(",")] for part in text.split(";") if part.strip()]


def build(torch, d: int, layers: int, vocab: int, seq: int, heads: int):
    nn = torch.nn
    F = torch.nn.functional
    hd = d // heads
    width = math.ceil(8 * d / 3 / 32) * 32
    inv = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(seq, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    cos_all = ang.cos().float()[None, None]  # (1, 1, T, hd)
    sin_all = ang.sin().float()[None, None]

    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([-x2, x1], dim=-1)

    class RMSNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.n1 = RMSNorm()
            self.n2 = RMSNorm()
            self.q = nn.Linear(d, d, bias=False)
            self.k = nn.Linear(d, d, bias=False)
            self.v = nn.Linear(d, d, bias=False)
            self.o = nn.Linear(d, d, bias=False)
            self.gate = nn.Linear(d, width, bias=False)
            self.up = nn.Linear(d, width, bias=False)
            self.down = nn.Linear(width, d, bias=False)
            self.k_cache = torch.zeros(1, heads, seq, hd)
            self.v_cache = torch.zeros(1, heads, seq, hd)

        def forward(self, h, start: int):
            b, t, _ = h.shape
            end = start + t
            a = self.n1(h)
            q = self.q(a).view(b, t, heads, hd).transpose(1, 2)
            k = self.k(a).view(b, t, heads, hd).transpose(1, 2)
            v = self.v(a).view(b, t, heads, hd).transpose(1, 2)
            cos, sin = cos_all[:, :, start:end], sin_all[:, :, start:end]
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            self.k_cache[:, :, start:end] = k
            self.v_cache[:, :, start:end] = v
            keys, values = self.k_cache[:, :, :end], self.v_cache[:, :, :end]
            s = q @ keys.transpose(-1, -2) / math.sqrt(hd)
            if t > 1:
                s = s + torch.full((t, end), float("-inf")).triu(start + 1)
            o = s.softmax(-1) @ values
            h = h + self.o(o.transpose(1, 2).reshape(b, t, d))
            m = self.n2(h)
            return h + self.down(F.silu(self.gate(m)) * self.up(m))

    class Llama(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, d)
            self.layers = nn.ModuleList([Layer() for _ in range(layers)])
            self.norm = RMSNorm()
            self.lm_head = nn.Linear(d, vocab, bias=False)

        def forward(self, tokens, start: int):
            h = self.embed(tokens)
            for layer in self.layers:
                h = layer(h, start)
            return self.lm_head(self.norm(h[:, -1:]))

    model = Llama()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
    return model.eval()


def generate(torch, model, prompt: list[int], new_tokens: int) -> list[int]:
    with torch.inference_mode():
        logits = model(torch.tensor([prompt]), 0)
        ids: list[int] = []
        pos = len(prompt)
        for i in range(new_tokens):
            nxt = int(logits[0, -1].argmax())
            ids.append(nxt)
            if i + 1 < new_tokens:
                logits = model(torch.tensor([[nxt]]), pos)
                pos += 1
        return ids


def bench_shape(torch, shape: list[int], rounds: int) -> dict:
    d, layers, vocab, seq, heads = shape
    torch.manual_seed(0)
    model = build(torch, d, layers, vocab, seq, heads)
    prompt_len = seq // 2
    new_tokens = seq - prompt_len
    prompt = [(i * 7919 + 13) % vocab for i in range(prompt_len)]
    generate(torch, model, prompt, 4)  # warm-up
    rates = []
    ids: list[int] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ids = generate(torch, model, prompt, new_tokens)
        rates.append(len(ids) / (time.perf_counter() - t0))
    return {"shape": shape, "tokensPerSec": statistics.median(rates), "ids": ids}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="192,8,257,128,6;512,8,4096,256,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"peer_generate_torch: cannot import torch ({e})", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    results = [bench_shape(torch, s, args.rounds) for s in parse_shapes(args.shapes)]
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
