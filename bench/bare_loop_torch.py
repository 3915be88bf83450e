#!/usr/bin/env python3
"""Bench peer (not part of the product): the training loop a PyTorch user would write.

`deno task bench --only torch` runs this beside `--engine torch` on the same model, the same
initial weights and the same batches, and prints the engine's tokens/s over this loop's. It is
written nanoGPT style, with no orchestration: load the weights, then for each step read the
batch's rows from a memory-mapped token file, forward, backward, clip the global gradient norm,
AdamW, next. One process, or `--nproc N` processes with DistributedDataParallel (gloo), each
reading its contiguous share of the batch's rows.

- model: `torch_engine/llama.py` (the engine's own module), from `--init`, an exchange
  directory (`model.safetensors` in HF layouts, `state.json` with the shape, and optionally the
  `trainable` names: the rest is frozen; LoRA adapters where the file has them);
- batch of step i: row r (of `--batch`) starts at ((i·batch + r)·seq) mod (tokens − seq − 1)
  in `--tokens` (uint16 or uint32 by `--dtype`), inputs the first seq tokens, targets the next
  seq — the rule bench/torch_engine_bench.ts gives the engine;
- step: summed cross-entropy over the rank's rows divided by the global batch's tokens, times
  the world size (DDP averages gradients), backward (in passes of `--micro` rows, gradients
  accumulated), `clip_grad_norm_(max_norm=--clip)`, AdamW
  (`--lr`, betas, eps, weight decay on matrices only; PyTorch's defaults otherwise, so on a
  CPU its per-tensor loop, as nanoGPT chooses there; `--fused-adamw` takes torch's fused
  kernel, which the engine uses where torch has it), fp32;
- timing: `--warmup` untimed steps, then `--steps` timed ones on `time.perf_counter`; every
  rank's losses are gathered after the clock stops.

Prints one JSON line (rank 0): {"torch": version, "nproc": n, "threads": t, "tokensPerSec": x,
"stepMs": y, "losses": [...], "trainableParams", "frozenParams", "adapterParams"} with the global
mean loss of every step, warm-up included, and the model's parameters by role.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "torch_engine"))
from llama import Llama  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="a bare PyTorch training loop (bench peer)")
    ap.add_argument("--init", required=True, help="exchange directory of the initial weights")
    ap.add_argument("--tokens", required=True, help="token file (little-endian)")
    ap.add_argument("--dtype", choices=["uint16", "uint32"], default="uint16")
    ap.add_argument("--batch", type=int, required=True, help="rows per step (global)")
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--micro", type=int, default=0, help="rows per forward pass (0: a rank's whole share)")
    ap.add_argument("--steps", type=int, required=True, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--nproc", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--fused-adamw", action="store_true", help="torch's fused AdamW instead of its default")
    ap.add_argument("--adapt-frozen", type=int, default=0, help="LoRA rank on every frozen projection (0: none)")
    ap.add_argument("--lora-scale", type=float, default=1.0, help="the adapters' scale (alpha / rank)")
    a = ap.parse_args(argv)
    for name in ("batch", "seq", "steps", "nproc", "threads"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(a, name)}")
    if a.warmup < 0:
        ap.error(f"--warmup must be at least 0, got {a.warmup}")
    if a.batch % a.nproc != 0:
        ap.error(f"--nproc {a.nproc} does not divide --batch {a.batch}")
    if a.adapt_frozen < 0:
        ap.error(f"--adapt-frozen must be at least 0, got {a.adapt_frozen}")
    if a.micro < 0:
        ap.error(f"--micro must be at least 0, got {a.micro}")
    a.micro = a.micro or a.batch // a.nproc
    return a


def load_model(directory: str, adapt_frozen: int = 0, lora_scale: float = 1.0) -> Llama:
    """The model of an exchange directory: its depth, its adapters where `lora_A` is stored, and
    only the names `state.json`'s `trainable` lists (all of them when it lists none) trained.
    `adapt_frozen` > 0 attaches fresh adapters of that rank (A small random, B zero, scale
    `lora_scale`) to every decoder-layer projection that does not train, and trains them:
    ReLoRA's stage over frozen layers (the LM head stays as it is)."""
    with open(os.path.join(directory, "state.json"), encoding="utf-8") as f:
        meta = json.load(f)
    weights = read_safetensors(os.path.join(directory, "model.safetensors"))
    depth = len({n.split(".")[2] for n in weights if n.startswith("model.layers.")})
    model = Llama(meta["shape"], depth)
    for name, proj in model.projections():
        a = weights.get(f"{name}.lora_A")
        if a is not None:
            proj.attach(a.shape[0], float(meta.get("loraScale", 1.0)))
    model.load_state_dict({n: torch.from_numpy(v) for n, v in weights.items()}, strict=True)
    trainable = set(meta.get("trainable") or weights)
    if adapt_frozen > 0:
        for name, proj in model.projections():
            inside = name.startswith("model.layers.")
            if inside and f"{name}.weight" not in trainable and proj.lora_A is None:
                proj.attach(adapt_frozen, lora_scale)
                with torch.no_grad():
                    proj.lora_A.normal_(0.0, 0.02)
                trainable |= {f"{name}.lora_A", f"{name}.lora_B"}
    for n, p in model.named_parameters():
        p.requires_grad_(n in trainable)
    return model


