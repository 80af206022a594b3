"""Writing trained adapters in the layouts the reference libraries save, then proving the service loads them.

- seq_bn / double_seq_bn: AdapterHub `adapters` 1.3.0 `save_adapter(dir, name, with_head=True,
  use_safetensors=True)`: adapter_config.json, adapter.safetensors, head_config.json, model_head.safetensors.
- lora: PEFT `save_pretrained`: adapter_config.json, adapter_model.safetensors (LoRA A/B + the classifier);
  label names and the task go into adapterserve.json, since PEFT saves neither.
Every export is reloaded with `adapterserve.formats.load_adapter` and its logits compared with the training model's.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from .. import tasks
from ..adapters.model import Adapter
from ..engine.runner import run_rows
from ..engine.tokenize import Encoded
from ..formats import load_adapter
from ..formats.sidecar import SIDECAR
from .model import BOTTLENECK_PRESETS, Spec, lora_sites

AH_VERSION = "adapters.1.3.0"
MODEL_CLASS = "BertAdapterModel"
# Every key of adapters' BnConfig, with the values both presets share (as adapters 1.3.0 writes them).
BN_CONFIG_BASE = {
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
    "original_ln_after": True,
    "phm_bias": True,
    "phm_c_init": "normal",
    "phm_dim": 4,
    "phm_init_range": 0.0001,
    "phm_layer": False,
    "phm_rank": 1,
    "residual_before_ln": True,
    "scaling": 1.0,
    "shared_W_phm": False,
    "shared_phm_rule": True,
    "stochastic_depth": 0.0,
    "use_gating": False,
}
# PEFT 0.21 LoraConfig keys (those without meaning for plain LoRA are written with PEFT's defaults)
PEFT_CONFIG_BASE = {
    "alora_invocation_tokens": None,
    "alpha_pattern": {},
    "arrow_config": None,
    "auto_mapping": None,
    "bias": "none",
    "corda_config": None,
    "ensure_weight_tying": False,
    "eva_config": None,
    "exclude_modules": None,
    "fan_in_fan_out": False,
    "inference_mode": True,
    "init_lora_weights": True,
    "layer_replication": None,
    "layers_pattern": None,
    "layers_to_transform": None,
    "loftq_config": {},
    "lora_bias": False,
    "lora_dropout": 0.0,
    "megatron_config": None,
    "megatron_core": "megatron.core",
    "modules_to_save": ["classifier", "score"],
    "peft_type": "LORA",
    "qalora_group_size": 16,
    "rank_pattern": {},
    "revision": None,
    "target_parameters": None,
    "trainable_token_indices": None,
    "use_dora": False,
    "use_qalora": False,
    "use_rslora": False,
}


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file(tensors, str(path), metadata={"format": "pt"})
    os.chmod(path, 0o644)  # safetensors creates files 0600: a non-root server (container) could not read them


def _dump(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _t(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float().cpu().contiguous().clone()


def _saved_by(backbone_name: str, hidden: int, name: str) -> dict:
    return {
        "hidden_size": hidden,
        "model_class": MODEL_CLASS,
        "model_name": backbone_name,
        "model_type": "bert",
        "name": name,
        "version": AH_VERSION,
    }


def write_adapterhub(folder: Path, adapter: Adapter, spec: Spec, name: str, backbone_name: str) -> None:
    mh, out, cfg = BOTTLENECK_PRESETS[spec.kind]
    H = adapter.hidden_size
    config = {
        **BN_CONFIG_BASE,
        "mh_adapter": mh,
        "output_adapter": out,
        "non_linearity": cfg.non_linearity,
        "original_ln_before": cfg.original_ln_before,
        "reduction_factor": spec.reduction_factor,
    }
    _dump(folder / "adapter_config.json", {"config": config, **_saved_by(backbone_name, H, name)})
    tensors = {}
    for (layer, site), s in sorted(adapter.bottleneck.items()):
        where = "attention.output" if site == "mh" else "output"
        p = f"bert.encoder.layer.{layer}.{where}.adapters.{name}."
        tensors.update(
            {
                p + "adapter_down.0.weight": _t(s.down_weight),
                p + "adapter_down.0.bias": _t(s.down_bias),
                p + "adapter_up.weight": _t(s.up_weight),
                p + "adapter_up.bias": _t(s.up_bias),
            }
        )
    _save(tensors, folder / "adapter.safetensors")
    write_flex_head(folder, adapter, spec, name, backbone_name)


def write_flex_head(folder: Path, adapter: Adapter, spec: Spec, name: str, backbone_name: str) -> None:
    head = adapter.head
    hc = {
        "activation_function": head.activation,
        "dropout_prob": spec.dropout,
        "head_type": tasks.get(head.task).adapterhub_head_type,
        "label2id": {label: i for i, label in enumerate(head.labels)},
        "layers": len(head.layers),
        "num_labels": len(head.labels),
    }
    if not tasks.get(head.task).per_token:
        hc.update(bias=True, use_pooler=head.pooling == "pooler")
    _dump(folder / "head_config.json", {"config": hc, **_saved_by(backbone_name, adapter.hidden_size, name)})
    tensors, idx = {}, 0
    for i, (w, b) in enumerate(head.layers):  # Sequential: Dropout, Linear[, act, Dropout, Linear ...]
        idx += 1
        tensors[f"heads.{name}.{idx}.weight"], tensors[f"heads.{name}.{idx}.bias"] = _t(w), _t(b)
        idx += 2 if i < len(head.layers) - 1 else 1
    _save(tensors, folder / "model_head.safetensors")


def peft_target_modules(targets: list[str]):
    """Short names where PEFT's suffix rule hits exactly the intended modules, else an exact regex."""
    sites = lora_sites(targets)
    short = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value"}
    if all(s in short for s in sites):
        return [short[s] for s in sites]
    return r".*encoder\.layer\.\d+\.(" + "|".join(re.escape(s) for s in sites) + ")"


