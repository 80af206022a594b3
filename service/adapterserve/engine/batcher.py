"""The dynamic batcher: one asyncio task owns the queue and feeds the inference worker threads.

- Admission: `submit` refuses at once (429) when the queue is over its request or token bound.
- A batch closes on `max_batch_size` rows or `max_batch_tokens` (padded length x rows), or `max_wait_ms`
  after its oldest request arrived.
- Fairness: deficit round robin across adapters (by real tokens), so one hot adapter cannot starve
  the rest; within an adapter requests stay FIFO.
- Items whose caller left (future cancelled) are dropped before compute; items past their deadline
  are failed with 504 before compute, never run silently.
- Rows of different adapters share a batch ("mixed"); "per_adapter" keeps one adapter per batch.
- `workers` batches run at once, each on its own inference thread; a worker that frees up takes the next
  batch from everything queued meanwhile (on a small CPU, two single-threaded workers out-run one
  two-threaded worker at every batch size; docs/benchmarks.md, "Inference workers").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..adapters.model import Adapter
from ..errors import DeadlineExceeded, Overloaded, Unavailable
from .bucketing import POOL, Picker, window
from .tokenize import Encoded

log = logging.getLogger(__name__)


@dataclass(eq=False)
class WorkItem:
    key: str  # fairness key: the adapter name, "" for embeddings
    adapter: Adapter | None
    rows: list[Encoded]
    tagging: bool
    deadline: float  # time.monotonic()
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def tokens(self) -> int:
        return sum(len(r) for r in self.rows)

    @property
    def max_len(self) -> int:
        return max(len(r) for r in self.rows)


@dataclass(frozen=True)
class BatcherConfig:
    max_batch_size: int = 64
    max_batch_tokens: int = 16384
    max_wait_ms: float = 2.0
    max_queue_requests: int = 1024
    max_queue_tokens: int = 1_000_000
    policy: str = "mixed"  # or "per_adapter"
    workers: int = 1  # batches in flight at once, one inference thread each


EXPIRED = "the request waited past its deadline before it could run; retry, or raise the timeout"
Runner = Callable[[list[WorkItem]], list[list[object]]]


class Batcher:
    def __init__(
        self,
        runner: Runner,
        config: BatcherConfig,
        on_batch: Callable[[list[WorkItem], float], None] | None = None,
        worker_init: Callable[[], None] | None = None,
    ):
        self.config = config
        self._runner = runner
        self._on_batch = on_batch or (lambda items, wait: None)
        self._queues: dict[str, deque[WorkItem]] = {}
        self._ring: deque[str] = deque()  # adapters with queued work, in round-robin order
        self._deficit: dict[str, int] = {}
        self._inbox: list[WorkItem] = []
        self._wake = asyncio.Event()
        self.queued_requests = 0
        self.queued_tokens = 0
        self.queued_rows = 0
        self.in_flight = 0  # requests in running batches
        self.busy_workers = 0
        self.accepting = True
        self._task: asyncio.Task | None = None
        # worker_init gives each inference thread its torch CPU threads (engine/threads.py)
        self._workers = max(1, config.workers)
        self._worker = ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="adapterserve-infer", initializer=worker_init
        )
        self._stopping = False

    # ---- called from request handlers (same event loop) ------------------------------------------------
    def submit(self, item: WorkItem) -> asyncio.Future:
        if not self.accepting:
            raise Unavailable("the server is draining and accepts no new work; retry on another replica")
        c = self.config
        if self.queued_requests + 1 > c.max_queue_requests or self.queued_tokens + item.tokens > c.max_queue_tokens:
            raise Overloaded(
                f"queue full ({self.queued_requests} requests, {self.queued_tokens} tokens queued); retry shortly",
                retry_after_s=1.0,
            )
        self.queued_requests += 1
        self.queued_tokens += item.tokens
        self.queued_rows += len(item.rows)
        self._inbox.append(item)
        self._wake.set()
        return item.future

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="adapterserve-batcher")

    async def drain(self, timeout: float) -> bool:
        """Stop accepting, finish everything queued and in flight (within timeout), then stop."""
        self.accepting = False
        deadline = time.monotonic() + timeout
        while (self.queued_requests or self.in_flight) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        drained = not (self.queued_requests or self.in_flight)
        await self.stop()
        return drained

    async def stop(self) -> None:
        self.accepting = False
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for q in self._queues.values():
            for item in q:
                self._fail(item, Unavailable("the server stopped before this request ran"))
        for item in self._inbox:
            self._fail(item, Unavailable("the server stopped before this request ran"))
        self._queues.clear()
        self._inbox.clear()
        self._worker.shutdown(wait=False, cancel_futures=True)

    # ---- the owner task -----------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            if self.busy_workers >= self._workers or (not self._inbox and not self._ring):
                self._wake.clear()
                await self._wake.wait()  # new work, or a worker freed up
                continue
            self._accept()
            await self._fill()
            batch = self._take_batch()
            if batch:
                self._dispatch(batch)

    def _dispatch(self, batch: list[WorkItem]) -> None:
        wait = time.monotonic() - min(i.enqueued for i in batch)
        self.busy_workers += 1
        self.in_flight += len(batch)
        done = asyncio.get_running_loop().run_in_executor(self._worker, self._runner, batch)
        done.add_done_callback(lambda f: self._finish(batch, wait, f))

    def _finish(self, batch: list[WorkItem], wait: float, done: asyncio.Future) -> None:
        """On the event loop, when a worker returns: answer the callers, then let the loop dispatch again."""
        self.busy_workers -= 1
        self.in_flight -= len(batch)
        if done.cancelled():
            results: list = [Unavailable("the server stopped before this request ran")] * len(batch)
        elif done.exception() is not None:  # a bug, not bad input: every caller in the batch hears of it
            log.error("batch failed", exc_info=done.exception())
            results = [done.exception()] * len(batch)
        else:
            results = done.result()
        for item, result in zip(batch, results):
            if item.future.done():
                continue
            if isinstance(result, Exception):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
        self._on_batch(batch, wait)
        self._wake.set()

    def _accept(self) -> None:
        inbox, self._inbox = self._inbox, []
        for item in inbox:
            q = self._queues.get(item.key)
            if q is None:
                q = self._queues[item.key] = deque()
            if not q:
                self._ring.append(item.key)
                self._deficit.setdefault(item.key, 0)
            q.append(item)

    async def _fill(self) -> None:
        """Wait for more work until the batch would be full or the oldest request has waited max_wait."""
        c = self.config
        oldest = min((q[0].enqueued for q in self._queues.values() if q), default=None)
        if oldest is None:
            return
        while True:
            rows, tokens = self.queued_rows, self.queued_tokens
            remaining = oldest + c.max_wait_ms / 1000 - time.monotonic()
            if rows >= c.max_batch_size or tokens >= c.max_batch_tokens or remaining <= 0 or self._stopping:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                return
            self._accept()

    def _take(self, key: str, index: int) -> WorkItem:
        q = self._queues[key]
        item = q[index]
        del q[index]
        self.queued_requests -= 1
        self.queued_tokens -= item.tokens
        self.queued_rows -= len(item.rows)
        return item

    def _fail(self, item: WorkItem, error: Exception) -> None:
        if not item.future.done():
            item.future.set_exception(error)
            item.future.exception()  # retrieved: the caller may be gone

    def _prune_head(self, key: str, now: float) -> None:
        """Drop items whose caller left, and fail items past their deadline, before any compute."""
        q = self._queues[key]
        while q and (q[0].future.done() or q[0].deadline <= now):
            item = self._take(key, 0)
            if not item.future.done():
                self._fail(item, DeadlineExceeded(EXPIRED))

    def _take_batch(self) -> list[WorkItem]:
        """Deficit round robin over adapters, then, when more than a batch is queued, length bucketing.

        DRR fills a pool of up to POOL batches' worth of rows (each adapter its fair share, FIFO within
        an adapter). From the pool, the batch is the window of similar lengths (sorted by length) that
        holds the oldest request and fits the budgets; the rest goes back to the front of its queues, its
        deficit refunded. With a batch or less queued, the pool is the batch.
        """
        c = self.config
        now = time.monotonic()
        for key in list(self._ring):
            self._prune_head(key, now)
        self._ring = deque(k for k in self._ring if self._queues[k])
        if not self._ring:
            return []
        bucketing = self.queued_rows > c.max_batch_size
        picker = Picker(c, pool_rows=c.max_batch_size * (POOL if bucketing else 1), budget=not bucketing)
        oldest_key = min(self._ring, key=lambda k: self._queues[k][0].enqueued)
        oldest = self._take(oldest_key, 0)
        picker.add(oldest)
        if c.policy == "per_adapter":
            picker.only = oldest_key
        self._drr(picker)
        batch = picker.batch
        if bucketing:
            batch = window(picker.batch, oldest, c)
            chosen = set(map(id, batch))
            for item in reversed(picker.batch):  # back to the front of its queue, in FIFO order
                if id(item) not in chosen:
                    self._put_back(item)
        for key in list(self._ring):
            if not self._queues[key]:
                self._ring.remove(key)
                self._deficit.pop(key, None)
        # Group rows by adapter so each adapter's rows are contiguous (one segment each).
        batch.sort(key=lambda i: i.key)
        return batch

    def _put_back(self, item: WorkItem) -> None:
        q = self._queues[item.key]
        if not q and item.key not in self._ring:
            self._ring.append(item.key)
        q.appendleft(item)
        self._deficit[item.key] = self._deficit.get(item.key, 0) + item.tokens
        self.queued_requests += 1
        self.queued_tokens += item.tokens
        self.queued_rows += len(item.rows)

    def _drr(self, picker: Picker) -> None:
        now = time.monotonic()
        quantum = max(1, self.config.max_batch_tokens // 4)
        progress = True
        while progress and not picker.full:
            progress = False
            for _ in range(len(self._ring)):
                key = self._ring[0]
                self._ring.rotate(-1)
                if picker.only is not None and key != picker.only:
                    continue
                q = self._queues[key]
                self._deficit[key] = self._deficit.get(key, 0) + quantum
                while q and not picker.full:
                    item = q[0]
                    if item.future.done() or item.deadline <= now:
                        self._fail(self._take(key, 0), DeadlineExceeded(EXPIRED))  # dropped before compute
                        continue
                    if not picker.fits(item) or item.tokens > self._deficit[key]:
                        break
                    self._deficit[key] -= item.tokens
                    picker.add(self._take(key, 0))
                    progress = True
                if not q:
                    self._deficit[key] = 0
                if picker.full:
                    return
