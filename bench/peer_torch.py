#!/usr/bin/env python3
"""Peer benchmark (not part of the product): one LLaMA training step in PyTorch on the CPU.

`deno task bench` runs this script beside its own training benchmark, in the same
invocation, and prints our tokens/s over PyTorch's. It mirrors bench/train_bench.ts:

- model per shape [d, L, V, T, B]: hidden d, L pre-norm layers, vocabulary V, sequence T,
  batch B; heads = d/64 (plain multi-head), MLP width f = ceil(8d/3 / 32)·32, RMSNorm
  (eps 1e-5), RoPE (theta 10000, Hugging Face rotate_half), causal softmax attention,
  SwiGLU, untied LM head, no biases;
- init: normal(0, 0.02) for matrices, ones for norm weights (kernels/params.ts);
- step: mean cross-entropy over B·T tokens, backward, global-norm clipping at 1.0, AdamW
  (lr 1e-4, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices only), fp32;
- timing: `--warmup` untimed steps (default 1), then `--steps` timed steps;
  tokens/s = steps·B·T / seconds.

Written plainly, as a PyTorch user would (no torch.compile, no fused SDPA: torch 1.13 has
none). Threads: torch.set_num_threads(--threads), default 2.

    /usr/bin/python3 bench/peer_torch.py --shapes "128,4,256,128,8;256,4,4096,256,8"

Prints one JSON object: {"torch": version, "threads": n, "results": [{"shape": [...],
"tokensPerSec": x, "stepMs": y, "loss": z}]}. Exit status 2 when torch cannot be imported
(the message says so on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time


def parse_shapes(text: str) -> list[list[int]]:
    return [[int(x) for x in part.split(",")] for part in text.split(";") if part.strip()]


def build(torch, d: int, layers: int, vocab: int, seq: int, attention: str = "plain", device=None,
          heads: int | None = None):
    """The bench LLaMA (see the module doc) on `device` (default CPU); attention "plain"
    writes softmax(q·kᵀ + mask)·v out, "sdpa" uses F.scaled_dot_product_attention (torch ≥ 2);
    bench/gpu_peer_torch.py builds its CUDA model here too, and bench/peer_generate_torch.py
    decodes with its modules (`model.rope` holds the (cos, sin) tables, `model.rotate_half`).
    `heads` defaults to d/64."""
    device = device if device is not None else torch.device("cpu")
    nn = torch.nn
    F = torch.nn.functional
    heads = heads if heads is not None else max(1, round(d / 64))
    head_dim = d // heads
    width = math.ceil(8 * d / 3 / 32) * 32

    inv = 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(seq, dtype=torch.float64)[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    cos = ang.cos().float().to(device)[None, None]  # (1, 1, T, hd)
    sin = ang.sin().float().to(device)[None, None]
    mask = torch.full((seq, seq), float("-inf"), device=device).triu(1)

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
            self.input_layernorm = RMSNorm()
            self.post_attention_layernorm = RMSNorm()
            self.q = nn.Linear(d, d, bias=False)
            self.k = nn.Linear(d, d, bias=False)
            self.v = nn.Linear(d, d, bias=False)
            self.o = nn.Linear(d, d, bias=False)
            self.gate = nn.Linear(d, width, bias=False)
            self.up = nn.Linear(d, width, bias=False)
            self.down = nn.Linear(width, d, bias=False)

        def forward(self, h):
            b, t, _ = h.shape
            a = self.input_layernorm(h)
            q = self.q(a).view(b, t, heads, head_dim).transpose(1, 2)
            k = self.k(a).view(b, t, heads, head_dim).transpose(1, 2)
            v = self.v(a).view(b, t, heads, head_dim).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if attention == "sdpa":
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                s = q @ k.transpose(-1, -2) / math.sqrt(head_dim) + mask
                o = s.softmax(-1) @ v
            h = h + self.o(o.transpose(1, 2).reshape(b, t, d))
            m = self.post_attention_layernorm(h)
            return h + self.down(F.silu(self.gate(m)) * self.up(m))

    class Llama(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, d)
            self.layers = nn.ModuleList([Layer() for _ in range(layers)])
            self.norm = RMSNorm()
            self.lm_head = nn.Linear(d, vocab, bias=False)

        def forward(self, tokens):
            h = self.embed(tokens)
            for layer in self.layers:
                h = layer(h)
            return self.lm_head(self.norm(h))

    model = Llama().to(device)
    model.rope = (cos, sin)
    model.rotate_half = rotate_half
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
    return model


def bench_shape(torch, shape: list[int], steps: int, warmup: int) -> dict:
    d, layers, vocab, seq, batch = shape
    torch.manual_seed(0)
    model = build(torch, d, layers, vocab, seq)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    tokens = torch.randint(0, vocab, (batch, seq))
    targets = torch.roll(tokens.flatten(), -1).view(batch, seq)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, vocab), targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss)

    for _ in range(warmup):  # allocator and kernels
        step()
    t0 = time.perf_counter()
    loss = 0.0
    for _ in range(steps):
        loss = step()
    seconds = time.perf_counter() - t0
    return {
        "shape": shape,
        "tokensPerSec": steps * batch * seq / seconds,
        "stepMs": 1000 * seconds / steps,
        "loss": loss,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="128,4,256,128,8;256,4,4096,256,8")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"peer_torch: cannot import torch ({e}); install python3-torch", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    results = [bench_shape(torch, s, args.steps, args.warmup) for s in parse_shapes(args.shapes)]
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
