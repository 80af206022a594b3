"""The one owner of which adapter versions this process serves: the host tier, pins and unloads.

Every change is a message (`Install`, `Loaded`, `Replace`, `Forget`, `Pin`, `Unpin`, `Unload`) applied by
`Lifecycle.apply`, the single writer: one handler per message type, run on the event loop without awaiting,
so each change is atomic and they apply in the order sent. Whatever needs I/O (reading the store, parsing,
publishing) happens before the message is sent, and a message whose premise went stale while that I/O ran
is dropped: a cold load carries the generation it started under (an install, forget or unload bumps it, so
an unload during a cold load sticks), and a replica refresh carries the snapshot it compared against.

What a request resolves is a `Snapshot` (snapshot.py): one version of one adapter, frozen, with its host
tensors and head. Nothing ever mutates one. The device copies live in the device tier (engine/devices.py), keyed by
snapshot and placed where the batch runs, so eviction can never change what a queued row computes.

Host tier: LRU bounded by `max_host_adapters`; pinned adapters are never evicted. A cold adapter is read
once however many requests ask for it at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .adapters.model import Adapter
from .engine.devices import DeviceTier
from .errors import AdapterNotFound, InvalidAdapter
from .events import AdapterLoaded, CacheEvent, CacheHit, CacheMiss, Evicted
from .formats.registry import BackboneShape, load_adapter
from .snapshot import Snapshot
from .store.base import AdapterStore, VersionInfo, not_found, validate_name

log = logging.getLogger(__name__)


# ---- messages ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Install:
    """An admin change on this replica (upload, rollback): serve this snapshot from now on."""

    snapshot: Snapshot


@dataclass(frozen=True)
class Loaded:
    """A cold load finished; it lands only if nothing changed the name since it started."""

    snapshot: Snapshot
    generation: int


@dataclass(frozen=True)
class Replace:
    """A replica refresh: serve `snapshot` instead of `expected`, if `expected` is still what is served."""

    snapshot: Snapshot
    expected: Snapshot


@dataclass(frozen=True)
class Forget:
    """Deleted from the store."""

    name: str


@dataclass(frozen=True)
class Pin:
    name: str


@dataclass(frozen=True)
class Unpin:
    name: str


@dataclass(frozen=True)
class Unload:
    """Unpin and drop from memory; returns whether it was resident."""

    name: str


Message = Install | Loaded | Replace | Forget | Pin | Unpin | Unload


class Lifecycle:
    def __init__(
        self,
        store: AdapterStore,
        shape: BackboneShape,
        devices: DeviceTier,
        *,
        max_host_adapters: int = 4096,
        on_event: Callable[[CacheEvent], None] | None = None,
    ):
        self.store, self.shape, self.devices = store, shape, devices
        self.max_host_adapters = max_host_adapters
        self._host: OrderedDict[str, Snapshot] = OrderedDict()
        self._pins: frozenset[str] = frozenset()  # replaced, never mutated: the device tier reads it from workers
        self._generation: dict[str, int] = {}
        self._loading: dict[str, asyncio.Future] = {}
        self._changing: dict[str, list] = {}
        self._on_event = on_event or (lambda event: None)
        self._handlers: dict[type, Callable] = {
            Install: self._install,
            Loaded: self._loaded,
            Replace: self._replace,
            Forget: self._forget,
            Pin: self._pin,
            Unpin: self._unpin,
            Unload: self._unload,
        }
        devices.pinned = lambda: self._pins

    # ---- reads ---------------------------------------------------------------------------------------------
    def residency(self, name: str) -> str:
        """device: ready for compute; host: parsed in memory; store: neither."""
        snap = self._host.get(name)
        if snap is None:
            return "store"
        return "device" if self.devices.holds(snap) else "host"

    def resident(self) -> dict[str, Snapshot]:
        return dict(self._host)

    def peek(self, name: str) -> Snapshot | None:
        return self._host.get(name)

    @property
    def pins(self) -> frozenset[str]:
        return self._pins

    def counts(self) -> dict[str, int]:
        host = len(self._host)
        return {"device": host if self.devices.identity else len(self.devices), "host": host}

    # ---- the request path ----------------------------------------------------------------------------------
    async def get(self, name: str) -> Snapshot:
        """The snapshot a request computes with, read from the store (once) if not resident."""
        snap = self._host.get(name)
        if snap is not None:
            self._host.move_to_end(name)  # recency only: no change to what is served
            self._on_event(CacheHit(name))
            return snap
        self._on_event(CacheMiss(name))
        fut = self._loading.get(name)
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = self._loading[name] = loop.create_future()
            loop.create_task(self._load(name, fut))
        return await asyncio.shield(fut)

    async def _load(self, name: str, fut: asyncio.Future) -> None:
        generation = self._generation.get(name, 0)
        started = time.monotonic()
        try:
            info, adapter = await asyncio.to_thread(self._read, name)
            snap = self.apply(Loaded(Snapshot(name, info, adapter), generation))
            self._on_event(AdapterLoaded(name, time.monotonic() - started))
            if not fut.done():
                fut.set_result(snap)
        except Exception as e:  # delivered to every waiter; the next request tries again
            if not fut.done():
                fut.set_exception(e)
            fut.exception()  # mark retrieved: waiters may all have gone
        finally:
            self._loading.pop(name, None)

    def _read(self, name: str, attempts: int = 2) -> tuple[VersionInfo, Adapter]:
        validate_name(name)
        info = self.store.current(name)
        if info is None:
            raise not_found(self.store, name)
        try:
            return info, load_adapter(self.store.fetch(name, info.version), self.shape)
        except FileNotFoundError:  # deleted (or pruned) while we read it: for this request it is gone
            raise AdapterNotFound(f"adapter {name!r} was deleted while loading", name=name) from None
        except InvalidAdapter:
            # A version deleted or replaced while we read it can look like a broken folder (a file the
            # loader checks for is already gone). Only a version that is still current is broken.
            now = self.store.current(name)
            if now is None:
                raise AdapterNotFound(f"adapter {name!r} was deleted while loading", name=name) from None
            if now.version != info.version and attempts > 1:
                return self._read(name, attempts - 1)
            raise

    # ---- changes -----------------------------------------------------------------------------------------------
    def apply(self, message: Message):
        """The single writer. Call on the event loop only; handlers never await."""
        return self._handlers[type(message)](message)

    @contextlib.asynccontextmanager
    async def changing(self, name: str):
        """Admin changes to one name on this replica run one at a time (store write, then Install), so two
        racing uploads serve the one the store ends up pointing at."""
        entry = self._changing.setdefault(name, [asyncio.Lock(), 0])  # [lock, callers holding or waiting]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:  # nobody waits: forget the lock, so names seen once do not pile up
                del self._changing[name]

    # ---- handlers (atomic: no await) ---------------------------------------------------------------------------
    def _bump(self, name: str) -> None:
        self._generation[name] = self._generation.get(name, 0) + 1

    def _set(self, snap: Snapshot) -> None:
        old = self._host.pop(snap.name, None)
        if old is not None and old is not snap:
            self.devices.discard(old)
        self._host[snap.name] = snap
        self._evict_host()

    def _drop(self, name: str) -> bool:
        old = self._host.pop(name, None)
        if old is not None:
            self.devices.discard(old)
        return old is not None

    def _install(self, m: Install) -> Snapshot:
        self._bump(m.snapshot.name)
        self._set(m.snapshot)
        return m.snapshot

    def _loaded(self, m: Loaded) -> Snapshot:
        name = m.snapshot.name
        if self._generation.get(name, 0) != m.generation:  # installed, forgotten or unloaded meanwhile
            return self._host.get(name, m.snapshot)  # the waiters still get an answer; nothing lands
        self._set(m.snapshot)
        return m.snapshot

    def _replace(self, m: Replace) -> bool:
        if self._host.get(m.snapshot.name) is not m.expected:
            return False
        self._bump(m.snapshot.name)
        self._set(m.snapshot)
        return True

    def _forget(self, m: Forget) -> None:
        self._bump(m.name)
        self._drop(m.name)
        self._pins = self._pins - {m.name}

    def _pin(self, m: Pin) -> None:
        self._pins = self._pins | {m.name}

    def _unpin(self, m: Unpin) -> None:
        self._pins = self._pins - {m.name}

    def _unload(self, m: Unload) -> bool:
        self._bump(m.name)
        self._pins = self._pins - {m.name}
        return self._drop(m.name)

    def _evict_host(self) -> None:
        for name in list(self._host):
            if len(self._host) <= self.max_host_adapters:
                return
            if name in self._pins:
                continue
            self._drop(name)
            self._on_event(Evicted(name, "host"))
