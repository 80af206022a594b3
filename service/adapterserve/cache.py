"""Which adapters are resident, and where. The cache alone evicts.

Two tiers: host memory (parsed, validated, float32 on CPU) and the device (moved to the backbone's
device and dtype; on a CPU backbone both tiers hold the same object). Both are LRU, bounded by count
(and the device tier by bytes); pinned adapters are never evicted. A cold adapter is loaded on first
request, off the event loop, once however many requests ask for it at the same time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .adapters.model import Adapter
from .errors import AdapterNotFound
from .formats.registry import BackboneShape, load_adapter
from .store.base import AdapterStore, VersionInfo, validate_name

log = logging.getLogger(__name__)


@dataclass(eq=False)
class LoadedAdapter:
    name: str
    info: VersionInfo
    host: Adapter
    device: Adapter | None = None
    loaded_at: float = field(default_factory=time.time)

    @property
    def version(self) -> str:
        return self.info.version


class AdapterCache:
    def __init__(
        self,
        store: AdapterStore,
        shape: BackboneShape,
        device: torch.device,
        dtype: torch.dtype,
        *,
        max_device_adapters: int = 256,
        max_device_bytes: int = 2 * 1024**3,
        max_host_adapters: int = 4096,
        on_event: Callable[[str, dict], None] | None = None,
    ):
        self.store, self.shape, self.device, self.dtype = store, shape, device, dtype
        self.max_device_adapters, self.max_device_bytes = max_device_adapters, max_device_bytes
        self.max_host_adapters = max_host_adapters
        self._host: OrderedDict[str, LoadedAdapter] = OrderedDict()
        self._device: OrderedDict[str, LoadedAdapter] = OrderedDict()
        self._device_bytes = 0
        self._pins: set[str] = set()
        self._loading: dict[str, asyncio.Future] = {}
        self._generation: dict[str, int] = {}  # bumped on install/forget, so a stale load never lands
        self._on_event = on_event or (lambda kind, data: None)

    # ---- reads -------------------------------------------------------------------------------------
    def residency(self, name: str) -> str:
        """device: ready for compute (on a CPU backbone, the CPU); host: parsed in memory; store: neither."""
        if name in self._device:
            return "device"
        return "host" if name in self._host else "store"

    def resident(self) -> dict[str, LoadedAdapter]:
        return dict(self._host)

    def peek(self, name: str) -> LoadedAdapter | None:
        return self._host.get(name)

    @property
    def pins(self) -> set[str]:
        return set(self._pins)

    def counts(self) -> dict[str, int]:
        return {"device": len(self._device), "host": len(self._host)}

    # ---- the request path --------------------------------------------------------------------------
    async def get(self, name: str) -> LoadedAdapter:
        """The adapter ready for compute, loading it (once) if needed."""
        entry = self._device.get(name)
        if entry is not None:
            self._device.move_to_end(name)
            self._host.move_to_end(name)
            self._on_event("hit", {"name": name})
            return entry
        self._on_event("miss", {"name": name})
        fut = self._loading.get(name)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._loading[name] = fut
            asyncio.get_running_loop().create_task(self._load(name, fut))
        return await asyncio.shield(fut)

    async def _load(self, name: str, fut: asyncio.Future) -> None:
        gen = self._generation.get(name, 0)
        started = time.monotonic()
        try:
            host = self._host.get(name)
            if host is None:
                info, adapter = await asyncio.to_thread(self._read, name)
                host = LoadedAdapter(name, info, adapter)
            if host.device is None:
                host.device = await asyncio.to_thread(self._to_device, host.host)
            if self._generation.get(name, 0) == gen:  # nothing replaced it meanwhile
                self._admit(host)
            self._on_event("load", {"name": name, "seconds": time.monotonic() - started})
            if not fut.done():
                fut.set_result(host)
        except Exception as e:  # delivered to every waiter; the next request tries again
            if not fut.done():
                fut.set_exception(e)
            fut.exception()  # mark retrieved: waiters may all have gone
        finally:
            self._loading.pop(name, None)

    def _read(self, name: str) -> tuple[VersionInfo, Adapter]:
        validate_name(name)
        info = self.store.current(name)
        if info is None:
            raise AdapterNotFound(f"adapter {name!r} not found; available: {self.store.names()}", name=name)
        folder = self.store.fetch(name, info.version)
        try:
            return info, load_adapter(folder, self.shape)
        except FileNotFoundError:  # deleted (or pruned) while we read it: for this request it is gone
            raise AdapterNotFound(f"adapter {name!r} was deleted while loading", name=name) from None

    def _to_device(self, adapter: Adapter) -> Adapter:
        if self.device.type == "cpu" and self.dtype == torch.float32:
            return adapter
        if self.device.type == "cuda":
            adapter = adapter.to("cpu")  # a private copy we may pin
            for t in adapter.tensors():
                t.data = t.data.pin_memory()
        moved = adapter.to(self.device, self.dtype)
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        return moved

    # ---- placement and eviction (the only code that removes entries) ----------------------------------
    def _admit(self, entry: LoadedAdapter) -> None:
        name = entry.name
        old = self._device.pop(name, None)
        if old is not None:
            self._device_bytes -= old.device.nbytes
        self._host[name] = entry
        self._host.move_to_end(name)
        self._device[name] = entry
        self._device_bytes += entry.device.nbytes
        self._evict()

    def _evict(self) -> None:
        def over_device() -> bool:
            return len(self._device) > self.max_device_adapters or self._device_bytes > self.max_device_bytes

        for name in list(self._device):
            if not over_device():
                break
            if name in self._pins or len(self._device) == 1:
                continue
            entry = self._device.pop(name)
            self._device_bytes -= entry.device.nbytes
            entry.device = None if self.device.type != "cpu" else entry.device
            self._on_event("evict", {"name": name, "tier": "device"})
        for name in list(self._host):
            if len(self._host) <= self.max_host_adapters:
                break
            if name in self._pins or name in self._device:
                continue
            del self._host[name]
            self._on_event("evict", {"name": name, "tier": "host"})

    # ---- admin -----------------------------------------------------------------------------------------
    def prepare(self, name: str, info: VersionInfo, adapter: Adapter) -> LoadedAdapter:
        """Build a ready entry off the loop (device copy included) without installing it."""
        entry = LoadedAdapter(name, info, adapter)
        entry.device = self._to_device(adapter)
        return entry

    def install(self, entry: LoadedAdapter) -> None:
        """Make a validated entry current at once: the next request uses it (read your writes)."""
        self._generation[entry.name] = self._generation.get(entry.name, 0) + 1
        self._admit(entry)

    def forget(self, name: str) -> None:
        self._generation[name] = self._generation.get(name, 0) + 1
        entry = self._device.pop(name, None)
        if entry is not None:
            self._device_bytes -= entry.device.nbytes
        self._host.pop(name, None)
        self._pins.discard(name)

    def pin(self, name: str) -> None:
        self._pins.add(name)

    def unpin(self, name: str) -> None:
        self._pins.discard(name)
        self._evict()

    def unload(self, name: str) -> bool:
        was = name in self._host
        self._pins.discard(name)
        entry = self._device.pop(name, None)
        if entry is not None:
            self._device_bytes -= entry.device.nbytes
        self._host.pop(name, None)
        return was
