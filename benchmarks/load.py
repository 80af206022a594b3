"""The load generator: asyncio, closed loop (C workers, each sends its next request as soon as the last
one is answered) and open loop (Poisson arrivals at a fixed rate; latency counted from the scheduled
arrival, so a slow server cannot slow the offered load down: no coordinated omission).

Two HTTP engines send the requests (`client=`): "raw" (default), a minimal HTTP/1.1 keep-alive client on
asyncio streams, and "httpx" (one AsyncClient per connection). The load generator shares the machine with
the server, so its CPU cost per request is part of what is measured: on the 2-core box httpx cost about
2 ms of CPU per request (and a shared httpx pool collapsed at 128 connections), the raw client about 0.2 ms.
/metrics scrapes and warm-up requests always use httpx.

A phase = warm-up (not recorded) + a measured window. Throughput counts the answers that complete inside
the window; latencies are those of requests sent inside it. /metrics is scraped at both window edges so
the batch statistics cover the window only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import random
import time
from dataclasses import dataclass, field

import httpx

from .server import cpu_counters, cpu_seconds, parse_metrics


@dataclass(frozen=True)
class Request:
    path: str  # with the query string
    body: bytes

    @property
    def wire(self) -> bytes:
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        ).encode() + self.body


class RawConnection:
    """One HTTP/1.1 keep-alive connection; reconnects after an error or a `Connection: close`."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None

    async def _exchange(self, wire: bytes) -> str:
        if self._w is None:
            self._r, self._w = await asyncio.open_connection(self.host, self.port)
        r, w = self._r, self._w
        w.write(wire)
        await w.drain()
        status = (await r.readline()).split(b" ", 2)
        if len(status) < 2:
            raise ConnectionResetError("the server closed the connection")
        length, chunked, close = 0, False, False
        while True:
            line = await r.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
            elif k == b"connection" and b"close" in v.lower():
                close = True
        if chunked:
            while True:
                size = int((await r.readline()).split(b";")[0], 16)
                await r.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await r.readexactly(length)
        if close:
            self.close()
        return status[1].decode()

    async def send(self, req: Request) -> str:
        for attempt in (0, 1):
            reused = self._w is not None
            try:
                return await asyncio.wait_for(self._exchange(req.wire), self.timeout)
            except asyncio.TimeoutError:
                self.close()
                return "timeout"
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                self.close()
                # A keep-alive connection the server closed while idle (uvicorn: after 5 s): send again on a
                # new one, as HTTP clients do. A fresh connection's failure is reported.
                if not (reused and attempt == 0 and isinstance(e, (ConnectionError, asyncio.IncompleteReadError))):
                    return type(e).__name__
        return "unreachable"

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
        self._r = self._w = None

    async def aclose(self) -> None:
        self.close()


class HttpxConnection:
    def __init__(self, url: str, timeout: float):
        self.client = _client(url, 1, timeout)

    async def send(self, req: Request) -> str:
        return await _send(self.client, req)

    async def aclose(self) -> None:
        await self.client.aclose()


def connection(url: str, client: str, timeout: float):
    if client == "httpx":
        return HttpxConnection(url, timeout)
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return RawConnection(host, int(port), timeout)


def zipf_weights(n: int, s: float) -> list[float]:
    w = [1.0 / (k**s) for k in range(1, n + 1)]
    total = sum(w)
    return [x / total for x in w]


def make_requests(
    texts: list[str],
    adapters: list[str],
    dist: str,
    n: int,
    seed: int = 0,
    s: float = 1.1,
    inputs_per_request: int = 1,
    route: str = "/classify",
) -> list[Request]:
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


