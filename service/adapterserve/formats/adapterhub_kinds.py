"""AdapterHub `adapters` 1.3.0 IA3 (`IA3Config`) and prefix tuning (`PrefixTuningConfig`) weights.

IA3 is AdapterHub's LoRA layer with composition_mode "scale": each wrapped linear's output (bias included)
is multiplied by lora_B [out, 1] times alpha. Wrapped linears: query/key/value per `attn_matrices`
(`selfattn_lora`), `intermediate.dense` (`intermediate_lora`) and the FFN `output.dense` (`output_lora`),
in every layer but `leave_out`.

Prefix tuning: one module in the model's `prefix_tuning` pool (saved again under each layer's
`attention.self.prefix_tuning.pool`, the same tensors) produces [P, n*2*H] for the n layers not left out:
either flat (`control_trans`, flat=True) or reparameterised as training saves it (`wte` [P, H] through
Linear-activation-Linear `control_trans`). Row 2j holds keys, 2j+1 values, of the j-th prefixed layer.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from ..adapters.activations import ACTIVATIONS, get_activation
from ..adapters.model import Ia3Site
from ..errors import InvalidAdapter, UnsupportedAdapter

IA3_KEY_RE = re.compile(
    r"^(?:[A-Za-z_]+\.)?encoder\.layer\.(\d+)\.(attention\.self\.(?:query|key|value)|intermediate\.dense|output\.dense)"
    r"\.loras\.([^.]+)\.lora_B$"
)
ATTN = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value"}
PREFIX_KEY_RE = re.compile(r"^(.*\.)?prefix_tunings\.([^.]+)\.([^.]+)\.(.+)$")


def _number(cfg: dict, key: str, default):
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidAdapter(f"adapter_config.json: {key} must be a number, got {value!r}", key=key)
    return value


def _leave_out(cfg: dict, num_layers: int) -> set[int]:
    leave_out = cfg.get("leave_out") or []
    if not isinstance(leave_out, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in leave_out):
        raise InvalidAdapter("adapter_config.json: leave_out must be a list of layer numbers", key="leave_out")
    return {i for i in leave_out if 0 <= i < num_layers}


def _ia3_config(cfg: dict) -> float:
    """The config-only checks of an IA3 adapter; its alpha."""
    if cfg.get("composition_mode", "add") != "scale":
        raise UnsupportedAdapter(
            "adapter_config.json: AdapterHub LoRA (composition_mode 'add') is not served; serve LoRA in PEFT "
            "format, or IA3 (IA3Config, composition_mode 'scale')",
            key="composition_mode",
        )
    for key in ("use_gating", "use_dora"):
        if cfg.get(key):
            raise UnsupportedAdapter(f"adapter_config.json: {key}=true is not supported for IA3", key=key)
    if _number(cfg, "r", 1) != 1:
        raise InvalidAdapter("adapter_config.json: IA3 (composition_mode 'scale') needs r = 1", key="r")
    if cfg.get("vera_d") is not None or cfg.get("vera_b") is not None:
        raise UnsupportedAdapter("adapter_config.json: VeRA is not served", key="vera_d")
    alpha = float(_number(cfg, "alpha", 1))
    matrices = cfg.get("attn_matrices", ["k", "v"])
    if not isinstance(matrices, list) or not all(isinstance(m, str) and m in ATTN for m in matrices):
        raise InvalidAdapter(f"adapter_config.json: attn_matrices must list q, k, v; got {matrices!r}")
    return alpha


def ia3_sites(
    cfg: dict, tensors: dict[str, torch.Tensor], num_layers: int, linear_shapes: dict[str, tuple[int, int]]
) -> dict[tuple[int, str], Ia3Site]:
    alpha = _ia3_config(cfg)
    matrices = cfg.get("attn_matrices", ["k", "v"])
    wanted = set()
    if cfg.get("selfattn_lora", True):
        wanted |= {ATTN[m] for m in matrices}
    if cfg.get("intermediate_lora", True):
        wanted.add("intermediate.dense")
    if cfg.get("output_lora", False):
        wanted.add("output.dense")
    leave_out = _leave_out(cfg, num_layers)
    expected = {(i, s) for i in range(num_layers) if i not in leave_out for s in wanted}
    sites, names = {}, set()
    for key, t in tensors.items():
        m = IA3_KEY_RE.match(key)
        if not m:
            raise InvalidAdapter(f"IA3 weights: unexpected key {key!r}", key=key)
        layer, site = int(m.group(1)), m.group(2)
        names.add(m.group(3))
        if (layer, site) not in expected:
            raise InvalidAdapter(
                f"IA3 weights for layer {layer} {site!r} contradict the config or the backbone's "
                f"{num_layers} layers (attn_matrices / intermediate_lora / output_lora / leave_out)",
                key=key,
            )
        out_dim = linear_shapes[site][0]
        if tuple(t.shape) != (out_dim, 1):
            raise InvalidAdapter(f"IA3 vector {key!r} has shape {tuple(t.shape)}, expected {(out_dim, 1)}", key=key)
        sites[(layer, site)] = Ia3Site(t.flatten() * alpha, on_input=False)
    if len(names) > 1:
        raise InvalidAdapter(f"adapter weights hold several adapters {sorted(names)}; upload one at a time")
    missing = expected - set(sites)
    if missing:
        layer, site = sorted(missing)[0]
        raise InvalidAdapter(f"IA3 weights lack layer {layer} {site!r}, which the config places", layer=layer)
    return sites


def _pool_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One prefix module's parameters; the per-layer aliases of the pool must agree with the pool's copy."""
    params: dict[str, torch.Tensor] = {}
    names, locations = set(), set()
    for key, t in tensors.items():
        m = PREFIX_KEY_RE.match(key)
        if not m:
            raise InvalidAdapter(f"prefix tuning weights: unexpected key {key!r}", key=key)
        names.add(m.group(2))
        locations.add(m.group(3))
        param = m.group(4)
        if param in params and not torch.equal(params[param], t):
            raise InvalidAdapter(f"prefix tuning weights: copies of {param!r} differ ({key!r})", key=key)
        params[param] = t
    if len(names) > 1:
        raise InvalidAdapter(f"adapter weights hold several adapters {sorted(names)}; upload one at a time")
    if len(locations) != 1:
        raise UnsupportedAdapter(
            f"prefix tuning at {sorted(locations)}: only one encoder self-attention prefix is served"
        )
    return params


