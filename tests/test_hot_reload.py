"""Hot reload on one replica: read your writes, in-flight requests finish on their version, racing uploads
resolve to one winner, and uploads/rollbacks/deletes under concurrent load fail zero requests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import httpx
import pytest
import torch

from adapterserve.engine.devices import DeviceTier
from adapterserve.main import create_app
from adapterserve.state import build_state

from .api.conftest import TOKEN, golden_files, make_settings, publish_golden
from .conftest import backbone_for
from .engine.test_devices import fake_device as fake_move

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"inputs": ["a short text", "and another one"], "raw_scores": True}


@contextlib.asynccontextmanager
async def running_app(settings, fake_device: bool = False):
    """fake_device: a device tier that copies (like a GPU) with room for one adapter, so copies are
    evicted and placed again while versions change under the traffic (tests/engine/test_devices.py)."""
    devices = DeviceTier(torch.device("cpu"), torch.float32, max_adapters=1, move=fake_move) if fake_device else None
    app = create_app(settings, lambda s: build_state(s, backbone=backbone_for("tiny-bert"), devices=devices))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://replica", timeout=60) as client:
            yield app, client


@pytest.mark.asyncio
@pytest.mark.parametrize("fake_device", [False, True], ids=["cpu", "fake-device"])
async def test_in_flight_request_finishes_on_the_version_it_started_with(tmp_path, fake_device):
    settings = make_settings(tmp_path)
    publish_golden(settings.store)
    async with running_app(settings, fake_device) as (app, client):
        old = await client.post("/classify?adapter=sentiment", json=BODY)
        router = app.state.adapterserve.router
        resolved, release = asyncio.Event(), asyncio.Event()
        real_tokenize = router.tokenize

        async def held_tokenize(*args, **kw):  # the request has resolved its adapter; hold it here
            resolved.set()
            await release.wait()
            return await real_tokenize(*args, **kw)

        router.tokenize = held_tokenize
        in_flight = asyncio.create_task(client.post("/classify?adapter=sentiment", json=BODY))
        await resolved.wait()
        router.tokenize = real_tokenize
        put = await client.put("/admin/adapters/sentiment", files=golden_files("ah_head_one_layer"), headers=ADMIN)
        assert put.status_code == 201
        new = await client.post("/classify?adapter=sentiment", json=BODY)  # read your writes
        assert new.headers["X-Adapter-Version"] == put.json()["version"] and new.json() != old.json()
        release.set()
        r = await in_flight
        assert r.status_code == 200
        assert r.headers["X-Adapter-Version"] == old.headers["X-Adapter-Version"] and r.json() == old.json()


@pytest.mark.asyncio
async def test_racing_uploads_to_one_name_one_wins_and_answers_agree(tmp_path):
    settings = make_settings(tmp_path)
    publish_golden(settings.store)
    async with running_app(settings) as (app, client):
        cases = ["ah_head_one_layer", "ah_double_seq_bn", "ah_act_tanh", "ah_act_relu"]
        answers = await asyncio.gather(
            *(client.put("/admin/adapters/sentiment", files=golden_files(c), headers=ADMIN) for c in cases)
        )
        assert [a.status_code for a in answers] == [201] * len(cases)
        uploaded = {a.json()["version"] for a in answers}
        served = (await client.post("/classify?adapter=sentiment", json=BODY)).headers["X-Adapter-Version"]
        versions = (await client.get("/admin/adapters/sentiment/versions", headers=ADMIN)).json()
        assert served in uploaded and versions["current"] == served  # the winner is what is stored and served
        assert uploaded <= {v["version"] for v in versions["versions"]}  # the losers are kept as versions


@pytest.mark.asyncio
@pytest.mark.parametrize("fake_device", [False, True], ids=["cpu", "fake-device"])
async def test_uploads_rollbacks_deletes_under_load_fail_zero_requests(tmp_path, fake_device):
    # On the local store, in process; the same under load through S3 across two processes: test_replicas_e2e.
    settings = make_settings(tmp_path, max_batch_size=8, store_poll_s=0.4)
    publish_golden(settings.store)
    async with running_app(settings, fake_device) as (app, client):
        initial = (await client.post("/classify?adapter=sentiment", json=BODY)).headers["X-Adapter-Version"]
        await client.post("/classify?adapter=lora", json=BODY)
        timeline: list[tuple[float, float, str]] = []  # (started, answered, version served from then on)
        results: list[tuple[str, float, float, int, str | None]] = []
        stop = asyncio.Event()

        async def load(name):
            while not stop.is_set():
                started = time.monotonic()
                r = await client.post(f"/classify?adapter={name}", json=BODY)
                results.append((name, started, time.monotonic(), r.status_code, r.headers.get("X-Adapter-Version")))

        async def admin_ops():
            rng = random.Random(7)
            for case in ["ah_head_one_layer", "ah_double_seq_bn", None, "ah_act_tanh", None, "ah_seq_bn", None]:
                started = time.monotonic()
                if case is None:
                    r = await client.post("/admin/adapters/sentiment/rollback", headers=ADMIN)
                    assert r.status_code == 200, r.text
                else:
                    r = await client.put("/admin/adapters/sentiment", files=golden_files(case), headers=ADMIN)
                    assert r.status_code == 201, r.text
                timeline.append((started, time.monotonic(), r.json()["version"]))
                if rng.random() < 0.5:  # delete and re-upload a *different* adapter meanwhile
                    assert (await client.delete("/admin/adapters/lora", headers=ADMIN)).status_code == 200
                    await asyncio.sleep(0.02)
                    r = await client.put("/admin/adapters/lora", files=golden_files("peft_lora_list"), headers=ADMIN)
                    assert r.status_code == 201
                await asyncio.sleep(0.05)
            stop.set()

        loops = (
            [asyncio.create_task(load("sentiment")) for _ in range(6)]
            + [asyncio.create_task(load("multi")) for _ in range(2)]
            + [asyncio.create_task(load("lora"))]
        )
        await asyncio.wait_for(admin_ops(), 60)
        await asyncio.gather(*loops)

    steady = [r for r in results if r[0] != "lora"]
    assert len(steady) > 50 and all(code == 200 for _, _, _, code, _ in steady), {code for _, _, _, code, _ in steady}
    assert {code for name, _, _, code, _ in results if name == "lora"} <= {200, 404}  # 404 only while deleted
    for name, started, answered, _, version in steady:
        if name != "sentiment":
            continue
        before = [v for s, e, v in timeline if e <= started]
        allowed = {before[-1] if before else initial} | {v for s, e, v in timeline if s <= answered and e >= started}
        assert version in allowed, (version, allowed)
