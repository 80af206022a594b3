"""SIGTERM under load: readiness turns false, accepted requests all finish, then the process exits."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from benchmarks.server import adapterserve_process

from .api.conftest import publish_golden
from .conftest import TINY


@pytest.mark.slow
def test_sigterm_under_load_loses_no_accepted_request(tmp_path):
    store = str(tmp_path / "store")
    publish_golden(store)
    server = adapterserve_process(
        store, str(TINY), tmp_path / "server.log", drain_timeout_s=60, max_batch_size=4, warmup="false"
    )
    with server.start(timeout=200):

        async def load():
            async with httpx.AsyncClient(
                base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=64)
            ) as client:

                async def one(i):
                    return await client.post("/classify?adapter=sentiment", json={"inputs": [f"text {i} " * 20] * 16})

                tasks = [asyncio.create_task(one(i)) for i in range(16)]
                await asyncio.sleep(0.5)  # all 16 are accepted and queued (each needs 4 batches)
                server.proc.send_signal(signal.SIGTERM)
                sent = time.monotonic()
                ready = None
                while time.monotonic() - sent < 5 and ready is None:
                    try:
                        ready = (await client.get("/health/ready")).status_code
                    except httpx.HTTPError:
                        ready = "refused"
                    await asyncio.sleep(0.02)
                results = await asyncio.gather(*tasks, return_exceptions=True)
                return ready, results

        ready, results = asyncio.run(load())
        assert ready in (503, "refused")  # not ready any more
        codes = [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in results]
        rc = server.proc.wait(30)
        out = server.tail(60)
        assert codes == [200] * len(results), (codes, out)
        assert rc in (0, -signal.SIGTERM), out  # uvicorn re-raises the signal once it has shut down
