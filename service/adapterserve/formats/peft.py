"""PEFT LoRA folders (save_pretrained): adapter_config.json + adapter_model.safetensors | .bin. (IA3, prefix
and prompt tuning: peft_kinds.py, the PEFT format's entry point, which hands LORA folders to `load` here.)

Semantics follow PEFT's LoraLayer for nn.Linear: scaling = alpha / r (alpha / sqrt(r) with rslora), r and
alpha per module from rank_pattern / alpha_pattern when a key matches the module name. The config is read
and checked in peft_config.py; the weights must have the shapes and modules that config makes PEFT create.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .. import tasks
from ..adapters.lora import lora_scaling
from ..adapters.model import GLOBAL_BIAS_SITES, LAYER_NORM_SITES, LINEAR_SITES, Adapter, Head, LoraSite
from ..errors import InvalidAdapter, UnsupportedAdapter
from .peft_config import CONFIG, LoraSettings, read_lora_config
from .sidecar import apply_labels, read_sidecar
from .weights import first_existing, load_tensors, read_json

NAME = "peft"
WEIGHTS = ["adapter_model.safetensors", "adapter_model.bin"]
LAYER_RE = re.compile(r"^(?:[A-Za-z_]+\.)?encoder\.layer\.(\d+)\.(.+)$")
GLOBAL_RE = re.compile(r"^(?:[A-Za-z_]+\.)?(embeddings\.LayerNorm|pooler\.dense)$")
MODEL_RE = re.compile(r"^(?:([A-Za-z_]+)\.)?(?:encoder|embeddings|pooler)\.")
# Sub-modules of every BERT-family layer that are not nn.Linear: PEFT refuses to put LoRA on them.
NOT_LINEAR = ("attention", "attention.self", "attention.output", "intermediate", "output", *LAYER_NORM_SITES)


def detect(folder: Path) -> bool:
    cfg = folder / CONFIG
    if not cfg.is_file():
        return False
    try:
        return "peft_type" in read_json(cfg)
    except InvalidAdapter:
        return False


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
    if "qa_outputs.weight" in tensors:  # QUESTION_ANS: start/end logits on every token
        names, pooling, act = ["qa_outputs"], "tokens", None
    elif "classifier.dense.weight" in tensors:  # RoBERTa-style classification head: dense -> tanh -> out_proj
        names, pooling, act = ["classifier.dense", "classifier.out_proj"], "cls", "tanh"
    elif "classifier.weight" in tensors:
        names, act = ["classifier"], None
        pooling = "tokens" if tasks.get(task).per_token else "pooler"
    elif "score.weight" in tensors:
        names, act = ["score"], None
        pooling = "tokens" if tasks.get(task).per_token else "pooler"
    else:
        raise InvalidAdapter(
            "PEFT adapter has no classifier weights: train it with task_type SEQ_CLS, TOKEN_CLS or "
            "QUESTION_ANS so the classifier (qa_outputs for QA) is saved (modules_to_save)"
        )
    layers = []
    for i, n in enumerate(names):
        if f"{n}.weight" not in tensors:
            raise InvalidAdapter(f"classifier weights lack {n}.weight", key=f"{n}.weight")
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


def _check_targets(settings: LoraSettings, modules: set[str], prefix: str, num_layers: int) -> list[str]:
    """The saved LoRA modules must be those PEFT would create from the config on this backbone: PEFT refuses
    a config that targets nothing (or a non-Linear module), and ignores weights of modules it does not target,
    which would make our logits differ from the library's. Returns warnings."""
    p = f"{prefix}." if prefix else ""
    linear = [f"{p}encoder.layer.{i}.{site}" for i in range(num_layers) for site in LINEAR_SITES]
    linear.append(f"{p}pooler.dense")
    other = [f"{p}encoder.layer.{i}.{site}" for i in range(num_layers) for site in NOT_LINEAR]
    other += [f"{p}embeddings.LayerNorm", *(f"{p}encoder.layer.{i}" for i in range(num_layers))]
    targeted = {m for m in linear if settings.targets(m)}
    for m in other:
        if settings.targets(m):
            raise InvalidAdapter(
                f"{CONFIG}: target_modules {settings.target_modules!r} selects {m!r}, which is not a Linear "
                "layer; PEFT refuses to load such a config",
                key="target_modules",
            )
    if not targeted:
        raise InvalidAdapter(
            f"{CONFIG}: target_modules {settings.target_modules!r} (with layers_to_transform="
            f"{settings.layers_to_transform!r}, exclude_modules={settings.exclude_modules!r}) matches no module "
            "of the backbone; PEFT refuses to load it ('Target modules ... not found in the base model')",
            key="target_modules",
        )
    stray = sorted(modules - targeted)
    if stray:
        raise InvalidAdapter(
            f"the weights hold LoRA for {stray[0]!r}, which {CONFIG}'s target_modules "
            f"{settings.target_modules!r} does not select (PEFT would ignore those weights)",
            key="target_modules",
            module=stray[0],
        )
    unsaved = sorted(targeted - modules)
    if unsaved:
        return [
            f"target_modules selects {len(unsaved)} module(s) without saved LoRA weights (first: {unsaved[0]!r}); "
            "they keep the backbone's weights, as PEFT does when it loads such a folder"
        ]
    return []


