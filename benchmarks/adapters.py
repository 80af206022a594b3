"""Random seq_bn adapters in the AdapterHub `adapters` 1.3.0 layout (as tests/fixtures/golden/ah_seq_bn).

The folders are written by the exporter `adapterserve train` uses (adapterserve.training.export.write_adapterhub,
whose output tests/training/test_reference_libraries.py loads in the real library). Weights are random and
non-zero, so every adapter really runs its bottleneck and its own head. They are published into a LocalStore
exactly as an upload would be (versions/<id>/, current).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from adapterserve.training.export import write_adapterhub
from adapterserve.training.kinds import build_adapter
from adapterserve.training.model import Spec

LABELS = ["negative", "neutral", "positive"]


@dataclass(frozen=True)
class AdapterSpec:
    hidden: int
    layers: int
    reduction_factor: float = 16
    head_layers: int = 1
    num_labels: int = 3

    @property
    def width(self) -> int:
        return max(1, int(self.hidden // self.reduction_factor))

    @property
    def parameters(self) -> int:
        H, r = self.hidden, self.width
        bn = self.layers * (2 * H * r + r + H)
        head = (self.head_layers - 1) * (H * H + H) + H * self.num_labels + self.num_labels
        return bn + head

    @property
    def nbytes(self) -> int:
        return 4 * self.parameters


def write_adapter(folder: Path, name: str, spec: AdapterSpec, seed: int, backbone_name: str = "bench") -> None:
    """One adapter folder with random non-zero float32 weights."""
    train_spec = Spec(
        kind="seq_bn",
        task="classification",
        labels=LABELS[: spec.num_labels],
        reduction_factor=spec.reduction_factor,
        head_layers=spec.head_layers,
    )
    adapter = build_adapter(train_spec, spec.hidden, spec.layers, {}, has_pooler=False, seed=seed)
    g = torch.Generator().manual_seed(seed)
    head = {id(t) for layer in adapter.head.layers for t in layer}
    with torch.no_grad():  # build_adapter starts biases at zero: draw every tensor
        for t in adapter.tensors():
            t.copy_(torch.randn(t.shape, generator=g) * (0.2 if id(t) in head else 0.05))
    folder.mkdir(parents=True, exist_ok=True)
    write_adapterhub(folder, adapter, train_spec, name, backbone_name)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build_store(
    root: Path, names: list[str], spec: AdapterSpec, seed: int = 0, extra: dict[str, AdapterSpec] | None = None
) -> dict[str, int]:
    """Publish random adapters into a LocalStore at root; returns name -> bytes on disk."""
    from adapterserve.store.local import LocalStore

    store = LocalStore(str(root), keep_versions=1)
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="bench-adapter-") as tmp:
        items = [(n, spec) for n in names] + list((extra or {}).items())
        for i, (name, s) in enumerate(items):
            folder = Path(tmp) / name
            write_adapter(folder, name, s, seed=seed * 100_003 + i)
            info = store.publish(name, folder)
            sizes[name] = info.size
            shutil.rmtree(folder)
    return sizes


def adapter_names(n: int) -> list[str]:
    return [f"a{i:03d}" for i in range(n)]
