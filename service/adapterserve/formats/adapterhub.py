"""AdapterHub `adapters` folders (save_adapter(..., with_head=True)): bottleneck adapters here, IA3 and
prefix tuning (`config.architecture` "lora" / "prefix_tuning") in adapterhub_kinds.py.

Files: adapter_config.json, head_config.json, adapter.safetensors | pytorch_adapter.bin,
model_head.safetensors | pytorch_model_head.bin. Semantics follow `adapters` 1.3.0; the config files are
read and checked in adapterhub_config.py, the weights here.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..adapters.model import Adapter, BottleneckSite, Head
from ..errors import InvalidAdapter
from . import adapterhub_kinds
from .adapterhub_config import (
    CONFIG,
    HEAD_CONFIG,
    BottleneckSettings,
    HeadSettings,
    check_reduction_layers,
    read_adapter_config,
    read_head_config,
)
from .sidecar import apply_labels, read_sidecar
from .weights import first_existing, load_tensors, read_json

NAME = "adapterhub"
ADAPTER_WEIGHTS = ["adapter.safetensors", "pytorch_adapter.bin"]
HEAD_WEIGHTS = ["model_head.safetensors", "pytorch_model_head.bin"]

KEY_RE = re.compile(r"^(?:[A-Za-z_]+\.)?encoder\.layer\.(\d+)\.(attention\.output|output)\.adapters\.([^.]+)\.(.+)$")


def detect(folder: Path) -> bool:
    cfg = folder / CONFIG
    if not cfg.is_file():
        return False
    try:
        data = read_json(cfg)
    except InvalidAdapter:
        return False
    return "config" in data and "peft_type" not in data


def _sites(tensors: dict[str, torch.Tensor], settings: BottleneckSettings, hidden: int, num_layers: int):
    groups: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    names = set()
    for key, t in tensors.items():
        m = KEY_RE.match(key)
        if not m:
            raise InvalidAdapter(f"adapter weights: unexpected key {key!r}", key=key)
        layer, where, name, param = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        names.add(name)
        groups.setdefault((layer, "mh" if where == "attention.output" else "output"), {})[param] = t
    if len(names) > 1:
        raise InvalidAdapter(f"adapter weights hold several adapters {sorted(names)}; upload one at a time")
    placed = settings.sites(num_layers)
    sites = {}
    for (layer, site), p in sorted(groups.items()):
        if layer >= num_layers:
            raise InvalidAdapter(
                f"adapter has weights for layer {layer} but the backbone has {num_layers} layers",
                layer=layer,
                backbone_layers=num_layers,
            )
        if (layer, site) not in placed:
            raise InvalidAdapter(
                f"adapter weights for layer {layer} site {site!r} contradict {CONFIG} "
                "(config.mh_adapter / config.output_adapter / config.leave_out place no adapter there)",
                layer=layer,
                site=site,
            )
        sites[(layer, site)] = _site(p, settings, layer, site, hidden)
    missing = placed - set(sites)
    if missing:
        layer, site = sorted(missing)[0]
        raise InvalidAdapter(
            f"adapter weights lack layer {layer} site {site!r} that {CONFIG} places", layer=layer, site=site
        )
    return sites


def _site(p: dict[str, torch.Tensor], settings: BottleneckSettings, layer: int, site: str, hidden: int):
    p, bc = dict(p), settings.forward
    r = settings.width(layer, hidden)
    where = f"layer {layer} site {site!r}"

    def take(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if name not in p:
            raise InvalidAdapter(f"adapter weights lack {name!r} at {where}", key=name)
        t = p.pop(name)
        if tuple(t.shape) != shape:
            raise InvalidAdapter(
                f"adapter weight {name!r} at {where} has shape {tuple(t.shape)}, expected {shape} "
                f"(from {CONFIG}'s reduction_factor and the backbone's hidden size {hidden})",
                key=name,
                shape=list(t.shape),
                expected=list(shape),
            )
        return t

    lin = "adapter_down.1" if bc.ln_before else "adapter_down.0"
    norm_before = None
    if bc.ln_before:
        norm_before = (take("adapter_down.0.weight", (hidden,)), take("adapter_down.0.bias", (hidden,)))
        for alias in ("adapter_norm_before.weight", "adapter_norm_before.bias"):
            p.pop(alias, None)  # the same module registered twice in the state dict
    down_w, down_b = take(f"{lin}.weight", (r, hidden)), take(f"{lin}.bias", (r,))
    up_w, up_b = take("adapter_up.weight", (hidden, r)), take("adapter_up.bias", (hidden,))
    norm_after = None
    if bc.ln_after:
        norm_after = (take("adapter_norm_after.weight", (hidden,)), take("adapter_norm_after.bias", (hidden,)))
    scaling = settings.scaling
    if scaling == "learned":
        scaling = take("scaling", (1,))
    elif scaling == "channel":
        scaling = take("scaling", (hidden,))
    else:
        scaling = float(scaling)
    if p:
        raise InvalidAdapter(f"adapter weights: unknown key {sorted(p)[0]!r} at {where}", key=sorted(p)[0])
    return BottleneckSite(down_w, down_b, up_w, up_b, scaling, norm_before, norm_after)


def _head_layer_keys(hs: HeadSettings, tensors: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    """The (weight, bias) key of each Linear layer, in order, as the head's nn.Sequential numbers them."""
    if hs.modules is not None:
        return [(f"{m}.weight", f"{m}.bias") for m in hs.modules]
    names = {k.split(".")[1] for k in tensors if k.startswith("heads.") and k.count(".") >= 2}
    if len(names) != 1 or not all(k.startswith("heads.") and k.count(".") >= 2 for k in tensors):
        raise InvalidAdapter(
            f"head weights must be one head's heads.<name>.<index>.*, got {sorted(tensors)[:4]}", file=HEAD_CONFIG
        )
    prefix = f"heads.{names.pop()}"
    idx, keys = 0, []
    for i in range(hs.layers):
        idx += 1  # dropout
        keys.append((f"{prefix}.{idx}.weight", f"{prefix}.{idx}.bias"))
        idx += 1
        if i < hs.layers - 1 and hs.activation:
            idx += 1
    return keys


