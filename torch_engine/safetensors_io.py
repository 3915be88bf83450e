"""Safetensors files read and written with NumPy alone (Debian ships no `safetensors` package).

The format: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
shape and byte range, then the raw little-endian data. Only what the engine exchanges is
supported: F32 (and reading BF16/F16, widened to float32).
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16, "I32": np.int32}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Every tensor of `path` as a float32 array (BF16 and F16 widened)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        chunk = raw[base + start : base + end]
        dtype = info["dtype"]
        if dtype == "BF16":
            bits = np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16
            values = bits.view(np.float32)
        elif dtype in _DTYPES:
            values = np.frombuffer(chunk, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<"))
            values = values.astype(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name!r} has dtype {dtype}, not F32/F16/BF16")
        out[name] = values.reshape(info["shape"]).copy()
    return out


def write_safetensors(path: str, tensors: dict[str, np.ndarray]) -> None:
    """Writes float32 tensors atomically (a temporary file renamed into place)."""
    header: dict[str, object] = {"__metadata__": {"format": "step-torch-exchange"}}
    offset = 0
    arrays = []
    for name, value in tensors.items():
        a = np.ascontiguousarray(value, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in arrays:
            f.write(a.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
