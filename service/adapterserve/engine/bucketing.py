"""Choosing the next batch: pure functions over a snapshot of the batcher's queues (no asyncio, no clock).

`select` runs deficit round robin over the adapters' queues into a pool of up to POOL batches' worth of rows
(each adapter its fair share, FIFO within an adapter); `window` picks from the pool the run of similar
lengths that holds the oldest request, so a batch pads little without starving anyone. The batcher
(batcher.py) owns the queues and applies the `Selection` it gets back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .work import BatcherConfig, WorkItem

POOL = 4  # batches' worth of queued rows the length bucketing chooses from


def window(pool: list[WorkItem], oldest: WorkItem, c: BatcherConfig) -> list[WorkItem]:
    """The run of length-sorted items that holds `oldest` and fits the budgets: the fullest such run,
    and among those the one spanning the least length (least padding). Ties go to the run that starts
    earliest in pick order, which keeps DRR's fairness when lengths are alike.
    """
    order = sorted(range(len(pool)), key=lambda i: (pool[i].max_len, i))
    items = [pool[i] for i in order]
    p = items.index(oldest)
    best, best_key = [oldest], None
    for a in range(p, -1, -1):
        rows, b = 0, a
        while b < len(items):
            rows_b = rows + len(items[b].rows)
            if rows_b > c.max_batch_size or rows_b * items[b].max_len > c.max_batch_tokens and b > a:
                break
            rows, b = rows_b, b + 1
        if b <= p:  # cannot reach the oldest from here; starting further left only gets worse
            break
        key = (-rows, items[b - 1].max_len - items[a].max_len, min(order[a:b]))
        if best_key is None or key < best_key:
            best, best_key = items[a:b], key
    return best


class Picker:
    """The batch being assembled and its budget."""

    def __init__(self, config: BatcherConfig, pool_rows: int, budget: bool = True):
        self.config = config
        self.pool_rows = pool_rows
        self.budget = budget  # False while filling a bucketing pool: the window applies the budget
        self.batch: list[WorkItem] = []
        self.rows = 0
        self.max_len = 0
        self.only: str | None = None

    def fits(self, item: WorkItem) -> bool:
        rows = self.rows + len(item.rows)
        if not self.budget:
            return rows <= self.pool_rows
        return (
            rows <= self.config.max_batch_size
            and rows * max(self.max_len, item.max_len) <= self.config.max_batch_tokens
        )

    def add(self, item: WorkItem) -> None:
        self.batch.append(item)
        self.rows += len(item.rows)
        self.max_len = max(self.max_len, item.max_len)

    @property
    def full(self) -> bool:
        return self.rows >= self.pool_rows


@dataclass
class Selection:
    """The outcome of one `select`: the batch, and the queue state to keep (the batcher adopts it)."""

    batch: list[WorkItem]  # grouped by adapter key: each adapter's rows contiguous
    expired: list[WorkItem]  # caller left or deadline passed: removed, to be failed (never run)
    queues: dict[str, deque[WorkItem]]
    ring: deque[str]  # adapters with queued work, in round-robin order
    deficit: dict[str, int]


def select(
    queues: Mapping[str, Sequence[WorkItem]],
    ring: Sequence[str],
    deficit: Mapping[str, int],
    config: BatcherConfig,
    now: float,
    unqueued_rows: int = 0,
) -> Selection:
    """Deficit round robin over adapters, then, when more than a batch is queued, length bucketing.

    The oldest request is always in the batch. From the DRR pool, the batch is the window of similar
    lengths that holds the oldest request and fits the budgets; the rest goes back to the front of its
    queues, its deficit refunded. With a batch or less queued, the pool is the batch. The inputs are not
    modified. `unqueued_rows`: rows submitted but not yet in `queues`; they count toward whether more than a
    batch is waiting.
    """
    qs = {k: deque(q) for k, q in queues.items()}
    ring_, deficit_ = deque(ring), dict(deficit)
    expired: list[WorkItem] = []

    def gone(item: WorkItem) -> bool:
        return item.future.done() or item.deadline <= now

    for key in ring_:
        q = qs[key]
        while q and gone(q[0]):
            expired.append(q.popleft())
    ring_ = deque(k for k in ring_ if qs[k])
    if not ring_:
        return Selection([], expired, qs, ring_, deficit_)
    queued_rows = unqueued_rows + sum(len(i.rows) for q in qs.values() for i in q)
    bucketing = queued_rows > config.max_batch_size
    picker = Picker(config, pool_rows=config.max_batch_size * (POOL if bucketing else 1), budget=not bucketing)
    oldest_key = min(ring_, key=lambda k: qs[k][0].enqueued)
    oldest = qs[oldest_key].popleft()
    picker.add(oldest)
    if config.policy == "per_adapter":
        picker.only = oldest_key
    _drr(picker, qs, ring_, deficit_, expired, max(1, config.max_batch_tokens // 4), gone)
    batch = picker.batch
    if bucketing:
        batch = window(picker.batch, oldest, config)
        chosen = set(map(id, batch))
        for item in reversed(picker.batch):  # back to the front of its queue, in FIFO order
            if id(item) not in chosen:
                q = qs[item.key]
                if not q and item.key not in ring_:
                    ring_.append(item.key)
                q.appendleft(item)
                deficit_[item.key] = deficit_.get(item.key, 0) + item.tokens
    for key in list(ring_):
        if not qs[key]:
            ring_.remove(key)
            deficit_.pop(key, None)
    batch.sort(key=lambda i: i.key)  # each adapter's rows contiguous: one segment each
    return Selection(batch, expired, qs, ring_, deficit_)


def _drr(picker: Picker, qs: dict, ring: deque, deficit: dict, expired: list, quantum: int, gone) -> None:
    progress = True
    while progress and not picker.full:
        progress = False
        for _ in range(len(ring)):
            key = ring[0]
            ring.rotate(-1)
            if picker.only is not None and key != picker.only:
                continue
            q = qs[key]
            deficit[key] = deficit.get(key, 0) + quantum
            while q and not picker.full:
                item = q[0]
                if gone(item):
                    expired.append(q.popleft())  # dropped before compute
                    continue
                if not picker.fits(item) or item.tokens > deficit[key]:
                    break
                deficit[key] -= item.tokens
                picker.add(q.popleft())
                progress = True
            if not q:
                deficit[key] = 0
            if picker.full:
                return
