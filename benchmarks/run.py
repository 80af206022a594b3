"""`make bench`: every strategy side by side in one run, on the same texts, and docs/benchmarks.md.

    python -m benchmarks.run --out docs/benchmarks.md            # CPU, all-MiniLM-L6-v2 (~10 minutes)
    python -m benchmarks.run --quick --out /tmp/bench.md         # smoke run (~1-2 minutes)
    python -m benchmarks.run --device cuda --backbone-shape bert-base --out docs/benchmarks-gpu.md

Strategies: (1) the bare backbone batched in-process (the ceiling); (2) a naive server (HF pipeline, one full
model per task, one forward per request); (3) adapterserve with per-adapter batches; (4) adapterserve with
mixed batches. Servers are real subprocesses on 127.0.0.1, driven over HTTP by benchmarks.load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import load as L
from .adapters import AdapterSpec, adapter_names, build_store
from .corpus import load_texts, long_texts
from .report import open_half, windows
from .server import REPO, ServerProcess, free_port, histogram


# ---- configuration ----------------------------------------------------------------------------------------
@dataclass
class Config:
    device: str = "cpu"
    backbone: str = ""  # a folder; "" = the service's default (all-MiniLM-L6-v2)
    backbone_shape: str = "default"  # or "bert-base": random-weight BERT-base with the MiniLM tokenizer
    adapter_counts: list[int] = field(default_factory=lambda: [1, 8, 64, 512])
    dists: list[str] = field(default_factory=lambda: ["uniform", "zipf"])
    zipf_s: float = 1.1
    duration: float = 14.0
    warmup: float = 4.0
    # Each adapter count's phases run in this many rounds of [its mixes, 1 adapter], each window duration / rounds:
    # the machine's speed drifts by 5-10% within a minute here (docs/runtimes.md), and a mixed window is compared
    # with the single-adapter windows right around it, so shorter interleaved windows leave drift less room. Three
    # rounds of 4.7 s measure as long as two of 7 s; the torch runtime's windows still differ by up to 9% in the
    # backbone's own matmuls (docs/runtimes.md, eighth round), which only more rounds average out.
    mix_rounds: int = 3
    concurrency: int = 256  # 4 batches: deep enough for the batcher's length bucketing (it picks from 4 batches)
    extra_concurrency: list[int] = field(default_factory=lambda: [128])  # one more 1-adapter phase each (mixed)
    inputs_per_request: int = 1
    max_batch_size: int = 64
    bare_batch_size: int = 32  # the bare ceiling's batches, as a new user batches
    max_batch_tokens: int = 16384
    max_length: int = 0  # 0: the backbone's own limit; 128 for the GPU shape (long inputs truncated)
    reduction_factor: float = 16
    open_loop_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    open_loop_adapters: int = 64
    # Seconds per open-loop rate: a p99 rests on its slowest 1%, and 14 s at half the peak left about 14 answers
    # there, so one queueing burst more or less moved it by half (docs/runtimes.md, the p99 section).
    open_duration: float = 42.0
    idle_requests: int = 100
    cold_adapters: int = 5
    cold_bytes: int = 4 * 1024 * 1024
    naive_tasks: list[int] = field(default_factory=lambda: [1, 2, 4])
    client: str = "raw"  # the load generator's HTTP engine: raw (asyncio streams) or httpx
    switch_interval: float = 0.0  # > 0: sys.setswitchinterval in adapterserve (via benchmarks.serve)
    server_threads: int = 0  # torch intra-op threads in adapterserve (OMP_NUM_THREADS); 0 = torch's default
    naive_mode: str = "serial"  # serial: one forward at a time; threads: concurrent forwards in FastAPI's pool
    texts: int = 4096
    seed: int = 0
    strategies: list[str] = field(
        default_factory=lambda: ["bare", "mixed", "mixed_torch", "per_adapter", "naive", "runtimes", "peers"]
    )
    peer_concurrency: int = 32  # infinity-emb vs our /v1/embeddings: one text per request, 32 connections
    peer_windows: int = 2  # measured windows per peer server; the best counts
    peer_runtimes: list[str] = field(default_factory=lambda: ["torch", "onnx", "int8"])  # int8: onnx + DTYPE=int8
    prototype: bool = True
    quick: bool = False


def make_config(args) -> Config:
    cfg = Config(device=args.device, backbone=args.backbone or "", backbone_shape=args.backbone_shape)
    if args.device == "cuda":
        # 128-token inputs, big batches, several texts per request: one uvicorn process cannot answer 10k
        # HTTP requests/s, so the GPU load sends 32 texts per request.
        cfg.adapter_counts = [1, 8, 100, 512]
        cfg.open_loop_adapters = 100
        cfg.inputs_per_request = 32
        cfg.concurrency = 64
        cfg.extra_concurrency = [16]
        cfg.max_batch_size = 512
        cfg.max_batch_tokens = 65536
        cfg.naive_tasks = [1, 2, 4]
    if cfg.backbone_shape == "bert-base":
        cfg.max_length = 128  # every input is exactly 128 tokens (long texts, truncated)
    if args.quick:
        cfg.quick = True
        cfg.duration, cfg.warmup = 3.0, 1.0
        cfg.mix_rounds = 1
        cfg.peer_windows = 1
        cfg.adapter_counts = [1, 8, 64] if args.device != "cuda" else [1, 100]
        cfg.dists = ["uniform", "zipf"]
        cfg.open_loop_fractions = [0.5]
        cfg.open_duration = 3.0
        cfg.idle_requests = 30
        cfg.cold_adapters = 2
        cfg.naive_tasks = [1, 2]
        cfg.extra_concurrency = []
        cfg.prototype = False
    for name in (
        "duration",
        "open_duration",
        "warmup",
        "mix_rounds",
        "concurrency",
        "inputs_per_request",
        "max_batch_size",
        "max_length",
    ):
        v = getattr(args, name, None)
        if v is not None:
            setattr(cfg, name, v)
    if args.adapters:
        cfg.adapter_counts = [int(x) for x in args.adapters.split(",")]
    if args.strategies:
        cfg.strategies = args.strategies.split(",")
    if args.naive_mode:
        cfg.naive_mode = args.naive_mode
    if args.client:
        cfg.client = args.client
    if args.open_fractions is not None:
        cfg.open_loop_fractions = [float(x) for x in args.open_fractions.split(",") if x.strip()]
    if args.switch_interval:
        cfg.switch_interval = args.switch_interval
    if args.server_threads:
        cfg.server_threads = args.server_threads
    if args.no_prototype:
        cfg.prototype = False
    if cfg.open_loop_adapters not in cfg.adapter_counts:
        cfg.open_loop_adapters = (
            max(n for n in cfg.adapter_counts if n <= max(cfg.open_loop_adapters, 1))
            if any(n <= cfg.open_loop_adapters for n in cfg.adapter_counts)
            else cfg.adapter_counts[0]
        )
    return cfg


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- the machine -----------------------------------------------------------------------------------------
def machine_info(device: str) -> dict:
    import torch
    import transformers

    info = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        info["commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        info["commit"] = "unknown"
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    info["other_heavy_processes"] = other_heavy_processes()
    return info


def other_heavy_processes() -> list[str]:
    """Other processes that would skew the figures (a training job, another benchmark)."""
    out = []
    try:
        import psutil

        me = psutil.Process()
        mine = {me.pid} | {p.pid for p in me.parents()} | {p.pid for p in me.children(recursive=True)}
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(p.info.get("cmdline") or [])
            if (
                p.info["pid"] not in mine
                and ("adapterserve.training" in cmd or " train " in f" {cmd} " or "benchmarks.run" in cmd)
                and "grep" not in cmd
            ):
                out.append(f"{p.info['pid']}: {cmd[:120]}")
    except Exception:
        pass
    return out


def gpu_memory_by_pid(pid: int) -> int | None:
    """Device memory a process holds (nvidia-smi), bytes; None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [x.strip() for x in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return int(float(parts[1])) * 1024**2
    return 0


# ---- backbone -------------------------------------------------------------------------------------------
def default_backbone() -> str:
    from adapterserve.settings import default_backbone as d

    return d()


def make_bert_base(folder: Path, tokenizer_from: str) -> str:
    """A random-weight BERT-base (BertConfig defaults: 12 layers, hidden 768) with the MiniLM tokenizer files."""
    import torch
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    BertModel(BertConfig()).save_pretrained(str(folder))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        src = Path(tokenizer_from) / name
        if src.is_file():
            shutil.copy(src, folder / name)
    return str(folder)


def backbone_shape(path: str) -> tuple[int, int]:
    cfg = json.loads((Path(path) / "config.json").read_text())
    return cfg["hidden_size"], cfg["num_hidden_layers"]


def cold_spec(hidden: int, layers: int, target: int) -> AdapterSpec:
    """The seq_bn adapter (reduction factor, head depth) whose size is closest to `target` bytes."""
    best = None
    for rf in (0.5, 1, 2, 4, 8, 16, 32, 64):
        for head_layers in (1, 2):
            spec = AdapterSpec(hidden, layers, rf, head_layers)
            if spec.width > 4 * hidden:
                continue
            score = abs(spec.nbytes - target)
            if best is None or score < best[0]:
                best = (score, spec)
    return best[1]


# ---- helpers for the HTTP phases ------------------------------------------------------------------------
async def warm(url: str, names: list[str], text: str, concurrency: int = 16) -> dict[str, int]:
    """One request per adapter (so every adapter is loaded before a measured phase)."""
    sem = asyncio.Semaphore(concurrency)
    statuses: dict[str, int] = {}
    async with L._client(url, concurrency, 120.0) as client:

        async def one(name):
            async with sem:
                s = await L._send(client, L.Request(f"/classify?adapter={name}", json.dumps({"inputs": text}).encode()))
                statuses[s] = statuses.get(s, 0) + 1

        await asyncio.gather(*(one(n) for n in names))
    return statuses


def batch_stats(res: L.PhaseResult) -> dict:
    """The window's batches, from the /metrics histograms scraped at its edges."""
    if not res.metrics_before or not res.metrics_after:
        return {}
    a, b = res.metrics_after, res.metrics_before

    def h(name):
        return histogram(a, name) - histogram(b, name)

    size, pad, adapters = (
        h("adapterserve_batch_size"),
        h("adapterserve_batch_padding_ratio"),
        h("adapterserve_batch_adapters"),
    )
    infer, wait, tok = (
        h("adapterserve_inference_seconds"),
        h("adapterserve_queue_wait_seconds"),
        h("adapterserve_tokenize_seconds"),
    )
    tokens = h("adapterserve_batch_tokens")
    dist = [(le, share) for le, share in size.distribution() if share > 0]
    interval = res.metrics_interval_s or res.duration_s
    out = {
        "batches": int(size.count),
        "mean_batch": round(size.mean, 2),
        "batch_dist": [[le, round(share, 4)] for le, share in dist],
        "padding_ratio": round(pad.mean, 4),
        "adapters_per_batch": round(adapters.mean, 2),
        "inference_busy": round(infer.sum / interval, 4) if interval else 0.0,
        "rows_per_inference_s": round(size.sum / infer.sum, 2) if infer.sum else 0.0,
        "ms_per_batch": round(1000 * infer.mean, 2),
        "queue_wait_ms": round(1000 * wait.mean, 2),
        "tokenize_ms": round(1000 * tok.mean, 3),
        "padded_tokens_per_batch": round(tokens.mean, 1),
    }
    gpu = a.get("adapterserve_gpu_memory_bytes")
    if gpu:
        out["gpu_memory_allocated"] = int(gpu[0][1])
    return out


def phase_record(
    label: str, strategy: str, n: int, dist: str, res: L.PhaseResult, server: ServerProcess | None, cfg: Config
) -> dict:
    rec = {"label": label, "strategy": strategy, "adapters": n, "dist": dist, **res.summary()}
    rec.update(batch_stats(res))
    if server is not None:
        rec["rss_peak"] = server.sampler.peak if server.sampler else 0
        rec["client_cpu_share"] = round(res.client_cpu_s / res.duration_s, 3)
        rec["server_cpu_cores"] = round(res.server_cpu_s / res.duration_s, 3)
        if cfg.device == "cuda":
            rec["gpu_memory_process"] = gpu_memory_by_pid(server.pid)
    log(
        f"{strategy:>11} {label:<16} {rec['seq_per_s']:8.1f} seq/s  p50 {rec['p50_ms']:.0f} ms  "
        f"p99 {rec['p99_ms']:.0f} ms  batch {rec.get('mean_batch', '-')}  pad {rec.get('padding_ratio', '-')}  "
        f"errors {rec['errors'] or 0}"
    )
    return rec


# ---- the suites ---------------------------------------------------------------------------------------------
# served strategies: name -> (ADAPTERSERVE_BATCHING, ADAPTERSERVE_RUNTIME); "auto" is the device's default runtime
SERVED = {"mixed": ("mixed", "auto"), "per_adapter": ("per_adapter", "auto"), "mixed_torch": ("mixed", "torch")}


def service_server(
    cfg: Config, backbone: str, store: Path, batching: str, logs: Path, runtime: str = "auto"
) -> ServerProcess:
    port = free_port()
    env = {
        "ADAPTERSERVE_RUNTIME": "auto" if runtime == "int8" else runtime,
        "ADAPTERSERVE_BATCHING": batching,
        "ADAPTERSERVE_MAX_QUEUE_ITEMS": "1000000",
        "ADAPTERSERVE_MAX_QUEUE_TOKENS": "1000000000",
        "ADAPTERSERVE_LOG_LEVEL": "WARNING",
        "ADAPTERSERVE_CACHE_MAX_DEVICE_ADAPTERS": str(max(1024, 2 * max(cfg.adapter_counts))),
        "ADAPTERSERVE_CACHE_MAX_HOST_ADAPTERS": str(max(4096, 2 * max(cfg.adapter_counts))),
        "ADAPTERSERVE_REQUEST_TIMEOUT_S": "300",
        "ADAPTERSERVE_MAX_BATCH_SIZE": str(cfg.max_batch_size),
        "ADAPTERSERVE_MAX_BATCH_TOKENS": str(cfg.max_batch_tokens),
    }
    if runtime == "int8":
        env["ADAPTERSERVE_DTYPE"] = "int8"
    if cfg.max_length:
        env["ADAPTERSERVE_MAX_LENGTH"] = str(cfg.max_length)
    if cfg.server_threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(cfg.server_threads)
    args = [
        "-m",
        "adapterserve",
        "serve",
        "--port",
        str(port),
        "--store",
        str(store),
        "--backbone",
        backbone,
        "--device",
        cfg.device,
    ]
    if cfg.switch_interval:
        args = ["-m", "benchmarks.serve", "--switch-interval", str(cfg.switch_interval), "--"] + args[2:]
    return ServerProcess(
        args, env, port, logs / f"server-{batching}-{runtime}.log", name=f"adapterserve ({batching}, {runtime})"
    )


def traffic(cfg: Config, texts: list[str], n: int, dist: str, seed: int) -> list[L.Request]:
    names = adapter_names(n)
    return L.make_requests(
        texts, names, dist, 20000, seed=seed, s=cfg.zipf_s, inputs_per_request=cfg.inputs_per_request
    )


def closed_phases(cfg: Config, server: ServerProcess, strategy: str, texts: list[str]) -> list[dict]:
    """1 adapter, then for each larger count `mix_rounds` rounds of its traffic mixes followed by 1 adapter again:
    every multi-adapter window sits between two single-adapter windows, and the report compares it with their mean
    (drift cancels), then pools the rounds. A window lasts `duration / mix_rounds`."""
    records = []

    rounds = max(1, cfg.mix_rounds)
    window = cfg.duration / rounds

    def phase(n: int, dist: str, label: str, concurrency: int = cfg.concurrency, duration: float = window) -> None:
        reqs = traffic(cfg, texts, n, dist, seed=cfg.seed + n)
        server.sampler.reset()
        res = L.run(
            L.closed_loop(
                server.url,
                reqs,
                concurrency,
                duration,
                cfg.warmup,
                server_pid=server.pid,
                inputs_per_request=cfg.inputs_per_request,
                client=cfg.client,
            )
        )
        records.append(phase_record(label, strategy, n, dist, res, server, cfg))

    def warm_up(n: int) -> None:
        statuses = L.run(warm(server.url, adapter_names(n), texts[0]))
        if set(statuses) != {"200"}:
            raise RuntimeError(f"warming {n} adapters on {strategy}: statuses {statuses}\n{server.tail()}")

    warm_up(1)
    phase(1, "single", "1 adapter")
    if strategy == "mixed":
        for c in cfg.extra_concurrency:  # a shallower queue: what length bucketing adds
            phase(1, "single", f"1 adapter, C={c}", concurrency=c, duration=cfg.duration)
    for n in cfg.adapter_counts:
        if n == 1:
            continue
        warm_up(n)
        for k in range(rounds):
            tag = f", round {k + 1}" if rounds > 1 else ""
            for dist in cfg.dists:
                phase(n, dist, f"{n} {dist}{tag}")
            phase(1, "single", f"1 adapter (after {n}{tag})")
    return records


async def cold_loads(url: str, names: list[str], text: str, client: str = "raw") -> list[dict]:
    """Per never-loaded adapter: the first request's latency (load + answer), then a warm request's."""
    out = []
    conn = L.connection(url, client, 120.0)
    try:
        for name in names:
            req = L.Request(f"/classify?adapter={name}", json.dumps({"inputs": text}).encode())
            t0 = time.monotonic()
            s1 = await conn.send(req)
            cold = time.monotonic() - t0
            t0 = time.monotonic()
            s2 = await conn.send(req)
            warm_s = time.monotonic() - t0
            out.append(
                {"name": name, "cold_ms": round(1000 * cold, 2), "warm_ms": round(1000 * warm_s, 2), "status": [s1, s2]}
            )
            await asyncio.sleep(0.2)
    finally:
        await conn.aclose()
    return out


def service_suite(
    cfg: Config,
    backbone: str,
    store: Path,
    batching: str,
    texts: list[str],
    logs: Path,
    cold_names: list[str],
    cold_size: int,
    runtime: str = "auto",
    strategy: str = "",
) -> dict:
    """One server's phases. `strategy` names them (default: the batching); the "mixed" strategy also measures idle
    latency, cold loads and the open loop."""
    strategy = strategy or batching
    server = service_server(cfg, backbone, store, batching, logs, runtime)
    log(f"starting adapterserve ({batching}, runtime {runtime})")
    server.start()
    # the environment actually given to the server (the report renders it from here)
    out: dict = {"ready_after_s": round(server.ready_after_s, 2), "env": dict(server.env), "phases": []}
    try:
        if strategy == "mixed":
            # Idle latency: one request at a time, a small pause between them.
            L.run(warm(server.url, adapter_names(1), texts[0]))
            idle = L.run(
                L.sequential(
                    server.url,
                    traffic(cfg, texts, 1, "single", cfg.seed),
                    cfg.idle_requests,
                    pause_s=0.02,
                    client=cfg.client,
                )
            )
            out["idle"] = idle.summary()
            log(f"idle p50 {out['idle']['p50_ms']} ms p99 {out['idle']['p99_ms']} ms")
            if cold_names:
                before = L.run(_scrape_once(server.url))
                colds = L.run(cold_loads(server.url, cold_names, texts[1], cfg.client))
                after = L.run(_scrape_once(server.url))
                load_h = histogram(after, "adapterserve_adapter_load_seconds") - histogram(
                    before, "adapterserve_adapter_load_seconds"
                )
                out["cold"] = {
                    "adapters": colds,
                    "bytes": cold_size,
                    "server_load_ms_mean": round(1000 * load_h.mean, 2),
                    "loads": int(load_h.count),
                }
                log(f"cold loads: {[c['cold_ms'] for c in colds]} ms (warm {[c['warm_ms'] for c in colds]})")
        out["phases"] = closed_phases(cfg, server, strategy, texts)
        if strategy == "mixed" and cfg.open_loop_fractions:
            peak_rec = next(
                (
                    r
                    for r in out["phases"]
                    if r["adapters"] == cfg.open_loop_adapters and r["dist"] in ("zipf", "single")
                ),
                out["phases"][0],
            )
            same = windows(out["phases"], peak_rec["adapters"], peak_rec["dist"], cfg.concurrency) or [peak_rec]
            peak = sum(r["req_per_s"] for r in same) / len(same)  # the mean over its rounds
            n = peak_rec["adapters"]
            out["open"] = {"peak_req_per_s": peak, "adapters": n, "dist": peak_rec["dist"], "phases": []}
            for frac in cfg.open_loop_fractions:
                reqs = traffic(cfg, texts, n, peak_rec["dist"] if n > 1 else "single", seed=cfg.seed + 7)
                server.sampler.reset()
                res = L.run(
                    L.open_loop(
                        server.url,
                        reqs,
                        peak * frac,
                        cfg.open_duration,
                        cfg.warmup,
                        seed=cfg.seed,
                        server_pid=server.pid,
                        inputs_per_request=cfg.inputs_per_request,
                        client=cfg.client,
                    )
                )
                rec = phase_record(f"open {frac:.0%} of peak", batching, n, peak_rec["dist"], res, server, cfg)
                rec["fraction"] = frac
                out["open"]["phases"].append(rec)
        mem = server.memory()
        out["vm_hwm"] = mem.get("VmHWM", 0)
        if cfg.device == "cuda":
            out["gpu_memory_process"] = gpu_memory_by_pid(server.pid)
    finally:
        rc = server.stop()
        out["exit_code"] = rc
    return out


async def _scrape_once(url: str) -> dict:
    async with L._client(url, 1, 30.0) as client:
        return L._parsed(await L._scrape(client)) or {}


def naive_suite(cfg: Config, backbone: str, texts: list[str], logs: Path) -> dict:
    """RSS for 1, 2, 4 tasks (then a linear fit), and one closed-loop phase on the largest."""
    out: dict = {"memory": [], "phase": None}
    for k in cfg.naive_tasks:
        port = free_port()
        server = ServerProcess(
            [
                "-m",
                "benchmarks.naive",
                "--port",
                str(port),
                "--backbone",
                backbone,
                "--tasks",
                str(k),
                "--device",
                cfg.device,
            ]
            + (["--serial"] if cfg.naive_mode == "serial" else []),
            {},
            port,
            logs / f"naive-{k}.log",
            name=f"naive ({k} tasks)",
        )
        log(f"starting naive server with {k} task(s)")
        server.start(timeout=600)
        try:
            names = [f"task-{i}" for i in range(k)]
            reqs = L.make_requests(
                texts, names, "uniform", 20000, seed=cfg.seed + k, inputs_per_request=cfg.inputs_per_request
            )
            last = k == max(cfg.naive_tasks)
            duration = cfg.duration if last else min(2.0, cfg.duration)
            server.sampler.reset()
            res = L.run(
                L.closed_loop(
                    server.url,
                    reqs,
                    cfg.concurrency,
                    duration,
                    cfg.warmup if last else 0.5,
                    server_pid=server.pid,
                    scrape=False,
                    inputs_per_request=cfg.inputs_per_request,
                    client=cfg.client,
                )
            )
            mem = server.memory()
            entry = {
                "tasks": k,
                "rss_after_load": mem.get("VmRSS", 0),
                "vm_hwm": mem.get("VmHWM", 0),
                "ready_after_s": round(server.ready_after_s, 2),
            }
            if cfg.device == "cuda":
                entry["gpu_memory_process"] = gpu_memory_by_pid(server.pid)
            out["memory"].append(entry)
            if last:
                out["phase"] = phase_record(f"{k} tasks uniform", "naive", k, "uniform", res, server, cfg)
        finally:
            server.stop()
    xs = [m["tasks"] for m in out["memory"]]
    ys = [m["vm_hwm"] for m in out["memory"]]
    if len(xs) >= 2:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        out["fit"] = {"per_task": slope, "base": my - slope * mx}
    return out


def bare_suite(cfg: Config, backbone_path: str, texts: list[str]) -> dict:
    """The bare transformers ceiling at the server's thread count, in arrival order and sorted by length."""
    from adapterserve.engine.threads import cpu_budget

    from .inproc import ceiling

    threads = cfg.server_threads or cpu_budget()
    res = ceiling(backbone_path, texts, cfg.bare_batch_size, cfg.duration, threads, cfg.device)
    orders = res["orders"]
    log(
        f"bare transformers in-process ({threads} threads, batch {cfg.bare_batch_size}): "
        + ", ".join(f"{o} {r['seq_per_s']:.1f} seq/s (padding {r['padding_ratio']:.2f})" for o, r in orders.items())
    )
    return res


def bare_model(cfg: Config, backbone_path: str):
    from adapterserve.engine.backbone import load_backbone

    return load_backbone(backbone_path, cfg.device, "auto", cfg.max_length)


# ---- main -------------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="docs/benchmarks.md", help="markdown report path")
    p.add_argument("--json", default=None, help="also write every figure as JSON here")
    p.add_argument(
        "--render",
        default=None,
        metavar="JSON",
        help="measure nothing: write --out from a JSON file an earlier run saved with --json",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: short phases, fewer adapters")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--backbone", default=None, help="backbone folder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument(
        "--backbone-shape",
        choices=["default", "bert-base"],
        default=None,
        help="bert-base: a random-weight BERT-base built in a temp folder (default with --device cuda)",
    )
    p.add_argument("--adapters", default=None, help="comma-separated adapter counts (default 1,8,64,512)")
    p.add_argument(
        "--strategies",
        default=None,
        help="subset of bare,mixed,mixed_torch,per_adapter,naive,runtimes,peers (default: all)",
    )
    p.add_argument("--duration", type=float, default=None, help="seconds measured per phase")
    p.add_argument(
        "--mix-rounds", type=int, default=None, help="rounds of [mixes, 1 adapter] per adapter count (default 3)"
    )
    p.add_argument("--open-duration", type=float, default=None, help="seconds measured per open-loop rate (default 42)")
    p.add_argument("--warmup", type=float, default=None, help="seconds of unrecorded load before each phase")
    p.add_argument("--concurrency", type=int, default=None, help="closed-loop workers")
    p.add_argument("--inputs-per-request", type=int, default=None)
    p.add_argument("--max-batch-size", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument(
        "--naive-mode",
        choices=["serial", "threads"],
        default=None,
        help="naive server: one forward at a time (default) or concurrent forwards in the thread pool",
    )
    p.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default=None,
        help="load generator HTTP engine (default raw: a minimal asyncio HTTP/1.1 client)",
    )
    p.add_argument(
        "--open-fractions",
        default=None,
        help="open-loop rates as fractions of the peak, comma-separated (default 0.25,0.5,0.75; '' = none)",
    )
    p.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="run adapterserve with this sys.setswitchinterval (an experiment; default CPython's 5 ms)",
    )
    p.add_argument(
        "--server-threads",
        type=int,
        default=None,
        help="torch intra-op threads for adapterserve (sets OMP_NUM_THREADS in its environment)",
    )
    p.add_argument("--no-prototype", action="store_true", help="skip the in-process prototype measurements")
    args = p.parse_args(argv)
    if args.backbone_shape is None:
        args.backbone_shape = "bert-base" if args.device == "cuda" and not args.backbone else "default"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        from .kinds import carry_section
        from .report import render

        out = Path(args.out)
        out.write_text(carry_section(out, render(json.loads(Path(args.render).read_text()))))
        log(f"wrote {args.out} from {args.render}")
        return 0
    cfg = make_config(args)
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = machine_info(cfg.device)
    if machine["other_heavy_processes"]:
        log(
            "WARNING: other heavy processes are running; figures will be skewed: "
            + "; ".join(machine["other_heavy_processes"])
        )
    started = time.time()
    texts, source = load_texts(cfg.texts, cfg.seed)
    if cfg.max_length and cfg.backbone_shape == "bert-base":
        texts = long_texts(texts, n=cfg.texts)
        source += f", joined into texts of at least {cfg.max_length} tokens"
    results: dict = {"config": asdict(cfg), "machine": machine, "command": command, "texts": source}
    with tempfile.TemporaryDirectory(prefix="adapterserve-bench-") as tmp_s:
        tmp = Path(tmp_s)
        logs = tmp / "logs"
        logs.mkdir()
        backbone = cfg.backbone or default_backbone()
        if cfg.backbone_shape == "bert-base":
            log("building a random-weight BERT-base backbone")
            backbone = make_bert_base(tmp / "bert-base", default_backbone())
        results["backbone"] = backbone if cfg.backbone_shape != "bert-base" else "random BERT-base (BertConfig())"
        hidden, layers = backbone_shape(backbone)
        spec = AdapterSpec(hidden, layers, cfg.reduction_factor, head_layers=1)
        cspec = cold_spec(hidden, layers, cfg.cold_bytes)
        store = tmp / "store"
        n_max = max(cfg.adapter_counts)
        cold_names = [f"cold{i}" for i in range(cfg.cold_adapters)]
        log(
            f"writing {n_max} random seq_bn adapters (+{len(cold_names)} of {cspec.nbytes / 1e6:.1f} MB for cold loads)"
        )
        t0 = time.monotonic()
        sizes = build_store(store, adapter_names(n_max), spec, seed=cfg.seed, extra={n: cspec for n in cold_names})
        results["adapters"] = {
            "count": n_max,
            "bytes_each": sizes[adapter_names(1)[0]],
            "reduction_factor": cfg.reduction_factor,
            "width": spec.width,
            "params_each": spec.parameters,
            "cold_bytes": sizes[cold_names[0]] if cold_names else 0,
            "cold_reduction_factor": cspec.reduction_factor,
            "cold_head_layers": cspec.head_layers,
            "write_s": round(time.monotonic() - t0, 1),
        }
        if "bare" in cfg.strategies:
            results["bare"] = bare_suite(cfg, backbone, texts)
        if cfg.prototype:
            from .prototype import run_prototypes

            log("in-process prototypes (segment loop vs grouped adapters, length bucketing)")
            results["prototype"] = run_prototypes(bare_model(cfg, backbone), texts, spec, cfg)
        if cfg.prototype and cfg.device == "cpu":
            from adapterserve.engine.threads import cpu_budget

            from . import threads, workers

            log("in-process: torch threads in a helper thread; one inference worker or two")
            results["threads"] = threads.measure()
            results["workers"] = workers.measure(backbone, cpu_budget())
        for strategy in [x for x in cfg.strategies if x in SERVED]:
            batching, runtime = SERVED[strategy]
            if runtime != "auto" and cfg.device != "cpu":
                continue  # off the CPU the default runtime is torch: "mixed" already measured it
            results[strategy] = service_suite(
                cfg,
                backbone,
                store,
                batching,
                texts,
                logs,
                cold_names if strategy == "mixed" else [],
                results["adapters"]["cold_bytes"],
                runtime,
                strategy,
            )
            if strategy == "mixed" and "bare" in cfg.strategies:  # the ceiling again, right after
                results["bare_end"] = bare_suite(cfg, backbone, texts)
        if "naive" in cfg.strategies:
            results["naive"] = naive_suite(cfg, backbone, texts, logs)
        if "runtimes" in cfg.strategies and cfg.device == "cpu":
            from . import runtimes

            log("in-process: the runtimes side by side (torch, onnx)")
            # batches of 16 rows: about the passes the server makes (its mean pass is ~14 rows at 256 in flight)
            results["runtimes"] = runtimes.measure(backbone, 20.0 if cfg.quick else 60.0, 16, 1)
        half = open_half(results.get("mixed") or {})
        idle = (results.get("mixed") or {}).get("idle")
        if half and idle and half.get("mean_batch") and half.get("ms_per_batch") and cfg.device == "cpu":
            from . import queueing

            log("in-process: the pass cost, and the batcher's queue simulated at the half-load phase's rate")
            bb, runtime = queueing.load(backbone)
            per_pass, per_token = queueing.measure_pass_cost(bb, runtime, texts[:320])
            lengths = queueing.token_lengths(bb, texts[:5000])
            results["queueing"] = queueing.explain_half_load(per_pass, per_token, lengths, half, idle["p50_ms"])
        if "peers" in cfg.strategies and cfg.device == "cpu":
            from adapterserve.engine.threads import cpu_budget

            from .peers import peers_suite

            results["peers"] = peers_suite(
                cfg,
                backbone,
                texts,
                logs,
                lambda rt: service_server(cfg, backbone, store, "mixed", logs, rt),
                cfg.server_threads or cpu_budget(),
                log,
            )
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["wall_s"] = round(time.time() - started, 1)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M %Z")  # --render reprints it, not the render's time
    from .report import render, summary_table

    doc = render(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from .kinds import carry_section  # its own command writes that section: a rerun here keeps it

    out.write_text(carry_section(out, doc))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    print(summary_table(results))
    log(f"wrote {out} in {results['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
