#!/usr/bin/env python3
"""STEP's PyTorch trainer: one launch per `train`/`continue` node of a stage graph.

`deno task run --engine torch` starts it (with `torchrun`, or one process per rank with the
same environment: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and drives it. The
stage graph, the schedules, the freezing rules, growth, attaching adapters, the final merge,
checkpoints and metrics all stay in TypeScript; this process only holds the model on its
device and runs what it is told, one JSON command per line on a TCP connection that local
rank 0 of every node opens to its own `deno task run` (`--control HOST:PORT`). Each command is
checked against the protocol's schema (`--protocol FILE`, written by the launch from the codecs
of `effects/torch_protocol.ts`; `protocol.py`) before it is used; one that does not fit fails
with a message naming its fields:

- `step`: one optimizer step over the global batch (each rank reads its share of the rows
  from the memory-mapped token files), global-norm clipping, AdamW; non-finite → skipped.
  Its `hyper` is the engine's step hyper-parameters as TypeScript holds them
  (`pipeline/step_hyper.ts`); `lossChunk` is read by the tfjs engine only (the loss here is
  computed whole);
- `eval`: mean cross-entropy over batches;
- `reset`: ReLoRA's merge, re-initialisation and moment pruning (`relora.py`);
- `save`: weights, Adam moments and step into a directory (every node's local rank 0);
- `load`: the next stage's model from an exchange directory, in this process (the old one freed);
- `exit`.

Global rank 0's command is broadcast to every rank; the other nodes' local rank 0 check that
their own orchestrator sent the same one. The state comes in and goes out as an exchange
directory: `model.safetensors` (float32, HF layouts, adapters as PEFT's [r, in] and [out, r]),
`moments.safetensors` (`m/<name>`, `v/<name>`, same layouts) and `state.json` (`shape`,
`trainable`, `loraScale`, `adamStep`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import queue
import socket
import sys
import threading
import traceback

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from data import TokenFiles, row_at, stack  # noqa: E402
from llama import Llama  # noqa: E402
from protocol import check_command, load_schema  # noqa: E402
from relora import kaiming_a, prune_mask  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="STEP's PyTorch trainer (driven by deno task run)")
    ap.add_argument("--init", required=True, help="exchange directory to start from")
    ap.add_argument("--data", default=None, help="directory of the token files")
    ap.add_argument("--control", required=True, help="HOST:PORT of this node's orchestrator")
    ap.add_argument("--protocol", required=True, help="the JSON Schema every command is checked against")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads per rank (0: torch's default)")
    ap.add_argument("--pin-cores", action="store_true", help="bind each rank to cores of its own (CPU)")
    return ap.parse_args(argv)


def rank_cores(allowed: list[int], local_rank: int, local_world: int, threads: int) -> list[int] | None:
    """The cores local rank `local_rank` is bound to, or None to leave it to the OS: only when
    several ranks of `threads` threads take every allowed core, each rank then gets `threads` of
    them in order. Measured on this project's 2-core machine (two ranks of one thread against a
    bare loop, 6 alternating runs each): 0.99 of the loop bound, 0.94 unbound."""
    cores = sorted(allowed)
    if local_world < 2 or threads < 1 or local_world * threads != len(cores):
        return None
    return cores[local_rank * threads : (local_rank + 1) * threads]


def pin_cores(args: argparse.Namespace, local_rank: int) -> None:
    """Binds this rank (every thread it starts after this) as `rank_cores` says, on Linux's CPU."""
    if not args.pin_cores or args.device != "cpu" or not hasattr(os, "sched_setaffinity"):
        return
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = rank_cores(list(os.sched_getaffinity(0)), local_rank, local_world, args.threads)
    if cores is not None:
        os.sched_setaffinity(0, cores)


def reset_process_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def release_free_memory() -> None:
    """Hands the C heap's free pages back to the OS (glibc's malloc_trim), so a model freed in
    this process does not count in the next one's resident peak; a no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def process_status_bytes(field: str) -> float:
    """A size from /proc/self/status (VmHWM: peak resident, VmRSS: resident now), 0 elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