def write_peft(folder: Path, adapter: Adapter, spec: Spec, name: str, backbone_name: str) -> None:
    """PEFT names no adapter in its files: `name` is unused."""
    config = {
        **PEFT_CONFIG_BASE,
        "base_model_name_or_path": backbone_name,
        "r": spec.lora_r,
        "lora_alpha": spec.lora_alpha,
        "target_modules": peft_target_modules(spec.lora_targets),
        "task_type": tasks.get(spec.task).peft_task_type,
    }
    if tasks.get(spec.task).peft_head_module != "classifier":
        config["modules_to_save"] = [tasks.get(spec.task).peft_head_module]  # PEFT's default for the task type
    _dump(folder / "adapter_config.json", config)
    tensors = {}
    for (layer, site), s in sorted(adapter.lora.items()):
        p = f"base_model.model.bert.encoder.layer.{layer}.{site}."
        tensors[p + "lora_A.weight"], tensors[p + "lora_B.weight"] = _t(s.a), _t(s.b)
    ((w, b),) = adapter.head.layers
    head = tasks.get(spec.task).peft_head_module
    tensors[f"base_model.model.{head}.weight"], tensors[f"base_model.model.{head}.bias"] = _t(w), _t(b)
    _save(tensors, folder / "adapter_model.safetensors")


def write_sidecar(folder: Path, adapter: Adapter, description: str) -> None:
    _dump(folder / SIDECAR, {"labels": list(adapter.labels), "task": adapter.task, "description": description})


def served_logits(backbone, adapter: Adapter, batch: dict) -> torch.Tensor:
    """The serving path (engine.runner.run_rows) on a right-padded batch: [B, L], or [B, T, L] for tagging
    (zeros past each row's length)."""
    lengths = batch["attention_mask"].sum(-1).tolist()
    types = batch.get("token_type_ids")
    rows = [
        Encoded(batch["input_ids"][i, :n].tolist(), None if types is None else types[i, :n].tolist())
        for i, n in enumerate(lengths)
    ]
    tagging = tasks.get(adapter.task).per_token
    out, _ = run_rows(backbone, rows, [adapter] * len(rows), [tagging] * len(rows))
    if not tagging:
        return torch.stack(out)
    padded = torch.zeros(len(rows), batch["input_ids"].shape[1], out[0].shape[-1])
    for i, (n, logits) in enumerate(zip(lengths, out)):
        padded[i, :n] = logits
    return padded


def self_check(folder: Path, backbone, trained: Adapter, batch: dict, tol: float = 1e-5) -> float:
    """Reload the folder as the service does and compare its logits with the trained adapter's (eval mode)."""
    loaded = load_adapter(folder, backbone.shape).to(backbone.device)
    if loaded.labels != trained.labels or loaded.task != trained.task:
        raise RuntimeError(
            f"exported adapter reloads with labels {loaded.labels} / task {loaded.task}, expected "
            f"{trained.labels} / {trained.task}"
        )
    expected, got = served_logits(backbone, trained, batch), served_logits(backbone, loaded, batch)
    mask = batch["attention_mask"].bool() if expected.dim() == 3 else torch.ones(expected.shape[0], dtype=torch.bool)
    diff = float((expected - got).cpu()[mask].abs().max())
    if not diff <= tol:
        raise RuntimeError(f"exported adapter in {folder} does not reproduce the training logits: max |diff| {diff:g}")
    return diff
