"""Exact parity with the reference libraries: golden logits made by `adapters` 1.3.0 and PEFT.

Every case in tests/fixtures/golden was produced by tests/fixtures/make_golden.py from the real library;
our own implementation must reproduce its logits within 1e-4 (float32, CPU), for texts of different
lengths in one padded batch and for each text alone.
"""

from __future__ import annotations

import copy
from functools import cache

import pytest
import torch

from adapterserve.adapters.batch import AdapterBatch
from adapterserve.engine.onnx_graph import in_graph, variant
from adapterserve.engine.runner import pad, run_rows
from adapterserve.engine.runtime import RUNTIMES as RUNTIMES_BY_NAME
from adapterserve.engine.tokenize import Encoded
from adapterserve.errors import UnsupportedAdapter
from adapterserve.formats import load_adapter

from ..conftest import backbone_for, golden, golden_cases

TOL = 1e-4


def _params(case):
    _, exp = golden(case)
    marks = [pytest.mark.minilm] if exp.get("backbone") == "minilm" else []
    return pytest.param(case, marks=marks, id=case)


QA = {c for c in golden_cases() if golden(c)[1].get("task") == "qa"}  # windows and answers: tests/formats/test_qa.py
CASES = [
    c
    for c in golden_cases()
    if not golden(c)[1].get("expect_refusal") and not golden(c)[1].get("no_head") and c not in QA
]
HEADLESS = [c for c in golden_cases() if golden(c)[1].get("no_head")]
REFUSALS = [c for c in golden_cases() if golden(c)[1].get("expect_refusal")]


RUNTIMES = ["torch", "onnx"]


@cache
def backbone_on(backbone_name: str, runtime: str):
    """The golden backbone served by `runtime` (a shallow copy: the shared backbone keeps torch; the onnx
    export is cached on disk)."""
    backbone = copy.copy(backbone_for(backbone_name))
    backbone.runtime = RUNTIMES_BY_NAME[runtime](backbone)
    assert backbone.runtime.name == runtime
    return backbone


def _logits(backbone, adapter, rows: list[Encoded], tagging: bool, row_adapters=None) -> list[torch.Tensor]:
    row_adapters = row_adapters or [adapter] * len(rows)
    out, _ = run_rows(backbone, rows, row_adapters, [tagging] * len(rows))
    return out


def test_golden_fixtures_exist():
    assert len(CASES) >= 20, CASES
    assert any(c.startswith("peft_") for c in CASES) and any(c.startswith("ah_") for c in CASES)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("case", [_params(c) for c in CASES])
def test_logits_match_reference(case, runtime):
    folder, exp = golden(case)
    backbone = backbone_on(exp["backbone"], runtime)
    rt = backbone.runtime
    adapter = load_adapter(folder, backbone.shape)
    assert adapter.task == exp["task"]
    if exp.get("labels"):
        assert adapter.labels == exp["labels"]
    types = exp.get("token_type_ids") or [None] * len(exp["input_ids"])
    rows = [Encoded(ids, tt) for ids, tt in zip(exp["input_ids"], types)]
    tagging = exp["task"] == "tagging"

    graph_before = getattr(rt, "graph_batches", 0)
    by_graph_before = dict(getattr(rt, "by_graph", {}))
    batched = _logits(backbone, adapter, rows, tagging)
    for i, (got, want) in enumerate(zip(batched, exp["logits_batched"])):
        want = torch.tensor(want)
        assert got.shape == want.shape, (i, got.shape, want.shape)
        assert torch.allclose(got, want, atol=TOL, rtol=0), (i, (got - want).abs().max().item())
    if runtime == "onnx":
        # The graph ran every adapter it can express (the rest runs on torch, by design), and rows without an
        # adapter in the same batch leave the adapter rows' logits unchanged.
        plan = AdapterBatch.from_row_adapters([adapter])
        assert (rt.graph_batches > graph_before) == in_graph(plan)
        if in_graph(plan):  # on the smallest graph variant that has the adapter's sites
            grew = {v for v, n in rt.by_graph.items() if n > by_graph_before[v]}
            assert grew == {variant(plan)}, (grew, variant(plan))
            lora = {site for i, site in adapter.lora if i >= 0}
            bn = {site for _, site in adapter.bottleneck}
            if lora and (bn or not lora <= {"attention.self.query", "attention.self.value"}):
                want = "delta1"
            elif lora:
                want = "lqv1"  # PEFT's default targets
            else:
                want = "bno1" if bn <= {"output"} else "bn1"
            assert variant(plan) == want
        mixed = _logits(backbone, adapter, rows + rows, tagging, [adapter] * len(rows) + [None] * len(rows))
        for i, want in enumerate(exp["logits_batched"]):
            assert torch.allclose(mixed[i], torch.tensor(want), atol=TOL, rtol=0)
    for i, row in enumerate(rows):
        (got,) = _logits(backbone, adapter, [row], tagging)
        want = torch.tensor(exp["logits_single"][i])
        assert torch.allclose(got, want, atol=TOL, rtol=0), (i, (got - want).abs().max().item())


