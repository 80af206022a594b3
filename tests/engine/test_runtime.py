"""The runtime registry: choice, fallback, int8's refusals, the export cache key. (Parity of the onnx runtime
with torch is in tests/formats/test_parity.py, on every golden case.)"""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from adapterserve.adapters.batch import AdapterBatch
from adapterserve.engine import runtime as rt
from adapterserve.engine.backbone import resolve_dtype
from adapterserve.engine.onnx_runtime import backbone_key
from adapterserve.engine.runner import pad
from adapterserve.engine.tokenize import tokenize

from ..conftest import TINY


def test_auto_is_torch_and_unknown_names_are_refused(tiny_backbone):
    assert rt.make_runtime("auto", tiny_backbone).name == "torch"
    with pytest.raises(RuntimeError, match="unknown runtime 'tvm'"):
        rt.make_runtime("tvm", tiny_backbone)


def test_a_runtime_that_cannot_load_falls_back_to_torch_with_a_log_line(tiny_backbone, monkeypatch, caplog):
    def broken(backbone, threads=1, int8=False, cache=""):
        raise ImportError("no module named onnxruntime")

    monkeypatch.setitem(rt.RUNTIMES, "onnx", broken)
    with caplog.at_level(logging.WARNING, logger="adapterserve.engine.runtime"):
        chosen = rt.make_runtime("onnx", tiny_backbone)
    assert chosen.name == "torch"
    assert "runtime onnx cannot load (no module named onnxruntime); falling back to the PyTorch runtime" in caplog.text


def test_int8_never_falls_back(tiny_backbone, monkeypatch):
    def broken(backbone, threads=1, int8=False, cache=""):
        raise RuntimeError("ADAPTERSERVE_DTYPE=int8 cannot run here: this CPU has no AVX2")

    monkeypatch.setitem(rt.RUNTIMES, "onnx", broken)
    with pytest.raises(RuntimeError, match="no AVX2"):
        rt.make_runtime("auto", tiny_backbone, int8=True)
    with pytest.raises(RuntimeError, match="runs on the onnx runtime"):
        rt.make_runtime("torch", tiny_backbone, int8=True)
    with pytest.raises(RuntimeError, match="CPU only"):
        resolve_dtype("int8", torch.device("cuda"))
    assert resolve_dtype("int8", torch.device("cpu")) == torch.float32  # adapters and heads stay float


def test_int8_graph_runs_and_stays_close_to_fp32(tiny_backbone, tmp_path):
    int8 = rt.make_runtime("auto", tiny_backbone, int8=True, cache=str(tmp_path))
    assert int8.name == "onnx-int8" and all(p.name.endswith(".int8.onnx") for p in int8.paths.values())
    rows = tokenize(tiny_backbone.tokenizer, ["a short text", "another one, a little longer"], None, 64, True)
    ids, mask, types = pad(rows, 0, tiny_backbone.device)
    plan = AdapterBatch.from_row_adapters([None, None])
    with torch.inference_mode():
        want, _ = tiny_backbone.encode(ids, mask, types, plan)
        got, _ = int8.encode(ids, mask, types, plan)
    assert int8.graph_batches == 1
    cos = torch.nn.functional.cosine_similarity(got[mask.bool()], want[mask.bool()], dim=-1)
    assert cos.min() > 0.95, cos.min()  # a random tiny BERT; MiniLM's figures are in docs/runtimes.md


def test_export_cache_key_follows_the_backbone_files(tmp_path):
    copy = tmp_path / "bb"
    shutil.copytree(TINY, copy)
    before = backbone_key(str(copy))
    assert backbone_key(str(copy)) == before
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    assert backbone_key(str(copy)) != before
