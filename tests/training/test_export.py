"""Every adapter kind x task: the exported folder loads with the service's loader and reproduces the training logits."""

from __future__ import annotations

import json

import pytest
import torch

from adapterserve.formats import load_adapter
from adapterserve.training import kinds
from adapterserve.training.data import Example
from adapterserve.training.export import self_check
from adapterserve.training.features import collate, encode
from adapterserve.training.kinds import build_adapter, export
from adapterserve.training.model import Spec, TrainModel

TEXTS = ["good great love", "bad awful and a much longer sentence here", "table", "I hate this, it is terrible"]
WORDS = [t.split() for t in TEXTS]
LABELS = {
    "classification": ["negative", "neutral", "positive"],
    "multilabel": ["a", "b", "c", "d"],
    "tagging": ["B-LOC", "B-PER", "I-PER", "O"],
}
KINDS = ["seq_bn", "double_seq_bn", "lora", "ia3", "prefix"]
TASK_NAMES = ["classification", "multilabel", "tagging"]


def _batch(backbone, task):
    labels = LABELS[task]
    if task == "tagging":
        ex = [Example(tokens=w, tags=[labels[i % len(labels)] for i in range(len(w))]) for w in WORDS]
    elif task == "multilabel":
        ex = [Example(text=t, labels=[labels[i]]) for i, t in enumerate(TEXTS)]
    else:
        ex = [Example(text=t, label=labels[i % 3]) for i, t in enumerate(TEXTS)]
    return collate(encode(ex, backbone.tokenizer, task, labels, 64), backbone.tokenizer.pad_token_id, task)


def _perturb(adapter, seed):
    """Random values in EVERY tensor (LoRA B and adapter_up start near zero: an export slip would hide)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in adapter.tensors():
            t.add_(torch.randn(t.shape, generator=gen) * 0.3)


@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_export_reloads_and_reproduces_training_logits(tiny_backbone, tmp_path, kind, task):
    b = tiny_backbone
    sh = b.shape
    spec = Spec(
        kind=kind,
        task=task,
        labels=LABELS[task],
        reduction_factor=4,
        lora_r=4,
        lora_alpha=8,
        lora_targets=["query", "value", "intermediate.dense"] if task == "tagging" else ["query", "value"],
    )
    adapter = build_adapter(spec, sh.hidden_size, sh.num_layers, sh.linear_shapes, sh.has_pooler, seed=1)
    assert all(t.requires_grad and t.is_leaf for t in adapter.tensors())
    _perturb(adapter, 2)
    model = TrainModel(b, adapter, kinds.get(kind), dropout=0.1)
    batch = _batch(b, task)
    # one optimizer step: gradients reach the adapter through the frozen backbone, and the backbone is untouched
    before = [p.clone() for p in b.model.parameters()]
    logits = model.logits(batch, train=True)
    loss = logits.float().pow(2).mean()
    loss.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in adapter.tensors())
    torch.optim.SGD(model.params, lr=0.1).step()
    assert all(torch.equal(p, q) and not p.requires_grad for p, q in zip(b.model.parameters(), before))

    folder = tmp_path / "out"
    export(folder, adapter, spec, "my_adapter", "backbones/tiny-bert", "test")
    loaded = load_adapter(folder, sh)
    assert loaded.labels == LABELS[task] and loaded.task == task
    assert loaded.format == ("peft" if kind == "lora" else "adapterhub")
    assert loaded.num_parameters == sum(t.numel() for t in adapter.tensors())
    with torch.no_grad():
        expected = model.logits(batch, train=False)
        from adapterserve.training.export import served_logits

        got = served_logits(b, loaded, batch)
    mask = batch["attention_mask"].bool() if task == "tagging" else slice(None)
    assert (expected - got)[mask].abs().max() <= 1e-5
    assert self_check(folder, b, adapter, batch) <= 1e-5
    torch.manual_seed(0)  # dropout on the head input is the only training-only difference
    assert not torch.allclose(model.logits(batch, train=True), expected)


def test_adapterhub_files_follow_the_library_layout(tiny_backbone, tmp_path):
    sh = tiny_backbone.shape
    spec = Spec(kind="double_seq_bn", task="classification", labels=LABELS["classification"], reduction_factor=4)
    adapter = build_adapter(spec, sh.hidden_size, sh.num_layers, sh.linear_shapes, sh.has_pooler, seed=1)
    export(tmp_path, adapter, spec, "senti", "backbones/tiny-bert", "")
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["version"] == "adapters.1.3.0" and cfg["model_class"] == "BertAdapterModel"
    assert cfg["config"]["mh_adapter"] is True and cfg["config"]["non_linearity"] == "swish"
    assert cfg["config"]["reduction_factor"] == 4 and "architecture" not in cfg["config"]
    head = json.loads((tmp_path / "head_config.json").read_text())["config"]
    assert head["layers"] == 2 and head["label2id"] == {"negative": 0, "neutral": 1, "positive": 2}
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model_head.safetensors"), "pt") as f:
        assert sorted(f.keys()) == [
            "heads.senti.1.bias",
            "heads.senti.1.weight",
            "heads.senti.4.bias",
            "heads.senti.4.weight",
        ]
    with safe_open(str(tmp_path / "adapter.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "bert.encoder.layer.1.attention.output.adapters.senti.adapter_down.0.weight" in keys
    assert "bert.encoder.layer.0.output.adapters.senti.adapter_up.bias" in keys and len(keys) == 2 * 2 * 4
    assert all(
        (tmp_path / f).stat().st_mode & 0o044 == 0o044 for f in ("adapter.safetensors", "model_head.safetensors")
    )


def test_peft_files_follow_the_library_layout(tiny_backbone, tmp_path):
    sh = tiny_backbone.shape
    spec = Spec(kind="lora", task="multilabel", labels=LABELS["multilabel"], lora_targets=["value", "output.dense"])
    adapter = build_adapter(spec, sh.hidden_size, sh.num_layers, sh.linear_shapes, sh.has_pooler, seed=1)
    assert all(float(lo.b.detach().abs().max()) == 0 for lo in adapter.lora.values())  # PEFT init: B = 0
    export(tmp_path, adapter, spec, "x", "backbones/tiny-bert", "")
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["task_type"] == "SEQ_CLS" and cfg["r"] == 8
    assert cfg["lora_alpha"] == 16 and cfg["modules_to_save"] == ["classifier", "score"]
    # "output.dense" also names attention.output.dense under PEFT's suffix rule -> an exact regex is written
    assert isinstance(cfg["target_modules"], str) and "attention\\.self\\.value" in cfg["target_modules"]
    side = json.loads((tmp_path / "adapterserve.json").read_text())
    assert side["task"] == "multilabel" and side["labels"] == LABELS["multilabel"]
    loaded = load_adapter(tmp_path, sh)
    assert sorted({site for _, site in loaded.lora}) == [
        "attention.output.dense",
        "attention.self.value",
        "output.dense",
    ]