def test_one_graph_batch_mixes_bottleneck_forms_activations_and_lora():
    """Rows of a seq_bn (relu, LN before), a double_seq_bn (swish, no LN before), a gelu bottleneck and a LoRA
    adapter in one onnx batch: each row's logits are its reference library's, from one graph call (the "delta"
    variant: bn.pre and bn.act select each row's form). Rows without an adapter: test_logits_match_reference."""
    cases = ["ah_seq_bn", "ah_double_seq_bn", "ah_act_gelu", "peft_lora_all_dense"]
    backbone = backbone_on("tiny-bert", "onnx")
    rt = backbone.runtime
    rows, row_adapters, wants = [], [], []
    for case in cases:
        folder, exp = golden(case)
        adapter = load_adapter(folder, backbone.shape)
        for ids, want in zip(exp["input_ids"], exp["logits_batched"]):
            rows.append(Encoded(ids, None))
            row_adapters.append(adapter)
            wants.append(torch.tensor(want))
    plan = AdapterBatch.from_row_adapters(row_adapters)
    assert in_graph(plan) and variant(plan) == "delta"
    before = rt.by_graph["delta"]
    out, _ = run_rows(backbone, rows, row_adapters, [False] * len(rows))
    assert rt.by_graph["delta"] == before + 1
    for i, (got, want) in enumerate(zip(out, wants)):
        assert torch.allclose(got, want, atol=TOL, rtol=0), (i, (got - want).abs().max().item())


@pytest.mark.parametrize("case", REFUSALS)
def test_variants_are_refused_with_a_clear_message(case):
    folder, exp = golden(case)
    with pytest.raises(UnsupportedAdapter) as e:
        load_adapter(folder, backbone_for(exp["backbone"]).shape)
    assert e.value.details.get("key") or "not" in e.value.message


@pytest.mark.parametrize("case", HEADLESS)
def test_headless_adapter_is_refused_but_its_hidden_states_match(case):
    """A folder saved without a head cannot answer /classify; its bottleneck math must still be exact."""
    from adapterserve.adapters.model import Adapter, Head
    from adapterserve.errors import InvalidAdapter
    from adapterserve.formats import adapterhub
    from adapterserve.formats.weights import load_tensors, read_json

    folder, exp = golden(case)
    backbone = backbone_for(exp["backbone"])
    with pytest.raises(InvalidAdapter, match="no prediction head"):
        load_adapter(folder, backbone.shape)
    settings = adapterhub.read_adapter_config(read_json(folder / "adapter_config.json"))
    bc = settings.forward
    shape = backbone.shape
    sites = adapterhub._sites(
        load_tensors(folder / "adapter.safetensors"), settings, shape.hidden_size, shape.num_layers
    )
    dummy = Head("classification", "cls", [(torch.zeros(1, shape.hidden_size), None)], None, ["x"])
    adapter = Adapter("bottleneck", dummy, shape.hidden_size, bc, sites)
    rows = [Encoded(ids, None) for ids in exp["input_ids"]]
    ids, mask, types = pad(rows, 0, backbone.device)
    with torch.inference_mode():
        hidden, _ = backbone.encode(ids, mask, types, adapters=AdapterBatch.from_row_adapters([adapter] * len(rows)))
    for i, row in enumerate(rows):
        want = torch.tensor(exp["hidden_batched"][i])
        assert torch.allclose(hidden[i, : len(row)], want, atol=TOL, rtol=0)
