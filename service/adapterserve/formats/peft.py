"""PEFT LoRA folders (save_pretrained): adapter_config.json + adapter_model.safetensors | .bin.

Semantics follow PEFT's LoraLayer for nn.Linear: scaling = alpha / r (alpha / sqrt(r) with rslora),
r per module from lora_A's shape, alpha from alpha_pattern when a key matches the module name.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .. import tasks
from ..adapters.lora import lora_scaling
from ..adapters.model import GLOBAL_BIAS_SITES, LAYER_NORM_SITES, LINEAR_SITES, Adapter, Head, LoraSite
from ..errors import InvalidAdapter, UnsupportedAdapter
from .sidecar import apply_labels, read_sidecar
from .weights import first_existing, load_tensors, read_json

NAME = "peft"
WEIGHTS = ["adapter_model.safetensors", "adapter_model.bin"]
PEFT_TASK_TYPES = {"SEQ_CLS": "classification", "TOKEN_CLS": "tagging"}  # the sidecar may say multilabel
# LoRA variants whose forward differs from plain LoRA: refuse rather than serve wrong logits.
VARIANTS = [
    "use_dora",
    "lora_bias",
    "use_qalora",
    "layer_replication",
    "trainable_token_indices",
    "target_parameters",
    "alora_invocation_tokens",
]
LAYER_RE = re.compile(r"^(?:[A-Za-z_]+\.)?encoder\.layer\.(\d+)\.(.+)$")
GLOBAL_RE = re.compile(r"^(?:[A-Za-z_]+\.)?(embeddings\.LayerNorm|pooler\.dense)$")


def detect(folder: Path) -> bool:
    cfg = folder / "adapter_config.json"
    if not cfg.is_file():
        return False
    try:
        return "peft_type" in read_json(cfg)
    except InvalidAdapter:
        return False


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's get_pattern_key: a key k matches a module name by re.match(rf"(.*\\.)?({k})$", name)."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _split(key: str) -> tuple[str, str]:
    """'base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight' -> (module, param)."""
    key = key.removeprefix("base_model.model.")
    key = key.replace(".modules_to_save.default.", ".").replace(".modules_to_save.", ".")
    key = key.replace(".base_layer.", ".")
    module, _, param = key.rpartition(".")
    for suffix in (".lora_A", ".lora_B"):
        if module.endswith(suffix):
            return module[: -len(suffix)], suffix[1:] + "." + param
    return module, param


def _read_peft_head(tensors: dict[str, torch.Tensor], task: str, hidden: int, sidecar: dict) -> Head:
    if "classifier.dense.weight" in tensors:  # RoBERTa-style classification head: dense -> tanh -> out_proj
        names, pooling, act = ["classifier.dense", "classifier.out_proj"], "cls", "tanh"
    elif "classifier.weight" in tensors:
        names, act = ["classifier"], None
        pooling = "tokens" if tasks.get(task).per_token else "pooler"
    elif "score.weight" in tensors:
        names, act = ["score"], None
        pooling = "tokens" if tasks.get(task).per_token else "pooler"
    else:
        raise InvalidAdapter(
            "PEFT adapter has no classifier weights: train it with task_type SEQ_CLS or TOKEN_CLS "
            "so the classifier is saved (modules_to_save)"
        )
    layers = []
    for i, n in enumerate(names):
        w, b = tensors.pop(f"{n}.weight"), tensors.pop(f"{n}.bias", None)
        if w.dim() != 2 or w.shape[1] != hidden or (i < len(names) - 1 and w.shape[0] != hidden):
            raise InvalidAdapter(
                f"classifier weight {n}.weight has shape {tuple(w.shape)}, expected [*, {hidden}]", key=f"{n}.weight"
            )
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise InvalidAdapter(f"classifier bias {n}.bias has shape {tuple(b.shape)}", key=f"{n}.bias")
        layers.append((w, b))
    task = sidecar.get("task") or task
    return Head(
        task=task,
        pooling=pooling,
        layers=layers,
        activation=act,
        labels=apply_labels(sidecar.get("labels"), layers[-1][0].shape[0], "adapterserve.json"),
    )


def load(folder: Path, hidden_size: int, num_layers: int, linear_shapes: dict[str, tuple[int, int]]) -> Adapter:
    linear_shapes = {**linear_shapes, "pooler.dense": (hidden_size, hidden_size)}
    cfg = read_json(folder / "adapter_config.json")
    if cfg.get("peft_type") != "LORA":
        raise UnsupportedAdapter(f"PEFT type {cfg.get('peft_type')!r} is not served; only LORA")
    for key in VARIANTS:
        if cfg.get(key):
            raise UnsupportedAdapter(
                f"adapter_config.json: {key}={cfg[key]!r} is a LoRA variant adapterserve does "
                "not serve; retrain as plain LoRA",
                key=key,
            )
    task_type = cfg.get("task_type")
    if task_type not in PEFT_TASK_TYPES:
        raise UnsupportedAdapter(f"PEFT task_type {task_type!r} is not served; use SEQ_CLS or TOKEN_CLS")
    alpha = cfg.get("lora_alpha", 8)
    rslora = bool(cfg.get("use_rslora", False))
    warnings = []
    if cfg.get("fan_in_fan_out"):
        warnings.append("fan_in_fan_out=true is ignored for nn.Linear modules, as PEFT itself does")
    weights = first_existing(folder, WEIGHTS)
    if weights is None:
        raise InvalidAdapter(f"the folder has no adapter weights ({' or '.join(WEIGHTS)})")
    raw = load_tensors(weights)
    modules: dict[str, dict[str, torch.Tensor]] = {}
    rest: dict[str, torch.Tensor] = {}
    for key, t in raw.items():
        if ".original_module." in key:  # modules_to_save keeps the untrained original too; it is never used
            continue
        module, param = _split(key)
        if param.startswith("lora_"):
            modules.setdefault(module, {})[param.split(".")[0]] = t
        else:
            rest[f"{module}.{param}"] = t
    head = _read_peft_head(rest, PEFT_TASK_TYPES[task_type], hidden_size, read_sidecar(folder))

    lora, bias = {}, {}
    for module, p in modules.items():
        m, g = LAYER_RE.match(module), GLOBAL_RE.match(module)
        if g and g.group(1) == "pooler.dense":
            layer, site = -1, "pooler.dense"
        elif m and m.group(2) in LINEAR_SITES:
            layer, site = int(m.group(1)), m.group(2)
        else:
            raise UnsupportedAdapter(
                f"LoRA on module {module!r} is not supported; LoRA may target the encoder "
                f"layers' linear modules {list(LINEAR_SITES)} and the pooler",
                key=module,
            )
        if layer >= num_layers:
            raise InvalidAdapter(f"LoRA weights for layer {layer} but the backbone has {num_layers} layers")
        if set(p) != {"lora_A", "lora_B"}:
            raise InvalidAdapter(f"LoRA module {module!r} needs both lora_A and lora_B weights", key=module)
        a, b = p["lora_A"], p["lora_B"]
        out_dim, in_dim = linear_shapes[site]
        r = a.shape[0]
        if a.dim() != 2 or tuple(a.shape) != (r, in_dim) or tuple(b.shape) != (out_dim, r):
            raise InvalidAdapter(
                f"LoRA module {module!r}: lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not "
                f"fit the backbone's [{out_dim}, {in_dim}] linear",
                key=module,
            )
        module_alpha = _pattern_value(cfg.get("alpha_pattern"), module, alpha)
        lora[(layer, site)] = LoraSite(a, b, lora_scaling(r, module_alpha, rslora))
    for key, t in rest.items():
        module, _, param = key.rpartition(".")
        m, g = LAYER_RE.match(module), GLOBAL_RE.match(module)
        if param == "bias" and m and m.group(2) in (*LINEAR_SITES, *LAYER_NORM_SITES):
            layer, site = int(m.group(1)), m.group(2)
            if layer >= num_layers:
                raise InvalidAdapter(f"bias for layer {layer} but the backbone has {num_layers} layers", key=key)
            expected = linear_shapes[site][0] if site in LINEAR_SITES else hidden_size
        elif param == "bias" and g:
            layer, site, expected = -1, g.group(1), hidden_size
        else:
            raise InvalidAdapter(
                f"adapter weights: unexpected key {key!r} (only LoRA, biases and the classifier are served)", key=key
            )
        if tuple(t.shape) != (expected,):
            raise InvalidAdapter(f"bias {key!r} has shape {tuple(t.shape)}, expected {(expected,)}", key=key)
        bias[(layer, site)] = t
    assert set(GLOBAL_BIAS_SITES) >= {site for (layer, site) in bias if layer == -1}
    base = cfg.get("base_model_name_or_path")
    if base:
        warnings.append(f"trained on base model {base!r}; compatibility was checked by shapes")
    return Adapter(
        kind="lora", head=head, hidden_size=hidden_size, lora=lora, bias=bias, format=NAME, warnings=warnings
    )
