"""Exported folders load in the REFERENCE libraries (`adapters` 1.3.0, PEFT) and give the service's logits.

The libraries are never imported here: reference_check.py runs in the side virtual environments that
tests/fixtures/make_golden.py documents (/tmp/venv-ah, /tmp/venv-peft). Skipped where they do not exist.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from adapterserve.training.export import served_logits
from adapterserve.training.kinds import build_adapter, export
from adapterserve.training.model import Spec

from .test_export import LABELS, TEXTS, WORDS, _batch, _perturb

HERE = Path(__file__).parent
VENVS = {
    "adapters": Path(os.environ.get("ADAPTERSERVE_VENV_AH", "/tmp/venv-ah")),
    "peft": Path(os.environ.get("ADAPTERSERVE_VENV_PEFT", "/tmp/venv-peft")),
}
CASES = [
    ("seq_bn", "classification"),
    ("double_seq_bn", "multilabel"),
    ("seq_bn", "tagging"),
    ("lora", "classification"),
    ("lora", "tagging"),
]


@pytest.mark.slow
@pytest.mark.parametrize("kind,task", CASES)
def test_reference_library_reproduces_exported_adapter(tiny_backbone, tiny_path, tmp_path, kind, task):
    lib = "peft" if kind == "lora" else "adapters"
    python = VENVS[lib] / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"no side environment with {lib} at {VENVS[lib]}")
    b = tiny_backbone
    sh = b.shape
    spec = Spec(
        kind=kind,
        task=task,
        labels=LABELS[task],
        reduction_factor=4,
        lora_r=4,
        lora_alpha=8,
        lora_targets=["query", "value", "intermediate.dense"],
    )
    adapter = build_adapter(spec, sh.hidden_size, sh.num_layers, sh.linear_shapes, sh.has_pooler, seed=5)
    _perturb(adapter, 6)
    folder = tmp_path / "adapter"
    export(folder, adapter, spec, "ref", tiny_path, "")
    batch = _batch(b, task)
    ours = served_logits(b, adapter, batch)
    req = {
        "folder": str(folder),
        "backbone": tiny_path,
        "task": task,
        "num_labels": len(LABELS[task]),
        "texts": TEXTS,
        "words": WORDS,
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
        mine = ours[i, : ref.shape[0]] if task == "tagging" else ours[i]
        assert torch.allclose(mine, ref, atol=1e-5), (i, (mine - ref).abs().max())
