"""What the lifespan builds: backbone -> store -> cache -> batcher -> router. Tests build small fakes."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field

from .cache import AdapterCache
from .engine.backbone import Backbone, load_backbone
from .engine.batcher import Batcher
from .engine.router import Router
from .engine.runner import run_items
from .engine.threads import compute_threads, cpu_budget
from .engine.work import BatcherConfig
from .metrics import Metrics
from .settings import Settings
from .store import AdapterStore, open_store

log = logging.getLogger(__name__)


@dataclass(eq=False)
class AppState:
    settings: Settings
    backbone: Backbone
    store: AdapterStore
    cache: AdapterCache
    batcher: Batcher
    router: Router
    metrics: Metrics
    ready: bool = False
    draining: bool = False
    admin_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    background: list[asyncio.Task] = field(default_factory=list)

    def admin_lock(self, name: str) -> asyncio.Lock:
        return self.admin_locks.setdefault(name, asyncio.Lock())


def inference_threads(settings: Settings, device_type: str) -> tuple[int, int]:
    """(inference workers, torch threads each). On a CPU two workers with half the threads each measured
    faster than one with all of them, at every batch size (docs/benchmarks.md, "Inference workers"); a GPU
    runs one batch at a time."""
    budget = settings.torch_threads or cpu_budget()
    workers = settings.inference_workers or (1 if device_type == "cuda" else min(2, budget))
    return workers, max(1, budget // workers)


def build_state(settings: Settings, backbone: Backbone | None = None, store: AdapterStore | None = None) -> AppState:
    """Everything heavy happens here (called from the lifespan), never at import time."""
    metrics = Metrics(settings.metrics_max_adapters)
    backbone = backbone or load_backbone(settings.backbone, settings.device, settings.dtype, settings.max_length)
    store = store or open_store(settings.store, keep_versions=settings.keep_versions)
    cache = AdapterCache(
        store,
        backbone.shape,
        backbone.device,
        backbone.dtype,
        max_device_adapters=settings.cache_max_device_adapters,
        max_device_bytes=settings.cache_max_device_bytes,
        max_host_adapters=settings.cache_max_host_adapters,
        on_event=metrics.cache_event,
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
    config = BatcherConfig(
        settings.max_batch_size,
        settings.max_batch_tokens,
        settings.max_wait_ms,
        settings.max_queue_requests,
        settings.max_queue_tokens,
        settings.batching,
        workers,
    )
    split = settings.split_overhead_tokens
    if split < 0:
        split = 16 if backbone.device.type == "cpu" else 0
    batcher = Batcher(
        lambda items: run_items(backbone, items, on_stats, split),
        config,
        on_batch,
        worker_init=compute_threads(threads),
    )
    router = Router(
        backbone,
        cache,
        batcher,
        max_batch_size=settings.max_batch_size,
        request_timeout_s=settings.request_timeout_s,
        on_tokenize=metrics.tokenize.observe,
    )
    return AppState(settings, backbone, store, cache, batcher, router, metrics)


def freeze_heap() -> None:
    """Take what start-up built (backbone modules, tokenizer, imports: some 400k objects) out of the garbage
    collector's sight. Otherwise every full collection walks them all, about 250 ms with the GIL held on the
    CI machine, and no request or pass moves meanwhile: a long tail on the latency under load."""
    gc.collect()
    gc.freeze()


async def warm_up(state: AppState) -> None:
    """One forward pass (so the first request does not pay for lazy init) and the preload list."""
    if state.settings.warmup:
        started = time.monotonic()
        rows = await state.router.tokenize(["warm up"], None, True)
        await state.router.run("", None, rows, False, state.router.deadline(120))
        log.info("warm-up done", extra={"seconds": round(time.monotonic() - started, 3)})
    for name in state.settings.preload:
        try:
            await state.cache.get(name)
            state.cache.pin(name)
        except Exception as e:
            log.error("preload of %s failed: %s", name, e)
