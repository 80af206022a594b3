"""From a validated request to results: resolve the adapter, tokenize, submit to the batcher, await.

Requests larger than one batch are split into chunks; all chunks share the request's deadline.
"""

from __future__ import annotations

import asyncio
import time

import torch

from .. import tasks
from ..cache import AdapterCache, LoadedAdapter
from ..errors import BadRequest, DeadlineExceeded
from .backbone import Backbone
from .batcher import Batcher
from .threads import helper_pool
from .tokenize import Encoded, tokenize
from .work import WorkItem


class Router:
    def __init__(
        self,
        backbone: Backbone,
        cache: AdapterCache,
        batcher: Batcher,
        *,
        max_batch_size: int,
        request_timeout_s: float,
        tokenize_threads: int = 2,
        on_tokenize=None,
    ):
        self.backbone, self.cache, self.batcher = backbone, cache, batcher
        self.max_batch_size = max_batch_size
        self.request_timeout_s = request_timeout_s
        self._pool = helper_pool(tokenize_threads, "adapterserve-tok")
        self._on_tokenize = on_tokenize or (lambda seconds: None)

    def deadline(self, timeout_s: float | None = None) -> float:
        return time.monotonic() + (timeout_s or self.request_timeout_s)

    async def resolve(self, name: str, route: str) -> LoadedAdapter:
        loaded = await self.cache.get(name)
        task = loaded.host.task
        right = tasks.get(task).route
        if right != route:
            raise BadRequest(
                f"adapter {name!r} is a {task} adapter; call POST /{right}?adapter={name}", adapter=name, task=task
            )
        return loaded

    async def tokenize(
        self, texts: list[str], pairs: list[str] | None, truncate: bool, offsets: bool = False
    ) -> list[Encoded]:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        enc = await loop.run_in_executor(
            self._pool,
            tokenize,
            self.backbone.tokenizer,
            texts,
            pairs,
            self.backbone.info.max_length,
            truncate,
            offsets,
        )
        self._on_tokenize(time.monotonic() - started)
        return enc

    async def run(
        self, key: str, loaded: LoadedAdapter | None, rows: list[Encoded], tagging: bool, deadline: float
    ) -> list[torch.Tensor]:
        loop = asyncio.get_running_loop()
        adapter = None if loaded is None else loaded.device
        items = []
        try:
            for i in range(0, len(rows), self.max_batch_size):
                item = WorkItem(
                    key, adapter, rows[i : i + self.max_batch_size], tagging, deadline, loop.create_future()
                )
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

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
