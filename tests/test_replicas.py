"""Replicas sharing one store converge (in-process: two apps on one store), and a dead store does not stop
inference of what is resident. The two-process version through S3 is in test_replicas_e2e.py."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient

from adapterserve.errors import StoreUnavailable
from adapterserve.main import create_app
from adapterserve.replicas import StoreWatcher
from adapterserve.state import build_state

from .api.conftest import TOKEN, golden_files, make_settings, publish_golden
from .conftest import backbone_for
from .s3server import MotoServer

POLL_S = 0.4  # the convergence bound under test: the watcher polls every POLL_S / 2


@pytest.fixture
def admin():
    return {"Authorization": f"Bearer {TOKEN}"}


def app_for(settings):
    return create_app(settings, lambda s: build_state(s, backbone=backbone_for("tiny-bert")))


def classify(client, name="sentiment"):
    return client.post(f"/classify?adapter={name}", json={"inputs": ["some text"], "raw_scores": True})


def served_within(client, predicate, bound_s, name="sentiment"):
    """Poll until predicate(response) holds; returns the seconds it took (fails past bound_s)."""
    started = time.monotonic()
    while True:
        r = classify(client, name)
        assert r.status_code in (200, 404), r.text  # never a failure while converging
        if predicate(r):
            return time.monotonic() - started
        assert time.monotonic() - started < bound_s, f"not converged within {bound_s}s: {r.status_code} {r.text}"
        time.sleep(0.05)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def shared_store(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "shared")
    return request.getfixturevalue("s3_url")


def test_two_replicas_converge_on_new_version_rollback_delete_and_new_adapter(tmp_path, shared_store, admin):
    publish_golden(shared_store)
    settings = make_settings(tmp_path, store=shared_store, store_poll_s=POLL_S)
    with TestClient(app_for(settings)) as a, TestClient(app_for(settings)) as b:
        v1 = classify(b).headers["X-Adapter-Version"]  # resident on b from now on
        assert classify(a).headers["X-Adapter-Version"] == v1

        r = a.put("/admin/adapters/sentiment", files=golden_files("ah_head_one_layer"), headers=admin)
        v2 = r.json()["version"]
        assert classify(a).headers["X-Adapter-Version"] == v2  # read your writes on the replica that answered
        took = served_within(b, lambda r: r.headers.get("X-Adapter-Version") == v2, POLL_S + 2)
        assert b.get("/adapters/sentiment").json()["residency"] == "device"  # reloaded in place, still hot

        assert a.post("/admin/adapters/sentiment/rollback", headers=admin).json()["version"] == v1
        took = max(took, served_within(b, lambda r: r.headers.get("X-Adapter-Version") == v1, POLL_S + 2))

        b.post("/admin/adapters/sentiment/load", headers=admin)  # pinned on b ...
        assert a.delete("/admin/adapters/sentiment", headers=admin).status_code == 200
        took = max(took, served_within(b, lambda r: r.status_code == 404, POLL_S + 2))  # ... still converges
        assert b.get("/adapters/sentiment").status_code == 404

        new = a.put("/admin/adapters/brand-new", files=golden_files("ah_seq_bn"), headers=admin).json()["version"]
        served_within(b, lambda r: r.headers.get("X-Adapter-Version") == new, POLL_S + 2, name="brand-new")
    assert took < POLL_S + 2


@pytest.mark.asyncio
async def test_watcher_survives_store_errors_and_catches_up(tmp_path, monkeypatch, caplog):
    store_url = str(tmp_path / "store")
    publish_golden(store_url)
    state = build_state(make_settings(tmp_path, store=store_url), backbone=backbone_for("tiny-bert"))
    old = await state.lifecycle.get("sentiment")
    watcher = StoreWatcher(state, interval_s=0.01)

    def down():
        raise StoreUnavailable("connection refused")

    real_manifest = state.store.manifest
    monkeypatch.setattr(state.store, "manifest", down)
    task = asyncio.create_task(watcher.run())
    try:
        from adapterserve.store import open_store

        new = open_store(store_url).publish("sentiment", golden_dir("ah_head_one_layer"))  # another replica
        await asyncio.sleep(0.1)
        assert not task.done() and state.lifecycle.peek("sentiment") is old  # resident keeps serving
        assert sum("store poll failed" in r.getMessage() for r in caplog.records) == 1  # logged once, not per poll
        monkeypatch.setattr(state.store, "manifest", real_manifest)
        for _ in range(200):
            if state.lifecycle.peek("sentiment").version == new.version:
                break
            await asyncio.sleep(0.01)
        assert state.lifecycle.peek("sentiment").version == new.version
    finally:
        task.cancel()
        state.router.close()


def golden_dir(case):
    from .conftest import GOLDEN

    return GOLDEN / case / "adapter"


@pytest.mark.s3
def test_store_unreachable_admin_503_inference_keeps_serving_resident(tmp_path, monkeypatch, admin):
    server = MotoServer().start()  # its own server: this test kills it
    try:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        url = f"s3://{server.new_bucket()}/adapters"
        publish_golden(url)
        settings = make_settings(tmp_path, store=url, store_poll_s=POLL_S)
        with TestClient(app_for(settings)) as client:
            before = classify(client)
            assert before.status_code == 200
            server.stop()
            time.sleep(POLL_S)  # the watcher meets the dead store too, and must not disturb serving
            after = classify(client)
            assert after.status_code == 200 and after.json() == before.json()
            assert after.headers["X-Adapter-Version"] == before.headers["X-Adapter-Version"]
            for r in (
                client.put("/admin/adapters/sentiment", files=golden_files("ah_head_one_layer"), headers=admin),
                client.get("/admin/adapters/sentiment/versions", headers=admin),
                client.post("/admin/adapters/sentiment/rollback", headers=admin),
                client.delete("/admin/adapters/sentiment", headers=admin),
                client.get("/adapters"),
                classify(client, "multi"),
            ):  # not resident: needs the store
                assert r.status_code == 503, r.text
                assert r.json()["error"] == "store_unavailable" and "unreachable" in r.json()["message"]
            again = classify(client)  # nothing changed by the refused admin calls
            assert again.status_code == 200
            assert again.headers["X-Adapter-Version"] == before.headers["X-Adapter-Version"]
            assert client.get("/health/ready").status_code == 200
            assert all(not t.done() for t in client.app.state.adapterserve.background)
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_several_changes_refresh_concurrently(tmp_path):
    """Three resident adapters change at once: their store reads overlap (a barrier only three concurrent
    fetches pass), so convergence does not wait for one reload after another."""
    import threading

    from adapterserve.store import open_store

    store_url = str(tmp_path / "store")
    publish_golden(store_url)
    state = build_state(make_settings(tmp_path, store=store_url), backbone=backbone_for("tiny-bert"))
    names = ["sentiment", "multi", "pairs"]
    try:
        for name in names:
            await state.lifecycle.get(name)
        other = open_store(store_url)
        new = {name: other.publish(name, golden_dir("ah_head_one_layer")).version for name in names}
        barrier, real_fetch = threading.Barrier(len(names), timeout=20), state.store.fetch

        def fetch(name, version):
            barrier.wait()  # raises BrokenBarrierError unless all three fetch at the same time
            return real_fetch(name, version)

        state.store.fetch = fetch
        await StoreWatcher(state).poll_once()
        assert {n: state.lifecycle.peek(n).version for n in names} == new
    finally:
        state.router.close()
