"""The device tier on a fake device (a separate CPU copy), so CPU CI runs the eviction paths that a real
GPU takes: copies keyed by snapshot, nothing in use evicted, pins filling the budget never turn a row into
an embedding, the host tier's tensors never touched."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient

from adapterserve.engine.devices import DeviceTier
from adapterserve.events import Evicted
from adapterserve.formats import load_adapter
from adapterserve.main import create_app
from adapterserve.snapshot import Snapshot
from adapterserve.state import build_state
from adapterserve.store.base import VersionInfo

from ..api.conftest import TOKEN, make_settings, publish_golden
from ..conftest import GOLDEN, backbone_for


def fake_device(adapter):
    """A copy in fresh memory, like a move to a GPU (float64 and back is exact for float32)."""
    return adapter.to("cpu", torch.float64).to("cpu", torch.float32)


def snapshot(name: str, case: str = "ah_seq_bn") -> Snapshot:
    adapter = load_adapter(GOLDEN / case / "adapter", backbone_for("tiny-bert").shape)
    return Snapshot(name, VersionInfo("v-" + name, "0" * 64, 0.0, 0), adapter)


def tier(**kw) -> tuple[DeviceTier, list]:
    events: list = []
    return DeviceTier(torch.device("cpu"), torch.float32, move=fake_device, on_event=events.append, **kw), events


def shares_memory(a, b) -> bool:
    ptrs = {t.data_ptr() for t in a.tensors()}
    return any(t.data_ptr() in ptrs for t in b.tensors())


def test_copies_are_separate_and_the_host_tensors_untouched():
    devices, _ = tier()
    s = snapshot("a")
    before = [t.clone() for t in s.adapter.tensors()]
    copy = devices.acquire([s])[s]
    assert copy is not s.adapter and not shares_memory(copy, s.adapter)
    assert all(torch.equal(x, y) for x, y in zip(before, s.adapter.tensors()))
    devices.release([s])
    assert devices.holds(s) and len(devices) == 1


def test_nothing_in_use_is_evicted_and_the_surplus_goes_after():
    devices, events = tier(max_adapters=1)
    a, b = snapshot("a"), snapshot("b")
    placed = devices.acquire([a, b])  # one batch needs two: over the budget while it runs
    assert set(placed) == {a, b} and len(devices) == 2
    devices.release([a, b])
    assert len(devices) == 1 and Evicted("a", "device") in events  # LRU goes first


def test_eviction_by_bytes():
    one = snapshot("x").adapter.nbytes
    devices, _ = tier(max_bytes=int(one * 2.5))
    snaps = [snapshot(f"a{i}") for i in range(4)]
    for s in snaps:
        devices.release(devices.acquire([s]).keys())
    assert devices.nbytes <= one * 2.5 and len(devices) == 2


def test_pins_filling_the_budget_still_place_what_a_batch_needs():
    devices, _ = tier(max_adapters=2)
    pinned = [snapshot("p0"), snapshot("p1")]
    devices.pinned = lambda: frozenset({"p0", "p1"})
    for s in pinned:
        devices.release(devices.acquire([s]).keys())
    other = snapshot("other")
    copy = devices.acquire([other])[other]
    assert copy is not None and len(copy.head.layers) == len(other.adapter.head.layers)
    devices.release([other])
    assert all(devices.holds(s) for s in pinned) and not devices.holds(other)


def test_a_discarded_snapshot_stays_valid_for_the_batch_using_it():
    devices, _ = tier()
    s = snapshot("a")
    copy = devices.acquire([s])[s]
    devices.discard(s)  # replaced while its batch runs
    assert devices.holds(s)
    assert all(t.numel() for t in copy.tensors())
    devices.release([s])
    assert not devices.holds(s)


def test_cpu_float32_is_the_identity_tier():
    devices = DeviceTier(torch.device("cpu"), torch.float32)
    s = snapshot("a")
    assert devices.acquire([s])[s] is s.adapter and devices.identity


NAMES = ("sentiment", "multi", "lora", "pairs")


def scores(client, name: str) -> list:
    r = client.post(f"/classify?adapter={name}", json={"inputs": ["some text", "more"], "raw_scores": True})
    assert r.status_code == 200, r.text  # never a 500, never an embedding in place of logits
    return [s["score"] for row in r.json() for s in row]


def test_app_with_pins_filling_the_device_budget(tmp_path):
    """Preloaded (pinned) adapters fill the fake device; every other adapter still answers with logits
    equal to the same adapter's on the plain CPU tier, while their copies are evicted and placed again."""
    settings = make_settings(tmp_path, preload=["sentiment", "multi"], warmup=True)
    publish_golden(settings.store)
    bb = backbone_for("tiny-bert")
    with TestClient(create_app(settings, lambda s: build_state(s, backbone=bb))) as plain:
        want = {n: scores(plain, n) for n in NAMES}
    devices, _ = tier(max_adapters=2)
    with TestClient(create_app(settings, lambda s: build_state(s, backbone=bb, devices=devices))) as client:
        assert client.get("/adapters/sentiment").json()["residency"] == "device"
        for _ in range(3):
            for name in NAMES:
                got = scores(client, name)
                assert got == pytest.approx(want[name], abs=1e-5)

        metrics = client.get("/metrics").text
        assert 'adapterserve_adapter_cache_evictions_total{tier="device"}' in metrics
        assert 'adapterserve_adapter_cache_evictions_total{tier="device"} 0.0' not in metrics
        assert devices.holds(client.app.state.adapterserve.lifecycle.peek("sentiment"))  # pinned stays
        r = client.post("/admin/adapters/lora/load", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.json()["residency"] == "device"