def _read_weights(folder: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """(module -> {lora_A, lora_B}, every other tensor by name)."""
    weights = first_existing(folder, WEIGHTS)
    if weights is None:
        raise InvalidAdapter(f"the folder has no adapter weights ({' or '.join(WEIGHTS)})")
    modules: dict[str, dict[str, torch.Tensor]] = {}
    rest: dict[str, torch.Tensor] = {}
    for key, t in load_tensors(weights).items():
        if ".original_module." in key:  # modules_to_save keeps the untrained original too; it is never used
            continue
        module, param = _split(key)
        if param.startswith("lora_"):
            modules.setdefault(module, {})[param.split(".")[0]] = t
        else:
            rest[f"{module}.{param}"] = t
    return modules, rest


def _lora_site(module: str, p: dict[str, torch.Tensor], settings: LoraSettings, num_layers: int, shapes):
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
        raise InvalidAdapter(f"LoRA weights for layer {layer} but the backbone has {num_layers} layers", key=module)
    if set(p) != {"lora_A", "lora_B"}:
        raise InvalidAdapter(f"LoRA module {module!r} needs exactly lora_A and lora_B weights", key=module)
    a, b = p["lora_A"], p["lora_B"]
    out_dim, in_dim = shapes[site]
    r = settings.rank(module)
    if tuple(a.shape) != (r, in_dim) or tuple(b.shape) != (out_dim, r):
        raise InvalidAdapter(
            f"LoRA module {module!r}: lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not fit rank {r} "
            f"({CONFIG}'s r / rank_pattern) on the backbone's [{out_dim}, {in_dim}] linear "
            "(PEFT refuses such a folder with a size mismatch)",
            key=module,
        )
    alpha = settings.module_alpha(module)
    return (layer, site), LoraSite(a, b, lora_scaling(r, alpha, settings.rslora))


def load(folder: Path, hidden_size: int, num_layers: int, linear_shapes: dict[str, tuple[int, int]]) -> Adapter:
    shapes = {**linear_shapes, "pooler.dense": (hidden_size, hidden_size)}
    settings = read_lora_config(read_json(folder / CONFIG))
    warnings = []
    if settings.fan_in_fan_out:
        warnings.append("fan_in_fan_out=true is ignored for nn.Linear modules, as PEFT itself does")
    modules, rest = _read_weights(folder)
    head = _read_peft_head(rest, settings.task, hidden_size, read_sidecar(folder))
    lora = dict(_lora_site(module, p, settings, num_layers, shapes) for module, p in modules.items())
    prefixes = {m.group(1) or "" for m in map(MODEL_RE.match, modules) if m}
    warnings += _check_targets(settings, set(modules), prefixes.pop() if len(prefixes) == 1 else "", num_layers)
    bias = {}
    for key, t in rest.items():
        module, _, param = key.rpartition(".")
        m, g = LAYER_RE.match(module), GLOBAL_RE.match(module)
        if param == "bias" and m and m.group(2) in (*LINEAR_SITES, *LAYER_NORM_SITES):
            layer, site = int(m.group(1)), m.group(2)
            if layer >= num_layers:
                raise InvalidAdapter(f"bias for layer {layer} but the backbone has {num_layers} layers", key=key)
            expected = shapes[site][0] if site in LINEAR_SITES else hidden_size
        elif param == "bias" and g:
            layer, site, expected = -1, g.group(1), hidden_size
        else:
            raise InvalidAdapter(
                f"adapter weights: unexpected key {key!r} (only LoRA, biases and the classifier are served)", key=key
            )
        if tuple(t.shape) != (expected,):
            raise InvalidAdapter(f"bias {key!r} has shape {tuple(t.shape)}, expected {(expected,)}", key=key)
        bias[(layer, site)] = t
    if bias and settings.bias == "none":
        raise InvalidAdapter(
            f"the weights hold trained biases but {CONFIG} says bias='none' (PEFT would ignore them)", key="bias"
        )
    assert set(GLOBAL_BIAS_SITES) >= {site for (layer, site) in bias if layer == -1}
    if settings.base_model:
        warnings.append(f"trained on base model {settings.base_model!r}; compatibility was checked by shapes")
    return Adapter(
        kind="lora", head=head, hidden_size=hidden_size, lora=lora, bias=bias, format=NAME, warnings=warnings
    )


def describe(folder: Path) -> dict:
    """What the listing shows, from the config files alone (validated as load() does; no tensors)."""
    settings = read_lora_config(read_json(folder / CONFIG))
    if first_existing(folder, WEIGHTS) is None:
        raise InvalidAdapter(f"the folder has no adapter weights ({' or '.join(WEIGHTS)})")
    sidecar = read_sidecar(folder)
    return {"kind": "lora", "task": sidecar.get("task") or settings.task, "labels": sidecar.get("labels")}
