"""IA3 and prefix-tuning exports in AdapterHub `adapters` 1.3.0 layout (what save_adapter(..., with_head=True,
use_safetensors=True) writes for IA3Config and PrefixTuningConfig(flat=True)).

A flat prefix is one `control_trans` vector [P * layers * 2 * H] in the model's prefix pool; the library
registers the same tensor again under every layer, but loading the pool's copy is enough (and safetensors
refuses the shared copies anyway).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..adapters.model import Adapter
from ..adapters.prefix import prefix_length
from .export import _dump, _save, _saved_by, _t, write_flex_head

IA3_CONFIG = {
    "alpha": 1,
    "architecture": "lora",
    "attn_matrices": ["k", "v"],
    "composition_mode": "scale",
    "dropout": 0.0,
    "dtype": None,
    "init_weights": "ia3",
    "init_weights_seed": None,
    "intermediate_lora": True,
    "leave_out": [],
    "output_lora": False,
    "r": 1,
    "selfattn_lora": True,
    "use_dora": False,
    "use_gating": False,
    "vera_b": None,
    "vera_d": None,
}
PREFIX_CONFIG = {
    "architecture": "prefix_tuning",
    "bottleneck_size": 512,
    "cross_prefix": True,
    "dropout": 0.0,
    "encoder_prefix": True,
    "flat": True,
    "init_weights_seed": None,
    "leave_out": [],
    "non_linearity": "tanh",
    "shared_gating": True,
    "use_gating": False,
}


def _adapterhub(folder: Path, config: dict, tensors: dict, adapter: Adapter, spec, name: str, backbone_name: str):
    saved_by = _saved_by(backbone_name, adapter.hidden_size, name)
    _dump(folder / "adapter_config.json", {"config": config, **saved_by})
    _save(tensors, folder / "adapter.safetensors")
    write_flex_head(folder, adapter, spec, name, backbone_name)


def write_ia3(folder: Path, adapter: Adapter, spec, name: str, backbone_name: str) -> None:
    """IA3Config with AdapterHub's default sites and alpha 1: lora_B [out, 1] per scaled linear."""
    tensors = {}
    for (layer, site), s in sorted(adapter.ia3.items()):
        if s.on_input:
            raise ValueError("AdapterHub IA3 scales outputs only")
        tensors[f"bert.encoder.layer.{layer}.{site}.loras.{name}.lora_B"] = _t(s.scale).unsqueeze(1)
    _adapterhub(folder, dict(IA3_CONFIG), tensors, adapter, spec, name, backbone_name)


def write_prefix(folder: Path, adapter: Adapter, spec, name: str, backbone_name: str) -> None:
    """PrefixTuningConfig(flat=True): control_trans = [P, layers * 2, H] flattened (row 2j keys, 2j+1 values)."""
    layers = sorted(adapter.prefix)
    if layers != list(range(len(layers))):
        raise ValueError("a flat prefix export needs every layer")
    kv = torch.stack([_t(x) for i in layers for x in adapter.prefix[i]], dim=1)
    tensors = {f"bert.prefix_tuning.prefix_tunings.{name}.self_prefix.control_trans": kv.reshape(-1)}
    config = {**PREFIX_CONFIG, "prefix_length": prefix_length(adapter)}
    _adapterhub(folder, config, tensors, adapter, spec, name, backbone_name)