def _read_head_folder(folder: Path, hidden: int, sidecar: dict) -> Head:
    cfg_path = folder / HEAD_CONFIG
    weights = first_existing(folder, HEAD_WEIGHTS)
    if not cfg_path.is_file() or weights is None:
        raise InvalidAdapter(
            "the folder has no prediction head (head_config.json and model_head.safetensors or "
            "pytorch_model_head.bin): save it with save_adapter(..., with_head=True)"
        )
    hs = read_head_config(read_json(cfg_path))
    tensors = load_tensors(weights)
    layer_keys = _head_layer_keys(hs, tensors)
    layers, remaining = [], dict(tensors)
    for i, (wk, bk) in enumerate(layer_keys):
        if wk not in remaining:
            raise InvalidAdapter(f"head weights lack {wk!r} ({HEAD_CONFIG} declares {len(layer_keys)} layers)", key=wk)
        w, b = remaining.pop(wk), remaining.pop(bk, None)
        inner = i < len(layer_keys) - 1
        if w.dim() != 2 or w.shape[1] != hidden or (inner and w.shape[0] != hidden):
            expected = f"({hidden}, {hidden})" if inner else f"(num_labels, {hidden})"
            raise InvalidAdapter(
                f"head weight {wk!r} has shape {tuple(w.shape)}, expected {expected} for layer {i + 1} of the "
                f"{len(layer_keys)} that {HEAD_CONFIG} declares (config.layers)",
                key=wk,
            )
        if b is None and hs.bias:
            raise InvalidAdapter(f"head weights lack {bk!r} ({HEAD_CONFIG} says bias=true)", key=bk)
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise InvalidAdapter(f"head bias {bk!r} has shape {tuple(b.shape)}, expected {(w.shape[0],)}", key=bk)
        layers.append((w, b))
    if remaining:
        raise InvalidAdapter(f"head weights: unknown key {sorted(remaining)[0]!r}", key=sorted(remaining)[0])
    num = layers[-1][0].shape[0]
    if hs.num_labels is not None and hs.num_labels != num:
        raise InvalidAdapter(
            f"{HEAD_CONFIG}: config.num_labels is {hs.num_labels} but the head's last layer has {num} outputs",
            key="config.num_labels",
            file=HEAD_CONFIG,
        )
    return Head(
        task=sidecar.get("task") or hs.task,
        pooling=hs.pooling,
        layers=layers,
        activation=hs.activation,
        labels=apply_labels(sidecar.get("labels") or hs.labels, num, "head_config.json label2id"),
    )


