"""Deterministic mutations of real saved adapter folders, for the loader fuzz tests.

Each mutation is (name, apply(folder)), applied to a fresh copy of a golden folder: config values replaced by
values of other types and out-of-range values, keys deleted and added, invalid regexes, JSON that is not an
object or not JSON, weight files truncated or padded, tensors renamed, dropped, resized (honestly rewritten),
and safetensors headers that lie about shapes, dtypes, offsets and their own length.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..conftest import GOLDEN

Mutation = tuple[str, Callable[[Path], None]]
JSON_FILES = ("adapter_config.json", "head_config.json", "adapterserve.json")
WRONG_VALUES = [
    None, True, False, 0, -1, 1, 7, 2**70, 1e308, -1e-9, 0.5, float("nan"), float("inf"), "x", "", "(((", "two",
    [], ["x"], [1, -1], [[]], {}, {"(((": 3}, {"x": "y"}, {"default": 0},
]  # fmt: skip


def copy_case(case: str, dest: Path) -> Path:
    shutil.copytree(GOLDEN / case / "adapter", dest)
    return dest


# ---- JSON --------------------------------------------------------------------------------------------------
def _paths(value, prefix=()):
    """Every key path into nested objects and lists."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _edit_json(file: str, path: tuple, op: str, value=None) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        data = json.loads((folder / file).read_text())
        parent = data
        for k in path[:-1]:
            parent = parent[k]
        if op == "set":
            parent[path[-1]] = value
        elif op == "delete":
            del parent[path[-1]]
        elif op == "add":
            parent[path[-1]] = value
        (folder / file).write_text(json.dumps(data))

    return apply


def _write(file: str, data: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / file).write_bytes(data)


def json_mutations(folder: Path, rng: random.Random, per_file: int) -> list[Mutation]:
    out: list[Mutation] = []
    for file in JSON_FILES:
        if not (folder / file).is_file():
            continue
        data = json.loads((folder / file).read_text())
        paths = list(_paths(data))
        for path in rng.sample(paths, min(per_file, len(paths))):
            value = rng.choice(WRONG_VALUES)
            out.append((f"{file}:{'.'.join(map(str, path))}={value!r}", _edit_json(file, path, "set", value)))
            if isinstance(path[-1], str):
                out.append((f"{file}:del {'.'.join(map(str, path))}", _edit_json(file, path, "delete")))
        out.append((f"{file}:extra key", _edit_json(file, ("zz_extra",), "add", rng.choice(WRONG_VALUES))))
        for name, raw in [
            ("not an object", b"[1, 2]"),
            ("empty", b""),
            ("truncated", (folder / file).read_bytes()[: rng.randrange(1, 40)]),
            ("not utf-8", b'{"config": "\xff\xfe"}'),
            ("deeply nested", b"[" * 100_000 + b"]" * 100_000),
            ("huge int", b'{"r": ' + b"9" * 5000 + b"}"),
        ]:
            out.append((f"{file}:{name}", _write(file, raw)))
    return out


