"""Gives the C heap's free pages back to the OS every `malloc_trim_s` seconds (glibc; elsewhere a no-op).

Adapters loaded and evicted on helper threads, and batches of every shape on the inference threads, leave
free memory scattered through glibc's per-thread arenas. free() returns little of it to the OS, so resident
memory creeps up under adapter churn even with nothing leaked. (The soak's steady growth had a second
cause, a real leak in safetensors' loader, which formats/header.py now avoids.) malloc_trim(0) releases
the free pages of every arena; it takes each arena's lock briefly, so it runs on a helper thread, never on
the event loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    try:
        fn = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


_TRIM = _glibc_malloc_trim()


def available() -> bool:
    return _TRIM is not None


def trim() -> bool:
    """Releases the heap's free pages; True if some memory went back to the OS."""
    return bool(_TRIM(0)) if _TRIM is not None else False


async def trim_every(seconds: float, trim_fn: Callable[[], bool] = trim) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await asyncio.to_thread(trim_fn)
        except Exception:  # never fatal: the next period tries again
            log.exception("malloc_trim failed")


def start_memory_trimmer(state, trim_fn: Callable[[], bool] | None = None) -> asyncio.Task | None:
    """A background task of the app (cancelled at shutdown); None when disabled or not glibc."""
    seconds = state.settings.malloc_trim_s
    if seconds <= 0 or (trim_fn is None and not available()):
        return None
    coro = trim_every(seconds, trim_fn or trim)
    task = asyncio.get_running_loop().create_task(coro, name="adapterserve-malloc-trim")
    state.background.append(task)
    return task
