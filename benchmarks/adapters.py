"""Random seq_bn adapters in the AdapterHub `adapters` 1.3.0 layout (as tests/fixtures/golden/ah_seq_bn).

Files: adapter_config.json, adapter.safetensors (bert.encoder.layer.L.output.adapters.NAME.adapter_down.0.*,
adapter_up.*), head_config.json, model_head.safetensors (heads.NAME.1.* [, heads.NAME.4.*]). Weights are random
and non-zero, so every adapter really runs its bottleneck and its own head. They are published into a
LocalStore exactly as an upload would be (versions/<id>/, current).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

LABELS = ["negative", "neutral", "positive"]
BN_CONFIG = {
    "adapter_residual_before_ln": False,
    "cross_adapter": False,
    "dropout": 0.0,
    "factorized_phm_W": True,
    "factorized_phm_rule": False,
    "hypercomplex_nonlinearity": "glorot-uniform",
    "init_weights": "bert",
    "init_weights_seed": None,
    "inv_adapter": None,
    "inv_adapter_reduction_factor": None,
    "is_parallel": False,
    "learn_phm": True,
    "leave_out": [],
    "ln_after": False,
    "ln_before": False,
    "mh_adapter": False,
    "non_linearity": "relu",
    "original_ln_after": True,
    "original_ln_before": True,
    "output_adapter": True,
    "phm_bias": True,
    "phm_c_init": "normal",
    "phm_dim": 4,
    "phm_init_range": 0.0001,
    "phm_layer": False,
    "phm_rank": 1,
    "reduction_factor": 16,
    "residual_before_ln": True,
    "scaling": 1.0,
    "shared_W_phm": False,
    "shared_phm_rule": True,
    "stochastic_depth": 0.0,
    "use_gating": False,
}


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
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    H, r = spec.hidden, spec.width

    def rand(*shape, std=0.05):
        return (torch.randn(*shape, generator=g) * std).contiguous()

    meta = {
        "hidden_size": H,
        "model_class": "BertAdapterModel",
        "model_name": backbone_name,
        "model_type": "bert",
        "name": name,
        "version": "adapters.1.3.0",
    }
    config = dict(BN_CONFIG, reduction_factor=spec.reduction_factor)
    (folder / "adapter_config.json").write_text(json.dumps({"config": config, **meta}, indent=2, sort_keys=True))
    tensors = {}
    for layer in range(spec.layers):
        p = f"bert.encoder.layer.{layer}.output.adapters.{name}."
        tensors[p + "adapter_down.0.weight"] = rand(r, H)
        tensors[p + "adapter_down.0.bias"] = rand(r)
        tensors[p + "adapter_up.weight"] = rand(H, r)
        tensors[p + "adapter_up.bias"] = rand(H)
    save_file(tensors, str(folder / "adapter.safetensors"), metadata={"format": "pt"})
    head_cfg = {
        "activation_function": "tanh",
        "bias": True,
        "dropout_prob": None,
        "head_type": "classification",
        "label2id": {lab: i for i, lab in enumerate(LABELS[: spec.num_labels])},
        "layers": spec.head_layers,
        "num_labels": spec.num_labels,
        "use_pooler": False,
    }
    (folder / "head_config.json").write_text(json.dumps({"config": head_cfg, **meta}, indent=2, sort_keys=True))
    head, idx = {}, 0
    for i in range(spec.head_layers):
        idx += 1  # dropout
        out = spec.num_labels if i == spec.head_layers - 1 else H
        head[f"heads.{name}.{idx}.weight"] = rand(out, H, std=0.2)
        head[f"heads.{name}.{idx}.bias"] = rand(out, std=0.2)
        idx += 2 if i < spec.head_layers - 1 else 1  # the activation after every layer but the last
    save_file(head, str(folder / "model_head.safetensors"), metadata={"format": "pt"})


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
