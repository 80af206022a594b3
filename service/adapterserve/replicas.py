"""Replica convergence: keep this process's resident adapters on the versions the shared store calls current.

A background task polls the store's manifest (one small conditional read, never a listing and never on the
request path) every `store_poll_s / 2`, so that a change is served within `store_poll_s` (the other half
is for fetching and loading it), and every RECONCILE_S asks the store for the authoritative view, which
also repairs a stale index. For each resident adapter whose version differs it re-reads the adapter's pointer
(the truth), loads the new version off the event loop and sends the lifecycle a `Replace` that lands only
if the version it compared against is still the one served (an admin change here meanwhile wins); requests
already in flight keep the snapshot they resolved. Changed adapters refresh concurrently, at most
REFRESH_CONCURRENCY at a time, so convergence does not grow with the number of changes (until that many
change at once). An adapter deleted from the store is forgotten. Adapters that are not
resident need nothing: their next request loads whatever is current. Failures are logged and retried on the
next poll; the task never dies of them, and what is resident keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .errors import AdapterNotFound, AdapterServeError
from .formats.registry import load_adapter
from .lifecycle import Forget, Replace
from .snapshot import Snapshot
from .state import AppState

log = logging.getLogger(__name__)
RECONCILE_S = 60.0
REFRESH_CONCURRENCY = 8  # store reads and parses in flight at once (each takes a helper thread)


class StoreWatcher:
    def __init__(self, state: AppState, interval_s: float | None = None, reconcile_s: float = RECONCILE_S):
        self.state = state
        self.interval_s = interval_s or state.settings.store_poll_s / 2
        self.reconcile_s = reconcile_s
        self._next_reconcile = time.monotonic() + reconcile_s
        self._failing = False  # log a broken store once, and its recovery once, not every poll

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end convergence for the life of the process
                log.exception("store watcher poll failed")
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def poll_once(self) -> None:
        store = self.state.store
        full = time.monotonic() >= self._next_reconcile
        try:
            manifest = await asyncio.to_thread(store.reconcile if full else store.manifest)
        except Exception as e:  # the store is down or refuses: keep serving what is resident, try again later
            if not self._failing:
                log.warning("store poll failed; serving resident adapters as they are: %s", _reason(e))
            self._failing = True
            return
        if self._failing:
            log.info("store poll recovered", extra={"store": store.url})
            self._failing = False
        if full:
            self._next_reconcile = time.monotonic() + self.reconcile_s
        changed = [
            (name, snap) for name, snap in self.state.lifecycle.resident().items() if manifest.get(name) != snap.version
        ]
        limit = asyncio.Semaphore(REFRESH_CONCURRENCY)

        async def bounded(name: str, snap: Snapshot) -> None:
            async with limit:
                await self.refresh(name, snap)

        await asyncio.gather(*(bounded(name, snap) for name, snap in changed))

    async def refresh(self, name: str, entry: Snapshot | None = None) -> None:
        """Bring one resident adapter to the store's current version (or forget it if deleted)."""
        state = self.state
        lifecycle = state.lifecycle
        entry = entry or lifecycle.peek(name)
        if entry is None:
            return  # evicted or unloaded meanwhile: the next request loads what is current
        try:
            info = await asyncio.to_thread(state.store.current, name)
            if info is None:
                if lifecycle.peek(name) is entry:  # not re-uploaded here meanwhile
                    lifecycle.apply(Forget(name))
                    log.info("adapter deleted in the store; dropped", extra={"adapter": name, "version": entry.version})
                return
            if info.version == entry.version:
                return  # the index lagged the pointer; nothing to do
            folder = await asyncio.to_thread(state.store.fetch, name, info.version)
            adapter = await asyncio.to_thread(load_adapter, folder, state.backbone.shape)
            if lifecycle.apply(Replace(Snapshot(name, info, adapter), expected=entry)):
                log.info(
                    "adapter reloaded from the store",
                    extra={"adapter": name, "version": info.version, "previous": entry.version},
                )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # e.g. deleted between pointer and files; the old version keeps serving
            level = logging.INFO if isinstance(e, AdapterNotFound) else logging.WARNING
            log.log(
                level,
                "reloading %s failed; keeping version %s until the next poll: %s",
                name,
                entry.version,
                _reason(e),
            )


def _reason(e: Exception) -> str:
    return e.message if isinstance(e, AdapterServeError) else f"{type(e).__name__}: {e}"


def start_store_watcher(state: AppState) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(StoreWatcher(state).run(), name="adapterserve-store-watcher")
    state.background.append(task)
    return task
