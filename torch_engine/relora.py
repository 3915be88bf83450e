"""ReLoRA's restart as the tfjs engine does it (`kernels/relora.ts`), in NumPy only, so the
cross-language check (`tests/relora_py_test.ts`) runs wherever NumPy does.

A is drawn afresh from the stream named by (seed, parameter name) — the same splitmix32
numbers `base/prng.ts` gives, so both engines draw the same matrix — in HF layout [r, in]; the
adapters' Adam moments are pruned with one mask per tensor: the entries whose |m| is among the
largest (1 − ratio) fraction survive in m and v alike (ties at the threshold kept).
"""

from __future__ import annotations

import math

import numpy as np

_MASK = np.uint64(0xFFFFFFFF)
_GOLDEN = 0x9E3779B9


def mix32(x: np.ndarray) -> np.ndarray:
    """`base/prng.ts`'s finaliser on uint32 values held in uint64."""
    z = x & _MASK
    z = ((z ^ (z >> np.uint64(16))) * np.uint64(0x85EBCA6B)) & _MASK
    z = ((z ^ (z >> np.uint64(13))) * np.uint64(0xC2B2AE35)) & _MASK
    return z ^ (z >> np.uint64(16))


def _mix(x: int) -> int:
    return int(mix32(np.array([x & 0xFFFFFFFF], dtype=np.uint64))[0])


def hash_string(text: str) -> int:
    """FNV-1a over UTF-16 code units, as `hashString`."""
    h = 0x811C9DC5
    for unit in np.frombuffer(text.encode("utf-16-le"), dtype="<u2"):
        h = ((h ^ int(unit)) * 0x01000193) & 0xFFFFFFFF
    return h


def derive_seed(seed: int, *parts: int) -> int:
    h = _mix((seed & 0xFFFFFFFF) ^ _GOLDEN)
    for p in parts:
        h = _mix((h + _GOLDEN + _mix(p)) & 0xFFFFFFFF)
    return h


def uniform_floats(seed: int, n: int) -> np.ndarray:
    """The first n `nextFloat()` values of `createRng(seed)`, in float64."""
    counters = (np.uint64(seed & 0xFFFFFFFF) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(_GOLDEN)) & _MASK
    return mix32(counters).astype(np.float64) / 4294967296.0


def kaiming_a(inputs: int, rank: int, seed: int, name: str) -> np.ndarray:
    """A fresh lora_A [r, in] (float32): U(−1/√in, 1/√in) drawn as `loraAValues` draws it ([in, r] order)."""
    u = uniform_floats(derive_seed(seed, hash_string(name)), inputs * rank)
    values = ((2.0 * u - 1.0) * (1.0 / math.sqrt(inputs))).astype(np.float32)
    return np.ascontiguousarray(values.reshape(inputs, rank).T)


def kept_count(n: int, ratio: float) -> int:
    """JavaScript's Math.round(n·(1 − ratio)) clamped to [0, n] (half rounds up, not to even)."""
    return max(0, min(n, math.floor(n * (1 - ratio) + 0.5)))


def prune_mask(key: np.ndarray, ratio: float) -> np.ndarray:
    """Where |key| is among its largest (1 − ratio) fraction, ties at the threshold kept."""
    n = key.size
    keep = kept_count(n, ratio)
    if keep == n:
        return np.ones(key.shape, dtype=bool)
    if keep == 0:
        return np.zeros(key.shape, dtype=bool)
    magnitude = np.abs(key)
    threshold = np.partition(magnitude.reshape(-1), n - keep)[n - keep]
    return magnitude >= threshold
