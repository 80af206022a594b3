"""From a validated request to results: resolve the adapter, tokenize, submit to the batcher, await.

A request larger than one batch is cut into work items that each fit a batch by rows (`max_batch_size`)
and by padded tokens (rows x longest row <= `max_batch_tokens`; a single row longer than that runs alone),
so `max_batch_tokens` bounds every batch. All of a request's items share its deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import torch

from .. import tasks
from ..errors import BadRequest, DeadlineExceeded
from .backbone import Backbone
from .batcher import Batcher
from .threads import helper_pool
from .tokenize import Encoded, TokenizeJob, tokenize_many
from .work import WorkItem

if TYPE_CHECKING:
    from ..lifecycle import Lifecycle
    from ..snapshot import Snapshot


class Router:
    def __init__(
        self,
        backbone: Backbone,
        lifecycle: Lifecycle,
        batcher: Batcher,
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        request_timeout_s: float,
        tokenize_threads: int = 2,
        on_tokenize=None,
    ):
        self.backbone, self.lifecycle, self.batcher = backbone, lifecycle, batcher
        self.max_batch_size, self.max_batch_tokens = max_batch_size, max_batch_tokens
        self.request_timeout_s = request_timeout_s
        self._pool = helper_pool(tokenize_threads, "adapterserve-tok")
        self._on_tokenize = on_tokenize or (lambda seconds: None)
        self._pending: list[tuple[TokenizeJob, asyncio.Future]] = []
        self._tokenizing = False

    def deadline(self, timeout_s: float | None = None) -> float:
        return time.monotonic() + (timeout_s or self.request_timeout_s)

    async def resolve(self, name: str, route: str) -> Snapshot:
        snapshot = await self.lifecycle.get(name)
        self.check_route(name, snapshot, route)
        return snapshot

    @staticmethod
    def check_route(name: str, snapshot: Snapshot, route: str) -> None:
        task = snapshot.adapter.task
        # an ensemble published straight into a store (not through the admin API) has no task recorded yet:
        # ensembles answer /classify
        right = tasks.get(task).route if task is not None else "classify"
        if right != route:
            raise BadRequest(
                f"adapter {name!r} is a {task or 'ensemble'} adapter; call POST /{right}?adapter={name}",
                adapter=name,
                task=task,
            )

    async def tokenize(
        self, texts: list[str], pairs: list[str] | None, truncate: bool, offsets: bool = False, reserved: int = 0
    ) -> list[Encoded]:
        """Requests arriving while a tokenizer call runs wait and go together in the next one (one thread hop and
        one parallel Rust call for all of them, rather than one of each per request). `reserved`: the adapter's
        `reserved_positions` (prompt/prefix tokens), so texts fit beside them."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((TokenizeJob(texts, pairs, truncate, offsets, reserved), future))
        if not self._tokenizing:
            self._tokenizing = True
            loop.create_task(self._tokenize_pending())  # runs next turn: this turn's arrivals join it
        return await future

    async def _tokenize_pending(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                started = time.monotonic()
                try:
                    results = await loop.run_in_executor(
                        self._pool,
                        tokenize_many,
                        self.backbone.tokenizer,
                        [j for j, _ in batch],
                        self.backbone.info.max_length,
                    )
                except Exception as e:  # a bug, not bad input: every waiting request hears of it
                    results = [e] * len(batch)
                self._on_tokenize(time.monotonic() - started)
                for (_, future), result in zip(batch, results):
                    if future.done():  # the caller left
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._tokenizing = False

    async def tokenize_with(self, fn, *args):
        """Run a tokenizing function (fn(tokenizer, *args)) on the tokenize threads, timed like tokenize."""
        started = time.monotonic()
        out = await asyncio.get_running_loop().run_in_executor(self._pool, fn, self.backbone.tokenizer, *args)
        self._on_tokenize(time.monotonic() - started)
        return out

    async def run(
        self,
        key: str,
        snapshot: Snapshot | None,
        rows: list[Encoded],
        tagging: bool,
        deadline: float,
        *,
        row_adapters: list[Snapshot] | None = None,
        post: Callable[[int, list[torch.Tensor]], list] | None = None,
    ) -> list:
        """Per row: the outputs of runner.run_rows, or what `post(start, outputs)` made of them: called on the
        inference thread for each chunk of rows, `start` being the chunk's first row in `rows`. `row_adapters`
        (fan-out): each row's adapter instead of `snapshot` for all."""
        loop = asyncio.get_running_loop()
        items, start = [], 0
        try:
            for chunk in self.cut(rows, 0 if snapshot is None else snapshot.adapter.virtual_tokens):
                item = WorkItem(
                    key, snapshot, chunk, tagging, deadline, loop.create_future(), post=post and partial(post, start)
                )
                if row_adapters is not None:  # fan-out: the chunk's rows keep their own snapshots
                    item.row_adapters = [(s.name, s) for s in row_adapters[start : start + len(chunk)]]
                start += len(chunk)
                self.batcher.submit(item)
                items.append(item)
            remaining = deadline - time.monotonic()
            results = await asyncio.wait_for(asyncio.gather(*(i.future for i in items)), max(remaining, 0))
        except asyncio.TimeoutError:
            raise DeadlineExceeded(
                f"no answer within {self.request_timeout_s:g}s; the server is busy: retry, or "
                "send fewer inputs per request"
            ) from None
        finally:
            for item in items:  # caller left or failed: queued chunks are dropped before compute
                if not item.future.done():
                    item.future.cancel()
        return [r for chunk in results for r in chunk]

    def cut(self, rows: list[Encoded], virtual_tokens: int = 0) -> list[list[Encoded]]:
        """Consecutive runs of rows, each within max_batch_size rows and max_batch_tokens padded tokens
        (`virtual_tokens`: the prompt tokens the runner puts before each row of a prompt-tuning adapter)."""
        chunks: list[list[Encoded]] = []
        chunk: list[Encoded] = []
        longest = 0
        for row in rows:
            grown = max(longest, len(row) + virtual_tokens)
            if chunk and (len(chunk) + 1 > self.max_batch_size or (len(chunk) + 1) * grown > self.max_batch_tokens):
                chunks.append(chunk)
                chunk, grown = [], len(row) + virtual_tokens
            chunk.append(row)
            longest = grown
        if chunk:
            chunks.append(chunk)
        return chunks

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
