"""Soak: a real server under N minutes of mixed traffic while adapters are uploaded, rolled back and
deleted every few seconds. Reports failed requests, RSS at start and end, and open file descriptors.

    python -m benchmarks.soak --minutes 30            # writes its section into docs/benchmarks.md
    python -m benchmarks.soak --minutes 1 --no-write  # prints the section only

A request counts as failed if it gets a 5xx, a transport error, or any 4xx other than a 404 for an adapter
that was deleted (by this soak) at some point during the request. 429s are reported apart (the server said
it is full; in this load they should not happen). RSS "start" is taken after a warm-up (a tenth of the run,
at least 5 s), so one-off allocations (allocator pools, lazily built modules) are not counted as growth;
the start-up figure is reported too.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .adapters import AdapterSpec, adapter_names, build_store, write_adapter
from .server import REPO, ServerProcess, free_port, proc_status

TOKEN = "soak-admin-token"
MARK_START, MARK_END = "<!-- soak:start -->", "<!-- soak:end -->"
TEXTS = [
    "the service was quick and friendly",
    "I waited an hour and nobody answered",
    "fine",
    "an average product, neither good nor bad, that does what the box says and little more",
]


@dataclass
class Result:
    minutes: float
    backbone: str
    adapters: int
    clients: int
    statuses: Counter = field(default_factory=Counter)
    expected_404: int = 0
    transport_errors: int = 0
    failures: list[str] = field(default_factory=list)  # the first few, verbatim
    changes: Counter = field(default_factory=Counter)
    change_failures: list[str] = field(default_factory=list)
    rss_startup: int = 0
    rss_start: int = 0
    rss_end: int = 0
    rss_peak: int = 0
    fds_start: int = 0
    fds_end: int = 0
    fds_max: int = 0
    rss_samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds into the run, RSS)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.transport_errors

    @property
    def failed(self) -> int:
        bad = sum(n for s, n in self.statuses.items() if s >= 500 or (400 <= s < 500 and s not in (404, 429)))
        return bad + (self.statuses[404] - self.expected_404) + self.transport_errors

    @property
    def rss_growth(self) -> float:
        return (self.rss_end - self.rss_start) / max(1, self.rss_start)


def open_fds(pid: int) -> int:
    try:
        return len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except OSError:
        return -1


class Soak:
    def __init__(self, server: ServerProcess, names: list[str], spec: AdapterSpec, result: Result, seed: int = 0):
        self.server, self.names, self.spec, self.result = server, names, spec, result
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.deleting: dict[str, list[float]] = {}  # name -> [start, end] of delete windows (end=inf: open)
        self.stop = threading.Event()
        self.work = Path(tempfile.mkdtemp(prefix="soak-"))
        self.seed = 1000

    # ---- traffic ------------------------------------------------------------------------------------
    def _was_deleting(self, name: str, started: float, ended: float) -> bool:
        with self.lock:
            windows = list(self.deleting.get(name, []))
        return any(a <= ended and b >= started for a, b in windows)

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.server.url, timeout=60.0) as http:
            while not self.stop.is_set():
                texts = rng.sample(TEXTS, rng.randint(1, len(TEXTS)))
                name = rng.choice(self.names)
                embed = rng.random() < 0.15
                started = time.monotonic()
                try:
                    if embed:
                        r = http.post("/embed", json={"inputs": texts})
                    else:
                        r = http.post(f"/classify?adapter={name}", json={"inputs": texts})
                except httpx.HTTPError as e:
                    with self.lock:
                        self.result.transport_errors += 1
                        self._note(f"{type(e).__name__}: {e}")
                    continue
                ended = time.monotonic()
                with self.lock:
                    self.result.statuses[r.status_code] += 1
                if r.status_code == 404 and not embed and self._was_deleting(name, started, ended):
                    with self.lock:
                        self.result.expected_404 += 1
                elif r.status_code >= 400 and r.status_code != 429:
                    with self.lock:
                        self._note(f"{'/embed' if embed else name}: {r.status_code} {r.text[:200]}")

    def _note(self, failure: str) -> None:
        if len(self.result.failures) < 20:
            self.result.failures.append(failure)

    # ---- admin changes --------------------------------------------------------------------------------
    def _upload(self, http: httpx.Client, name: str) -> httpx.Response:
        self.seed += 1
        folder = self.work / f"{name}-{self.seed}"
        write_adapter(folder, name, self.spec, seed=self.seed)
        files = [("files", (p.name, p.read_bytes())) for p in sorted(folder.iterdir())]
        shutil.rmtree(folder)
        return http.put(f"/admin/adapters/{name}", files=files)

    def admin(self, every_s: float) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=self.server.url, timeout=120.0, headers=headers) as http:
            while not self.stop.wait(every_s):
                name = self.rng.choice(self.names)
                kind = self.rng.choice(["upload", "upload", "rollback", "delete", "bad-upload"])
                try:
                    if kind == "upload":
                        ok = self._upload(http, name).status_code == 201
                    elif kind == "rollback":
                        ok = http.post(f"/admin/adapters/{name}/rollback").status_code in (200, 422)
                    elif kind == "bad-upload":  # refused; the previous version must keep serving
                        bad = [("files", ("adapter_config.json", b'{"config": 7}'))]
                        ok = http.put(f"/admin/adapters/{name}", files=bad).status_code in (400, 422)
                    else:
                        with self.lock:
                            self.deleting.setdefault(name, []).append([time.monotonic(), float("inf")])
                        ok = http.delete(f"/admin/adapters/{name}").status_code == 200
                        ok = self._upload(http, name).status_code == 201 and ok  # back for the traffic
                        with self.lock:
                            self.deleting[name][-1][1] = time.monotonic()
                except httpx.HTTPError as e:
                    ok = False
                    kind += f" ({type(e).__name__})"
                with self.lock:
                    self.result.changes[kind] += 1
                    if not ok and len(self.result.change_failures) < 20:
                        self.result.change_failures.append(f"{kind} {name}")

    # ---- the run ---------------------------------------------------------------------------------------
    def run(self, minutes: float, clients: int, change_every_s: float, sample_s: float = 5.0) -> Result:
        res = self.result
        res.rss_startup = proc_status(self.server.pid).get("VmRSS", 0)
        threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(clients)]
        threads.append(threading.Thread(target=self.admin, args=(change_every_s,), daemon=True))
        for t in threads:
            t.start()
        started = time.monotonic()
        end = started + minutes * 60
        warm = started + max(5.0, minutes * 6)  # a tenth of the run
        try:
            while time.monotonic() < end:
                time.sleep(min(sample_s, max(0.0, end - time.monotonic())))
                rss = proc_status(self.server.pid).get("VmRSS", 0)
                fds = open_fds(self.server.pid)
                res.rss_peak, res.fds_max = max(res.rss_peak, rss), max(res.fds_max, fds)
                res.rss_samples.append((round(time.monotonic() - started, 1), rss))
                if not res.rss_start and time.monotonic() >= warm:
                    res.rss_start, res.fds_start = rss, fds
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=120)
            shutil.rmtree(self.work, ignore_errors=True)
        res.rss_end, res.fds_end = proc_status(self.server.pid).get("VmRSS", 0), open_fds(self.server.pid)
        if not res.rss_start:  # a run shorter than its warm-up
            res.rss_start, res.fds_start = res.rss_end, res.fds_end
        return res


def backbone_shape(backbone: str) -> tuple[int, int]:
    cfg = json.loads((Path(backbone) / "config.json").read_text())
    return cfg["hidden_size"], cfg["num_hidden_layers"]


def soak(
    minutes: float,
    backbone: str,
    n_adapters: int = 8,
    clients: int = 4,
    change_every_s: float = 3.0,
    workdir: Path | None = None,
) -> Result:
    own = workdir is None
    work = Path(workdir or tempfile.mkdtemp(prefix="soak-run-"))
    store = work / "store"
    names = adapter_names(n_adapters)
    hidden, layers = backbone_shape(backbone)
    spec = AdapterSpec(hidden, layers, 16, head_layers=1)
    build_store(store, names, spec)
    env = {
        "ADAPTERSERVE_STORE": str(store),
        "ADAPTERSERVE_BACKBONE": backbone,
        "ADAPTERSERVE_DEVICE": "cpu",
        "ADAPTERSERVE_ADMIN_TOKEN": TOKEN,
        "ADAPTERSERVE_LOG_LEVEL": "WARNING",
        "ADAPTERSERVE_KEEP_VERSIONS": "3",
        # fewer host slots than adapters: cold loads and evictions happen all the time
        "ADAPTERSERVE_CACHE_MAX_HOST_ADAPTERS": str(max(1, n_adapters // 2)),
    }
    port = free_port()
    server = ServerProcess(["-m", "adapterserve", "serve", "--port", str(port)], env, port, work / "server.log", "soak")
    server.start()
    result = None
    try:
        result = Result(minutes, Path(backbone).name, n_adapters, clients)
        return Soak(server, names, spec, result).run(minutes, clients, change_every_s)
    finally:
        server.stop()
        if own:
            if result is not None and result.failed == 0 and not result.change_failures:
                shutil.rmtree(work, ignore_errors=True)
            else:
                print(f"soak: the server's log is kept in {work / 'server.log'}")


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def rss_by_tenth(r: Result) -> list[int]:
    """The last RSS sample at or before each tenth of the run: the shape of the curve, not just its ends."""
    total, out = r.minutes * 60, []
    for k in range(1, 11):
        before = [rss for t, rss in r.rss_samples if t <= total * k / 10 + 1e-6]
        out.append(before[-1] if before else 0)
    return out


def render(r: Result, commit: str = "") -> str:
    flat = abs(r.rss_growth) <= 0.05
    codes = ", ".join(f"{s}: {n}" for s, n in sorted(r.statuses.items()))
    changes = ", ".join(f"{k}: {n}" for k, n in sorted(r.changes.items()))
    lines = [
        MARK_START,
        "## Soak",
        "",
        f"`python -m benchmarks.soak --minutes {r.minutes:g}`{f' at {commit}' if commit else ''}: a real server "
        f"(backbone {r.backbone}, CPU) with {r.adapters} adapters and half as many host-tier slots, {r.clients} "
        "client threads sending /classify and /embed back to back, and an admin change every few seconds "
        "(upload of a new version, rollback, delete and re-upload, a refused upload).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| requests | {r.requests} ({codes}; transport errors: {r.transport_errors}) |",
        f"| failed requests | **{r.failed}** |",
        f"| 404 while its adapter was being deleted (expected) | {r.expected_404} |",
        f"| admin changes | {sum(r.changes.values())} ({changes}) |",
        f"| admin changes that did not answer as expected | {len(r.change_failures)} |",
        f"| RSS after start-up / after warm-up / at the end / peak | {_mb(r.rss_startup)} / {_mb(r.rss_start)} / "
        f"{_mb(r.rss_end)} / {_mb(r.rss_peak)} |",
        f"| RSS change from warm-up to end | {r.rss_growth * 100:+.1f}% ({'flat within 5%' if flat else 'NOT flat'}) |",
        f"| open file descriptors (after warm-up / end / max) | {r.fds_start} / {r.fds_end} / {r.fds_max} |",
        "",
    ]
    if r.rss_samples:
        tenths = " / ".join(f"{n / 2**20:.0f}" for n in rss_by_tenth(r))
        lines += [f"RSS at each tenth of the run (MB): {tenths}.", ""]
    if r.failures:
        lines += ["First failures:", "", *[f"- `{f}`" for f in r.failures[:10]], ""]
    if r.change_failures:
        lines += ["Admin changes that did not answer as expected:", "", *[f"- {f}" for f in r.change_failures[:10]], ""]
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def write_section(doc: Path, section: str) -> None:
    text = doc.read_text() if doc.exists() else ""
    if MARK_START in text and MARK_END in text:
        text = re.sub(
            re.escape(MARK_START) + r".*?" + re.escape(MARK_END) + r"\n?", lambda _: section, text, flags=re.S
        )
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    from adapterserve.settings import default_backbone

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--backbone", default=None, help="local backbone folder (default: the service's default)")
    p.add_argument("--adapters", type=int, default=8)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--change-every", type=float, default=3.0, help="seconds between admin changes")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--no-write", action="store_true", help="print the section; leave the doc alone")
    p.add_argument("--json", type=Path, default=None, help="also write the raw result here")
    args = p.parse_args(argv)
    result = soak(args.minutes, args.backbone or default_backbone(), args.adapters, args.clients, args.change_every)
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    section = render(result, commit.stdout.strip())
    print(section)
    if args.json:
        args.json.write_text(json.dumps({**result.__dict__, "failed": result.failed}, default=dict, indent=2))
    if not args.no_write:
        write_section(args.doc, section)
    return 0 if result.failed == 0 and not result.change_failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
