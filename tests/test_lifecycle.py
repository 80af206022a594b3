"""The lifecycle: host-tier bounds, LRU, pins, one load under concurrency, stale loads never land, and
every change is a message whose premise is checked (an unload during a cold load sticks)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from adapterserve.engine.devices import DeviceTier
from adapterserve.errors import AdapterNotFound
from adapterserve.events import CacheHit, CacheMiss, Evicted
from adapterserve.formats import load_adapter
from adapterserve.lifecycle import Forget, Install, Lifecycle, Pin, Replace, Unload
from adapterserve.snapshot import Snapshot
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
    return CountingStore(s)


def make_lifecycle(store, **kw):
    events = []
    devices = DeviceTier(torch.device("cpu"), torch.float32)
    lifecycle = Lifecycle(store, backbone_for("tiny-bert").shape, devices, on_event=events.append, **kw)
    return lifecycle, events


def snapshot_of(store, name: str, case: str) -> Snapshot:
    info = store.inner.publish(name, GOLDEN / case / "adapter")
    return Snapshot(name, info, load_adapter(store.inner.fetch(name, info.version), backbone_for("tiny-bert").shape))


@pytest.mark.asyncio
async def test_concurrent_first_requests_trigger_one_load(store):
    lifecycle, events = make_lifecycle(store)
    store.gate.clear()
    tasks = [asyncio.create_task(lifecycle.get("a0")) for _ in range(20)]
    await asyncio.sleep(0.05)
    store.gate.set()
    results = await asyncio.gather(*tasks)
    assert store.fetches == 1 and all(r is results[0] for r in results)
    await lifecycle.get("a0")
    assert CacheHit("a0") in events and CacheMiss("a0") in events


@pytest.mark.asyncio
async def test_host_lru_by_count_keeps_pins_and_recent(store):
    lifecycle, events = make_lifecycle(store, max_host_adapters=2)
    await lifecycle.get("a0")
    lifecycle.apply(Pin("a0"))
    await lifecycle.get("a1")
    await lifecycle.get("a2")  # evicts a1 (a0 pinned)
    assert lifecycle.residency("a0") == "device" and lifecycle.residency("a1") == "store"
    assert Evicted("a1", "host") in events
    lifecycle.apply(Unload("a0"))
    await lifecycle.get("a2")
    await lifecycle.get("a3")  # a2 most recent survives
    assert set(lifecycle.resident()) == {"a2", "a3"}


@pytest.mark.asyncio
async def test_missing_adapter_and_retry_after_failure(store):
    lifecycle, _ = make_lifecycle(store)
    with pytest.raises(AdapterNotFound) as e:
        await lifecycle.get("a0x")
    assert "did you mean 'a0'" in e.value.message  # the closest names, not the whole store
    assert "a0x" not in lifecycle._loading


@pytest.mark.asyncio
async def test_install_wins_over_a_stale_load(store):
    lifecycle, _ = make_lifecycle(store)
    store.gate.clear()
    pending = asyncio.create_task(lifecycle.get("a0"))
    await asyncio.sleep(0.02)
    fresh = snapshot_of(store, "a0", "ah_head_one_layer")
    lifecycle.apply(Install(fresh))
    store.gate.set()
    assert await pending is fresh  # the waiter gets what is served now, not the stale load
    assert lifecycle.peek("a0") is fresh


@pytest.mark.asyncio
async def test_unload_during_a_cold_load_sticks(store):
    lifecycle, _ = make_lifecycle(store)
    store.gate.clear()
    pending = asyncio.create_task(lifecycle.get("a0"))
    await asyncio.sleep(0.02)
    assert lifecycle.apply(Unload("a0")) is False  # not resident yet
    store.gate.set()
    served = await pending  # the waiting request is still answered ...
    assert served.name == "a0"
    assert lifecycle.residency("a0") == "store"  # ... but the unload is what the cache shows


@pytest.mark.asyncio
async def test_forget_during_a_cold_load_sticks(store):
    lifecycle, _ = make_lifecycle(store)
    store.gate.clear()
    pending = asyncio.create_task(lifecycle.get("a1"))
    await asyncio.sleep(0.02)
    lifecycle.apply(Forget("a1"))
    store.gate.set()
    await pending
    assert lifecycle.peek("a1") is None


@pytest.mark.asyncio
async def test_replace_lands_only_on_the_snapshot_it_compared_against(store):
    lifecycle, _ = make_lifecycle(store)
    old = await lifecycle.get("a0")
    admin = snapshot_of(store, "a0", "ah_head_one_layer")
    refresh = Snapshot("a0", admin.info, admin.adapter)
    lifecycle.apply(Install(admin))  # an admin change on this replica lands first
    assert lifecycle.apply(Replace(refresh, expected=old)) is False
    assert lifecycle.peek("a0") is admin
    assert lifecycle.apply(Replace(refresh, expected=admin)) is True
    assert lifecycle.peek("a0") is refresh


@pytest.mark.asyncio
async def test_snapshots_are_immutable(store):
    lifecycle, _ = make_lifecycle(store)
    snap = await lifecycle.get("a0")
    with pytest.raises(AttributeError):
        snap.adapter = None  # frozen: nothing can swap what a queued row computes


@pytest.mark.asyncio
async def test_changes_to_one_name_run_one_at_a_time(store):
    lifecycle, _ = make_lifecycle(store)
    inside, overlaps = 0, 0

    async def change():
        nonlocal inside, overlaps
        async with lifecycle.changing("a0"):
            inside += 1
            overlaps = max(overlaps, inside)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(change() for _ in range(5)))
    assert overlaps == 1 and lifecycle._changing == {}


class HeadlessDuringRead(CountingStore):
    """fetch hands back a copy of the version without its head, as a folder looks while a delete or a
    replacement removes it; after the read, the store says what happened meanwhile (`then`)."""

    def __init__(self, inner, tmp_path, then):
        super().__init__(inner)
        self.tmp_path, self.then, self.reads = tmp_path, then, 0

    def fetch(self, name, version):
        import shutil

        self.reads += 1
        folder = self.tmp_path / f"partial-{self.reads}"
        shutil.copytree(self.inner.fetch(name, version), folder)
        if self.reads == 1:
            for head in folder.glob("*head*"):
                head.unlink()
            self.then(self.inner, name)
        return folder


@pytest.mark.asyncio
async def test_a_version_deleted_while_read_is_not_found_not_invalid(store, tmp_path):
    racing = HeadlessDuringRead(store.inner, tmp_path, lambda inner, name: inner.delete(name))
    lifecycle, _ = make_lifecycle(racing)
    with pytest.raises(AdapterNotFound, match="deleted while loading"):
        await lifecycle.get("a0")


@pytest.mark.asyncio
async def test_a_version_replaced_while_read_serves_the_new_one(store, tmp_path):
    replace = lambda inner, name: inner.publish(name, GOLDEN / "ah_double_seq_bn" / "adapter")
    lifecycle, _ = make_lifecycle(HeadlessDuringRead(store.inner, tmp_path, replace))
    snap = await lifecycle.get("a0")
    assert snap.info.version == store.inner.current("a0").version


@pytest.mark.asyncio
async def test_a_broken_current_version_is_still_invalid(store, tmp_path):
    from adapterserve.errors import InvalidAdapter

    lifecycle, _ = make_lifecycle(HeadlessDuringRead(store.inner, tmp_path, lambda inner, name: None))
    with pytest.raises(InvalidAdapter):
        await lifecycle.get("a0")
