"""Every Prometheus metric, defined once (prefix adapterserve_), in a registry per app instance.

The adapter label is bounded: only adapters that exist get a series, and past `max_adapters` distinct
names the rest fold into "other". Unknown names (404s) are recorded as "unknown".
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from .events import AdapterLoaded, CacheEvent, CacheHit, CacheMiss, Evicted

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
RATIO_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class AdapterLabels:
    """Maps adapter names to a bounded label set. Only the event loop calls it (the HTTP middleware), so the
    set needs no lock."""

    def __init__(self, max_adapters: int):
        self.max_adapters = max_adapters
        self._seen: set[str] = set()

    def __call__(self, name: str | None, known: bool = True) -> str:
        if name is None or name == "":
            return "none"
        if not known:
            return "unknown"
        if name in self._seen:
            return name
        if len(self._seen) < self.max_adapters:
            self._seen.add(name)
            return name
        return "other"


class Metrics:
    def __init__(self, max_adapters: int = 100, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.adapter_label = AdapterLabels(max_adapters)
        p = "adapterserve_"
        self.requests = Counter(
            p + "requests_total",
            "Requests by adapter, route and HTTP status",
            ["adapter", "route", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            p + "request_duration_seconds",
            "End-to-end request latency",
            ["adapter", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            p + "queue_wait_seconds",
            "Time a batch's oldest request waited in the queue",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokenize = Histogram(
            p + "tokenize_seconds", "Tokenization time per request", buckets=LATENCY_BUCKETS, registry=r
        )
        self.inference = Histogram(
            p + "inference_seconds", "Backbone + heads time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(p + "batch_size", "Rows per batch", buckets=SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram(p + "batch_tokens", "Padded tokens per batch", buckets=TOKEN_BUCKETS, registry=r)
        self.padding_ratio = Histogram(
            p + "batch_padding_ratio", "Share of padded positions in a batch", buckets=RATIO_BUCKETS, registry=r
        )
        self.batch_adapters = Histogram(
            p + "batch_adapters", "Distinct adapters per batch", buckets=SIZE_BUCKETS, registry=r
        )
        self.queue_requests = Gauge(
            p + "queue_requests", "Work items waiting in the queue (a request is one or more)", registry=r
        )
        self.queue_tokens = Gauge(p + "queue_tokens", "Tokens waiting in the queue", registry=r)
        self.adapters_resident = Gauge(p + "adapters_resident", "Adapters resident per tier", ["tier"], registry=r)
        self.adapter_load = Histogram(
            p + "adapter_load_seconds",
            "Cold adapter load time, store to host memory",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(p + "adapter_cache_hits_total", "Requests whose adapter was resident", registry=r)
        self.cache_misses = Counter(
            p + "adapter_cache_misses_total", "Requests that had to load their adapter", registry=r
        )
        self.cache_evictions = Counter(p + "adapter_cache_evictions_total", "Adapters evicted", ["tier"], registry=r)
        self.gpu_memory = Gauge(p + "gpu_memory_bytes", "GPU memory allocated by this process", registry=r)
        self.ready = Gauge(p + "ready", "1 when the server accepts traffic", registry=r)

    def on_cache_event(self, event: CacheEvent) -> None:
        """Called from the event loop and (device evictions) from inference threads; metrics are thread-safe."""
        match event:
            case CacheHit():
                self.cache_hits.inc()
            case CacheMiss():
                self.cache_misses.inc()
            case Evicted(tier=tier):
                self.cache_evictions.labels(tier).inc()
            case AdapterLoaded(seconds=seconds):
                self.adapter_load.observe(seconds)

    def render(self) -> bytes:
        try:
            import torch

            if torch.cuda.is_available():
                self.gpu_memory.set(torch.cuda.memory_allocated())
        except Exception:  # metrics must never fail a scrape
            pass
        return generate_latest(self.registry)
