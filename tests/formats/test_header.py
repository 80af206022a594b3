"""Safetensors headers: what safetensors itself writes is read back exactly; headers that lie are refused
by name before any tensor is read."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from adapterserve.errors import InvalidAdapter
from adapterserve.formats.header import read_header, read_tensors

from .mutate import join_safetensors, split_safetensors


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.ones(3, 4), "b": torch.zeros(5, dtype=torch.float16), "c": torch.ones(0, 2)}, str(path))
    return path


def test_reads_what_safetensors_wrote(saved):
    entries = read_header(saved)
    assert {k: (e.dtype, e.shape, e.numel) for k, e in entries.items()} == {
        "a": ("F32", (3, 4), 12),
        "b": ("F16", (5,), 5),
        "c": ("F32", (0, 2), 0),
    }


def _rewrite(path, edit, length=None):
    header, data = split_safetensors(path)
    header, data = edit(header, data)
    path.write_bytes(join_safetensors(header, data, length))


@pytest.mark.parametrize(
    "edit,says",
    [
        (lambda h, d: ({**h, "a": {**h["a"], "shape": [3, 5]}}, d), "needs 60 bytes"),
        (lambda h, d: ({**h, "a": {**h["a"], "shape": [2**40, 2**40]}}, d), "needs"),
        (lambda h, d: ({**h, "a": {**h["a"], "dtype": "I32"}}, d), "floating point"),
        (lambda h, d: ({**h, "a": {**h["a"], "data_offsets": [0, 2**40]}}, d), "needs 48 bytes"),
        (lambda h, d: (h, d[:-4]), "ends at byte"),
        (lambda h, d: (h, d + b"\0\0"), "cover"),
        (lambda h, d: ({k: v for k, v in h.items() if k != "b"}, d), "cover|expected"),
        (lambda h, d: ({**h, "a": []}, d), "no dtype/shape/data_offsets"),
    ],
)
def test_headers_that_lie_are_refused_naming_the_tensor(saved, edit, says):
    _rewrite(saved, edit)
    with pytest.raises(InvalidAdapter, match=says) as e:
        read_header(saved)
    assert e.value.details["file"] == "w.safetensors"


@pytest.mark.parametrize("length", [0, 1, 2**63, 2**40])
def test_a_header_length_that_lies_is_refused(saved, length):
    _rewrite(saved, lambda h, d: (h, d), length=length)
    with pytest.raises(InvalidAdapter, match="not a valid safetensors file"):
        read_header(saved)


def test_too_short_a_file_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(InvalidAdapter, match="fewer than the 8-byte header length"):
        read_header(path)


def test_read_tensors_equals_safetensors_load_file(tmp_path):
    from safetensors.torch import load_file

    tensors = {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "f64": torch.randn(2, dtype=torch.float64),
        "empty": torch.zeros(0, 2),
        "scalar": torch.tensor(1.5),
    }
    path = tmp_path / "all.safetensors"
    save_file(tensors, str(path))
    ours, theirs = read_tensors(path), load_file(str(path))
    assert ours.keys() == theirs.keys()
    for k in theirs:
        assert ours[k].dtype == theirs[k].dtype and ours[k].shape == theirs[k].shape, k
        assert torch.equal(ours[k], theirs[k]), k


def test_read_tensors_does_not_grow_the_heap_over_repeated_loads(tmp_path):
    # safetensors' load_file keeps a few Python objects per tensor on every call (issue #369): a server
    # that reloads adapters all day grew ~3 MB a minute in the soak. 500 loads of a 24-tensor file leak
    # ~0.7 MB that way; ours must keep the traced heap flat.
    import gc
    import tracemalloc

    path = tmp_path / "many.safetensors"
    save_file({f"layer.{i}.w": torch.randn(384, 16) for i in range(24)}, str(path))
    for _ in range(20):
        read_tensors(path)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(500):
            read_tensors(path)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000, f"the heap grew {grown} bytes over 500 loads"


def test_read_tensors_refuses_a_header_that_lies(saved):
    _rewrite(saved, lambda h, d: ({**h, "a": {**h["a"], "shape": [3, 5]}}, d))
    with pytest.raises(InvalidAdapter, match="needs 60 bytes"):
        read_tensors(saved)
