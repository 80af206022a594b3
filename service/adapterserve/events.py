"""What the adapter lifecycle and the device tier report (metrics subscribe): one type per event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class CacheHit:
    name: str


@dataclass(frozen=True)
class CacheMiss:
    name: str


@dataclass(frozen=True)
class AdapterLoaded:
    """A cold load finished: store to host memory, parsed and validated."""

    name: str
    seconds: float


@dataclass(frozen=True)
class Evicted:
    name: str
    tier: Literal["device", "host"]


CacheEvent = CacheHit | CacheMiss | AdapterLoaded | Evicted