# ---- safetensors ---------------------------------------------------------------------------------------------
def split_safetensors(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def join_safetensors(header: dict, data: bytes, length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _lie(file: str, edit: Callable[[dict, bytes], tuple[dict, bytes]]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        header, data = split_safetensors(folder / file)
        header, data = edit(header, data)
        (folder / file).write_bytes(join_safetensors(header, data))

    return apply


def _retensor(file: str, edit: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    """Rewrite the file honestly (a valid safetensors file) with edited tensors."""

    def apply(folder: Path) -> None:
        tensors = load_file(str(folder / file))
        edit(tensors)
        save_file(tensors, str(folder / file))

    return apply


def safetensors_mutations(folder: Path, rng: random.Random) -> list[Mutation]:
    out: list[Mutation] = []
    for path in sorted(folder.glob("*.safetensors")):
        file = path.name
        header, data = split_safetensors(path)
        keys = sorted(k for k in header if k != "__metadata__")
        key = rng.choice(keys)
        shape = header[key]["shape"]
        size = path.stat().st_size
        begin, end = header[key]["data_offsets"]

        def with_entry(field, value, key=key):
            return lambda hdr, raw: ({**hdr, key: {**hdr[key], field: value}}, raw)

        out += [
            (f"{file}:truncated", _write(file, path.read_bytes()[: rng.randrange(0, size)])),
            (f"{file}:padded", _write(file, path.read_bytes() + b"\0" * rng.randrange(1, 64))),
            (f"{file}:header length huge", _write(file, struct.pack("<Q", 2**63) + path.read_bytes()[8:])),
            (f"{file}:header length short", _write(file, struct.pack("<Q", 3) + path.read_bytes()[8:])),
            (f"{file}:header not json", _write(file, join_safetensors({}, b"")[:8] + b"{{{{")),
            (f"{file}:{key} shape larger", _lie(file, with_entry("shape", [d * 4 for d in shape]))),
            (f"{file}:{key} shape huge", _lie(file, with_entry("shape", [2**40, 2**40]))),
            (f"{file}:{key} shape negative", _lie(file, with_entry("shape", [-1, *shape[1:]]))),
            (f"{file}:{key} shape not a list", _lie(file, with_entry("shape", "32"))),
            (f"{file}:{key} dtype I64", _lie(file, with_entry("dtype", "I64"))),
            (f"{file}:{key} dtype F16", _lie(file, with_entry("dtype", "F16"))),
            (f"{file}:{key} dtype unknown", _lie(file, with_entry("dtype", "Q4"))),
            (f"{file}:{key} offsets past the end", _lie(file, with_entry("data_offsets", [begin, end + 2**40]))),
            (f"{file}:{key} offsets reversed", _lie(file, with_entry("data_offsets", [end, begin]))),
            (f"{file}:{key} offsets overlap", _lie(file, with_entry("data_offsets", [0, end - begin]))),
            (f"{file}:{key} entry not an object", _lie(file, lambda h, d, key=key: ({**h, key: 5}, d))),
            (f"{file}:metadata not strings", _lie(file, lambda h, d: ({**h, "__metadata__": {"a": 1}}, d))),
            (f"{file}:drop {key}", _retensor(file, lambda t, key=key: t.pop(key))),
            (f"{file}:rename {key}", _retensor(file, lambda t, key=key: t.update({key + "x": t.pop(key)}))),
            (f"{file}:extra tensor", _retensor(file, lambda t: t.update({"extra.weight": torch.ones(3)}))),
            (f"{file}:{key} oversized", _retensor(file, lambda t, key=key: t.update({key: torch.ones(512, 64)}))),
            (f"{file}:{key} one more row", _retensor(file, lambda t, key=key: t.update({key: _grow(t[key])}))),
            (f"{file}:{key} scalar", _retensor(file, lambda t, key=key: t.update({key: torch.tensor(1.0)}))),
            (f"{file}:{key} empty", _retensor(file, lambda t, key=key: t.update({key: torch.ones(0)}))),
            (f"{file}:{key} nan", _retensor(file, lambda t, key=key: t.update({key: t[key] * float("nan")}))),
            (f"{file}:{key} int", _retensor(file, lambda t, key=key: t.update({key: t[key].to(torch.int64)}))),
            (f"{file}:{key} fp16", _retensor(file, lambda t, key=key: t.update({key: t[key].half()}))),
            (f"{file}:deleted", lambda folder, file=file: (folder / file).unlink()),
        ]
    return out


def _grow(t: torch.Tensor) -> torch.Tensor:
    return torch.cat([t, t[:1]]) if t.dim() else t.reshape(1)


def file_mutations(folder: Path, rng: random.Random) -> list[Mutation]:
    out: list[Mutation] = [("stray file", _write("notes.txt", b"hello"))]
    for key in ("labels", "task"):  # the optional adapterserve.json beside the files
        for value in rng.sample(WRONG_VALUES, 4):
            out.append(
                (f"adapterserve.json:{key}={value!r}", _write("adapterserve.json", json.dumps({key: value}).encode()))
            )
    for path in sorted(folder.glob("*.bin")):
        raw = path.read_bytes()
        out += [
            (f"{path.name}:truncated", _write(path.name, raw[: rng.randrange(0, len(raw))])),
            (f"{path.name}:garbage", _write(path.name, bytes(rng.randrange(256) for _ in range(256)))),
        ]
    return out


def mutations(case: str, seed: int, per_file: int = 24) -> list[Mutation]:
    """All mutations for one golden case; the same seed always gives the same list."""
    rng = random.Random(f"{case}:{seed}")
    folder = GOLDEN / case / "adapter"
    return json_mutations(folder, rng, per_file) + safetensors_mutations(folder, rng) + file_mutations(folder, rng)
