"""Lifespan wiring: warm-up and the preload list."""

from fastapi.testclient import TestClient

from adapterserve.main import create_app
from adapterserve.state import build_state

from .api.conftest import make_settings, publish_golden
from .conftest import backbone_for


def test_preload_loads_and_pins_before_ready(tmp_path):
    s = make_settings(tmp_path, preload="multi,ner", warmup=True)
    publish_golden(s.store)
    app = create_app(s, lambda st: build_state(st, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as c:
        assert c.get("/health/ready").status_code == 200
        info = {a["name"]: a for a in c.get("/adapters").json()["adapters"]}
        assert info["multi"]["pinned"] and info["multi"]["residency"] == "device"
        assert info["ner"]["pinned"] and not info["sentiment"]["pinned"]
        assert info["sentiment"]["residency"] == "store"


def test_only_the_inference_worker_runs_torch_with_several_threads(tmp_path):
    import asyncio

    import torch

    s = make_settings(tmp_path, torch_threads=4)  # auto workers on CPU: 2, with 2 threads each
    app = create_app(s, lambda st: build_state(st, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as c:
        state = app.state.adapterserve
        # asyncio.to_thread work (adapter loads, store calls) and tokenization: one torch thread each
        assert c.portal.call(asyncio.to_thread, torch.get_num_threads) == 1
        assert state.router._pool.submit(torch.get_num_threads).result() == 1
        assert state.batcher.config.workers == 2
        assert state.batcher._worker.submit(torch.get_num_threads).result() == 2
        assert c.post("/embed", json={"inputs": "still serving"}).status_code == 200


def test_inference_threads_share_the_budget(tmp_path):
    from adapterserve.state import inference_threads

    assert inference_threads(make_settings(tmp_path, torch_threads=2), "cpu") == (2, 1)
    assert inference_threads(make_settings(tmp_path, torch_threads=1), "cpu") == (1, 1)
    assert inference_threads(make_settings(tmp_path, torch_threads=8), "cuda") == (1, 8)
    assert inference_threads(make_settings(tmp_path, torch_threads=8, inference_workers=3), "cpu") == (3, 2)


def test_start_up_objects_are_frozen_out_of_the_collector(tmp_path):
    import gc

    gc.unfreeze()  # whatever an earlier test froze
    assert gc.get_freeze_count() == 0
    app = create_app(make_settings(tmp_path), lambda st: build_state(st, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as c:
        assert c.get("/health/ready").status_code == 200
        assert gc.get_freeze_count() > 0  # a full collection no longer walks the backbone and the imports
