"""Adapter file formats by name. A new format registers a detector and a loader; nothing dispatches on names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..adapters.model import Adapter
from ..errors import InvalidAdapter
from . import adapterhub, peft


@dataclass(frozen=True)
class AdapterFormat:
    name: str
    detect: Callable[[Path], bool]
    load: Callable[[Path, BackboneShape], Adapter]


@dataclass(frozen=True)
class BackboneShape:
    """What a loader needs to know of the backbone: no torch modules, so formats stay testable alone."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    has_pooler: bool = True

    @property
    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        H, I = self.hidden_size, self.intermediate_size  # noqa: E741 (the papers' names)
        return {
            "attention.self.query": (H, H),
            "attention.self.key": (H, H),
            "attention.self.value": (H, H),
            "attention.output.dense": (H, H),
            "intermediate.dense": (I, H),
            "output.dense": (H, I),
        }


FORMATS: list[AdapterFormat] = [
    AdapterFormat("peft", peft.detect, lambda f, b: peft.load(f, b.hidden_size, b.num_layers, b.linear_shapes)),
    AdapterFormat("adapterhub", adapterhub.detect, lambda f, b: adapterhub.load(f, b.hidden_size, b.num_layers)),
]


def register_format(fmt: AdapterFormat) -> None:
    FORMATS.insert(0, fmt)


def detect_format(folder: Path) -> AdapterFormat:
    for fmt in FORMATS:
        if fmt.detect(folder):
            return fmt
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise InvalidAdapter(
        "not an adapter folder: expected adapter_config.json from AdapterHub `adapters` or PEFT "
        f"(files present: {present[:10]})"
    )


def load_adapter(folder: Path, backbone: BackboneShape) -> Adapter:
    """Read, validate against the backbone, and return the canonical adapter (host memory, float32)."""
    adapter = detect_format(folder).load(folder, backbone)
    if adapter.head.pooling == "pooler" and not backbone.has_pooler:
        raise InvalidAdapter(
            "this adapter's head uses the pooler, but the backbone checkpoint has no pooler "
            "weights; serve it on a backbone with a pooler or retrain with use_pooler=false"
        )
    if adapter.hidden_size != backbone.hidden_size:
        raise InvalidAdapter(f"adapter hidden size {adapter.hidden_size} != backbone {backbone.hidden_size}")
    return adapter
