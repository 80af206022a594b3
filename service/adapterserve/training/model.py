"""Trainable adapters: the service's canonical `Adapter` with leaf tensors that require grad.

Training runs the very code that serves: `Backbone.encode(..., adapters=AdapterBatch)` then `head_input` and
`apply_head`. The backbone stays frozen (and in eval mode, so it has no dropout); gradients flow through it
into the adapter's tensors. The only training-only piece is dropout on the head input.

Initialisation follows the libraries: AdapterHub "bert" init (normal(0, 0.02) weights, zero biases) for the
bottleneck projections and the flex head; PEFT's default for LoRA (lora_A Kaiming-uniform with a=sqrt(5),
lora_B zero) and normal(0, 0.02) for the classifier, as BertForSequenceClassification does. IA3 vectors start
at one (AdapterHub init_weights "ia3"); a flat prefix at N(0, 1) (AdapterHub's FlatPrefixTuning).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..adapters.batch import AdapterBatch
from ..adapters.heads import apply_head, head_input
from ..adapters.lora import lora_scaling
from ..adapters.model import LINEAR_SITES, Adapter, BottleneckConfig, BottleneckSite, Head, LoraSite

# (mh_adapter, output_adapter, BottleneckConfig) of the two AdapterHub presets `adapterserve train` builds
BOTTLENECK_PRESETS = {
    "seq_bn": (False, True, BottleneckConfig(non_linearity="relu", original_ln_before=True)),
    "double_seq_bn": (True, True, BottleneckConfig(non_linearity="swish", original_ln_before=False)),
}
HEAD_ACTIVATION = "tanh"


@dataclass
class Spec:
    kind: str
    task: str
    labels: list[str]
    reduction_factor: float = 16
    lora_r: int = 8
    lora_alpha: float = 16
    lora_targets: list[str] = field(default_factory=lambda: ["query", "value"])
    head_layers: int | None = None  # None: the task's default (a LoRA classifier always has 1)
    dropout: float = 0.1
    prefix_length: int = 10


def lora_sites(targets: list[str]) -> list[str]:
    """Target names -> encoder linear sites, with PEFT's rule (exact name, or the name ends with '.' + target)."""
    sites = []
    for t in targets:
        hits = [s for s in LINEAR_SITES if s == t or s.endswith("." + t)]
        if not hits:
            raise ValueError(
                f"LoRA target {t!r} matches no encoder linear module; choose from "
                "query, key, value, attention.output.dense, intermediate.dense, output.dense"
            )
        sites += [s for s in hits if s not in sites]
    return sites


def _normal(shape, gen, std=0.02) -> torch.Tensor:
    return torch.randn(shape, generator=gen) * std


Leaf = Callable[[torch.Tensor], torch.Tensor]


def leaf_maker(device: torch.device | str) -> Leaf:
    def leaf(t: torch.Tensor) -> torch.Tensor:
        return t.float().to(device).contiguous().requires_grad_(True)

    return leaf


def new_head(spec: Spec, hidden: int, pooling: str, activation: str | None, n: int, gen, leaf: Leaf) -> Head:
    dims = [hidden] * n + [len(spec.labels)]
    layers = [(leaf(_normal((dims[i + 1], dims[i]), gen)), leaf(torch.zeros(dims[i + 1]))) for i in range(n)]
    return Head(task=spec.task, pooling=pooling, layers=layers, activation=activation, labels=list(spec.labels))


def bottleneck_sites(spec: Spec, hidden: int, num_layers: int, gen, leaf: Leaf) -> dict:
    mh, out, _ = BOTTLENECK_PRESETS[spec.kind]
    r = max(1, int(hidden // spec.reduction_factor))
    sites = {}
    for i in range(num_layers):
        for site, on in (("mh", mh), ("output", out)):
            if on:
                sites[(i, site)] = BottleneckSite(
                    leaf(_normal((r, hidden), gen)),
                    leaf(torch.zeros(r)),
                    leaf(_normal((hidden, r), gen)),
                    leaf(torch.zeros(hidden)),
                )
    return sites


def lora_site_tensors(spec: Spec, num_layers: int, linear_shapes: dict, gen, leaf: Leaf) -> dict:
    lora = {}
    scaling = lora_scaling(spec.lora_r, spec.lora_alpha, False)
    for i in range(num_layers):
        for site in lora_sites(spec.lora_targets):
            out_dim, in_dim = linear_shapes[site]
            a = torch.empty(spec.lora_r, in_dim)
            bound = 1 / math.sqrt(in_dim)  # kaiming_uniform_(a=sqrt(5)) on [r, in], as nn.Linear
            a.uniform_(-bound, bound, generator=gen)
            lora[(i, site)] = LoraSite(leaf(a), leaf(torch.zeros(out_dim, spec.lora_r)), scaling)
    return lora


class TrainModel:
    """Logits of a batch through the serving code path; `params` are what the optimizer updates."""

    def __init__(self, backbone, adapter: Adapter, kind, dropout: float):
        """`kind`: the TrainingKind (training/kinds.py): whether the backbone trains, or only the head does."""
        self.backbone, self.adapter, self.kind, self.dropout = backbone, adapter, kind, dropout
        self.adapter_params = list(adapter.tensors())
        self.backbone_params: list[torch.Tensor] = []
        if kind.trains_backbone:
            uses_pooler = adapter.head.pooling == "pooler"
            for name, p in backbone.model.named_parameters():
                if uses_pooler or not name.startswith("pooler."):
                    p.requires_grad_(True)
                    self.backbone_params.append(p)

    @property
    def params(self) -> list[torch.Tensor]:
        return self.adapter_params + self.backbone_params

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.params)

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.backbone.device) for k, v in batch.items()}

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The head's input: [B, H] (sequence tasks) or [B, T, H] (tagging)."""
        batch = self.to_device(batch)
        B = batch["input_ids"].shape[0]
        adapters = AdapterBatch.from_row_adapters([self.adapter] * B)
        hidden, pooled = self.backbone.encode(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], adapters=adapters
        )
        return head_input(self.adapter.head, hidden, pooled)

    def logits(self, batch: dict[str, torch.Tensor], train: bool) -> torch.Tensor:
        if "features" in batch:  # head-only training on cached backbone outputs
            x = batch["features"].to(self.backbone.device)
        elif self.kind.head_only:
            with torch.no_grad():
                x = self.features(batch)
        else:
            x = self.features(batch)
        if train and self.dropout > 0:
            x = F.dropout(x, self.dropout, training=True)
        return apply_head(self.adapter.head, x)

    def snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    def restore(self, state: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, s in zip(self.params, state):
                p.copy_(s)
