"""The load generator: async httpx, closed loop (C workers, each sends its next request as soon as the last
one is answered) and open loop (Poisson arrivals at a fixed rate; latency counted from the scheduled
arrival, so a slow server cannot slow the offered load down: no coordinated omission).

A phase = warm-up (not recorded) + a measured window. Throughput counts the answers that complete inside
the window; latencies are those of requests sent inside it. /metrics is scraped at both window edges so
the batch statistics cover the window only.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import httpx

from .server import cpu_seconds, machine_busy_seconds, parse_metrics


@dataclass(frozen=True)
class Request:
    path: str  # with the query string
    body: bytes


def zipf_weights(n: int, s: float) -> list[float]:
    w = [1.0 / (k ** s) for k in range(1, n + 1)]
    total = sum(w)
    return [x / total for x in w]


def make_requests(texts: list[str], adapters: list[str], dist: str, n: int, seed: int = 0, s: float = 1.1,
                  inputs_per_request: int = 1, route: str = "/classify") -> list[Request]:
    """n requests in a fixed order: texts in sequence, adapters drawn uniform or Zipf(s) (a000 hottest)."""
    rng = random.Random(seed)
    if dist == "zipf" and len(adapters) > 1:
        weights = zipf_weights(len(adapters), s)
        chosen = rng.choices(adapters, weights=weights, k=n)
    else:
        chosen = [adapters[rng.randrange(len(adapters))] for _ in range(n)]
    out, t = [], 0
    for name in chosen:
        batch = [texts[(t + j) % len(texts)] for j in range(inputs_per_request)]
        t += inputs_per_request
        inputs = batch[0] if inputs_per_request == 1 else batch
        out.append(Request(f"{route}?adapter={name}", json.dumps({"inputs": inputs}).encode()))
    return out


def quantile(sorted_xs: list[float], q: float) -> float:
    if not sorted_xs:
        return float("nan")
    pos = q * (len(sorted_xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass
class PhaseResult:
    mode: str  # closed | open | sequential
    duration_s: float
    completed: int  # answers (any status) inside the window
    ok: int  # 200s inside the window
    errors: dict[str, int]
    latencies: list[float] = field(repr=False)  # seconds, requests sent inside the window, 200s only
    concurrency: int = 0
    offered_rps: float = 0.0
    inputs_per_request: int = 1
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0  # every process on the machine, busy CPU seconds during the window
    metrics_before: dict | None = field(default=None, repr=False)
    metrics_after: dict | None = field(default=None, repr=False)
    metrics_interval_s: float = 0.0  # time between the two scrapes (midpoints of their round trips)

    @property
    def rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    @property
    def seq_per_s(self) -> float:
        return self.rps * self.inputs_per_request

    def pct(self, q: float) -> float:
        return quantile(sorted(self.latencies), q)

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        return {"mode": self.mode, "duration_s": round(self.duration_s, 3), "ok": self.ok,
                "errors": self.errors, "req_per_s": round(self.rps, 2), "seq_per_s": round(self.seq_per_s, 2),
                "p50_ms": round(1000 * quantile(lat, 0.5), 2), "p95_ms": round(1000 * quantile(lat, 0.95), 2),
                "p99_ms": round(1000 * quantile(lat, 0.99), 2), "concurrency": self.concurrency,
                "offered_rps": round(self.offered_rps, 2), "client_cpu_s": round(self.client_cpu_s, 2),
                "server_cpu_s": round(self.server_cpu_s, 2),
                "others_cpu_cores": round(max(0.0, self.machine_cpu_s - self.client_cpu_s - self.server_cpu_s)
                                          / self.duration_s, 3) if self.machine_cpu_s else None}


class _Window:
    def __init__(self, warmup: float, duration: float):
        self.t0 = time.monotonic()
        self.start = self.t0 + warmup
        self.end = self.start + duration
        self.completed = self.ok = 0
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []

    def record(self, sent: float, done: float, status: str) -> None:
        if self.start <= done <= self.end:
            self.completed += 1
            if status == "200":
                self.ok += 1
            else:
                self.errors[status] = self.errors.get(status, 0) + 1
        if self.start <= sent < self.end and status == "200":
            self.latencies.append(done - sent)


async def _send(client: httpx.AsyncClient, req: Request) -> str:
    try:
        r = await client.post(req.path, content=req.body, headers={"content-type": "application/json"})
        await r.aread()
        return str(r.status_code)
    except httpx.TimeoutException:
        return "timeout"
    except httpx.HTTPError as e:
        return type(e).__name__


async def _scrape(client: httpx.AsyncClient) -> dict | None:
    try:
        r = await client.get("/metrics")
        return parse_metrics(r.text) if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


async def _edges(client, window: _Window, server_pid: int | None, scrape: bool, box: dict) -> None:
    """At the window's start and end: scrape /metrics and note client/server CPU time."""
    await asyncio.sleep(max(0.0, window.start - time.monotonic()))
    box["cpu0"], box["scpu0"] = time.process_time(), cpu_seconds(server_pid) if server_pid else 0.0
    box["mcpu0"] = machine_busy_seconds()
    if scrape:
        t = time.monotonic()
        box["before"] = await _scrape(client)
        box["t0"] = (t + time.monotonic()) / 2
    await asyncio.sleep(max(0.0, window.end - time.monotonic()))
    box["cpu1"], box["scpu1"] = time.process_time(), cpu_seconds(server_pid) if server_pid else 0.0
    box["mcpu1"] = machine_busy_seconds()
    if scrape:
        t = time.monotonic()
        box["after"] = await _scrape(client)
        box["t1"] = (t + time.monotonic()) / 2