def preload_lazy_modules() -> None:
    """Loads what torch 2.x loads on first use, before the start-up size is read: the first
    backward pass (and wrapping a model in DDP or FSDP) imports torch._dynamo, about 75 MB
    resident on torch 2.13 (CPU), which is code, not model state, and would otherwise count in
    every step's CPU peak."""
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # torch 1.x has none
        pass


class Session:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if args.device == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("torch.device cuda was asked for, but torch.cuda.is_available() is False")
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
            # Plain float32 products: TF32 would cost three decimal digits against the tfjs engine.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        else:
            self.device = torch.device("cpu")
            if args.threads > 0:
                torch.set_num_threads(args.threads)
        self.commands_group = None
        if self.world > 1 or args.strategy == "fsdp":
            dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
            # Commands travel on a group of their own: the thread that reads them ahead
            # (`Commands`) broadcasts while this thread's collectives run on the default group.
            if self.world > 1:
                self.commands_group = dist.new_group(backend="gloo")
        # The measures are host values (sizes, the process's or allocator's peak): reduced where
        # they are, on gloo, so that no step copies them to a GPU (a copy from pageable memory
        # waits for every kernel queued before it).
        self.host_group = (
            dist.new_group(backend="gloo") if self.world > 1 and args.device == "cuda" else None
        )
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        preload_lazy_modules()
        reset_process_peak()
        # The interpreter and torch's libraries, before any tensor: what the CPU peak leaves out.
        self.base_bytes = process_status_bytes("VmRSS")
        self.files = TokenFiles(args.data)
        self._load(args.init)

    # ------------------------------------------------------------------ state

    def _load(self, directory: str) -> None:
        with open(os.path.join(directory, "state.json"), encoding="utf-8") as f:
            meta = json.load(f)
        tensors = read_safetensors(os.path.join(directory, "model.safetensors"))
        moments_path = os.path.join(directory, "moments.safetensors")
        moments = read_safetensors(moments_path) if os.path.exists(moments_path) else {}
        depth = len({n.split(".")[2] for n in tensors if n.startswith("model.layers.")})
        model = Llama(meta["shape"], depth)
        self.lora_scale = float(meta["loraScale"])
        for name, proj in model.projections():
            a = tensors.get(f"{name}.lora_A")
            if a is not None:
                proj.attach(a.shape[0], self.lora_scale)
        state = {n: torch.from_numpy(v) for n, v in tensors.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"exchange weights do not fit the model: missing {missing}, unexpected {unexpected}")
        self.trainable = list(meta["trainable"])
        wanted = set(self.trainable)
        names = dict(model.named_parameters())
        unknown = sorted(wanted - set(names))
        if unknown:
            raise ValueError(f"trainable names {unknown} are not parameters")
        for n, p in names.items():
            p.requires_grad_(n in wanted)
        self.raw = model.to(self.device)
        self._adam_step = int(meta["adamStep"])
        # Updates the fused AdamW made since `_adam_step` was last settled, counted on the device.
        self._pending_updates: torch.Tensor | None = None
        self.skips_on_device = False
        self.sharded = self.args.strategy == "fsdp"
        self.model = self._wrap(self.raw)
        # After wrapping: FSDP replaces every parameter by a sharded DTensor of the same name.
        self.params = {n: p for n, p in self.raw.named_parameters()}
        self.optimizer = self._optimizer(moments)

    def _wrap(self, model: Llama):
        if self.sharded:
            try:
                from torch.distributed.fsdp import fully_shard
            except Exception as e:  # ImportError, or Debian 1.13's broken module (ValueError)
                raise RuntimeError(
                    f"strategy fsdp needs PyTorch ≥ 2.6 (torch.distributed.fsdp.fully_shard); this "
                    f"interpreter has torch {torch.__version__} ({e}): use strategy: ddp"
                ) from e
            # One unit per decoder layer, then the rest (embedding, final norm, LM head).
            for layer in model.model.layers:
                fully_shard(layer)
            fully_shard(model)
            return model
        if self.world == 1 or not self.trainable:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.local_rank] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def accumulating(self, last: bool):
        """Gradients synchronise on the last micro-batch of a step only."""
        if self.sharded:
            self.model.set_requires_gradient_sync(last)
            return contextlib.nullcontext()
        if hasattr(self.model, "no_sync") and not last:
            return self.model.no_sync()
        return contextlib.nullcontext()

    def reshard(self) -> None:
        """Frees every gathered parameter (FSDP). FSDP2 keeps the root unit's parameters gathered
        after a forward pass, for the backward that would follow; after an evaluation (forward
        passes only) the next step's backward failed to free them, seen with torch 2.13 in a
        ReLoRA stage ("RuntimeError: Trying to resize storage that is not resizable"), so an
        evaluation ends with every unit sharded again."""
        if not self.sharded:
            return
        for m in self.raw.modules():
            if hasattr(m, "reshard") and hasattr(m, "unshard"):
                m.reshard()

    @staticmethod
    def full(t: torch.Tensor) -> torch.Tensor:
        """The whole tensor (FSDP gathers its shards; every rank must call it)."""
        return t.full_tensor() if hasattr(t, "full_tensor") else t

    @staticmethod
    def local(t: torch.Tensor) -> torch.Tensor:
        """This rank's part of a tensor (its shard under FSDP)."""
        return t.to_local() if hasattr(t, "to_local") else t

    @staticmethod
    def like(value: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """A whole tensor laid out as `p` is (sharded the same way under FSDP)."""
        if hasattr(p, "device_mesh"):
            from torch.distributed.tensor import distribute_tensor

            return distribute_tensor(value.to(p.dtype), p.device_mesh, p.placements)
        return value.to(device=p.device, dtype=p.dtype)

    @property
    def adam_step(self) -> int:
        """Updates made so far. A step's verdict (made or skipped) stays on the device until
        something needs the count (a save, the next model's optimizer); reading it here waits
        for the steps before."""
        if self._pending_updates is not None:
            self._adam_step += int(self._pending_updates)
            self._pending_updates = None
        return self._adam_step

    def _optimizer(self, moments: dict[str, np.ndarray]):
        decay = [self.params[n] for n in self.trainable if self.params[n].dim() >= 2]
        plain = [self.params[n] for n in self.trainable if self.params[n].dim() < 2]
        groups = [g for g in ({"params": decay, "decays": True}, {"params": plain, "decays": False}) if g["params"]]
        if not groups:
            return None
        opt, self.skips_on_device = adamw(groups)
        for n in self.trainable:
            m, v = moments.get(f"m/{n}"), moments.get(f"v/{n}")
            if m is None or v is None:
                if self.adam_step > 0:
                    raise ValueError(f"Adam moments of {n!r} are missing")
                continue
            p = self.params[n]
            opt.state[p] = {
                # The fused AdamW keeps its counters with the parameters (on a GPU, say).
                "step": torch.tensor(float(self.adam_step), device=p.device if self.skips_on_device else None),
                "exp_avg": self.like(torch.from_numpy(m).to(self.device), p),
                "exp_avg_sq": self.like(torch.from_numpy(v).to(self.device), p),
            }
        return opt

    # ------------------------------------------------------------------ helpers

    def autocast(self):
        if self.args.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def reduce_started(self, t: torch.Tensor, op=dist.ReduceOp.SUM, group=None):
        """Starts reducing `t` (in place) over the ranks; returns the call that waits for it and
        gives `t`. On a GPU the wait only orders the stream after the reduction: the host reads
        nothing until someone reads `t`."""
        work = dist.all_reduce(t, op=op, group=group, async_op=True) if self.world > 1 else None

        def wait() -> torch.Tensor:
            if work is not None:
                work.wait()
            return t

        return wait

    def all_sum(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.reduce_started(t)().tolist()

    def my_rows(self, batches: list[dict]) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
        """This rank's share of every row of `batches` (a contiguous slice), read from the files."""
        where = [(b, i) for b in batches for i in range(b["rows"])]
        n = len(where)
        lo, hi = self.rank * n // self.world, (self.rank + 1) * n // self.world
        mine = [row_at(b, i, self.files) for b, i in where[lo:hi]]
        self.files.release()  # the rows are copies: keep no corpus pages mapped between steps
        return mine, n

    def measures(self) -> dict:
        """What this step held, the largest rank's, in one reduction: the model state by role,
        read from the tensors this rank holds now (its shards under FSDP; weights, gradients and
        Adam's m and v, `step` counters aside), and the peak so far (CUDA: bytes allocated;
        CPU: the process's resident peak above its start-up size)."""
        roles = {"trainableWeights": 0.0, "gradients": 0.0, "optimizer": 0.0, "frozen": 0.0, "adapters": 0.0}
        trains = set(self.trainable)
        nbytes = lambda t: float(self.local(t).numel() * self.local(t).element_size())
        for n, p in self.params.items():
            adapter = n.endswith(".lora_A") or n.endswith(".lora_B")
            role = "adapters" if adapter else ("trainableWeights" if n in trains else "frozen")
            roles[role] += nbytes(p)
            if p.grad is not None:
                roles["gradients"] += nbytes(p.grad)
            st = self.optimizer.state.get(p) if self.optimizer is not None else None
            for key in ("exp_avg", "exp_avg_sq"):
                if st and key in st:
                    roles["optimizer"] += nbytes(st[key])
        cuda = self.device.type == "cuda"
        peak = (
            float(torch.cuda.max_memory_allocated(self.device))
            if cuda
            else process_status_bytes("VmHWM") - self.base_bytes
        )
        # A host tensor, reduced on gloo (the default group on a CPU, `host_group` on CUDA) in
        # the background: no rank waits for the others here, only when the reply is sent
        # (`main`'s replies go out in groups), by when the reduction is long done.
        t = torch.tensor([*roles.values(), peak], dtype=torch.float64)
        reduced = self.reduce_started(t, dist.ReduceOp.MAX, self.host_group)

        def finish() -> dict:
            values = reduced().tolist()
            state = dict(zip(roles, values))
            state["total"] = sum(values[:-1])
            return {"state": state, "peak": {"gpuBytes" if cuda else "processBytes": values[-1]}}

        return finish

    # ------------------------------------------------------------------ commands

    def prepare(self, cmd: dict) -> dict:
        """What a command needs read from the token files, read ahead of its turn (in the
        `Commands` thread): the rank's rows as (tokens, targets) tensors on the device, one pair
        per forward pass."""
        op = cmd["op"]
        if op not in ("step", "eval"):
            return {}
        micro = int(cmd["microBatch"])
        rows, n = self.my_rows(cmd["batches"])
        if op == "step":
            if n % self.world != 0:
                raise ValueError(f"{n} rows per step do not split evenly over {self.world} ranks")
            passes = [rows[i : i + micro] for i in range(0, len(rows), micro)]
        else:
            # Every rank runs as many forward passes as the busiest one (FSDP gathers in each).
            count = math.ceil(math.ceil(n / self.world) / micro)
            seq = cmd["batches"][0]["seq"] if cmd["batches"] else 1
            idle = [(np.zeros(seq, dtype=np.int64), np.full(seq, -1, dtype=np.int64))]
            passes = [rows[i * micro : (i + 1) * micro] or idle for i in range(count)]
        return {"passes": [stack(p, self.device) for p in passes]}

    def step(self, cmd: dict, prepared: dict) -> dict:
        h = cmd["hyper"]
        self.raw.recompute = h["recompute"] == "layers"
        passes = prepared["passes"]
        # The global batch's scored tokens, from the command itself: every rank has it, so no
        # collective is spent on it.
        total = float(scored_tokens(cmd["batches"]))
        scale = self.world / total if total > 0 else 0.0
        # Summed on the device: one read per step, not one per forward pass.
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        reduced = None
        for i, (tokens, targets) in enumerate(passes):
            last = i == len(passes) - 1
            sync = self.accumulating(last)
            if self.optimizer is None:
                with torch.no_grad(), self.autocast():
                    loss_sum += self.model(tokens, targets).detach()
                continue
            with sync:
                with self.autocast():
                    loss = self.model(tokens, targets)
                loss_sum += loss.detach()
                if last:
                    # The global loss is reduced while the last backward runs, not after it: every
                    # rank issues it before that backward's own collectives, so their order agrees.
                    reduced = self.reduce_started(loss_sum.clone().reshape(1))
                (loss * scale).backward()
        if reduced is None:  # forward passes only: nothing to overlap
            reduced = self.reduce_started(loss_sum.clone().reshape(1))
        # Everything below stays on the device until the reply is read (`main` reads replies in
        # groups): the loss, the norm, the clip factor and the verdict. Where the optimizer takes
        # the verdict as a device flag (torch's fused AdamW, `found_inf`), a step on a GPU never
        # waits for the host; elsewhere the verdict is read before the update.
        loss = (
            reduced().reshape(()) / total
            if total > 0
            else torch.full((), float("nan"), dtype=torch.float64, device=self.device)
        )
        grads = [self.params[n].grad for n in self.trainable]
        present = [self.local(g) for g in grads if g is not None]
        # Each gradient's norm in float32 (one fused call where torch has it), their squares
        # summed in float64.
        sq = (
            torch.stack(norms_of(present)).double().square().sum()
            if present
            else torch.zeros((), dtype=torch.float64, device=self.device)
        )
        if self.sharded:
            sq = self.reduce_started(sq.reshape(1))().reshape(())
        norm = sq.sqrt()
        finite = torch.isfinite(loss) & torch.isfinite(norm)
        if self.optimizer is not None:
            if h["clip"] > 0:
                # kernels/ops/adamw.ts's clipFactor, in float64; a factor of 1 changes nothing.
                scale_all(present, torch.clamp(h["clip"] / (norm + 1e-6), max=1.0))
            for group in self.optimizer.param_groups:
                group["lr"] = h["lr"]
                group["betas"] = (h["beta1"], h["beta2"])
                group["eps"] = h["eps"]
                group["weight_decay"] = h["weightDecay"] if group["decays"] else 0.0
            if self.skips_on_device:
                self.optimizer.found_inf = (~finite).float()
                self.optimizer.step()
                made = finite.long()
                self._pending_updates = made if self._pending_updates is None else self._pending_updates.add_(made)
            elif bool(finite):
                self.optimizer.step()
                self._adam_step += 1
        # Read where the state peaks: every gradient alive, and (after an update) every moment.
        measured = self.measures()
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        return lambda: {
            "loss": float(loss),
            "gradNorm": float(norm),
            "skipped": not bool(finite),
            **measured(),
        }

    def evaluate(self, cmd: dict, prepared: dict) -> dict:
        loss_sum, count = 0.0, 0
        with torch.no_grad(), self.autocast():
            for tokens, targets in prepared["passes"]:
                loss_sum += float(self.raw(tokens, targets))
                count += int((targets >= 0).sum())
        self.reshard()
        s, c = self.all_sum([loss_sum, float(count)])
        return {"loss": s / c if c > 0 else float("nan")}

    def reset(self, cmd: dict) -> dict:
        ratio, seed = float(cmd["pruneRatio"]), int(cmd["seed"])
        merged = 0
        with torch.no_grad():
            for name, proj in self.raw.projections():
                if proj.lora_A is None or proj.lora_B is None:
                    continue
                a, b = self.full(proj.lora_A), self.full(proj.lora_B)
                w = self.full(proj.weight) + torch.matmul(b, a) * proj.scale
                proj.weight.copy_(self.like(w, proj.weight))
                rank, inputs = a.shape
                fresh = torch.from_numpy(kaiming_a(inputs, rank, seed, f"{name}.lora_A")).to(self.device)
                proj.lora_A.copy_(self.like(fresh, proj.lora_A))
                proj.lora_B.zero_()
                merged += 1
            zeros, total = 0, 0
            for n in self.trainable:
                if not (n.endswith(".lora_A") or n.endswith(".lora_B")):
                    continue
                p = self.params[n]
                total += p.numel()
                st = self.optimizer.state.get(p) if self.optimizer is not None else None
                if not st:
                    continue
                m, v = self.full(st["exp_avg"]), self.full(st["exp_avg_sq"])
                # The mask on the host, by the NumPy code the cross-language check runs.
                mask = torch.from_numpy(prune_mask(m.float().cpu().numpy(), ratio)).to(m.device)
                st["exp_avg"].copy_(self.like(m * mask, st["exp_avg"]))
                st["exp_avg_sq"].copy_(self.like(v * mask, st["exp_avg_sq"]))
                zeros += p.numel() - int(mask.sum())
        return {"merged": merged, "prunedFraction": zeros / total if total else 0.0}

    def save(self, cmd: dict) -> dict:
        # Gathered on every rank (FSDP's all-gathers are collective), written by each node's
        # local rank 0 into its own directory.
        weights = {n: self.full(p.detach()).float().cpu().numpy() for n, p in self.raw.named_parameters()}
        moments: dict[str, np.ndarray] = {}
        for n in self.trainable:
            p = self.params[n]
            st = self.optimizer.state.get(p) if self.optimizer is not None else None
            zero = np.zeros(tuple(p.shape), dtype=np.float32)
            moments[f"m/{n}"] = self.full(st["exp_avg"]).float().cpu().numpy() if st else zero
            moments[f"v/{n}"] = self.full(st["exp_avg_sq"]).float().cpu().numpy() if st else zero
        if self.local_rank == 0:
            directory = cmd["dir"]
            os.makedirs(directory, exist_ok=True)
            write_safetensors(os.path.join(directory, "model.safetensors"), weights)
            write_safetensors(os.path.join(directory, "moments.safetensors"), moments)
            meta = {"trainable": self.trainable, "loraScale": self.lora_scale, "adamStep": self.adam_step}
            tmp = os.path.join(directory, f"state.json.tmp-{os.getpid()}")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(meta, f)
            os.replace(tmp, os.path.join(directory, "state.json"))
        if self.world > 1:
            dist.barrier()
        return {}

    def load(self, cmd: dict) -> dict:
        """Another model from an exchange directory, in this process: the next stage's, where
        the orchestrator would otherwise start a new launch (interpreter, torch's import, the
        process group). The old model, its gradients and moments are freed first, and the peaks
        start again from here, as a new launch's would; the CPU peak stays measured above the
        process's start-up size."""
        self.model = self.raw = self.optimizer = None
        self.params = {}
        gc.collect()
        release_free_memory()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        reset_process_peak()
        self._load(cmd["dir"])
        return {}

    def run(self, cmd: dict, prepared: dict):
        """Runs a command; returns a function that gives its reply (a step's waits for its
        measures' reduction)."""
        op = cmd["op"]
        if op == "step":
            return self.step(cmd, prepared)
        if op == "load":
            result = self.load(cmd)
        elif op == "eval":
            result = self.evaluate(cmd, prepared)
        elif op == "reset":
            result = self.reset(cmd)
        elif op == "save":
            result = self.save(cmd)
        elif op == "exit":
            result = {}
        else:
            raise ValueError(f"unknown command {op!r}")
        return lambda: result


def adamw(groups: list[dict]) -> tuple[torch.optim.AdamW, bool]:
    """AdamW over `groups`, and whether it skips an update on a device flag: torch's fused AdamW
    where this torch has one for these parameters (CPU since 2.4, CUDA since 2.0; it reads
    `found_inf`, a step's non-finite verdict, on the device), else the loop, which needs the
    verdict on the host before the update. Both compute the same update."""
    try:
        return torch.optim.AdamW(groups, lr=0.0, fused=True), True
    except (TypeError, RuntimeError, ValueError):  # torch 1.x, or no fused kernel for this device
        return torch.optim.AdamW(groups, lr=0.0, foreach=False), False


def norms_of(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's 2-norm: torch's fused call where it has one (a loop of ~40 small calls costs
    a measurable share of a small model's step)."""
    fused = getattr(torch, "_foreach_norm", None)
    if fused is not None:
        try:
            return list(fused(tensors))
        except (RuntimeError, TypeError, NotImplementedError):  # e.g. DTensor shards on old torch
            pass
    return [torch.linalg.vector_norm(t) for t in tensors]


def scale_all(tensors: list[torch.Tensor], factor: torch.Tensor) -> None:
    """Multiplies every tensor by `factor`, a 0-dim tensor on their device, in place (fused where
    torch has it); the tensors keep their dtype."""
    fused = getattr(torch, "_foreach_mul_", None)
    if fused is not None:
        try:
            fused(tensors, factor)
            return
        except (RuntimeError, TypeError, NotImplementedError):
            pass
    for t in tensors:
        t.mul_(factor)


def scored_tokens(batches: list[dict]) -> int:
    """Targets ≥ 0 in the whole global batch: every position of a window row, and the ids
    rows' non-negative targets."""
    return sum(
        b["rows"] * b["seq"] if "starts" in b else sum(1 for t in b["targets"] if t >= 0) for b in batches
    )


def finite_json(value):
    """JSON has no NaN or infinities: they travel as the strings JavaScript's Number() reads."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


class Channel:
    """JSON lines to and from this node's orchestrator (local rank 0 only). Commands are read
    in the `Commands` thread and replies written in the main one, each on its own file."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.writer = self.sock.makefile("wb")

    def send(self, *objs: dict) -> None:
        """Lines, in one write."""
        self.writer.write(b"".join((json.dumps(finite_json(o), allow_nan=False) + "\n").encode("utf-8") for o in objs))
        self.writer.flush()

    def receive(self, schema: dict) -> dict:
        """The next command, checked against the protocol's schema."""
        line = self.reader.readline()
        if not line:
            return {"op": "exit", "orphaned": True}
        return check_command(schema, json.loads(line))


# Step replies sent in one write at most (see `main`); below the orchestrator's window of steps
# in flight (pipeline/train_stage.ts's STEPS_AHEAD, 8), so it never waits for a group to fill.
REPLY_GROUP = 4

# Fields of a command that name this node's own files: they differ between nodes.
NODE_LOCAL = ("dir",)


def next_command(session: Session, channel: Channel | None, schema: dict) -> dict:
    """The next command: global rank 0's, checked against this node's orchestrator's own."""
    own = channel.receive(schema) if channel is not None else None
    if session.world == 1:
        return own
    box = [own]
    dist.broadcast_object_list(box, src=0, group=session.commands_group)
    cmd = box[0]
    if own is None or session.rank == 0 or own.get("op") == "exit":
        return cmd
    shared = lambda c: json.dumps({k: v for k, v in c.items() if k not in NODE_LOCAL}, sort_keys=True)
    if shared(own) != shared(cmd):
        raise RuntimeError(
            f"this node's orchestrator sent {own.get('op')!r}, global rank 0's sent {cmd.get('op')!r} "
            "with other arguments: the nodes' runs have diverged (same pipeline, data and flags on "
            "every node?)"
        )
    return {**cmd, **{k: own[k] for k in NODE_LOCAL if k in own}}


class Commands:
    """Commands read, checked and prepared ahead of the one running, in a thread of their own.

    The orchestrator sends steps without waiting for their replies (`torch_launch.ts`), so the
    next command is usually already on the socket while a step runs: this thread reads it
    (global rank 0's, broadcast on the session's commands group), checks it, and reads its rows
    from the token files into tensors (`Session.prepare`), so the main thread goes from one step
    straight to the next. At most `DEPTH` commands wait prepared (their rows are held in memory);
    the rest wait on the socket. A command that fails here (refused by the schema, a bad window)
    fails in its turn, after the commands before it have run.
    """

    DEPTH = 2

    def __init__(self, session: Session, channel: Channel | None, schema: dict) -> None:
        self.session, self.channel, self.schema = session, channel, schema
        self.queue: queue.Queue = queue.Queue(maxsize=self.DEPTH)
        threading.Thread(target=self._read, name="commands", daemon=True).start()

    def _read(self) -> None:
        # With several ranks, the lowest ordinary priority (Linux: per thread): its work is small
        # (about 1 ms a step), and a rank it preempts mid-step stalls every rank at the next
        # collective; at nice 19 it runs where a core is free (a rank waiting on a collective, a
        # GPU running). On two busy cores the gain stayed within the machine's noise
        # (docs/torch-engine.md). One process keeps the default: nothing waits for it, and at
        # nice 19 the thread's work waited for the step's end.
        if self.session.world > 1:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            except (AttributeError, OSError):
                pass
        while True:
            try:
                cmd = next_command(self.session, self.channel, self.schema)
                self.queue.put((cmd, self.session.prepare(cmd), None))
            except BaseException as e:  # noqa: BLE001 — handed to the main thread, which reports it
                self.queue.put((None, None, (e, f"{type(e).__name__}: {e}", traceback.format_exc())))
                return
            if cmd["op"] == "exit":
                return

    def idle(self) -> bool:
        """Whether no command is ready: `next` would wait for the orchestrator."""
        return self.queue.empty()

    def next(self) -> tuple[dict, dict]:
        """The next command and what `prepare` read for it; raises what failed reading it."""
        cmd, prepared, failure = self.queue.get()
        if failure is not None:
            raise CommandFailed(failure[1], failure[2]) from failure[0]
        return cmd, prepared


class CommandFailed(Exception):
    """A command that failed in the `Commands` thread, with that thread's error and trace."""

    def __init__(self, error: str, trace: str) -> None:
        super().__init__(error)
        self.trace = trace


def report_failure(channel: Channel | None, e: BaseException) -> None:
    if isinstance(e, CommandFailed):
        error, trace = str(e), e.trace
    else:
        error, trace = f"{type(e).__name__}: {e}", traceback.format_exc()
    print(trace, file=sys.stderr, flush=True)
    if channel is not None:
        channel.send({"ok": False, "error": error, "trace": trace})


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    # Before any thread starts (torch's pools, gloo's, the commands thread): they inherit it.
    pin_cores(args, local_rank)
    channel = Channel(args.control) if local_rank == 0 else None
    try:
        schema = load_schema(args.protocol)
        session = Session(args)
    except Exception as e:  # reported to the orchestrator, then the launch fails
        if channel is not None:
            channel.send({"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})
        raise
    if channel is not None:
        channel.send({"ok": True, "ready": True})
    commands = Commands(session, channel, schema)
    # Replies of steps not sent yet. Steps come ahead of their replies (the orchestrator does
    # not wait for them), so replies go out in groups of up to REPLY_GROUP, in one write: the
    # orchestrator wakes once per group, not once per step, and a step's measures are reduced
    # by then. Every reply owed goes out before this process waits for a command, so an
    # orchestrator waiting for one (before an evaluation, a checkpoint, at a stage's end, or
    # with its window full) always gets it.
    owed: list = []

    def pay() -> None:
        replies = [{"ok": True, **reply()} for reply in owed]
        owed.clear()
        if channel is not None and replies:
            channel.send(*replies)

    while True:
        try:
            if owed and commands.idle():
                pay()
            cmd, prepared = commands.next()
            if cmd["op"] == "exit":
                pay()
                break
            owed.append(session.run(cmd, prepared))
            if cmd["op"] != "step" or len(owed) >= REPLY_GROUP:
                pay()
        except Exception as e:
            try:
                pay()  # the replies of the commands before the failed one come first
            except Exception:  # noqa: BLE001 — the failure below is what the orchestrator needs
                pass
            report_failure(channel, e)
            sys.stdout.flush()
            sys.stderr.flush()
            # Not a return through the interpreter's shutdown: the commands thread may be blocked
            # in a collective or a read, and the process group's teardown would wait for it.
            os._exit(1)
    if dist.is_initialized():
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    # Every file was written and synced. Tearing down the DDP wrapper after its process group
    # sometimes hangs rank 0 (seen with torch 1.13 on gloo), so the process ends here, before
    # the session's destructors run.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
