"""The adapter cache: bounds, LRU, pins, one load under concurrency, stale loads never land."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from adapterserve.cache import AdapterCache
from adapterserve.errors import AdapterNotFound
from adapterserve.store import open_store

from .conftest import GOLDEN, backbone_for


class CountingStore:
    """Wraps a real store and counts fetches (and can hold them, to overlap requests)."""

    def __init__(self, inner):
        self.inner, self.fetches, self.gate = inner, 0, threading.Event()
        self.gate.set()
        self.url = inner.url

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def fetch(self, name, version):
        self.gate.wait(5)
        self.fetches += 1
        return self.inner.fetch(name, version)


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "store"))
    for i in range(4):
        s.publish(f"a{i}", GOLDEN / "ah_seq_bn" / "adapter")
    s.publish("big", GOLDEN / "ah_double_seq_bn" / "adapter")
    return CountingStore(s)


def make_cache(store, **kw):
    shape = backbone_for("tiny-bert").shape
    events = []
    cache = AdapterCache(
        store, shape, torch.device("cpu"), torch.float32, on_event=lambda kind, data: events.append((kind, data)), **kw
    )
    return cache, events


@pytest.mark.asyncio
async def test_concurrent_first_requests_trigger_one_load(store):
    cache, _ = make_cache(store)
    store.gate.clear()
    tasks = [asyncio.create_task(cache.get("a0")) for _ in range(20)]
    await asyncio.sleep(0.05)
    store.gate.set()
    results = await asyncio.gather(*tasks)
    assert store.fetches == 1 and all(r is results[0] for r in results)


@pytest.mark.asyncio
async def test_lru_eviction_by_count_and_pins(store):
    cache, events = make_cache(store, max_device_adapters=2, max_host_adapters=3)
    await cache.get("a0")
    cache.pin("a0")
    await cache.get("a1")
    await cache.get("a2")  # evicts a1 (a0 pinned)
    assert cache.residency("a0") == "device" and cache.residency("a1") != "device"
    await cache.get("a3")
    assert cache.residency("a0") == "device"
    assert len(cache._device) <= 2 and len(cache._host) <= 3
    assert any(k == "evict" for k, _ in events)


@pytest.mark.asyncio
async def test_eviction_by_bytes(store):
    one = (await make_cache(store)[0].get("a0")).device.nbytes
    cache, _ = make_cache(store, max_device_bytes=int(one * 2.5))
    for n in ("a0", "a1", "a2", "a3"):
        await cache.get(n)
    assert cache._device_bytes <= one * 2.5
    assert sum(e.device.nbytes for e in cache._device.values()) == cache._device_bytes


@pytest.mark.asyncio
async def test_recently_used_survives(store):
    cache, _ = make_cache(store, max_device_adapters=2, max_host_adapters=2)
    await cache.get("a0")
    await cache.get("a1")
    await cache.get("a0")  # a0 most recent
    await cache.get("a2")
    assert cache.residency("a0") == "device" and cache.residency("a1") == "store"


@pytest.mark.asyncio
async def test_missing_adapter_and_retry_after_failure(store):
    cache, _ = make_cache(store)
    with pytest.raises(AdapterNotFound) as e:
        await cache.get("zzz")
    assert "a0" in e.value.message
    assert "zzz" not in cache._loading


@pytest.mark.asyncio
async def test_install_wins_over_a_stale_load(store):
    cache, _ = make_cache(store)
    store.gate.clear()
    pending = asyncio.create_task(cache.get("a0"))
    await asyncio.sleep(0.02)
    from adapterserve.formats import load_adapter

    info = store.inner.publish("a0", GOLDEN / "ah_head_one_layer" / "adapter")
    entry = cache.prepare("a0", info, load_adapter(store.inner.fetch("a0", info.version), cache.shape))
    cache.install(entry)
    store.gate.set()
    await pending
    assert cache.peek("a0").version == info.version
