"""What `adapterserve train --kind` can train: one TrainingKind per kind, in a registry.

A kind says how its adapter is built (initial tensors), how its head is laid out, how it is written to disk
(None: a baseline that reports metrics only) and its training defaults. Add a kind: write its builder (and
writer, in export.py) and `register(TrainingKind(...))` below; the CLI's --kind choices, the learning-rate
default and publishing follow from the registry.

The serving side needs no registration for a kind whose tensors fit the canonical Adapter (adapters/model.py):
`AdapterBatch` applies whatever bottleneck, LoRA, bias, IA3, prefix and prompt tensors an adapter has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import tasks
from ..adapters.model import Adapter, BottleneckConfig, Head, Ia3Site
from ..registry import Registry
from .export import write_adapterhub, write_peft, write_sidecar
from .export_kinds import write_ia3, write_prefix
from .model import (
    BOTTLENECK_PRESETS,
    HEAD_ACTIVATION,
    Spec,
    bottleneck_sites,
    leaf_maker,
    lora_site_tensors,
    new_head,
)

# (spec, head, hidden, num_layers, linear_shapes, generator, leaf) -> the adapter around `head`
Build = Callable[[Spec, Head, int, int, dict, torch.Generator, Callable], Adapter]
# (folder, adapter, spec, name, backbone_name) -> files in the reference library's layout
Write = Callable[[Path, Adapter, Spec, str, str], None]


@dataclass(frozen=True)
class TrainingKind:
    name: str
    build: Build
    write: Write | None = None  # None: a baseline, metrics only (not servable)
    default_lr: float = 1e-3
    sequence_pooling: str = "cls"  # what a sequence head reads: "cls" (flex head) or "pooler" (PEFT classifier)
    head_activation: str | None = HEAD_ACTIVATION
    head_layers: int | None = None  # a fixed head depth (PEFT's classifier is one Linear), else the task's
    trains_backbone: bool = False  # full fine-tuning
    head_only: bool = False  # the backbone is frozen and unchanged: its outputs can be computed once

    @property
    def servable(self) -> bool:
        return self.write is not None


REGISTRY: Registry[TrainingKind] = Registry("kind")
register, get, names = REGISTRY.register, REGISTRY.get, REGISTRY.names


def _bottleneck(spec, head, hidden, num_layers, linear_shapes, gen, leaf) -> Adapter:
    return Adapter(
        kind="bottleneck",
        head=head,
        hidden_size=hidden,
        bottleneck_config=BOTTLENECK_PRESETS[spec.kind][2],
        bottleneck=bottleneck_sites(spec, hidden, num_layers, gen, leaf),
        format="adapterhub",
    )


def _lora(spec, head, hidden, num_layers, linear_shapes, gen, leaf) -> Adapter:
    lora = lora_site_tensors(spec, num_layers, linear_shapes, gen, leaf)
    return Adapter(kind="lora", head=head, hidden_size=hidden, lora=lora, format="peft")


# AdapterHub IA3Config's default sites: key and value outputs, intermediate.dense output
IA3_SITES = ("attention.self.key", "attention.self.value", "intermediate.dense")


def _ia3(spec, head, hidden, num_layers, linear_shapes, gen, leaf) -> Adapter:
    ia3 = {
        (i, site): Ia3Site(leaf(torch.ones(linear_shapes[site][0])), on_input=False)
        for i in range(num_layers)
        for site in IA3_SITES
    }
    return Adapter(kind="ia3", head=head, hidden_size=hidden, ia3=ia3, format="adapterhub")


def _prefix(spec, head, hidden, num_layers, linear_shapes, gen, leaf) -> Adapter:
    prefix = {}
    for i in range(num_layers):
        kv = torch.randn((2, spec.prefix_length, hidden), generator=gen)
        prefix[i] = (leaf(kv[0]), leaf(kv[1]))
    return Adapter(kind="prefix", head=head, hidden_size=hidden, prefix=prefix, format="adapterhub")


def _head_only(spec, head, hidden, num_layers, linear_shapes, gen, leaf) -> Adapter:
    return Adapter(kind="bottleneck", head=head, hidden_size=hidden, bottleneck_config=BottleneckConfig())


for _kind in (
    TrainingKind("seq_bn", _bottleneck, write_adapterhub),
    TrainingKind("double_seq_bn", _bottleneck, write_adapterhub),
    TrainingKind("lora", _lora, write_peft, sequence_pooling="pooler", head_activation=None, head_layers=1),
    # learning rates: the usual ranges for these methods, checked by a smoke run only (not tuned)
    TrainingKind("ia3", _ia3, write_ia3, default_lr=3e-3),
    TrainingKind("prefix", _prefix, write_prefix, default_lr=5e-3),
    TrainingKind("head", _head_only, head_only=True),
    TrainingKind("full", _head_only, default_lr=5e-5, trains_backbone=True),
):
    register(_kind)


def build_adapter(
    spec: Spec,
    hidden: int,
    num_layers: int,
    linear_shapes: dict[str, tuple[int, int]],
    has_pooler: bool,
    seed: int,
    device: torch.device | str = "cpu",
) -> Adapter:
    """Values drawn on the CPU from `seed` (the same on every device), then leaf tensors on `device`.
    The head is drawn first, then the kind's sites."""
    kind, task = get(spec.kind), tasks.get(spec.task)
    gen, leaf = torch.Generator().manual_seed(seed), leaf_maker(device)
    if task.per_token:
        pooling = "tokens"
    else:
        pooling = kind.sequence_pooling
        if pooling == "pooler" and not has_pooler:
            raise ValueError(f"a {kind.name} classifier reads the pooler, which this backbone lacks")
    n = kind.head_layers or spec.head_layers or task.default_head_layers
    head = new_head(spec, hidden, pooling, kind.head_activation, n, gen, leaf)
    return kind.build(spec, head, hidden, num_layers, linear_shapes, gen, leaf)


def export(folder: Path, adapter: Adapter, spec: Spec, name: str, backbone_name: str, description: str) -> None:
    """The kind's files plus adapterserve.json (label names, task, description)."""
    kind = get(spec.kind)
    if kind.write is None:
        raise ValueError(f"--kind {kind.name} reports metrics only and cannot be exported")
    folder.mkdir(parents=True, exist_ok=True)
    kind.write(folder, adapter, spec, name, backbone_name)
    write_sidecar(folder, adapter, description)
