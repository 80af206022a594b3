"""Keeps long-lived Python objects out of the garbage collector's full collections.

A full collection walks every tracked object with the GIL held, so no request or pass moves meanwhile. Start-up
freezes what it built (`freeze_heap`, some 400k objects). Adapters loaded later are long-lived too: with 512
resident the collector tracked 60-120k more objects, and under load the objects of in-flight requests reach the
old generation fast enough to start a full collection every 2-5 s, 25-130 ms each on a 2-core VM
(docs/runtimes.md, "fifth round"). So once adapter loads have settled, a background task collects once and
freezes what survives. Frozen objects are still freed when their last reference goes, as an evicted adapter's
are; only a reference cycle among them would outlive its use.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

from .events import AdapterLoaded, CacheEvent

log = logging.getLogger(__name__)


def freeze_heap() -> None:
    """Collect, then take every surviving object out of future collections."""
    gc.collect()
    gc.freeze()


class HeapFreezer:
    """Counts adapter loads (the lifecycle's events); `due()` once loads have stopped for `quiet_s`."""

    def __init__(self, quiet_s: float, freeze: Callable[[], None] = freeze_heap, clock=time.monotonic):
        self.quiet_s, self._freeze, self._clock = quiet_s, freeze, clock
        self.loads = 0
        self.frozen_loads = 0  # loads already frozen
        self._last_load = 0.0

    def on_event(self, event: CacheEvent) -> None:
        if isinstance(event, AdapterLoaded):
            self.loads += 1
            self._last_load = self._clock()

    def due(self) -> bool:
        return self.loads != self.frozen_loads and self._clock() - self._last_load >= self.quiet_s

    def freeze_if_due(self) -> bool:
        if not self.due():
            return False
        started, loads = self._clock(), self.loads
        self._freeze()  # on the event loop: a collection holds the GIL wherever it runs
        self.frozen_loads = loads
        log.info("froze the heap after adapter loads", extra={"seconds": round(self._clock() - started, 3)})
        return True


def start_heap_freezer(state) -> asyncio.Task | None:
    """A background task of the app (cancelled at shutdown); None when `gc_freeze_quiet_s` is 0."""
    freezer: HeapFreezer | None = state.heap
    if freezer is None:
        return None

    async def run() -> None:
        while True:
            await asyncio.sleep(freezer.quiet_s / 2)
            freezer.freeze_if_due()

    task = asyncio.get_running_loop().create_task(run(), name="adapterserve-heap-freezer")
    state.background.append(task)
    return task
