"""Adapter file formats by name. A new format registers a detector and a loader; nothing dispatches on names."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import tasks
from ..adapters.ensemble import Ensemble
from ..adapters.model import Adapter
from ..errors import AdapterServeError, InvalidAdapter
from . import adapterhub, ensemble, peft, peft_kinds
from .weights import read_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdapterFormat:
    name: str
    detect: Callable[[Path], bool]
    load: Callable[[Path, BackboneShape], Adapter | Ensemble]
    # kind, task, labels from the config files alone (checked as load checks them, no tensors): the listing
    describe: Callable[[Path], dict] | None = None


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
    AdapterFormat("ensemble", ensemble.detect, lambda f, b: ensemble.load(f), ensemble.describe),
    AdapterFormat(
        "peft",
        peft.detect,
        lambda f, b: peft_kinds.load(f, b.hidden_size, b.num_layers, b.linear_shapes),
        peft_kinds.describe,
    ),
    AdapterFormat(
        "adapterhub",
        adapterhub.detect,
        lambda f, b: adapterhub.load(f, b.hidden_size, b.num_layers, b.linear_shapes),
        adapterhub.describe,
    ),
]


def register_format(fmt: AdapterFormat) -> None:
    FORMATS.insert(0, fmt)


def detect_format(folder: Path) -> AdapterFormat:
    for fmt in FORMATS:
        if fmt.detect(folder):
            return fmt
    if (folder / "adapter_config.json").is_file():
        read_json(folder / "adapter_config.json")  # not JSON, not an object: say that
        raise InvalidAdapter(
            "adapter_config.json is neither AdapterHub's (a 'config' key) nor PEFT's (a 'peft_type' key)",
            file="adapter_config.json",
        )
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise InvalidAdapter(
        "not an adapter folder: expected adapter_config.json from AdapterHub `adapters` or PEFT, or an "
        "ensemble.json "
        f"(files present: {present[:10]})"
    )


def load_adapter(folder: Path, backbone: BackboneShape) -> Adapter | Ensemble:
    """Read, validate against the backbone, and return the canonical adapter (host memory, float32), or an
    ensemble (its members are checked against the store by the caller: formats do not see the store).

    Raises only the service's own errors (InvalidAdapter for anything wrong with the folder), and
    FileNotFoundError when the folder vanishes while read (the cache's signal of a concurrent delete)."""
    try:
        adapter = detect_format(folder).load(folder, backbone)
    except (AdapterServeError, FileNotFoundError, MemoryError):
        raise
    except Exception as e:
        # Every check is meant to be explicit (the fuzz test asserts none reaches here); if one is missing,
        # the uploader still gets a 422 with the reason instead of a 500, and the log names the gap.
        log.exception("adapter loader raised %s instead of InvalidAdapter for %s", type(e).__name__, folder)
        raise InvalidAdapter(
            f"the adapter folder could not be read ({type(e).__name__}: {str(e)[:300]})", unexpected=True
        ) from None
    if isinstance(adapter, Ensemble):
        return adapter
    if adapter.head.pooling == "pooler" and not backbone.has_pooler:
        raise InvalidAdapter(
            "this adapter's head uses the pooler, but the backbone checkpoint has no pooler "
            "weights; serve it on a backbone with a pooler or retrain with use_pooler=false"
        )
    if adapter.hidden_size != backbone.hidden_size:
        raise InvalidAdapter(f"adapter hidden size {adapter.hidden_size} != backbone {backbone.hidden_size}")
    _check_head_task(adapter)
    return adapter


def _check_head_task(adapter: Adapter) -> None:
    """The task (from the head, or a sidecar's override) must fit the head's shape."""
    head, task = adapter.head, tasks.get(adapter.head.task)
    if (head.pooling == "tokens") != task.per_token:
        raise InvalidAdapter(
            f"the head gives one output per {'token' if head.pooling == 'tokens' else 'text'}, which does not "
            f"fit task {head.task!r}; fix the task in adapterserve.json or the head",
            task=head.task,
        )
    if task.head_outputs is not None and head.num_labels != task.head_outputs:
        raise InvalidAdapter(
            f"a {head.task} head gives {task.head_outputs} outputs per token ({', '.join(task.label_names(set()))}); "
            f"this one gives {head.num_labels}",
            outputs=head.num_labels,
        )
