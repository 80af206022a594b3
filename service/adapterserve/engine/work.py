"""What the batcher queues (`WorkItem`) and how it batches (`BatcherConfig`): plain data, imported by the
router that makes work items, the selection that picks them and the batcher that owns the queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..snapshot import Snapshot
from .tokenize import Encoded


@dataclass(eq=False)
class WorkItem:
    key: str  # fairness key: the adapter name, "" for embeddings
    adapter: Snapshot | None  # the version the request resolved (engine/devices.py places it); None: embeddings
    rows: list[Encoded]
    tagging: bool  # per-token logits (the task's per_token)
    deadline: float  # time.monotonic()
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)
    # Fan-out: the same inputs under several adapters in one item (so in one backbone pass): one adapter
    # and fairness key per row, grouped by the runner like rows of different items. None: `adapter` for all.
    row_adapters: list[tuple[str, Snapshot]] | None = None
    # Turns this item's per-row outputs into its answer on the inference thread, not the event loop.
    post: Callable[[list], list] | None = None

    @property
    def virtual_tokens(self) -> int:
        """Prompt tokens the runner puts before each row (PEFT prompt tuning): they cost like text tokens."""
        return 0 if self.adapter is None else self.adapter.adapter.virtual_tokens

    @property
    def tokens(self) -> int:
        return sum(len(r) for r in self.rows) + self.virtual_tokens * len(self.rows)

    @property
    def max_len(self) -> int:
        return max(len(r) for r in self.rows) + self.virtual_tokens


@dataclass(frozen=True)
class BatcherConfig:
    max_batch_size: int = 64
    max_batch_tokens: int = 16384
    max_wait_ms: float = 2.0
    max_queue_items: int = 1024  # work items (a request is cut into one or more)
    max_queue_tokens: int = 1_000_000
    policy: str = "mixed"  # or "per_adapter"
    workers: int = 1  # batches in flight at once, one inference thread each