def counts(model: Llama) -> dict:
    """Parameters by role, as the run's report counts them."""
    adapter = lambda n: n.endswith(".lora_A") or n.endswith(".lora_B")
    named = list(model.named_parameters())
    return {
        "trainableParams": sum(p.numel() for n, p in named if p.requires_grad and not adapter(n)),
        "frozenParams": sum(p.numel() for n, p in named if not p.requires_grad and not adapter(n)),
        "adapterParams": sum(p.numel() for n, p in named if adapter(n)),
    }


def get_batch(a: argparse.Namespace, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    # A fresh memmap per batch, as nanoGPT does (a long-lived map keeps touched pages resident).
    data = np.memmap(a.tokens, dtype=np.dtype(a.dtype).newbyteorder("<"), mode="r")
    span = len(data) - a.seq - 1
    per = a.batch // a.nproc
    rows = range(rank * per, (rank + 1) * per)
    starts = [((step * a.batch + r) * a.seq) % span for r in rows]
    x = torch.from_numpy(np.stack([data[s : s + a.seq].astype(np.int64) for s in starts]))
    y = torch.from_numpy(np.stack([data[s + 1 : s + 1 + a.seq].astype(np.int64) for s in starts]))
    return x, y


def train(rank: int, a: argparse.Namespace, port: int) -> None:
    torch.set_num_threads(a.threads)
    if a.nproc > 1:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=a.nproc)
    model = load_model(a.init, a.adapt_frozen, a.lora_scale)
    trained = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trained if p.dim() >= 2]
    plain = [p for p in trained if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": a.weight_decay}, {"params": plain, "weight_decay": 0.0}],
        lr=a.lr,
        betas=(a.beta1, a.beta2),
        eps=a.eps,
        **({"fused": True} if a.fused_adamw else {}),
    )
    net = model
    if a.nproc > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    scale = a.nproc / (a.batch * a.seq)
    losses = []
    start = 0.0
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            start = time.perf_counter()
        x, y = get_batch(a, step, rank)
        loss = torch.zeros(())
        for i in range(0, len(x), a.micro):
            # Gradients sync on the step's last micro-batch only.
            last = i + a.micro >= len(x)
            with contextlib.nullcontext() if last or a.nproc == 1 else net.no_sync():
                part = net(x[i : i + a.micro], y[i : i + a.micro]) * scale
                part.backward()
            loss += part.detach()
        torch.nn.utils.clip_grad_norm_(trained, a.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    seconds = time.perf_counter() - start
    mine = torch.stack(losses).double() / a.nproc
    if a.nproc > 1:
        dist.all_reduce(mine)
    if rank == 0:
        print(
            json.dumps(
                {
                    "torch": torch.__version__,
                    "nproc": a.nproc,
                    "threads": a.threads,
                    "tokensPerSec": a.steps * a.batch * a.seq / seconds,
                    "stepMs": seconds * 1000 / a.steps,
                    "losses": mine.tolist(),
                    **counts(model),
                }
            ),
            flush=True,
        )
    if a.nproc > 1:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    if not os.path.isfile(a.tokens):
        print(f"bare_loop_torch.py: --tokens {a.tokens} is not a file", file=sys.stderr)
        return 2
    if not os.path.isfile(os.path.join(a.init, "model.safetensors")):
        print(f"bare_loop_torch.py: --init {a.init} has no model.safetensors", file=sys.stderr)
        return 2
    if a.nproc == 1:
        train(0, a, 0)
    else:
        import torch.multiprocessing as mp

        mp.spawn(train, args=(a, free_port()), nprocs=a.nproc, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
