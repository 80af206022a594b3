"""AdapterHub `adapters` folders (save_adapter(..., with_head=True)), bottleneck adapters.

Files: adapter_config.json, head_config.json, adapter.safetensors | pytorch_adapter.bin,
model_head.safetensors | pytorch_model_head.bin. Semantics follow `adapters` 1.3.0.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .. import tasks
from ..adapters.model import Adapter, BottleneckConfig, BottleneckSite, Head
from ..errors import InvalidAdapter, UnsupportedAdapter
from .sidecar import apply_labels, read_sidecar
from .weights import first_existing, load_tensors, read_json

NAME = "adapterhub"
ADAPTER_WEIGHTS = ["adapter.safetensors", "pytorch_adapter.bin"]
HEAD_WEIGHTS = ["model_head.safetensors", "pytorch_model_head.bin"]

# Full presets, for configs that name one instead of spelling out the keys.
PRESETS = {
    "seq_bn": dict(
        mh_adapter=False, output_adapter=True, reduction_factor=16, non_linearity="relu", original_ln_before=True
    ),
    "double_seq_bn": dict(mh_adapter=True, output_adapter=True, reduction_factor=16, non_linearity="swish"),
}
PRESETS["pfeiffer"], PRESETS["houlsby"] = PRESETS["seq_bn"], PRESETS["double_seq_bn"]
DEFAULTS = dict(
    original_ln_before=False,
    original_ln_after=True,
    residual_before_ln=True,
    adapter_residual_before_ln=False,
    ln_before=False,
    ln_after=False,
    scaling=1.0,
    leave_out=[],
)
LEGACY_ACTIVATIONS = {"gelu": "gelu_new", "gelu_orig": "gelu"}  # configs saved before `version` existed
# Options that change the forward pass in ways we do not implement: refuse rather than serve wrong logits.
UNSUPPORTED_TRUE = ["is_parallel", "phm_layer", "use_gating", "cross_adapter"]
UNSUPPORTED_SET = ["inv_adapter"]

# Static heads (a *ForSequenceClassification saved with adapters): how their modules map to a flex head.
STATIC_HEADS = {
    "BertForSequenceClassification": ("classification", "pooler", None, ["classifier"]),
    "BertForTokenClassification": ("tagging", "tokens", None, ["classifier"]),
    "RobertaForSequenceClassification": ("classification", "cls", "tanh", ["classifier.dense", "classifier.out_proj"]),
    "RobertaForTokenClassification": ("tagging", "tokens", None, ["classifier"]),
    "XLMRobertaForSequenceClassification": (
        "classification",
        "cls",
        "tanh",
        ["classifier.dense", "classifier.out_proj"],
    ),
    "XLMRobertaForTokenClassification": ("tagging", "tokens", None, ["classifier"]),
}

KEY_RE = re.compile(r"^(?:[A-Za-z_]+\.)?encoder\.layer\.(\d+)\.(attention\.output|output)\.adapters\.([^.]+)\.(.+)$")


def detect(folder: Path) -> bool:
    cfg = folder / "adapter_config.json"
    if not cfg.is_file():
        return False
    try:
        data = read_json(cfg)
    except InvalidAdapter:
        return False
    return "config" in data and "peft_type" not in data


def _bottleneck_config(data: dict) -> tuple[dict, BottleneckConfig]:
    raw = data.get("config")
    if isinstance(raw, str):
        if raw not in PRESETS:
            raise UnsupportedAdapter(f"adapter_config.json: unknown preset {raw!r}; known: {sorted(PRESETS)}")
        raw = dict(PRESETS[raw])
    if not isinstance(raw, dict):
        raise InvalidAdapter("adapter_config.json: 'config' must be an object")
    arch = raw.get("architecture")
    if arch not in (None, "bottleneck"):
        raise UnsupportedAdapter(
            f"adapter_config.json: architecture {arch!r} is not served; adapterserve serves "
            "bottleneck adapters from AdapterHub and LoRA adapters in PEFT format"
        )
    cfg = {**DEFAULTS, **raw}
    for key in ("mh_adapter", "output_adapter", "reduction_factor", "non_linearity"):
        if key not in cfg:
            raise InvalidAdapter(f"adapter_config.json: bottleneck config lacks required key {key!r}", key=key)
    for key in UNSUPPORTED_TRUE:
        if cfg.get(key):
            raise UnsupportedAdapter(f"adapter_config.json: {key}=true is not supported", key=key)
    for key in UNSUPPORTED_SET:
        if cfg.get(key):
            raise UnsupportedAdapter(f"adapter_config.json: {key}={cfg[key]!r} is not supported", key=key)
    act = str(cfg["non_linearity"]).lower()
    if "version" not in data:
        act = LEGACY_ACTIVATIONS.get(act, act)
    from ..adapters.activations import ACTIVATIONS

    if act not in ACTIVATIONS:
        raise InvalidAdapter(
            f"adapter_config.json: unknown non_linearity {cfg['non_linearity']!r}", key="non_linearity"
        )
    rbl = cfg["residual_before_ln"]
    if rbl not in (True, False, "post_add"):
        raise InvalidAdapter(f"adapter_config.json: residual_before_ln must be true, false or 'post_add', got {rbl!r}")
    if rbl == "post_add" and not cfg["original_ln_before"]:
        raise InvalidAdapter("adapter_config.json: residual_before_ln='post_add' requires original_ln_before=true")
    scaling = cfg["scaling"]
    if not (isinstance(scaling, (int, float)) or scaling in ("learned", "channel")):
        raise InvalidAdapter(f"adapter_config.json: scaling must be a number, 'learned' or 'channel', got {scaling!r}")
    bc = BottleneckConfig(
        non_linearity=act,
        original_ln_before=bool(cfg["original_ln_before"]),
        original_ln_after=bool(cfg["original_ln_after"]),
        residual_before_ln=rbl,
        adapter_residual_before_ln=bool(cfg["adapter_residual_before_ln"]),
        ln_before=bool(cfg["ln_before"]),
        ln_after=bool(cfg["ln_after"]),
    )
    return cfg, bc


def _width(cfg: dict, layer: int, hidden: int) -> int:
    rf = cfg["reduction_factor"]
    if isinstance(rf, dict):
        rf = rf.get(str(layer), rf.get("default"))
        if rf is None:
            raise InvalidAdapter("adapter_config.json: reduction_factor mapping needs a 'default' entry")
    if not isinstance(rf, (int, float)) or rf <= 0:
        raise InvalidAdapter(f"adapter_config.json: reduction_factor must be positive, got {rf!r}")
    return max(1, int(hidden // rf))


def _sites(tensors: dict[str, torch.Tensor], cfg: dict, bc: BottleneckConfig, hidden: int, num_layers: int):
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
    leave_out = set(int(x) for x in cfg.get("leave_out") or [])
    sites = {}
    for (layer, site), p in sorted(groups.items()):
        if layer >= num_layers:
            raise InvalidAdapter(
                f"adapter has weights for layer {layer} but the backbone has {num_layers} layers",
                layer=layer,
                backbone_layers=num_layers,
            )
        if (
            (site == "mh" and not cfg["mh_adapter"])
            or (site == "output" and not cfg["output_adapter"])
            or layer in leave_out
        ):
            raise InvalidAdapter(
                f"adapter weights for layer {layer} site {site!r} contradict the config "
                "(mh_adapter/output_adapter/leave_out)"
            )
        sites[(layer, site)] = _site(p, bc, cfg, layer, site, hidden)
    expected = {
        (i, s)
        for i in range(num_layers)
        if i not in leave_out
        for s, on in (("mh", cfg["mh_adapter"]), ("output", cfg["output_adapter"]))
        if on
    }
    missing = expected - set(sites)
    if missing:
        layer, site = sorted(missing)[0]
        raise InvalidAdapter(
            f"adapter weights lack layer {layer} site {site!r} that the config places", layer=layer, site=site
        )
    return sites


def _site(
    p: dict[str, torch.Tensor], bc: BottleneckConfig, cfg: dict, layer: int, site: str, hidden: int
) -> BottleneckSite:
    p = dict(p)
    r = _width(cfg, layer, hidden)
    where = f"layer {layer} site {site!r}"

    def take(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if name not in p:
            raise InvalidAdapter(f"adapter weights lack {name!r} at {where}", key=name)
        t = p.pop(name)
        if tuple(t.shape) != shape:
            raise InvalidAdapter(
                f"adapter weight {name!r} at {where} has shape {tuple(t.shape)}, expected {shape}",
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
    scaling = cfg["scaling"]
    if scaling == "learned":
        scaling = take("scaling", (1,))
    elif scaling == "channel":
        scaling = take("scaling", (hidden,))
    else:
        scaling = float(scaling)
    if p:
        raise InvalidAdapter(f"adapter weights: unknown key {sorted(p)[0]!r} at {where}", key=sorted(p)[0])
    return BottleneckSite(down_w, down_b, up_w, up_b, scaling, norm_before, norm_after)


def _read_head_folder(folder: Path, hidden: int, sidecar: dict) -> Head:
    cfg_path = folder / "head_config.json"
    weights = first_existing(folder, HEAD_WEIGHTS)
    if not cfg_path.is_file() or weights is None:
        raise InvalidAdapter(
            "the folder has no prediction head (head_config.json and model_head.safetensors or "
            "pytorch_model_head.bin): save it with save_adapter(..., with_head=True)"
        )
    data = read_json(cfg_path)
    tensors = load_tensors(weights)
    cfg = data.get("config")
    if cfg is None:
        model_class = data.get("model_class")
        if model_class not in STATIC_HEADS:
            raise UnsupportedAdapter(
                f"head_config.json: static head of {model_class!r} is not supported; supported: {sorted(STATIC_HEADS)}"
            )
        task, pooling, act, modules = STATIC_HEADS[model_class]
        label2id = data.get("label2id")
        layer_keys = [(f"{m}.weight", f"{m}.bias") for m in modules]
    else:
        head_type = cfg.get("head_type")
        head_types = tasks.by_adapterhub_head_type()
        if head_type not in head_types:
            raise UnsupportedAdapter(
                f"head_config.json: head_type {head_type!r} is not served; served: {sorted(head_types)}"
            )
        task = head_types[head_type]
        per_token = tasks.get(task).per_token
        pooling = "tokens" if per_token else ("pooler" if cfg.get("use_pooler") else "cls")
        act = cfg.get("activation_function")
        label2id = cfg.get("label2id")
        names = {k.split(".")[1] for k in tensors if k.startswith("heads.")}
        if len(names) != 1 or not all(k.startswith("heads.") for k in tensors):
            raise InvalidAdapter(f"head weights must be heads.<name>.<index>.*, got {sorted(tensors)[:4]}")
        prefix = f"heads.{names.pop()}"
        idx, layer_keys = 0, []
        n = int(cfg.get("layers", tasks.get(task).default_head_layers))
        for i in range(n):
            idx += 1  # dropout
            layer_keys.append((f"{prefix}.{idx}.weight", f"{prefix}.{idx}.bias"))
            idx += 1
            if i < n - 1 and act:
                idx += 1
    layers, remaining = [], dict(tensors)
    for i, (wk, bk) in enumerate(layer_keys):
        if wk not in remaining:
            raise InvalidAdapter(f"head weights lack {wk!r}", key=wk)
        w, b = remaining.pop(wk), remaining.pop(bk, None)
        in_dim = hidden
        if w.dim() != 2 or w.shape[1] != in_dim or (i < len(layer_keys) - 1 and w.shape[0] != hidden):
            raise InvalidAdapter(f"head weight {wk!r} has shape {tuple(w.shape)}, expected [*, {in_dim}]", key=wk)
        if b is not None and tuple(b.shape) != (w.shape[0],):
            raise InvalidAdapter(f"head bias {bk!r} has shape {tuple(b.shape)}, expected {(w.shape[0],)}", key=bk)
        layers.append((w, b))
    if remaining:
        raise InvalidAdapter(f"head weights: unknown key {sorted(remaining)[0]!r}", key=sorted(remaining)[0])
    num = layers[-1][0].shape[0]
    labels = None
    if isinstance(label2id, dict) and label2id:
        by_id = sorted(label2id.items(), key=lambda kv: int(kv[1]))
        labels = [k for k, _ in by_id]
    labels = sidecar.get("labels") or labels
    task = sidecar.get("task") or task
    return Head(
        task=task,
        pooling=pooling,
        layers=layers,
        activation=act,
        labels=apply_labels(labels, num, "head_config.json label2id"),
    )


def load(folder: Path, hidden_size: int, num_layers: int) -> Adapter:
    data = read_json(folder / "adapter_config.json")
    cfg, bc = _bottleneck_config(data)
    warnings = []
    if data.get("hidden_size") not in (None, hidden_size):
        raise InvalidAdapter(
            f"adapter was trained for hidden size {data['hidden_size']} but the backbone has {hidden_size}",
            adapter_hidden_size=data["hidden_size"],
            backbone_hidden_size=hidden_size,
        )
    weights = first_existing(folder, ADAPTER_WEIGHTS)
    if weights is None:
        raise InvalidAdapter(f"the folder has no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    sites = _sites(load_tensors(weights), cfg, bc, hidden_size, num_layers)
    head = _read_head_folder(folder, hidden_size, read_sidecar(folder))
    return Adapter(
        kind="bottleneck",
        head=head,
        hidden_size=hidden_size,
        bottleneck_config=bc,
        bottleneck=sites,
        format=NAME,
        warnings=warnings,
    )