def batch_aligned_rate(done: list[float], start: float, end: float, gap: float = 0.015) -> float | None:
    """Answers per second between the first and the last batch boundary inside [start, end].

    Answers come in bursts (one per batch); counting the answers inside a fixed window is off by up to one
    batch (10% with 1 s batches in a 10 s window). A burst ends at an answer followed by a silence longer
    than `gap`; counting from the end of the first burst in the window to the end of the last one measures
    whole batches only. None when fewer than half the window lies between such boundaries."""
    if not done or end <= start:
        return None
    d = sorted(done)
    ends = [d[i] for i in range(len(d) - 1) if d[i + 1] - d[i] > gap]
    ends = [t for t in ends if start <= t <= end]
    if len(ends) < 2 or ends[-1] - ends[0] < 0.5 * (end - start):
        return None
    t0, t1 = ends[0], ends[-1]
    n = sum(1 for t in d if t0 < t <= t1)
    return n / (t1 - t0)


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
    steal_s: float = 0.0  # CPU seconds the hypervisor gave to other guests during the window
    metrics_before: dict | None = field(default=None, repr=False)
    metrics_after: dict | None = field(default=None, repr=False)
    metrics_interval_s: float = 0.0  # time between the two scrapes (midpoints of their round trips)

    done_times: list[float] = field(default_factory=list, repr=False)
    window: tuple[float, float] = (0.0, 0.0)

    @property
    def rps(self) -> float:
        aligned = batch_aligned_rate(self.done_times, *self.window)
        if aligned is not None:
            return aligned
        return self.ok / self.duration_s if self.duration_s else 0.0

    @property
    def window_rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    @property
    def seq_per_s(self) -> float:
        return self.rps * self.inputs_per_request

    def pct(self, q: float) -> float:
        return quantile(sorted(self.latencies), q)

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        return {
            "mode": self.mode,
            "duration_s": round(self.duration_s, 3),
            "ok": self.ok,
            "errors": self.errors,
            "req_per_s": round(self.rps, 2),
            "seq_per_s": round(self.seq_per_s, 2),
            "req_per_s_window": round(self.window_rps, 2),
            "p50_ms": round(1000 * quantile(lat, 0.5), 2),
            "p95_ms": round(1000 * quantile(lat, 0.95), 2),
            "p99_ms": round(1000 * quantile(lat, 0.99), 2),
            "concurrency": self.concurrency,
            "offered_rps": round(self.offered_rps, 2),
            "client_cpu_s": round(self.client_cpu_s, 2),
            "server_cpu_s": round(self.server_cpu_s, 2),
            "others_cpu_cores": round(
                max(0.0, self.machine_cpu_s - self.client_cpu_s - self.server_cpu_s) / self.duration_s, 3
            )
            if self.machine_cpu_s
            else None,
            "steal_cores": round(self.steal_s / self.duration_s, 3) if self.duration_s else None,
        }


class _Window:
    def __init__(self, warmup: float, duration: float):
        self.t0 = time.monotonic()
        self.start = self.t0 + warmup
        self.end = self.start + duration
        self.completed = self.ok = 0
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []
        self.done: list[float] = []  # completion times of every 200, in or out of the window

    def record(self, sent: float, done: float, status: str) -> None:
        if status == "200":
            self.done.append(done)
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


async def _scrape(client: httpx.AsyncClient) -> str | None:
    """The exposition text, parsed later (`_parsed`): parsing 1,600 lines on the load generator's loop inside the
    window delayed the arrivals due meanwhile, and the burst they then made showed up in the server's p99."""
    try:
        r = await client.get("/metrics")
        return r.text if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def _parsed(text: str | None) -> dict | None:
    return None if text is None else parse_metrics(text)


@contextlib.contextmanager
def _quiet_gc():
    """The load generator's own full collections pause its event loop like a stall would; objects made before a
    phase (the request list, earlier results) are frozen out of them for its length."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def _edges(client, window: _Window, server_pid: int | None, scrape: bool, box: dict) -> None:
    """At the window's start and end: scrape /metrics and note client/server CPU time."""
    await asyncio.sleep(max(0.0, window.start - time.monotonic()))
    box["cpu0"], box["scpu0"] = time.process_time(), cpu_seconds(server_pid) if server_pid else 0.0
    box["mcpu0"], box["steal0"] = cpu_counters()
    if scrape:
        t = time.monotonic()
        box["before"] = await _scrape(client)
        box["t0"] = (t + time.monotonic()) / 2
    await asyncio.sleep(max(0.0, window.end - time.monotonic()))
    box["cpu1"], box["scpu1"] = time.process_time(), cpu_seconds(server_pid) if server_pid else 0.0
    box["mcpu1"], box["steal1"] = cpu_counters()
    if scrape:
        t = time.monotonic()
        box["after"] = await _scrape(client)
        box["t1"] = (t + time.monotonic()) / 2


