"""The batcher with a fake runner: budgets, waiting, deadlines, dropped callers, admission, fairness."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from adapterserve.engine.batcher import Batcher
from adapterserve.engine.tokenize import Encoded
from adapterserve.engine.work import BatcherConfig, WorkItem
from adapterserve.errors import DeadlineExceeded, Overloaded, Unavailable


class FakeRunner:
    def __init__(self, delay: float = 0.0):
        self.batches: list[list[WorkItem]] = []
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, items):
        self.gate.wait(5)
        time.sleep(self.delay)
        self.batches.append(list(items))
        return [[len(r) for r in i.rows] for i in items]


def item(key="a", n_tokens=4, rows=1, deadline_s=10.0):
    loop = asyncio.get_running_loop()
    return WorkItem(
        key,
        None,
        [Encoded(list(range(n_tokens)), None)] * rows,
        False,
        time.monotonic() + deadline_s,
        loop.create_future(),
    )


async def run_with(config: BatcherConfig, runner: FakeRunner):
    b = Batcher(runner, config)
    b.start()
    return b


@pytest.mark.asyncio
async def test_batch_closes_on_max_batch_size():
    runner = FakeRunner()
    b = await run_with(BatcherConfig(max_batch_size=4, max_batch_tokens=10_000, max_wait_ms=200), runner)
    items = [item() for _ in range(10)]
    for i in items:
        b.submit(i)
    await asyncio.gather(*(i.future for i in items))
    assert max(sum(len(x.rows) for x in batch) for batch in runner.batches) == 4
    await b.stop()


@pytest.mark.asyncio
async def test_batch_closes_on_token_budget_counting_padding():
    runner = FakeRunner()
    b = await run_with(BatcherConfig(max_batch_size=100, max_batch_tokens=40, max_wait_ms=200), runner)
    items = [item(n_tokens=10) for _ in range(4)] + [item(n_tokens=30)]
    for i in items:
        b.submit(i)
    await asyncio.gather(*(i.future for i in items))
    for batch in runner.batches:
        padded = max(x.max_len for x in batch) * sum(len(x.rows) for x in batch)
        assert padded <= 40 or len(batch) == 1
    assert len(runner.batches) >= 2
    await b.stop()


@pytest.mark.asyncio
async def test_max_wait_bounds_the_wait_of_a_lone_request():
    runner = FakeRunner()
    b = await run_with(BatcherConfig(max_batch_size=64, max_wait_ms=50), runner)
    started = time.monotonic()
    i = item()
    b.submit(i)
    await i.future
    waited = time.monotonic() - started
    assert 0.04 <= waited < 2.0
    await b.stop()


@pytest.mark.asyncio
async def test_expired_requests_fail_with_504_before_compute():
    runner = FakeRunner()
    runner.gate.clear()  # hold the worker so the second item waits in the queue
    b = await run_with(BatcherConfig(max_batch_size=1, max_wait_ms=0), runner)
    first, late = item(), item(deadline_s=0.05)
    b.submit(first)
    await asyncio.sleep(0.02)
    b.submit(late)
    await asyncio.sleep(0.1)
    runner.gate.set()
    await first.future
    with pytest.raises(DeadlineExceeded):
        await late.future
    assert all(late not in batch for batch in runner.batches)
    await b.stop()


@pytest.mark.asyncio
async def test_cancelled_requests_are_dropped_before_compute():
    runner = FakeRunner()
    runner.gate.clear()
    b = await run_with(BatcherConfig(max_batch_size=1, max_wait_ms=0), runner)
    first, gone = item(), item()
    b.submit(first)
    await asyncio.sleep(0.02)
    b.submit(gone)
    gone.future.cancel()  # the caller hung up
    runner.gate.set()
    await first.future
    await asyncio.sleep(0.05)
    assert all(gone not in batch for batch in runner.batches)
    assert b.queued_requests == 0
    await b.stop()


@pytest.mark.asyncio
async def test_admission_limit_refuses_at_once_with_429():
    runner = FakeRunner()
    runner.gate.clear()
    b = await run_with(BatcherConfig(max_batch_size=1, max_wait_ms=0, max_queue_items=3), runner)
    items = [item() for _ in range(3)]
    for i in items:
        b.submit(i)
    with pytest.raises(Overloaded) as e:
        b.submit(item())
    assert e.value.status_code == 429 and e.value.retry_after_s > 0
    tok = await run_with(BatcherConfig(max_queue_tokens=10), FakeRunner())
    with pytest.raises(Overloaded):
        tok.submit(item(n_tokens=11))
    runner.gate.set()
    await asyncio.gather(*(i.future for i in items))
    await b.stop()
    await tok.stop()


@pytest.mark.asyncio
async def test_fairness_hot_adapter_does_not_starve_others():
    runner = FakeRunner()
    runner.gate.clear()
    b = await run_with(BatcherConfig(max_batch_size=8, max_batch_tokens=10_000, max_wait_ms=0), runner)
    hot = [item("hot") for _ in range(200)]
    for i in hot:
        b.submit(i)
    cold = [item(f"cold{k}") for k in range(3)]
    for i in cold:
        b.submit(i)
    runner.gate.set()
    await asyncio.gather(*(i.future for i in hot + cold))
    first_cold = max(n for n, batch in enumerate(runner.batches) for i in batch if i in cold)
    assert first_cold <= 2, f"cold adapters waited {first_cold} batches behind the hot one"
    await b.stop()


@pytest.mark.asyncio
async def test_per_adapter_policy_never_mixes_and_mixed_does():
    for policy in ("per_adapter", "mixed"):
        runner = FakeRunner()
        runner.gate.clear()
        b = await run_with(BatcherConfig(max_batch_size=16, max_wait_ms=0, policy=policy), runner)
        items = [item(f"a{k % 4}") for k in range(16)]
        for i in items:
            b.submit(i)
        runner.gate.set()
        await asyncio.gather(*(i.future for i in items))
        keys_per_batch = [len({i.key for i in batch}) for batch in runner.batches]
        if policy == "per_adapter":
            assert max(keys_per_batch) == 1
        else:
            assert max(keys_per_batch) > 1
        for batch in runner.batches:  # rows grouped by adapter: each key one contiguous run
            keys = [i.key for i in batch]
            assert keys == sorted(keys)
        await b.stop()


@pytest.mark.asyncio
async def test_drain_finishes_queued_work_and_refuses_new():
    runner = FakeRunner(delay=0.01)
    b = await run_with(BatcherConfig(max_batch_size=2, max_wait_ms=0), runner)
    items = [item() for _ in range(10)]
    for i in items:
        b.submit(i)
    drained = await b.drain(timeout=5)
    assert drained and all(i.future.done() and not i.future.cancelled() for i in items)
    with pytest.raises(Unavailable):
        b.submit(item())


@pytest.mark.asyncio
async def test_length_bucketing_when_more_than_a_batch_is_queued():
    runner = FakeRunner()
    runner.gate.clear()
    b = await run_with(BatcherConfig(max_batch_size=8, max_batch_tokens=100_000, max_wait_ms=0), runner)
    blocker = item()
    b.submit(blocker)
    await asyncio.sleep(0.02)  # the worker holds the blocker; the rest queue up
    lengths = [10, 100] * 8
    items = [item(n_tokens=n) for n in lengths]
    for i in items:
        b.submit(i)
    runner.gate.set()
    await asyncio.gather(*(i.future for i in items + [blocker]))
    for batch in runner.batches[1:]:
        assert len({x.max_len for x in batch}) == 1, [x.max_len for x in batch]


@pytest.mark.asyncio
async def test_expired_items_deep_in_the_queue_are_not_computed():
    runner = FakeRunner()
    runner.gate.clear()
    b = await run_with(BatcherConfig(max_batch_size=8, max_wait_ms=0), runner)
    blocker = item()
    b.submit(blocker)
    await asyncio.sleep(0.02)
    ok, late = item(), item(deadline_s=0.01)
    b.submit(ok)
    b.submit(late)
    await asyncio.sleep(0.05)
    runner.gate.set()
    await ok.future
    with pytest.raises(DeadlineExceeded):
        await late.future
    assert all(late not in batch for batch in runner.batches)


def gated_runner():
    """A runner whose batches block until `release` is set: (runner, sizes of the batches run, release, started)."""
    running, release = [], threading.Event()
    started = threading.Semaphore(0)

    def runner(items):
        running.append(len(items))
        started.release()
        release.wait(5)
        return [[len(r) for r in i.rows] for i in items]

    return runner, running, release, started


@pytest.mark.asyncio
async def test_two_workers_run_two_batches_at_once_and_a_free_worker_takes_what_queued():
    runner, running, release, started = gated_runner()
    b = Batcher(runner, BatcherConfig(max_batch_size=2, max_batch_tokens=10_000, max_wait_ms=0, workers=2))
    b.start()
    items = [item(key=f"k{i}") for i in range(7)]
    for i in items[:2]:
        b.submit(i)
    await asyncio.sleep(0.05)
    for i in items[2:]:
        b.submit(i)
    for _ in range(2):  # two batches are running together, neither has returned
        assert await asyncio.to_thread(started.acquire, True, 5)
    assert b.busy_workers == 2 and not any(i.future.done() for i in items)
    release.set()
    await asyncio.gather(*(i.future for i in items))
    assert sum(running) == 7 and max(running) == 2
    assert b.busy_workers == 0 and b.in_flight == 0
    await b.stop()


@pytest.mark.asyncio
async def test_rows_queued_at_once_are_shared_by_the_idle_workers():
    """32 requests arriving together (a closed-loop client's next round) with a 64-row limit: two batches of 16
    run at once, not one of 32 on one worker while the other idles."""
    runner, running, release, started = gated_runner()
    b = Batcher(runner, BatcherConfig(max_batch_size=64, max_batch_tokens=100_000, max_wait_ms=20, workers=2))
    b.start()
    items = [item(key="a") for _ in range(32)]
    for i in items:
        b.submit(i)
    for _ in range(2):
        assert await asyncio.to_thread(started.acquire, True, 5)
    assert b.busy_workers == 2 and running == [16, 16]
    release.set()
    await asyncio.gather(*(i.future for i in items))
    await b.stop()


@pytest.mark.asyncio
async def test_a_free_worker_takes_its_share_of_a_burst_while_the_other_is_busy():
    """Six rows arrive while one worker is busy: the free worker takes three and leaves three for the next worker
    to free up, since on a CPU a batch of six costs as much as two of three and its first rows would wait for
    its last. With a 64-row limit the old rule let it take all six."""
    runner, running, release, started = gated_runner()
    b = Batcher(runner, BatcherConfig(max_batch_size=64, max_batch_tokens=100_000, max_wait_ms=0, workers=2))
    b.start()
    first = item(key="a")
    b.submit(first)
    assert await asyncio.to_thread(started.acquire, True, 5)
    burst = [item(key=f"k{i}") for i in range(6)]
    for i in burst:
        b.submit(i)
    assert await asyncio.to_thread(started.acquire, True, 5)
    assert running == [1, 3] and b.busy_workers == 2 and b.queued_requests == 3
    release.set()
    await asyncio.gather(first.future, *(i.future for i in burst))
    assert sum(running) == 7 and b.busy_workers == 0
    await b.stop()


@pytest.mark.asyncio
async def test_a_failing_batch_fails_its_callers_and_the_batcher_goes_on():
    calls = []

    def runner(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [[0] for _ in items]

    b = Batcher(runner, BatcherConfig(max_batch_size=1, max_wait_ms=0, workers=2))
    b.start()
    first, second = item(), item()
    b.submit(first)
    with pytest.raises(RuntimeError):
        await first.future
    b.submit(second)
    assert await second.future == [0]
    await b.stop()
