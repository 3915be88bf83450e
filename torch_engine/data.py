"""Token windows read from the token files `deno task run` names for the torch engine.

Per split, `<dir>/<split>.segments.json` lists the token files (little-endian uint16 or uint32,
NumPy dtypes `<u2` / `<u4`) and the runs of them the split is made of, in order:
`segments: [[file, start, length], ...]` in tokens. The files are token shards (the split is a
view of a tokenised corpus) or one `<split>.bin` the run wrote from memory. A micro-batch names
the start offset of each of its rows in the split, and row k is the window
[start, start + seq + 1): inputs the first seq tokens, targets the last seq. Files are
memory-mapped, so a rank reads only the rows it trains on; a window that crosses a segment
boundary is put together from its pieces (binary search over the segments' cumulative ends).

The maps are dropped after each step's rows are read (`TokenFiles.release`): pages of a mapped
file that a read touched (and the kernel's fault-around beside them) count in the process's
resident size for as long as the map lives, so a long run over a large corpus would otherwise
show most of the corpus as resident (nanoGPT re-creates its memmap per batch for the same reason).
"""

from __future__ import annotations

import json
import os

import numpy as np


class SplitTokens:
    """One split's tokens: windows read across its segments."""

    def __init__(self, table_path: str) -> None:
        with open(table_path, encoding="utf-8") as f:
            table = json.load(f)
        if table.get("format") != "step-token-segments" or table.get("version") != 1:
            raise ValueError(f"{table_path}: not a version-1 token segment table")
        self._files = [(f["path"], np.dtype(f["dtype"])) for f in table["files"]]
        self._maps: dict[int, np.memmap] = {}
        segments = np.asarray(table["segments"], dtype=np.int64).reshape(-1, 3)
        self._file = segments[:, 0]
        self._start = segments[:, 1]
        self._length = segments[:, 2]
        self._ends = np.cumsum(self._length)
        self.length = int(self._ends[-1]) if len(self._ends) > 0 else 0
        if self.length != table["tokens"]:
            raise ValueError(f"{table_path}: segments hold {self.length} tokens, the table says {table['tokens']}")

    def _map(self, f: int) -> np.memmap:
        if f not in self._maps:
            path, dtype = self._files[f]
            self._maps[f] = np.memmap(path, dtype=dtype, mode="r")
        return self._maps[f]

    def release(self) -> None:
        """Unmaps the files (they are mapped again on the next read)."""
        self._maps.clear()

    def window(self, start: int, count: int) -> np.ndarray:
        """Tokens [start, start + count) as int64."""
        if start < 0 or count < 0 or start + count > self.length:
            raise ValueError(f"window [{start}, {start + count}) runs past the end of {self.length} tokens")
        out = np.empty(count, dtype=np.int64)
        i = int(np.searchsorted(self._ends, start, side="right"))
        pos, to = start, 0
        while to < count:
            offset = pos - int(self._ends[i] - self._length[i])
            n = min(int(self._length[i]) - offset, count - to)
            first = int(self._start[i]) + offset
            out[to : to + n] = self._map(int(self._file[i]))[first : first + n]
            pos, to, i = pos + n, to + n, i + 1
        return out


class TokenFiles:
    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self._splits: dict[str, SplitTokens] = {}

    def split(self, name: str) -> SplitTokens:
        if name not in self._splits:
            if self.directory is None:
                raise ValueError(f"no token files were given, but a batch reads split {name!r}")
            self._splits[name] = SplitTokens(os.path.join(self.directory, f"{name}.segments.json"))
        return self._splits[name]

    def release(self) -> None:
        """Unmaps every split's files: call after reading a step's rows."""
        for s in self._splits.values():
            s.release()


def row_at(batch: dict, i: int, files: TokenFiles) -> tuple[np.ndarray, np.ndarray]:
    """Row i of a micro-batch as (inputs, targets) int64 arrays: a window of the token files,
    or the ids the command carries (evaluation sets outside the run's splits)."""
    seq = batch["seq"]
    if "starts" in batch:
        s = batch["starts"][i]
        split = files.split(batch["split"])
        if s < 0 or s + seq + 1 > split.length:
            raise ValueError(f"window at {s} runs past the end of split {batch['split']!r}")
        w = split.window(s, seq + 1)
        return w[:-1], w[1:]
    return (
        np.asarray(batch["tokens"][i * seq : (i + 1) * seq], dtype=np.int64),
        np.asarray(batch["targets"][i * seq : (i + 1) * seq], dtype=np.int64),
    )


def stack(rows: list[tuple[np.ndarray, np.ndarray]], device) -> tuple:
    """The rows as (tokens, targets) tensors on `device`."""
    import torch  # here, so the window reader above needs NumPy only

    tokens = torch.from_numpy(np.stack([r[0] for r in rows])).to(device)
    targets = torch.from_numpy(np.stack([r[1] for r in rows])).to(device)
    return tokens, targets
