"""Exported folders load in the REFERENCE libraries (`adapters` 1.3.0, PEFT) and give the service's logits.

The libraries are never imported here: reference_check.py runs in the side virtual environments of
tests/fixtures/ref_envs.sh (`adapters`, `peft`), which the first test builds when they are missing (pip, a few
minutes each; cached in ~/.cache/adapterserve/ref-envs or $ADAPTERSERVE_REF_ENVS; .ci/run builds them first).
Never skipped: a missing environment that cannot be built is a failure.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

import pytest
import torch

from adapterserve.training.export import served_logits
from adapterserve.training.kinds import build_adapter, export
from adapterserve.training.model import Spec

from .test_export import LABELS, TEXTS, WORDS, _batch, _perturb

HERE = Path(__file__).parent
REF_ENVS = HERE.parent / "fixtures" / "ref_envs.sh"
BUILD_TIMEOUT_S = 1500  # both environments from an empty pip cache on a slow line


@functools.cache
def ref_python(lib: str) -> Path:
    """The side environment's python, built by ref_envs.sh when missing (it waits for a build under way)."""
    proc = subprocess.run(["bash", str(REF_ENVS), lib], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, f"tests/fixtures/ref_envs.sh {lib} failed:\n{proc.stderr[-3000:]}"
    python = Path(proc.stdout.strip().splitlines()[-1])
    assert python.is_file(), python
    return python


CASES = [
    ("seq_bn", "classification"),
    ("double_seq_bn", "multilabel"),
    ("seq_bn", "tagging"),
    ("lora", "classification"),
    ("lora", "tagging"),
    ("ia3", "classification"),
    ("ia3", "tagging"),
    ("prefix", "classification"),
    ("prefix", "tagging"),
    ("seq_bn", "qa"),
    ("lora", "qa"),
]
QA_PAIRS = [  # (question, context, answer): short contexts, one window each
    ("Where is the tower?", "The tower is in Paris.", "Paris"),
    ("Who wrote it?", "It was written by Maria in a small house by the sea.", "Maria"),
]
QA_LABELS = ["start", "end"]


def _qa_batch(backbone):
    from adapterserve.tasks.base import Example
    from adapterserve.training.features import collate, encode

    ex = [Example(text=q, pair=c, label=a, answer_start=c.index(a)) for q, c, a in QA_PAIRS]
    rows = encode(ex, backbone.tokenizer, "qa", QA_LABELS, 64)
    assert len(rows) == len(QA_PAIRS)
    return collate(rows, backbone.tokenizer.pad_token_id, "qa")


@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
@pytest.mark.parametrize("kind,task", CASES)
def test_reference_library_reproduces_exported_adapter(tiny_backbone, tiny_path, tmp_path, kind, task):
    lib = "peft" if kind == "lora" else "adapters"
    python = ref_python(lib)
    b = tiny_backbone
    sh = b.shape
    spec = Spec(
        kind=kind,
        task=task,
        labels=QA_LABELS if task == "qa" else LABELS[task],
        reduction_factor=4,
        lora_r=4,
        lora_alpha=8,
        lora_targets=["query", "value", "intermediate.dense"],
    )
    adapter = build_adapter(spec, sh.hidden_size, sh.num_layers, sh.linear_shapes, sh.has_pooler, seed=5)
    _perturb(adapter, 6)
    folder = tmp_path / "adapter"
    export(folder, adapter, spec, "ref", tiny_path, "")
    batch = _qa_batch(b) if task == "qa" else _batch(b, task)
    ours = served_logits(b, adapter, batch)
    req = {
        "folder": str(folder),
        "backbone": tiny_path,
        "task": task,
        "num_labels": len(spec.labels),
        "texts": TEXTS,
        "words": WORDS,
        "pairs": [[q, c] for q, c, _ in QA_PAIRS],
    }
    (tmp_path / "req.json").write_text(json.dumps(req))
    proc = subprocess.run(
        [str(python), str(HERE / "reference_check.py"), "--lib", lib, str(tmp_path / "req.json")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])["logits"]
    for i, ref in enumerate(theirs):
        ref = torch.tensor(ref)
        mine = ours[i, : ref.shape[0]] if task in ("tagging", "qa") else ours[i]
        assert torch.allclose(mine, ref, atol=1e-5), (i, (mine - ref).abs().max())
