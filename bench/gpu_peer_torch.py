#!/usr/bin/env python3
"""GPU peer benchmark (not part of the product): the training step of bench/gpu_bench.ts in
PyTorch on CUDA, run by bench/gpu.sh in the same device call for a side-by-side figure.

Same model, step and counting as bench/gpu_bench.ts (and bench/train_bench.ts):

- shape [d, L, V, T, B]: hidden d, L pre-norm LLaMA layers, vocabulary V, sequence T, batch B;
  heads = d/64 (plain multi-head), MLP width f = ceil(8d/3 / 32)·32, RMSNorm (eps 1e-5),
  RoPE (theta 10000, rotate_half), causal softmax attention, SwiGLU, untied LM head, no biases;
- init normal(0, 0.02) for matrices, ones for norm weights;
- step: mean cross-entropy over B·T tokens, backward, global-norm clipping at 1.0, AdamW
  (lr 1e-4, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices only), all fp32 with TF32
  off (WebGPU multiplies in fp32 too);
- one warm-up step, then --steps timed steps between CUDA synchronisations;
  GFLOP/s = 6·N·tokens/s with N every parameter;
- memory: torch.cuda.max_memory_allocated over the timed steps (the peak bytes in tensors),
  and max_memory_reserved (what the caching allocator holds), beside the planner's fp32
  model-state prediction, 16 B per parameter.

--attention plain writes the attention out as matmuls and a masked softmax (the T×T
probabilities are kept, as tfjs's composite does); sdpa uses
F.scaled_dot_product_attention(is_causal=True) (fused kernels, as our WGSL kernels are).

    python3 bench/gpu_peer_torch.py --shapes "128,4,256,128,8;256,4,4096,256,8" --attention plain,sdpa

Prints one JSON object: {"torch", "cuda", "device", "results": [{"shape", "attention",
"tokensPerSec", "gflops", "stepMs", "params", "maxMemoryAllocated", "maxMemoryReserved",
"predictedModelStateBytes", "loss"} or {"shape", "attention", "error"}]}. Exit status 2 when
torch or CUDA is missing (the message says which on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time


def parse_shapes(text: str) -> list[list[int]]:
    return [[int(x) for x in part.split(",")] for part in text.split(";") if part.strip()]


def build(torch, d: int, layers: int, vocab: int, seq: int, attention: str, device):
    nn = torch.nn
    F = torch.nn.functional
    heads = max(1, round(d / 64))
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
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
    return model


def bench_shape(torch, shape: list[int], attention: str, steps: int, device) -> dict:
    d, layers, vocab, seq, batch = shape
    torch.manual_seed(0)
    model = build(torch, d, layers, vocab, seq, attention, device)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    tokens = torch.randint(0, vocab, (batch, seq), device=device)
    targets = torch.roll(tokens.flatten(), -1).view(batch, seq)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits.view(-1, vocab), targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.detach()

    cuda = device.type == "cuda"
    step()  # warm-up: allocator, kernels, optimizer state
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    loss = None
    for _ in range(steps):
        loss = step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens_per_sec = steps * batch * seq / seconds
    result = {
        "shape": shape,
        "attention": attention,
        "tokensPerSec": tokens_per_sec,
        "gflops": 6 * params * tokens_per_sec / 1e9,
        "stepMs": 1000 * seconds / steps,
        "params": params,
        "maxMemoryAllocated": torch.cuda.max_memory_allocated() if cuda else None,
        "maxMemoryReserved": torch.cuda.max_memory_reserved() if cuda else None,
        "predictedModelStateBytes": 16 * params,
        "loss": float(loss) if loss is not None else None,
    }
    del model, opt
    if cuda:
        torch.cuda.empty_cache()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="128,4,256,128,8;256,4,4096,256,8;1024,8,50257,1024,4")
    ap.add_argument("--attention", default="plain,sdpa", help="comma list of plain, sdpa")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cuda", help="cuda, or cpu to try the script without a GPU")
    args = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"gpu_peer_torch: cannot import torch ({e})", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_peer_torch: torch sees no CUDA device", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    results = []
    for attention in [a.strip() for a in args.attention.split(",") if a.strip()]:
        for shape in parse_shapes(args.shapes):
            try:
                results.append(bench_shape(torch, shape, attention, args.steps, device))
            except Exception as e:  # one failing shape (out of memory) must not hide the others
                results.append({"shape": shape, "attention": attention, "error": str(e)})
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps({
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "results": results,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