def _prefix_config(cfg: dict) -> int:
    """The config-only checks of a prefix; its length."""
    if cfg.get("use_gating"):
        raise UnsupportedAdapter("adapter_config.json: use_gating=true is not supported", key="use_gating")
    P = _number(cfg, "prefix_length", 30)
    if not isinstance(P, int) or P < 1:
        raise InvalidAdapter(f"adapter_config.json: prefix_length must be a positive integer, got {P!r}")
    if not cfg.get("flat", False) and str(cfg.get("non_linearity", "tanh")).lower() not in ACTIVATIONS:
        raise InvalidAdapter(
            f"adapter_config.json: unknown non_linearity {cfg['non_linearity']!r}", key="non_linearity"
        )
    return P


def check_config(architecture: str, cfg: dict) -> None:
    """What describe() can check without the weights."""
    if not isinstance(cfg, dict):
        raise InvalidAdapter("adapter_config.json: 'config' must be an object")
    (_ia3_config if architecture == "lora" else _prefix_config)(cfg)


def prefix_layers(
    cfg: dict, tensors: dict[str, torch.Tensor], hidden: int, num_layers: int
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    P = _prefix_config(cfg)
    layers = [i for i in range(num_layers) if i not in _leave_out(cfg, num_layers)]
    if not layers:
        raise InvalidAdapter("adapter_config.json: leave_out leaves no layer for the prefix")
    p = _pool_tensors(tensors)
    width = len(layers) * 2 * hidden

    def take(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if name not in p:
            raise InvalidAdapter(f"prefix tuning weights lack {name!r}", key=name)
        t = p.pop(name)
        if tuple(t.shape) != shape:
            raise InvalidAdapter(
                f"prefix tuning weight {name!r} has shape {tuple(t.shape)}, expected {shape} "
                f"(prefix_length {P}, {len(layers)} layers, hidden {hidden})",
                key=name,
            )
        return t

    if cfg.get("flat", False):
        kv = take("control_trans", (P * width,)).view(P, width)
    else:
        act = str(cfg.get("non_linearity", "tanh")).lower()
        if act not in ACTIVATIONS:
            raise InvalidAdapter(f"adapter_config.json: unknown non_linearity {act!r}", key="non_linearity")
        bn = _number(cfg, "bottleneck_size", 512)
        wte = take("wte.weight", (P, hidden))
        h = get_activation(act)(
            F.linear(wte, take("control_trans.0.weight", (bn, hidden)), take("control_trans.0.bias", (bn,)))
        )
        kv = F.linear(h, take("control_trans.2.weight", (width, bn)), take("control_trans.2.bias", (width,)))
    if p:
        raise InvalidAdapter(f"prefix tuning weights: unknown key {sorted(p)[0]!r}", key=sorted(p)[0])
    kv = kv.reshape(P, len(layers) * 2, hidden)
    return {layer: (kv[:, 2 * j].contiguous(), kv[:, 2 * j + 1].contiguous()) for j, layer in enumerate(layers)}
