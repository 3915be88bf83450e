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
import sys
import time

from peer_torch import build, parse_shapes  # the same model as the CPU peer


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
