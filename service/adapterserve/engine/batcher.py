"""The dynamic batcher: one asyncio task owns the queue and feeds the inference worker threads.

- Admission: `submit` refuses at once (429) when the queue is over its work-item or token bound.
- A batch closes on `max_batch_size` rows or `max_batch_tokens` (padded length x rows), or `max_wait_ms`
  after its oldest request arrived.
- Fairness: deficit round robin across adapters (by real tokens), so one hot adapter cannot starve
  the rest; within an adapter requests stay FIFO.
- Items whose caller left (future cancelled) are dropped before compute; items past their deadline
  are failed with 504 before compute, never run silently.
- Rows of different adapters share a batch ("mixed"); "per_adapter" keeps one adapter per batch.
- `workers` batches run at once, each on its own inference thread; a worker that frees up takes the next
  batch from everything queued meanwhile (on a small CPU, two single-threaded workers out-run one
  two-threaded worker at every batch size; docs/benchmarks.md, "Inference workers"). A batch takes at most
  its share of the queued rows among all the workers (`_share`), so that none stays idle while rows wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from ..errors import DeadlineExceeded, Overloaded, Unavailable
from .bucketing import select
from .work import BatcherConfig, WorkItem

log = logging.getLogger(__name__)


EXPIRED = "the request waited past its deadline before it could run; retry, or raise the timeout"
RunBatch = Callable[[list[WorkItem]], list[list[object]]]  # a batch -> one result per item


class Batcher:
    def __init__(
        self,
        run_batch: RunBatch,
        config: BatcherConfig,
        on_batch: Callable[[list[WorkItem], float], None] | None = None,
        worker_init: Callable[[], None] | None = None,
    ):
        self.config = config
        self._run_batch = run_batch
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
        self._dispatched_now = 0  # rows dispatched since the loop last waited: one burst's shares (`_share`)

    # ---- called from request handlers (same event loop) ------------------------------------------------
    def submit(self, item: WorkItem) -> asyncio.Future:
        if not self.accepting:
            raise Unavailable("the server is draining and accepts no new work; retry on another replica")
        c = self.config
        if self.queued_requests + 1 > c.max_queue_items or self.queued_tokens + item.tokens > c.max_queue_tokens:
            raise Overloaded(
                f"queue full ({self.queued_requests} work items, {self.queued_tokens} tokens queued); retry shortly",
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

    async def on_worker(self, fn, *args):
        """Run fn on an inference thread (device placement belongs there: engine/devices.py)."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

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
                self._dispatched_now = 0
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
        self._dispatched_now += sum(len(i.rows) for i in batch)
        done = asyncio.get_running_loop().run_in_executor(self._worker, self._run_batch, batch)
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
            self._dispatched_now = 0
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                return
            self._accept()

    def _fail(self, item: WorkItem, error: Exception) -> None:
        if not item.future.done():
            item.future.set_exception(error)
            item.future.exception()  # retrieved: the caller may be gone

    def _share(self) -> BatcherConfig:
        """The budget of the next batch: at most its share of the queued rows among all the workers, busy or idle.
        A CPU pass costs in proportion to its tokens beyond a few rows, so a bigger batch computes no faster, and
        its first rows wait for its last while the rest could run on the next worker to free up: in a burst at
        half load, a free worker that took all six queued rows made the sixth wait for all six. Rows queued at
        once and dispatched in one go (a closed-loop client's next round, while several workers are idle) count
        as one queue, so each idle worker takes an equal share of them. With a deep queue (the closed-loop peak)
        the share is over the batch limit and changes nothing; with one worker (CUDA) it is the whole queue."""
        share = -(-(self.queued_rows + self._dispatched_now) // self._workers)
        if share >= self.config.max_batch_size:
            return self.config
        return replace(self.config, max_batch_size=max(1, share))

    def _take_batch(self) -> list[WorkItem]:
        """The next batch (bucketing.select), taken out of the queue; expired items are failed, not run."""
        inbox_rows = sum(len(i.rows) for i in self._inbox)
        sel = select(self._queues, self._ring, self._deficit, self._share(), time.monotonic(), inbox_rows)
        self._queues, self._ring, self._deficit = sel.queues, sel.ring, sel.deficit
        for item in (*sel.batch, *sel.expired):
            self.queued_requests -= 1
            self.queued_tokens -= item.tokens
            self.queued_rows -= len(item.rows)
        for item in sel.expired:
            self._fail(item, DeadlineExceeded(EXPIRED))
        return sel.batch
