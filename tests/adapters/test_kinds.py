"""The adapter-kind registry (adapters/kinds.py): every loaded adapter names a registered kind, each kind
enumerates and moves all of its tensors, and a batch calls only the hooks of kinds some row uses."""

import dataclasses

import pytest
import torch

from adapterserve.adapters import kinds
from adapterserve.adapters.batch import AdapterBatch, Segment
from adapterserve.adapters.model import Adapter, Head
from adapterserve.engine.runner import run_rows
from adapterserve.engine.runtime import make_runtime
from adapterserve.engine.tokenize import tokenize
from adapterserve.formats import load_adapter
from adapterserve.registry import Registry

from ..conftest import GOLDEN, backbone_for

ONE_PER_KIND = {
    "bottleneck": "ah_ln_before_after",  # adapter LayerNorms and a learned scaling tensor are tensors too
    "lora": "peft_lora_bias_all",  # LoRA sites and replaced biases
    "ia3": "peft_ia3",
    "prefix": "peft_prefix",
    "prompt": "peft_prompt_text",
}


def test_builtin_kinds_register_in_hook_order_and_refuse_duplicates():
    assert kinds.names() == ["bottleneck", "lora", "ia3", "prefix", "prompt"]
    with pytest.raises(ValueError, match="already registered"):
        kinds.register(kinds.get("lora"))
    with pytest.raises(KeyError, match="unknown adapter kind 'nope'"):
        kinds.get("nope")


def test_an_adapter_must_name_a_registered_kind():
    head = Head("classification", "cls", [(torch.zeros(2, 8), None)], None, ["a", "b"])
    with pytest.raises(KeyError, match="unknown adapter kind"):
        Adapter("adapter_fusion", head, 8)


@pytest.mark.parametrize("kind,case", ONE_PER_KIND.items())
def test_each_kind_enumerates_and_moves_every_tensor(kind, case):
    adapter = load_adapter(GOLDEN / case / "adapter", backbone_for("tiny-bert").shape)
    assert adapter.kind == kind and kinds.get(kind).present(adapter)
    own = list(kinds.get(kind).tensors(adapter))
    assert own and all(isinstance(t, torch.Tensor) for t in own)
    moved = adapter.to("cpu", torch.float64)
    # every tensor reachable from the adapter's attributes is enumerated, and moved: nothing left float32
    assert all(t.dtype == torch.float64 for t in moved.tensors())
    assert moved.num_parameters == adapter.num_parameters
    assert (moved.virtual_tokens, moved.position_shift) == (adapter.virtual_tokens, adapter.position_shift)
    for attr in kinds.get(kind).weights:
        assert type(getattr(moved, attr)) is type(getattr(adapter, attr))
    assert [k.name for k in kinds.all_kinds() if k.present(moved)] == [kind]


def test_a_batch_calls_only_the_hooks_of_kinds_its_rows_use(monkeypatch):
    bb = backbone_for("tiny-bert")
    # the hooks are the torch runtime's: a test that built a server state on the shared backbone left onnx there
    monkeypatch.setattr(bb, "runtime", make_runtime("torch", bb))
    lora = load_adapter(GOLDEN / "peft_lora_list" / "adapter", bb.shape)
    called: dict[str, int] = {}

    def spy(kind: kinds.Kind) -> kinds.Kind:
        def wrap(hook, fn):
            def inner(*a, **k):
                called[f"{kind.name}.{hook}"] = called.get(f"{kind.name}.{hook}", 0) + 1
                return fn(*a, **k)

            return inner

        hooks = ("linear_input", "linear_output", "norm_bias", "sublayer", "prefix", "word_embeddings")
        return dataclasses.replace(kind, **{h: wrap(h, getattr(kind, h)) for h in hooks if getattr(kind, h)})

    spied = Registry("adapter kind")
    for k in kinds.REGISTRY.values():
        spied.register(spy(k))
    monkeypatch.setattr(kinds, "REGISTRY", spied)
    monkeypatch.setattr(kinds, "get", spied.get)
    monkeypatch.setattr(kinds, "_HOOKS", {})
    batch = AdapterBatch([Segment(0, 1, lora), Segment(1, 2, None)])
    assert set(batch.sites) == {"lora"} and not (batch.has_ia3 or batch.has_prefixes or batch.has_prompts)
    rows = tokenize(bb.tokenizer, ["one text", "another"], None, 128, True)
    run_rows(bb, rows, [lora, None], [False, False])
    assert called and all(name.startswith("lora.") for name in called)
    assert called["lora.linear_output"] >= bb.shape.num_layers * 6  # every linear site of every layer
