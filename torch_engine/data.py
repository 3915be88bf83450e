"""Token windows read from the flat token files `deno task run` writes for the torch engine.

`<dir>/train.bin` and `<dir>/validation.bin` hold the split's token stream (little-endian
uint16 or int32, `<dir>/tokens.json` says which); a micro-batch names the start offset of each
of its rows, and row k is the window [start, start + seq + 1): inputs the first seq tokens,
targets the last seq. Files are memory-mapped, so a rank reads only the rows it trains on.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch


class TokenFiles:
    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self._maps: dict[str, np.ndarray] = {}
        self._dtype = None
        if directory is not None:
            with open(os.path.join(directory, "tokens.json"), encoding="utf-8") as f:
                self._dtype = np.dtype(json.load(f)["dtype"])

    def split(self, name: str) -> np.ndarray:
        if name not in self._maps:
            if self.directory is None:
                raise ValueError(f"no token files were given, but a batch reads split {name!r}")
            path = os.path.join(self.directory, f"{name}.bin")
            self._maps[name] = np.memmap(path, dtype=self._dtype, mode="r")
        return self._maps[name]


def row_at(batch: dict, i: int, files: TokenFiles) -> tuple[np.ndarray, np.ndarray]:
    """Row i of a micro-batch as (inputs, targets) int64 arrays: a window of the token files,
    or the ids the command carries (evaluation sets outside the run's splits)."""
    seq = batch["seq"]
    if "starts" in batch:
        s = batch["starts"][i]
        w = np.asarray(files.split(batch["split"])[s : s + seq + 1], dtype=np.int64)
        if w.shape[0] != seq + 1:
            raise ValueError(f"window at {s} runs past the end of split {batch['split']!r}")
        return w[:-1], w[1:]
    return (
        np.asarray(batch["tokens"][i * seq : (i + 1) * seq], dtype=np.int64),
        np.asarray(batch["targets"][i * seq : (i + 1) * seq], dtype=np.int64),
    )


def stack(rows: list[tuple[np.ndarray, np.ndarray]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.from_numpy(np.stack([r[0] for r in rows])).to(device)
    targets = torch.from_numpy(np.stack([r[1] for r in rows])).to(device)
    return tokens, targets
