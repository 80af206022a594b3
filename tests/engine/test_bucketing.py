"""Batch selection as pure functions over a queue snapshot: no event loop, no clock."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future

from adapterserve.engine.bucketing import select, window
from adapterserve.engine.tokenize import Encoded
from adapterserve.engine.work import BatcherConfig, WorkItem

NOW = 100.0


def item(key: str, n: int, enqueued: float, deadline: float = NOW + 10) -> WorkItem:
    return WorkItem(key, None, [Encoded(list(range(n)), None)], False, deadline, Future(), enqueued=enqueued)


def snapshot(*items: WorkItem):
    queues: dict[str, deque] = {}
    for it in items:
        queues.setdefault(it.key, deque()).append(it)
    return queues, deque(queues), {k: 0 for k in queues}


def test_window_prefers_full_batches_of_similar_length():
    pool = [item("a", n, i) for i, n in enumerate((30, 12, 44, 31, 29, 13, 45, 33, 28, 11, 46, 32))]
    got = window(pool, pool[0], BatcherConfig(max_batch_size=4, max_batch_tokens=10_000))
    assert pool[0] in got and len(got) == 4
    lengths = sorted(x.max_len for x in got)
    assert lengths[-1] - lengths[0] == 3  # e.g. 29-32 or 30-33: the least padding around 30
    tight = BatcherConfig(max_batch_size=4, max_batch_tokens=100)  # 4 x 30 > 100: budget binds
    assert len(window(pool, pool[0], tight)) == 3


def test_drr_shares_a_batch_between_a_hot_and_a_quiet_adapter():
    hot = [item("hot", 10, i) for i in range(6)]
    quiet = [item("quiet", 10, 10 + i) for i in range(2)]
    queues, ring, deficit = snapshot(*hot, *quiet)
    cfg = BatcherConfig(max_batch_size=4, max_batch_tokens=40)  # quantum 10 tokens: one item per turn
    sel = select(queues, ring, deficit, cfg, NOW, unqueued_rows=0)
    assert hot[0] in sel.batch and len(sel.batch) == 4
    assert quiet[0] in sel.batch  # all of hot's items are older: FIFO alone would have taken hot 0-3
    assert [i.key for i in sel.batch] == sorted(i.key for i in sel.batch)  # grouped by adapter
    assert list(sel.queues["hot"]) == hot[3:] and list(sel.queues["quiet"]) == quiet[1:]  # FIFO per adapter
    assert list(queues["hot"]) == hot  # the snapshot is not modified


def test_expired_and_abandoned_items_are_removed_not_run():
    late = item("a", 5, 0, deadline=NOW)
    left = item("a", 5, 1)
    left.future.cancel()
    ok = item("a", 5, 2)
    queues, ring, deficit = snapshot(late, left, ok)
    sel = select(queues, ring, deficit, BatcherConfig(), NOW)
    assert sel.batch == [ok]
    assert sel.expired == [late, left]


def test_per_adapter_policy_keeps_one_adapter_per_batch():
    a, b = item("a", 5, 0), item("b", 5, 1)
    queues, ring, deficit = snapshot(a, b)
    sel = select(queues, ring, deficit, BatcherConfig(policy="per_adapter"), NOW)
    assert sel.batch == [a] and list(sel.queues["b"]) == [b]
    assert list(sel.ring) == ["b"] and "a" not in sel.deficit  # an emptied queue leaves the ring


def test_bucketing_returns_the_rest_to_the_front_with_its_deficit_refunded():
    lengths = (30, 12, 44, 31, 29, 13, 45, 33, 28, 11, 46, 32)
    items = [item("a", n, i) for i, n in enumerate(lengths)]
    queues, ring, deficit = snapshot(*items)
    cfg = BatcherConfig(max_batch_size=4, max_batch_tokens=100_000)
    sel = select(queues, ring, deficit, cfg, NOW)
    assert items[0] in sel.batch and len(sel.batch) == 4
    assert max(i.max_len for i in sel.batch) - min(i.max_len for i in sel.batch) == 3
    rest = list(sel.queues["a"])
    assert len(rest) == len(items) - 4
    assert [i.enqueued for i in rest] == sorted(i.enqueued for i in rest)  # FIFO order kept
    # DRR emptied the queue into the pool (deficit reset to 0); what went back is refunded
    assert sel.deficit["a"] == sum(i.tokens for i in rest)


def test_nothing_queued_is_an_empty_selection():
    sel = select({}, deque(), {}, BatcherConfig(), NOW)
    assert sel.batch == [] and sel.expired == []
