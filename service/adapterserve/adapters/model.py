"""The canonical in-memory adapter: what every file format is read into and what the engine runs.

Insertion points are addressed by (layer index, site). Bottleneck sites are "mh" (after the attention
sub-layer) and "output" (after the FFN). LoRA and bias sites are the encoder layer's linear modules,
named as in HF BERT: "attention.self.query", "attention.self.key", "attention.self.value",
"attention.output.dense", "intermediate.dense", "output.dense". Bias sites (PEFT bias="all"/"lora_only") may also name
the sub-layer LayerNorms ("attention.output.LayerNorm", "output.LayerNorm") and, at layer -1,
"embeddings.LayerNorm" and "pooler.dense". IA3 sites are linear sites (and "pooler.dense"). A prefix is per layer
(keys and values prepended inside attention); a prompt is a sequence of virtual token embeddings put before the
text's (see prefix.py and prompt.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch

from . import kinds

LINEAR_SITES = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
LAYER_NORM_SITES = ("attention.output.LayerNorm", "output.LayerNorm")
GLOBAL_BIAS_SITES = ("embeddings.LayerNorm", "pooler.dense")  # addressed with layer -1
Scaling = float | torch.Tensor


@dataclass(frozen=True)
class BottleneckConfig:
    """The AdapterHub bottleneck options that change the forward pass (shared by all sites)."""

    non_linearity: str = "relu"
    original_ln_before: bool = False
    original_ln_after: bool = True
    residual_before_ln: bool | str = True  # True, False or "post_add"
    adapter_residual_before_ln: bool = False
    ln_before: bool = False
    ln_after: bool = False


@dataclass
class BottleneckSite:
    down_weight: torch.Tensor  # [r, H]
    down_bias: torch.Tensor  # [r]
    up_weight: torch.Tensor  # [H, r]
    up_bias: torch.Tensor  # [H]
    scaling: Scaling = 1.0
    norm_before: tuple[torch.Tensor, torch.Tensor] | None = None  # LayerNorm(H), eps 1e-5
    norm_after: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass
class LoraSite:
    a: torch.Tensor  # [r, in]
    b: torch.Tensor  # [out, r]
    scaling: float


@dataclass
class Ia3Site:
    """A learned vector that scales a linear's input (PEFT feed-forward modules) or its output (with bias)."""

    scale: torch.Tensor  # [in] or [out]
    on_input: bool


@dataclass
class Head:
    """A prediction head: a stack of Linear layers with an activation between them. Question answering
    ("qa") is a per-token head with two outputs: the start and end logits."""

    task: str  # a task name registered in adapterserve.tasks
    pooling: Literal["cls", "pooler", "tokens"]
    layers: list[tuple[torch.Tensor, torch.Tensor | None]]  # (weight [out, in], bias [out])
    activation: str | None
    labels: list[str]

    @property
    def num_labels(self) -> int:
        return self.layers[-1][0].shape[0]


@dataclass
class Adapter:
    kind: str  # a kind registered in adapters/kinds.py: its name in the listing
    head: Head
    hidden_size: int
    # Each kind's weights and settings; which attributes are whose is in the kind's `Kind` (adapters/kinds.py)
    bottleneck_config: BottleneckConfig | None = None
    bottleneck: dict[tuple[int, str], BottleneckSite] = field(default_factory=dict)
    lora: dict[tuple[int, str], LoraSite] = field(default_factory=dict)
    bias: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)  # replaces a linear's bias
    ia3: dict[tuple[int, str], Ia3Site] = field(default_factory=dict)
    prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # layer -> keys, values [P, H]
    # PEFT passes its prefix as past key values, so the text's position ids start after it (AdapterHub's do not)
    prefix_shifts_positions: bool = False
    prompt: torch.Tensor | None = None  # [P, H] virtual token embeddings (PEFT prompt tuning)
    format: str = ""
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        kinds.get(self.kind)  # a format or trainer naming an unregistered kind is our bug: fail at load

    @property
    def task(self) -> str:
        return self.head.task

    @property
    def labels(self) -> list[str]:
        return self.head.labels

    def tensors(self) -> Iterator[torch.Tensor]:
        for kind in kinds.all_kinds():
            yield from kind.tensors(self)
        for w, b in self.head.layers:
            yield w
            if b is not None:
                yield b

    @property
    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.tensors())

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    @property
    def virtual_tokens(self) -> int:
        """Positions a row of this adapter takes before its text: prompt tokens in the sequence itself."""
        return sum(k.virtual_tokens(self) for k in kinds.with_hook("virtual_tokens"))

    @property
    def position_shift(self) -> int:
        """How far a row's position ids start to the right (a PEFT prefix); prompt tokens sit in the row itself."""
        return sum(k.position_shift(self) for k in kinds.with_hook("position_shift"))

    @property
    def reserved_positions(self) -> int:
        """Position embeddings a row uses beyond its text's tokens: its texts must be that much shorter."""
        return self.virtual_tokens + self.position_shift

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Adapter:
        """A copy with every tensor moved (non-blocking from pinned host memory)."""

        def mv(t):
            if t is None or not isinstance(t, torch.Tensor):
                return t
            return t.to(device=device, dtype=dtype or t.dtype, non_blocking=True)

        head = Head(
            self.head.task,
            self.head.pooling,
            [(mv(w), mv(b)) for w, b in self.head.layers],
            self.head.activation,
            list(self.head.labels),
        )
        return Adapter(
            kind=self.kind,
            head=head,
            hidden_size=self.hidden_size,
            **{attr: value for kind in kinds.all_kinds() for attr, value in kind.move(self, mv).items()},
            format=self.format,
            warnings=list(self.warnings),
        )
