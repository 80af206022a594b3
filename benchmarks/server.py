"""A server under test as a real subprocess: start, wait for readiness, scrape /metrics, read its memory.

The one server-process helper of the repository: the benchmarks and the end-to-end tests (tests/test_drain.py,
tests/test_replicas_e2e.py) both start servers with it. Output goes to a log file, never to a pipe nobody reads.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak RSS) in bytes, from /proc (Linux); psutil's rss elsewhere."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        try:
            import psutil

            out["VmRSS"] = out["VmHWM"] = psutil.Process(pid).memory_info().rss
        except Exception:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of a process (all threads). Read from /proc where it exists: the load generator
    calls this at a measured window's edge, and importing psutil there (20 ms alone, ~100 ms on a loaded 2-core
    box) stalled the arrivals due meanwhile."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except Exception:
        return 0.0


def cpu_counters() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat (0s where it does not
    exist). busy excludes idle, iowait and steal; steal is time the hypervisor gave to other guests."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        vals = [int(x) for x in fields[:8]]
        hz = os.sysconf("SC_CLK_TCK")
        busy = sum(vals) - vals[3] - vals[4] - vals[7]
        return busy / hz, vals[7] / hz
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0


def machine_busy_seconds() -> float:
    return cpu_counters()[0]


class RssSampler:
    """Samples a process's RSS in a thread; `peak` is the highest RSS seen since `reset`."""

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid, self.interval = pid, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, proc_status(self.pid).get("VmRSS", 0))

    def reset(self) -> None:
        self.peak = proc_status(self.pid).get("VmRSS", 0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


@dataclass
class ServerProcess:
    """`python -m <module> ...` on 127.0.0.1:port with extra environment; logs go to a file."""

    args: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    name: str = "server"
    executable: str = ""  # default: this Python (a peer server runs its own venv's entry point)
    cwd: str = ""  # default: the repository
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    ready_after_s: float = 0.0
    sampler: RssSampler | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 300.0, ready_path: str = "/health/ready") -> ServerProcess:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **self.env}
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._log = self.log_path.open("w")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [self.executable or sys.executable, *self.args],
            cwd=self.cwd or str(REPO),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode} before it was ready; log:\n{self.tail()}"
                    )
                try:
                    if client.get(self.url + ready_path).status_code == 200:
                        self.ready_after_s = time.monotonic() - self.started_at
                        self.sampler = RssSampler(self.pid)
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f}s; log:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def memory(self) -> dict[str, int]:
        return proc_status(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit status (None if it never started)."""
        if self.sampler is not None:
            self.sampler.stop()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        """`with server.start():` starts it first; `with server:` only guarantees the stop."""
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def adapterserve_process(
    store: str | Path, backbone: str, log_path: Path, device: str = "cpu", name: str = "adapterserve", **settings
) -> ServerProcess:
    """`python -m adapterserve serve` on a free loopback port; each keyword becomes an ADAPTERSERVE_<NAME>
    environment variable (log level WARNING unless given)."""
    port = free_port()
    env = {"ADAPTERSERVE_LOG_LEVEL": "WARNING", **{f"ADAPTERSERVE_{k.upper()}": str(v) for k, v in settings.items()}}
    args = ["-m", "adapterserve", "serve", "--port", str(port), "--store", str(store), "--backbone", backbone]
    return ServerProcess([*args, "--device", device], env, port, log_path, name=name)


# ---- Prometheus text parsing ----------------------------------------------------------------------------
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name -> [(labels, value)] for every sample in the exposition text."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.setdefault(m.group(1), []).append((labels, value))
    return out


@dataclass
class Histogram:
    buckets: list[tuple[float, float]]  # (upper bound, cumulative count)
    sum: float
    count: float

    def __sub__(self, other: Histogram) -> Histogram:
        prev = dict(other.buckets)
        return Histogram(
            [(le, c - prev.get(le, 0.0)) for le, c in self.buckets], self.sum - other.sum, self.count - other.count
        )

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def distribution(self) -> list[tuple[float, float]]:
        """(upper bound, share of observations in (previous bound, bound])."""
        out, prev = [], 0.0
        for le, c in self.buckets:
            out.append((le, (c - prev) / self.count if self.count else 0.0))
            prev = c
        return out

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-quantile (coarse, as Prometheus would)."""
        if not self.count:
            return 0.0
        target = q * self.count
        for le, c in self.buckets:
            if c >= target:
                return le
        return float("inf")


def histogram(samples: dict, name: str, **match: str) -> Histogram:
    """Sum a histogram's series over every label set that matches `match`."""

    def ok(labels):
        return all(labels.get(k) == v for k, v in match.items())

    buckets: dict[float, float] = {}
    for labels, v in samples.get(name + "_bucket", []):
        if ok(labels):
            le = float(labels["le"])
            buckets[le] = buckets.get(le, 0.0) + v
    total = sum(v for labels, v in samples.get(name + "_sum", []) if ok(labels))
    count = sum(v for labels, v in samples.get(name + "_count", []) if ok(labels))
    return Histogram(sorted(buckets.items()), total, count)


def counter(samples: dict, name: str, **match: str) -> float:
    return sum(v for labels, v in samples.get(name, []) if all(labels.get(k) == val for k, val in match.items()))


def scrape(url: str) -> dict:
    r = httpx.get(url + "/metrics", timeout=10.0)
    r.raise_for_status()
    return parse_metrics(r.text)
