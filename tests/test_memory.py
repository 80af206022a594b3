"""memory.py: malloc_trim gives freed heap pages back, and the app runs it periodically (or not at all)."""

import asyncio
import ctypes
import os
import sys
from types import SimpleNamespace

import pytest

from adapterserve import memory

glibc = pytest.mark.skipif(not memory.available(), reason="malloc_trim is glibc's")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@glibc
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_trim_returns_freed_heap_pages_that_free_kept():
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    chunk, n = 64 * 1024, 1600  # 100 MiB in blocks under the mmap threshold: they live in the heap
    blocks = [libc.malloc(chunk) for _ in range(n)]
    for b in blocks:
        ctypes.memset(b, 1, chunk)
    pin = libc.malloc(chunk)  # above them all: the heap cannot shrink from the top by itself
    for b in blocks:
        libc.free(b)
    before = _rss()
    assert memory.trim() is True
    after = _rss()
    libc.free(pin)
    assert before - after > 50 * 2**20, (before, after)


def test_trim_every_calls_periodically_and_survives_a_failure():
    calls = []

    def fake():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first one fails")
        return True

    async def go():
        task = asyncio.create_task(memory.trim_every(0.01, fake))
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(go(), 5))
    assert len(calls) >= 3


def test_started_with_the_app_unless_disabled():
    async def go(seconds):
        state = SimpleNamespace(settings=SimpleNamespace(malloc_trim_s=seconds), background=[])
        task = memory.start_memory_trimmer(state, trim_fn=lambda: True)
        if task:
            task.cancel()
        return task, state.background

    task, background = asyncio.run(go(30.0))
    assert task is not None and background == [task]
    assert asyncio.run(go(0.0)) == (None, [])
