"""Choosing a batch's rows: the batch being assembled (`Picker`) and length bucketing (`window`).

The batcher's DRR fills a pool of up to POOL batches' worth of rows; `window` picks from it the run of
similar lengths that holds the oldest request, so a batch pads little without starving anyone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .batcher import BatcherConfig, WorkItem

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