def _client(url: str, connections: int, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=timeout,
                             limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))


async def closed_loop(url: str, requests: list[Request], concurrency: int, duration: float, warmup: float = 2.0,
                      server_pid: int | None = None, scrape: bool = True, timeout: float = 120.0,
                      inputs_per_request: int = 1) -> PhaseResult:
    window = _Window(warmup, duration)
    box: dict = {}
    counter = iter(range(10**12))
    async with _client(url, concurrency + 2, timeout) as client:
        async def worker():
            while time.monotonic() < window.end:
                i = next(counter)
                sent = time.monotonic()
                status = await _send(client, requests[i % len(requests)])
                window.record(sent, time.monotonic(), status)

        edges = asyncio.create_task(_edges(client, window, server_pid, scrape, box))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await edges
    return PhaseResult("closed", duration, window.completed, window.ok, window.errors, window.latencies,
                       concurrency=concurrency, inputs_per_request=inputs_per_request,
                       client_cpu_s=box["cpu1"] - box["cpu0"], server_cpu_s=box["scpu1"] - box["scpu0"],
                       machine_cpu_s=box["mcpu1"] - box["mcpu0"],
                       metrics_before=box.get("before"), metrics_after=box.get("after"),
                       metrics_interval_s=box.get("t1", 0.0) - box.get("t0", 0.0))


async def open_loop(url: str, requests: list[Request], rate: float, duration: float, warmup: float = 2.0,
                    seed: int = 0, server_pid: int | None = None, scrape: bool = True, timeout: float = 60.0,
                    inputs_per_request: int = 1, max_connections: int = 2048) -> PhaseResult:
    """Poisson arrivals at `rate` per second; every arrival gets its own task (unbounded concurrency)."""
    window = _Window(warmup, duration)
    box: dict = {}
    rng = random.Random(seed)
    tasks: set[asyncio.Task] = set()
    async with _client(url, max_connections, timeout) as client:
        async def one(req: Request, scheduled: float):
            status = await _send(client, req)
            window.record(scheduled, time.monotonic(), status)

        edges = asyncio.create_task(_edges(client, window, server_pid, scrape, box))
        scheduled, i = window.t0, 0
        while scheduled < window.end:
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t = asyncio.create_task(one(requests[i % len(requests)], scheduled))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            i += 1
            scheduled += rng.expovariate(rate)
        await edges
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
    return PhaseResult("open", duration, window.completed, window.ok, window.errors, window.latencies,
                       offered_rps=rate, inputs_per_request=inputs_per_request,
                       client_cpu_s=box["cpu1"] - box["cpu0"], server_cpu_s=box["scpu1"] - box["scpu0"],
                       machine_cpu_s=box["mcpu1"] - box["mcpu0"],
                       metrics_before=box.get("before"), metrics_after=box.get("after"),
                       metrics_interval_s=box.get("t1", 0.0) - box.get("t0", 0.0))


async def sequential(url: str, requests: list[Request], n: int, warmup: int = 3,
                     pause_s: float = 0.0, timeout: float = 60.0) -> PhaseResult:
    """One request at a time on an otherwise idle server: the idle latency."""
    lat, errors, ok = [], {}, 0
    t_start = time.monotonic()
    async with _client(url, 2, timeout) as client:
        for i in range(warmup + n):
            sent = time.monotonic()
            status = await _send(client, requests[i % len(requests)])
            done = time.monotonic()
            if i >= warmup:
                if status == "200":
                    ok += 1
                    lat.append(done - sent)
                else:
                    errors[status] = errors.get(status, 0) + 1
            if pause_s:
                await asyncio.sleep(pause_s)
    return PhaseResult("sequential", time.monotonic() - t_start, ok + sum(errors.values()), ok, errors, lat,
                       concurrency=1)


async def one_request(url: str, req: Request, timeout: float = 60.0) -> tuple[float, str]:
    """Latency (s) and status of a single request on a fresh connection."""
    async with _client(url, 1, timeout) as client:
        t0 = time.monotonic()
        status = await _send(client, req)
        return time.monotonic() - t0, status


def run(coro):
    return asyncio.run(coro)


Factory = Callable[[], list[Request]]
