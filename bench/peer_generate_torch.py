#!/usr/bin/env python3
"""Peer benchmark (not part of the product): greedy generation with a key/value cache in PyTorch.

`deno task bench --only generate` runs this beside its own generation benchmark
(bench/generate_bench.ts), in the same invocation, and prints our tokens/s over PyTorch's.
It is the loop a PyTorch user writes: the bench LLaMA of bench/peer_torch.py (its `build`) with H heads,
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
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_torch import build  # noqa: E402


def parse_shapes(text: str) -> list[list[int]]:
    return [[int(x) for x in part.split(",")] for part in text.split(";") if part.strip()]


class CachedDecoder:
    """The bench model of bench/peer_torch.py (its modules and weights) run with a key/value
    cache: preallocated [1, H, T, d/H] buffers per layer, written in place."""

    def __init__(self, torch, model, heads: int, seq: int) -> None:
        self.torch, self.model, self.heads = torch, model, heads
        d = model.norm.weight.shape[0]
        self.hd = d // heads
        self.cache = [(torch.zeros(1, heads, seq, self.hd), torch.zeros(1, heads, seq, self.hd))
                      for _ in model.layers]

    def __call__(self, tokens, start: int):
        torch, m, heads, hd = self.torch, self.model, self.heads, self.hd
        F = torch.nn.functional
        cos_all, sin_all = m.rope
        b, t = tokens.shape
        end = start + t
        cos, sin = cos_all[:, :, start:end], sin_all[:, :, start:end]
        h = m.embed(tokens)
        for layer, (k_cache, v_cache) in zip(m.layers, self.cache):
            a = layer.input_layernorm(h)
            q = layer.q(a).view(b, t, heads, hd).transpose(1, 2)
            k = layer.k(a).view(b, t, heads, hd).transpose(1, 2)
            v = layer.v(a).view(b, t, heads, hd).transpose(1, 2)
            q = q * cos + m.rotate_half(q) * sin
            k = k * cos + m.rotate_half(k) * sin
            k_cache[:, :, start:end] = k
            v_cache[:, :, start:end] = v
            s = q @ k_cache[:, :, :end].transpose(-1, -2) / math.sqrt(hd)
            if t > 1:
                s = s + torch.full((t, end), float("-inf")).triu(start + 1)
            o = s.softmax(-1) @ v_cache[:, :, :end]
            h = h + layer.o(o.transpose(1, 2).reshape(b, t, heads * hd))
            n = layer.post_attention_layernorm(h)
            h = h + layer.down(F.silu(layer.gate(n)) * layer.up(n))
        return m.lm_head(m.norm(h[:, -1:]))


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
    model = CachedDecoder(torch, build(torch, d, layers, vocab, seq, heads=heads).eval(), heads, seq)
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
