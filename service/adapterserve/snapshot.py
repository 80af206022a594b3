"""What a request resolves: one version of one adapter, frozen (a leaf module: the lifecycle makes them, the
router, the batcher's work items and the device tier carry them)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .adapters.model import Adapter
from .store.base import VersionInfo


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, each load is its own snapshot
class Snapshot:
    name: str
    info: VersionInfo
    adapter: Adapter  # the host tier's tensors (float32, CPU); never modified
    loaded_at: float = field(default_factory=time.time)

    @property
    def version(self) -> str:
        return self.info.version
