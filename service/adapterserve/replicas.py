"""Replica convergence: keep this process's resident adapters on the versions the shared store calls current.

A background task polls the store's manifest (one small conditional read, never a listing and never on the
request path) every `store_poll_s / 2`, so that a change is served within `store_poll_s` (the other half
is for fetching and loading it), and every RECONCILE_S asks the store for the authoritative view, which
also repairs a stale index. For each resident adapter whose version differs it re-reads the adapter's pointer
(the truth), loads the new version off the event loop and installs it through the cache; requests already in
flight keep the object they resolved. An adapter deleted from the store is forgotten. Adapters that are not
resident need nothing: their next request loads whatever is current. Failures are logged and retried on the
next poll; the task never dies of them, and what is resident keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .errors import AdapterNotFound, AdapterServeError
from .formats.registry import load_adapter
from .state import AppState

log = logging.getLogger(__name__)
RECONCILE_S = 60.0


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
        for name, entry in self.state.cache.resident().items():
            if manifest.get(name) != entry.version:
                await self.refresh(name)

    async def refresh(self, name: str) -> None:
        """Bring one resident adapter to the store's current version (or forget it if deleted)."""
        state = self.state
        try:
            async with state.admin_lock(name):  # never interleave with this replica's own admin action on it
                entry = state.cache.peek(name)
                if entry is None:
                    return  # evicted or unloaded meanwhile: the next request loads what is current
                info = await asyncio.to_thread(state.store.current, name)
                if info is None:
                    state.cache.forget(name)
                    log.info("adapter deleted in the store; dropped", extra={"adapter": name, "version": entry.version})
                    return
                if info.version == entry.version:
                    return  # the index lagged the pointer; nothing to do
                folder = await asyncio.to_thread(state.store.fetch, name, info.version)
                adapter = await asyncio.to_thread(load_adapter, folder, state.backbone.shape)
                fresh = await asyncio.to_thread(state.cache.prepare, name, info, adapter)
                if state.cache.peek(name) is entry:  # still the one we compared against
                    state.cache.install(fresh)
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
                entry.version if (entry := state.cache.peek(name)) else None,
                _reason(e),
            )


def _reason(e: Exception) -> str:
    return e.message if isinstance(e, AdapterServeError) else f"{type(e).__name__}: {e}"


def start_store_watcher(state: AppState) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(StoreWatcher(state).run(), name="adapterserve-store-watcher")
    state.background.append(task)
    return task