def _client(url: str, connections: int, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url,
        timeout=timeout,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def closed_loop(
    url: str,
    requests: list[Request],
    concurrency: int,
    duration: float,
    warmup: float = 2.0,
    server_pid: int | None = None,
    scrape: bool = True,
    timeout: float = 120.0,
    inputs_per_request: int = 1,
    client: str = "raw",
) -> PhaseResult:
    window = _Window(warmup, duration)
    box: dict = {}
    counter = iter(range(10**12))
    async with _client(url, 2, timeout) as control:

        async def worker():
            # One connection per worker (a shared httpx pool's bookkeeping grows with its connections).
            conn = connection(url, client, timeout)
            try:
                while time.monotonic() < window.end:
                    i = next(counter)
                    sent = time.monotonic()
                    status = await conn.send(requests[i % len(requests)])
                    window.record(sent, time.monotonic(), status)
            finally:
                await conn.aclose()

        edges = asyncio.create_task(_edges(control, window, server_pid, scrape, box))
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await edges
    return PhaseResult(
        "closed",
        duration,
        window.completed,
        window.ok,
        window.errors,
        window.latencies,
        concurrency=concurrency,
        inputs_per_request=inputs_per_request,
        client_cpu_s=box["cpu1"] - box["cpu0"],
        server_cpu_s=box["scpu1"] - box["scpu0"],
        machine_cpu_s=box["mcpu1"] - box["mcpu0"],
        steal_s=box["steal1"] - box["steal0"],
        metrics_before=_parsed(box.get("before")),
        metrics_after=_parsed(box.get("after")),
        metrics_interval_s=box.get("t1", 0.0) - box.get("t0", 0.0),
        done_times=window.done,
        window=(window.start, window.end),
    )


async def open_loop(
    url: str,
    requests: list[Request],
    rate: float,
    duration: float,
    warmup: float = 2.0,
    seed: int = 0,
    server_pid: int | None = None,
    scrape: bool = True,
    timeout: float = 60.0,
    inputs_per_request: int = 1,
    client: str = "raw",
) -> PhaseResult:
    """Poisson arrivals at `rate` per second; every arrival gets its own task (unbounded concurrency) and an idle
    keep-alive connection if one is free, else a new one."""
    window = _Window(warmup, duration)
    box: dict = {}
    rng = random.Random(seed)
    tasks: set[asyncio.Task] = set()
    idle: list = []
    opened: list = []
    async with _client(url, 2, timeout) as control:

        async def one(req: Request, scheduled: float):
            if idle:
                conn = idle.pop()
            else:
                conn = connection(url, client, timeout)
                opened.append(conn)
            status = await conn.send(req)
            window.record(scheduled, time.monotonic(), status)
            idle.append(conn)

        edges = asyncio.create_task(_edges(control, window, server_pid, scrape, box))
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
        for conn in opened:
            await conn.aclose()
    return PhaseResult(
        "open",
        duration,
        window.completed,
        window.ok,
        window.errors,
        window.latencies,
        offered_rps=rate,
        inputs_per_request=inputs_per_request,
        concurrency=len(opened),
        client_cpu_s=box["cpu1"] - box["cpu0"],
        server_cpu_s=box["scpu1"] - box["scpu0"],
        machine_cpu_s=box["mcpu1"] - box["mcpu0"],
        steal_s=box["steal1"] - box["steal0"],
        metrics_before=_parsed(box.get("before")),
        metrics_after=_parsed(box.get("after")),
        metrics_interval_s=box.get("t1", 0.0) - box.get("t0", 0.0),
    )


async def sequential(
    url: str,
    requests: list[Request],
    n: int,
    warmup: int = 3,
    pause_s: float = 0.0,
    timeout: float = 60.0,
    client: str = "raw",
) -> PhaseResult:
    """One request at a time on an otherwise idle server: the idle latency."""
    lat, errors, ok = [], {}, 0
    t_start = time.monotonic()
    conn = connection(url, client, timeout)
    try:
        for i in range(warmup + n):
            sent = time.monotonic()
            status = await conn.send(requests[i % len(requests)])
            done = time.monotonic()
            if i >= warmup:
                if status == "200":
                    ok += 1
                    lat.append(done - sent)
                else:
                    errors[status] = errors.get(status, 0) + 1
            if pause_s:
                await asyncio.sleep(pause_s)
    finally:
        await conn.aclose()
    return PhaseResult(
        "sequential", time.monotonic() - t_start, ok + sum(errors.values()), ok, errors, lat, concurrency=1
    )


def run(coro):
    with _quiet_gc():
        return asyncio.run(coro)
