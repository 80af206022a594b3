"""Safetensors files: headers read and checked without reading any tensor data, then the tensors.

A .safetensors file is an 8-byte little-endian header length, a JSON header {name: {dtype, shape,
data_offsets: [begin, end]}, "__metadata__": {...}}, then the data. The header is checked against the file
before anything is loaded: every dtype known and floating point, every shape's size equal to its byte range,
the ranges in bounds, non-overlapping and covering the data exactly (as safetensors itself requires). So a
header that lies about sizes is refused by name, and the listing can count parameters from headers alone.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InvalidAdapter

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
FLOAT_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
OTHER_DTYPES = {
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    begin: int = 0  # byte range in the data section (after the header)
    end: int = 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_header(path: Path) -> dict[str, TensorEntry]:
    """name -> (dtype, shape, byte range) for every tensor in the file, or InvalidAdapter naming what is wrong."""
    return _read(path)[0]


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor in the file, read with plain file I/O after the header is checked, through one open file.

    Not safetensors' `load_file`: every call of it leaks a few Python objects per tensor (safetensors
    issue #369, still so in 0.5-0.8; measured ~1.5 kB per load of a 24-tensor file), and a server that
    reloads adapters all day grows without bound. Each tensor owns its bytes (no mmap of the file stays open).
    """

    def tensors(f, entries: dict[str, TensorEntry], data_start: int) -> dict[str, torch.Tensor]:
        out = {}
        try:
            for key, e in entries.items():
                f.seek(data_start + e.begin)
                raw = bytearray(f.read(e.end - e.begin))
                if len(raw) != e.end - e.begin:
                    raise InvalidAdapter(f"{path.name}: tensor {key!r} is truncated", file=path.name, key=key)
                dtype = TORCH_DTYPES[e.dtype]
                t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
                out[key] = t.reshape(e.shape)
        except OSError as err:
            raise InvalidAdapter(f"{path.name} cannot be read ({err.strerror or err})", file=path.name) from None
        return out

    return _read(path, tensors)[1]


def _read(path: Path, then=None) -> tuple[dict[str, TensorEntry], object]:
    """The checked header, and then(open file, entries, data start) while the file is still open (if given)."""
    name = path.name

    def bad(what: str, **details) -> InvalidAdapter:
        return InvalidAdapter(f"{name} is not a valid safetensors file: {what}", file=name, **details)

    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise bad(f"it has {size} bytes, fewer than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise bad(f"the header claims {n} bytes but the file has {size}")
            entries = _check(f.read(n), size - 8 - n, bad)
            return entries, (then(f, entries, 8 + n) if then is not None else None)
    except OSError as e:
        raise bad(f"cannot be read ({e.strerror or e})") from None


def _check(raw: bytes, data_bytes: int, bad) -> dict[str, TensorEntry]:
    """The header's entries, each checked, and their byte ranges covering the data exactly."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise bad(f"its header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    entries, ranges = {}, []
    for key, spec in header.items():
        if key == "__metadata__":
            if not isinstance(spec, dict) or not all(isinstance(v, str) for v in spec.values()):
                raise bad("__metadata__ must map names to strings")
            continue
        entry, begin, end = _entry(key, spec, bad)
        if end > data_bytes:
            raise bad(f"tensor {key!r} ends at byte {end} but the data holds {data_bytes}", key=key)
        entries[key] = entry
        ranges.append((begin, end, key))
    position = 0
    for begin, end, key in sorted(ranges):
        if begin != position:
            raise bad(f"tensor {key!r} starts at byte {begin}, expected {position} (overlap or gap)", key=key)
        position = end
    if position != data_bytes:
        raise bad(f"the tensors cover {position} bytes of data but the file holds {data_bytes}")
    return entries


def _entry(key: str, spec, bad) -> tuple[TensorEntry, int, int]:
    if not isinstance(spec, dict):
        raise bad(f"tensor {key!r} has no dtype/shape/data_offsets object", key=key)
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if dtype in OTHER_DTYPES:
        raise bad(f"tensor {key!r} has dtype {dtype}; adapter weights must be floating point", key=key)
    if dtype not in FLOAT_DTYPES:
        raise bad(f"tensor {key!r} has unknown dtype {dtype!r}", key=key)
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise bad(f"tensor {key!r} has shape {shape!r}, not a list of sizes", key=key)
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise bad(f"tensor {key!r} has data_offsets {offsets!r}, not [begin, end]", key=key)
    entry = TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])
    expected = entry.numel * FLOAT_DTYPES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise bad(
            f"tensor {key!r} of shape {shape} and dtype {dtype} needs {expected} bytes but its data_offsets "
            f"span {offsets[1] - offsets[0]}",
            key=key,
        )
    return entry, offsets[0], offsets[1]