def _architecture(data: dict) -> str | None:
    raw = data.get("config")
    arch = raw.get("architecture") if isinstance(raw, dict) else None
    return arch if isinstance(arch, str) else None  # anything else: the bottleneck reader names the problem


def _ia3(cfg: dict, tensors: dict, hidden: int, num_layers: int, shapes: dict) -> dict:
    return dict(kind="ia3", ia3=adapterhub_kinds.ia3_sites(cfg, tensors, num_layers, shapes))


def _prefix(cfg: dict, tensors: dict, hidden: int, num_layers: int, shapes: dict) -> dict:
    return dict(kind="prefix", prefix=adapterhub_kinds.prefix_layers(cfg, tensors, hidden, num_layers))


# config.architecture -> (kind, the Adapter fields its weights become); bottleneck is read below
ARCHITECTURES = {"lora": ("ia3", _ia3), "prefix_tuning": ("prefix", _prefix)}


def load(
    folder: Path, hidden_size: int, num_layers: int, linear_shapes: dict[str, tuple[int, int]] | None = None
) -> Adapter:
    data = read_json(folder / CONFIG)
    arch = _architecture(data)
    if data.get("hidden_size") not in (None, hidden_size):
        raise InvalidAdapter(
            f"adapter was trained for hidden size {data['hidden_size']} but the backbone has {hidden_size}",
            adapter_hidden_size=data["hidden_size"],
            backbone_hidden_size=hidden_size,
        )
    if arch in ARCHITECTURES:
        weights = first_existing(folder, ADAPTER_WEIGHTS)
        if weights is None:
            raise InvalidAdapter(f"the folder has no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
        read = ARCHITECTURES[arch][1]
        fields = read(data["config"], load_tensors(weights), hidden_size, num_layers, linear_shapes or {})
        head = _read_head_folder(folder, hidden_size, read_sidecar(folder))
        return Adapter(head=head, hidden_size=hidden_size, format=NAME, **fields)
    settings = read_adapter_config(data)
    check_reduction_layers(settings, num_layers)
    weights = first_existing(folder, ADAPTER_WEIGHTS)
    if weights is None:
        raise InvalidAdapter(f"the folder has no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    sites = _sites(load_tensors(weights), settings, hidden_size, num_layers)
    head = _read_head_folder(folder, hidden_size, read_sidecar(folder))
    return Adapter(
        kind="bottleneck",
        head=head,
        hidden_size=hidden_size,
        bottleneck_config=settings.forward,
        bottleneck=sites,
        format=NAME,
        warnings=[],
    )


def describe(folder: Path) -> dict:
    """What the listing shows, from the config files alone (validated as load() does; no tensors)."""
    data = read_json(folder / CONFIG)
    arch = _architecture(data)
    if arch in ARCHITECTURES:
        adapterhub_kinds.check_config(arch, data["config"])
    else:
        read_adapter_config(data)
    if first_existing(folder, ADAPTER_WEIGHTS) is None:
        raise InvalidAdapter(f"the folder has no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    if not (folder / HEAD_CONFIG).is_file() or first_existing(folder, HEAD_WEIGHTS) is None:
        raise InvalidAdapter("the folder has no prediction head (head_config.json and its weights)")
    hs = read_head_config(read_json(folder / HEAD_CONFIG))
    sidecar = read_sidecar(folder)
    kind = ARCHITECTURES[arch][0] if arch in ARCHITECTURES else "bottleneck"
    return {"kind": kind, "task": sidecar.get("task") or hs.task, "labels": sidecar.get("labels") or hs.labels}
