"""Two real `adapterserve serve` processes sharing one S3 store (a real S3 API on loopback) converge on every
change made through the other, within the configured bound, while serving traffic with zero failures."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from adapterserve.store import open_store
from benchmarks.server import ServerProcess, adapterserve_process, free_port

from .api.conftest import TOKEN, golden_files
from .conftest import GOLDEN, TINY

POLL_S = 2.0
BOUND_S = POLL_S + 3.0  # the bound, plus slack for three busy processes on a 2-core test machine
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"inputs": ["a short text"], "raw_scores": True}


async def converge(client: httpx.AsyncClient, name: str, predicate) -> float:
    started = time.monotonic()
    while True:
        r = await client.post(f"/classify?adapter={name}", json=BODY)
        assert r.status_code in (200, 404), r.text
        if predicate(r):
            return time.monotonic() - started
        assert time.monotonic() - started < BOUND_S + 5, f"{name} did not converge: {r.status_code}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
def test_two_server_processes_converge_through_s3_under_load(s3_url, tmp_path):
    store = open_store(s3_url)
    for name, case in {"sentiment": "ah_seq_bn", "multi": "ah_multilabel", "pairs": "ah_text_pair"}.items():
        store.publish(name, GOLDEN / case / "adapter")
    common = dict(admin_token=TOKEN, store_poll_s=POLL_S, warmup="false", log_json="false")
    a = adapterserve_process(s3_url, str(TINY), tmp_path / "a.log", name="a", **common)
    b = adapterserve_process(s3_url, str(TINY), tmp_path / "b.log", name="b", admin_port=free_port(), **common)
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda p: p.start(timeout=150), [a, b]))
        asyncio.run(_scenario(a, b))
    finally:
        a.stop()
        b.stop()


async def _scenario(a: ServerProcess, b: ServerProcess) -> None:
    b_admin_url = f"http://127.0.0.1:{b.env['ADAPTERSERVE_ADMIN_PORT']}"
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as ca,
        httpx.AsyncClient(base_url=b.url, timeout=30) as cb,
        httpx.AsyncClient(base_url=b_admin_url, timeout=30) as cb_admin,
    ):
        # The admin API on its own port: absent on b's public port, present on its admin port.
        assert (await cb.get("/admin/adapters/sentiment/versions", headers=ADMIN)).status_code == 404
        assert (await cb_admin.get("/admin/adapters/sentiment/versions", headers=ADMIN)).status_code == 200

        for name in ("sentiment", "multi", "pairs"):  # resident on b from now on
            assert (await cb.post(f"/classify?adapter={name}", json=BODY)).status_code == 200
        v1 = (await cb.post("/classify?adapter=sentiment", json=BODY)).headers["X-Adapter-Version"]

        codes: list[int] = []
        stop = asyncio.Event()

        async def load(client, name):
            while not stop.is_set():
                codes.append((await client.post(f"/classify?adapter={name}", json=BODY)).status_code)

        loops = [asyncio.create_task(load(c, n)) for c in (ca, cb) for n in ("sentiment", "multi")]
        took = []
        try:
            r = await ca.put("/admin/adapters/sentiment", files=golden_files("ah_head_one_layer"), headers=ADMIN)
            assert r.status_code == 201, r.text
            v2 = r.json()["version"]
            took.append(await converge(cb, "sentiment", lambda r: r.headers.get("X-Adapter-Version") == v2))

            r = await ca.post("/admin/adapters/sentiment/rollback", headers=ADMIN)
            assert r.status_code == 200 and r.json()["version"] == v1
            took.append(await converge(cb, "sentiment", lambda r: r.headers.get("X-Adapter-Version") == v1))

            assert (await ca.delete("/admin/adapters/pairs", headers=ADMIN)).status_code == 200
            took.append(await converge(cb, "pairs", lambda r: r.status_code == 404))

            r = await ca.put("/admin/adapters/fresh", files=golden_files("ah_double_seq_bn"), headers=ADMIN)
            new = r.json()["version"]
            took.append(await converge(cb, "fresh", lambda r: r.headers.get("X-Adapter-Version") == new))

            # And the other way round, through b's admin port.
            r = await cb_admin.put(
                "/admin/adapters/multi", files=golden_files("ah_multilabel"), headers=ADMIN, params={}
            )
            assert r.status_code == 201  # identical content: same version, nothing changes
        finally:
            stop.set()
            await asyncio.gather(*loops)
        assert len(codes) > 20 and set(codes) == {200}, sorted(set(codes))
        assert max(took) < BOUND_S, took
        listing = {x["name"]: x for x in (await cb.get("/adapters")).json()["adapters"]}
        assert "pairs" not in listing and listing["sentiment"]["version"] == v1 and "fresh" in listing
