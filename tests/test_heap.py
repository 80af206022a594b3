"""heap.py: once adapter loads settle, the app collects once and freezes the survivors, so later full collections
do not walk the resident adapters."""

import gc
import time

from fastapi.testclient import TestClient

from adapterserve.events import AdapterLoaded, CacheHit
from adapterserve.heap import HeapFreezer
from adapterserve.main import create_app
from adapterserve.state import build_state

from .api.conftest import make_settings, publish_golden
from .conftest import backbone_for


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_freezes_once_loads_have_stopped_for_the_quiet_time():
    clock, frozen = Clock(), []
    heap = HeapFreezer(2.0, freeze=lambda: frozen.append(clock.now), clock=clock)
    assert not heap.freeze_if_due()  # nothing loaded yet
    heap.on_event(CacheHit("a"))  # only loads count
    clock.now += 5
    assert not heap.freeze_if_due()
    heap.on_event(AdapterLoaded("a", 0.01))
    clock.now += 1
    heap.on_event(AdapterLoaded("b", 0.01))  # a burst of loads: one freeze after the last
    clock.now += 1.5
    assert not heap.freeze_if_due()
    clock.now += 0.5
    assert heap.freeze_if_due() and frozen == [clock.now]
    clock.now += 10
    assert not heap.freeze_if_due()  # nothing new since
    heap.on_event(AdapterLoaded("c", 0.01))
    clock.now += 2
    assert heap.freeze_if_due() and len(frozen) == 2


def test_the_app_freezes_a_loaded_adapter_out_of_full_collections(tmp_path):
    settings = make_settings(tmp_path, gc_freeze_quiet_s=0.05)
    publish_golden(settings.store)
    app = create_app(settings, lambda s: build_state(s, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as client:
        state = client.app.state.adapterserve
        before = gc.get_freeze_count()
        assert client.post("/classify?adapter=sentiment", json={"inputs": "fine"}).status_code == 200
        deadline = time.monotonic() + 10
        while state.heap.frozen_loads < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert state.heap.frozen_loads == state.heap.loads == 1
        adapter = state.lifecycle.peek("sentiment").adapter
        assert gc.get_freeze_count() > before
        assert not any(o is adapter for o in gc.get_objects())  # frozen: no collection walks it


def test_a_quiet_time_of_zero_turns_it_off(tmp_path):
    settings = make_settings(tmp_path, gc_freeze_quiet_s=0)
    app = create_app(settings, lambda s: build_state(s, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as client:
        state = client.app.state.adapterserve
        assert state.heap is None
        assert not any(t.get_name() == "adapterserve-heap-freezer" for t in state.background)


def test_an_adapter_is_freed_by_reference_counting_alone(tmp_path):
    """What freezing relies on: a frozen object is never collected as part of a cycle, so an evicted adapter
    (and the onnx runtime's pack of it) must go when its last reference does, with no reference cycle."""
    import weakref

    from adapterserve.engine.runtime import make_runtime
    from adapterserve.formats import load_adapter

    from .conftest import golden

    backbone = backbone_for("tiny-bert")
    onnx = make_runtime("onnx", backbone, cache=str(tmp_path))
    gc.disable()
    try:
        for case in ("ah_seq_bn", "peft_lora_all_dense", "ah_tagging"):
            adapter = load_adapter(golden(case)[0], backbone.shape)
            onnx._cached(adapter)
            ref = weakref.ref(adapter)
            del adapter
            assert ref() is None and not onnx._packs, case
    finally:
        gc.enable()
