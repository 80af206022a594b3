"""The device tier: which snapshots have a copy on the backbone's device. Residency is decided where the
batch runs (as vLLM's LoRA manager does): the inference worker asks for the copies of the snapshots in its
batch, places the missing ones itself, and evicts only copies that no running batch uses.

Copies are keyed by snapshot (one version of one adapter), never by name, so a replaced or evicted version
can never change what a queued row computes: the row carries its snapshot, and a copy that was evicted is
placed again from the snapshot's host tensors. Pinned adapters are not evicted; when pins (or the batches
running right now) fill the budget, the batch still runs with every adapter it needs, over the budget until
it ends, and the surplus is dropped afterwards. Budget: `max_adapters` copies and `max_bytes` bytes.

On a float32 CPU backbone the host tensors are already what compute needs: the tier is the identity and
holds nothing. `move` replaces the copy function (tests use a separate CPU copy as a fake device, so CPU
CI runs the eviction paths). Thread-safe: workers call `acquire`/`release`, the lifecycle (event loop)
calls `discard`; the copy itself runs outside the lock.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable

import torch

from ..adapters.model import Adapter
from ..events import CacheEvent, Evicted
from ..snapshot import Snapshot


class DeviceTier:
    def __init__(
        self,
        device: torch.device,
        dtype: torch.dtype,
        *,
        max_adapters: int = 256,
        max_bytes: int = 2 * 1024**3,
        move: Callable[[Adapter], Adapter] | None = None,
        on_event: Callable[[CacheEvent], None] | None = None,
    ):
        self.device, self.dtype = device, dtype
        self.max_adapters, self.max_bytes = max_adapters, max_bytes
        self.identity = move is None and device.type == "cpu" and dtype == torch.float32
        self._move = move or self._to_device
        self.on_event = on_event or (lambda event: None)
        self._copies: OrderedDict[Snapshot, Adapter] = OrderedDict()  # LRU, oldest first
        self._bytes = 0
        self._in_use: Counter[Snapshot] = Counter()
        self._stale: set[Snapshot] = set()  # discarded while a batch used them: dropped on release
        self._lock = threading.Lock()
        self.pinned: Callable[[], frozenset[str]] = frozenset  # set by the lifecycle: names never evicted

    def _to_device(self, adapter: Adapter) -> Adapter:
        # A new tensor per field (Adapter.to copies). It runs on the inference thread, on the stream the
        # batch then computes on, so the copy is ordered before the compute that reads it: no synchronise.
        return adapter.to(self.device, self.dtype)

    # ---- the inference side -------------------------------------------------------------------------
    def acquire(self, snapshots: Iterable[Snapshot]) -> dict[Snapshot, Adapter]:
        """Device copies of these snapshots, placed if missing; held (never evicted) until `release`."""
        snapshots = list(dict.fromkeys(snapshots))
        if self.identity:
            return {s: s.adapter for s in snapshots}
        out: dict[Snapshot, Adapter] = {}
        missing = []
        with self._lock:
            for s in snapshots:
                self._in_use[s] += 1
                copy = self._copies.get(s)
                if copy is None:
                    missing.append(s)
                else:
                    self._copies.move_to_end(s)
                    out[s] = copy
        for s in missing:
            copy = self._move(s.adapter)  # outside the lock: another worker's batch need not wait for it
            with self._lock:
                if s in self._copies:  # another worker placed it meanwhile
                    copy = self._copies[s]
                else:
                    self._copies[s] = copy
                    self._bytes += copy.nbytes
                out[s] = copy
        with self._lock:
            self._evict()
        return out

    def release(self, snapshots: Iterable[Snapshot]) -> None:
        if self.identity:
            return
        with self._lock:
            for s in dict.fromkeys(snapshots):
                self._in_use[s] -= 1
                if self._in_use[s] <= 0:
                    del self._in_use[s]
                    if s in self._stale:
                        self._stale.discard(s)
                        self._drop(s)
            self._evict()

    # ---- the lifecycle side ---------------------------------------------------------------------------
    def discard(self, snapshot: Snapshot) -> None:
        """The snapshot is no longer served (replaced, forgotten, unloaded, evicted from the host tier)."""
        if self.identity:
            return
        with self._lock:
            if self._in_use.get(snapshot):
                self._stale.add(snapshot)
            else:
                self._drop(snapshot)

    # ---- reads -----------------------------------------------------------------------------------------
    def holds(self, snapshot: Snapshot) -> bool:
        return self.identity or snapshot in self._copies

    def __len__(self) -> int:
        return len(self._copies)

    @property
    def nbytes(self) -> int:
        return self._bytes

    # ---- under the lock ----------------------------------------------------------------------------------
    def _drop(self, s: Snapshot) -> None:
        copy = self._copies.pop(s, None)
        if copy is not None:
            self._bytes -= copy.nbytes

    def _evict(self) -> None:
        pinned = self.pinned()
        for s in list(self._copies):
            if len(self._copies) <= self.max_adapters and self._bytes <= self.max_bytes:
                return
            if s in self._in_use or (s.name in pinned and s not in self._stale):
                continue
            self._drop(s)
            self.on_event(Evicted(s.name, "device"))
