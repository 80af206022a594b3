"""What the lifespan builds: backbone -> store -> lifecycle (+ device tier) -> batcher -> router.
Tests build small fakes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from .engine.backbone import Backbone, load_backbone
from .engine.batcher import Batcher
from .engine.devices import DeviceTier
from .engine.router import Router
from .engine.runner import run_items
from .engine.runtime import make_runtime
from .engine.threads import compute_threads, cpu_budget
from .engine.work import BatcherConfig
from .heap import HeapFreezer
from .lifecycle import Lifecycle, Pin
from .metrics import Metrics
from .settings import Settings
from .store import AdapterStore, open_store

log = logging.getLogger(__name__)


@dataclass(eq=False)
class AppState:
    settings: Settings
    backbone: Backbone
    store: AdapterStore
    lifecycle: Lifecycle
    batcher: Batcher
    router: Router
    metrics: Metrics
    ready: bool = False
    draining: bool = False
    background: list = field(default_factory=list)  # asyncio tasks the lifespan cancels
    heap: HeapFreezer | None = None  # freezes adapters' objects once loads settle (heap.py)

    async def place(self, snapshot) -> None:
        """Put a snapshot's copy on the device now (admin load, preload), on an inference thread."""
        devices = self.lifecycle.devices
        await self.batcher.on_worker(lambda: devices.release(devices.acquire([snapshot])))


def inference_threads(settings: Settings, device_type: str) -> tuple[int, int]:
    """(inference workers, torch threads each). On a CPU two workers with half the threads each measured
    faster than one with all of them, at every batch size (docs/benchmarks.md, "Inference workers"); a GPU
    runs one batch at a time."""
    budget = settings.torch_threads or cpu_budget()
    workers = settings.inference_workers or (1 if device_type == "cuda" else min(2, budget))
    return workers, max(1, budget // workers)


def build_state(
    settings: Settings,
    backbone: Backbone | None = None,
    store: AdapterStore | None = None,
    devices: DeviceTier | None = None,
) -> AppState:
    """Everything heavy happens here (called from the lifespan), never at import time. Tests pass a
    DeviceTier with a fake device (a separate CPU copy) to run the device-tier paths on a CPU."""
    metrics = Metrics(settings.metrics_max_adapters)
    backbone = backbone or load_backbone(settings.backbone, settings.device, settings.dtype, settings.max_length)
    store = store or open_store(
        settings.store, keep_versions=settings.keep_versions, cache_max_bytes=settings.store_cache_max_bytes
    )
    if devices is None:  # (an empty tier is falsy: it has a length)
        devices = DeviceTier(
            backbone.device,
            backbone.dtype,
            max_adapters=settings.cache_max_device_adapters,
            max_bytes=settings.cache_max_device_bytes,
        )
    devices.on_event = metrics.on_cache_event
    heap = HeapFreezer(settings.gc_freeze_quiet_s) if settings.gc_freeze_quiet_s > 0 else None

    def on_event(event):
        metrics.on_cache_event(event)
        if heap is not None:
            heap.on_event(event)

    lifecycle = Lifecycle(
        store,
        backbone.shape,
        devices,
        max_host_adapters=settings.cache_max_host_adapters,
        on_event=on_event,
    )

    def on_stats(stats, seconds):
        metrics.inference.observe(seconds)
        metrics.batch_size.observe(stats.rows)
        metrics.batch_tokens.observe(stats.padded_tokens)
        metrics.padding_ratio.observe(1 - stats.tokens / max(1, stats.padded_tokens))
        metrics.batch_adapters.observe(stats.segments)

    def on_batch(items, wait):
        metrics.queue_wait.observe(wait)

    workers, threads = inference_threads(settings, backbone.device.type)
    backbone.runtime = make_runtime(
        settings.runtime, backbone, threads, int8=settings.dtype == "int8", cache=settings.runtime_cache
    )
    config = BatcherConfig(
        settings.max_batch_size,
        settings.max_batch_tokens,
        settings.max_wait_ms,
        settings.max_queue_items,
        settings.max_queue_tokens,
        settings.batching,
        workers,
    )
    split = settings.split_overhead_tokens
    if split < 0:
        split = 16 if backbone.device.type == "cpu" else 0
    pass_tokens = settings.pass_tokens
    if pass_tokens < 0:
        pass_tokens = 512 if backbone.device.type == "cpu" else 0
    batcher = Batcher(
        lambda items: run_items(backbone, items, on_stats, split, devices, pass_tokens),
        config,
        on_batch,
        worker_init=compute_threads(threads),
    )
    router = Router(
        backbone,
        lifecycle,
        batcher,
        max_batch_size=settings.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        request_timeout_s=settings.request_timeout_s,
        on_tokenize=metrics.tokenize.observe,
    )
    return AppState(settings, backbone, store, lifecycle, batcher, router, metrics, heap=heap)


async def warm_up(state: AppState) -> None:
    """One forward pass (so the first request does not pay for lazy init) and the preload list."""
    if state.settings.warmup:
        started = time.monotonic()
        rows = await state.router.tokenize(["warm up"], None, True)
        await state.router.run("", None, rows, False, state.router.deadline(120))
        log.info("warm-up done", extra={"seconds": round(time.monotonic() - started, 3)})
    for name in state.settings.preload:
        try:
            snapshot = await state.lifecycle.get(name)
            state.lifecycle.apply(Pin(name))
            await state.place(snapshot)
        except Exception as e:
            log.error("preload of %s failed: %s", name, e)
