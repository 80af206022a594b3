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
    kind: Literal["bottleneck", "lora", "ia3", "prefix", "prompt"]
    head: Head
    hidden_size: int
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

    @property
    def task(self) -> str:
        return self.head.task

    @property
    def labels(self) -> list[str]:
        return self.head.labels

    def tensors(self) -> Iterator[torch.Tensor]:
        for s in self.bottleneck.values():
            yield from (s.down_weight, s.down_bias, s.up_weight, s.up_bias)
            if isinstance(s.scaling, torch.Tensor):
                yield s.scaling
            for norm in (s.norm_before, s.norm_after):
                if norm is not None:
                    yield from norm
        for lo in self.lora.values():
            yield from (lo.a, lo.b)
        yield from self.bias.values()
        yield from (s.scale for s in self.ia3.values())
        for k, v in self.prefix.values():
            yield from (k, v)
        if self.prompt is not None:
            yield self.prompt
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
    def prefix_length(self) -> int:
        return next(iter(self.prefix.values()))[0].shape[0] if self.prefix else 0

    @property
    def virtual_tokens(self) -> int:
        """Positions a row of this adapter takes before its text: prompt tokens in the sequence itself."""
        return 0 if self.prompt is None else self.prompt.shape[0]

    @property
    def position_shift(self) -> int:
        """How far a row's position ids start to the right (a PEFT prefix); prompt tokens sit in the row itself."""
        return self.prefix_length if self.prefix_shifts_positions else 0

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

        def mv_site(s: BottleneckSite) -> BottleneckSite:
            return BottleneckSite(
                mv(s.down_weight),
                mv(s.down_bias),
                mv(s.up_weight),
                mv(s.up_bias),
                mv(s.scaling),
                None if s.norm_before is None else (mv(s.norm_before[0]), mv(s.norm_before[1])),
                None if s.norm_after is None else (mv(s.norm_after[0]), mv(s.norm_after[1])),
            )

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
            bottleneck_config=self.bottleneck_config,
            bottleneck={k: mv_site(s) for k, s in self.bottleneck.items()},
            lora={k: LoraSite(mv(s.a), mv(s.b), s.scaling) for k, s in self.lora.items()},
            bias={k: mv(t) for k, t in self.bias.items()},
            ia3={k: Ia3Site(mv(s.scale), s.on_input) for k, s in self.ia3.items()},
            prefix={i: (mv(k), mv(v)) for i, (k, v) in self.prefix.items()},
            prefix_shifts_positions=self.prefix_shifts_positions,
            prompt=mv(self.prompt),
            format=self.format,
            warnings=list(self.warnings),
        )
