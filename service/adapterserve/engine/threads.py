"""Who runs torch's CPU threads: the inference workers, and nobody else.

PyTorch's CPU wheels use GNU OpenMP, and every thread that runs a parallel torch op gets its own team of
OpenMP threads. Once libgomp manages more threads than there are CPUs it stops spinning between parallel
regions (its "throttled" spin count), so every one of the hundreds of small regions in a forward pass
then waits for a sleeping thread to be woken. Measured on the 2-core CI machine: one 1000x1000 op in a
helper thread left the inference worker at 1.6 of 2 cores and 30% slower for the rest of the process's
life (docs/benchmarks.md, "CPU threads"). So the inference workers own the intra-op threads, and every
other thread that may touch torch (adapter loads and validation, the store watcher, tokenization, the
backbone load) runs torch with one thread.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpus(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this container in CPUs (cgroup v2 cpu.max, or v1 cfs quota), None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def cpu_budget(env: dict[str, str] | None = None, cgroup_root: Path = CGROUP_ROOT) -> int:
    """How many CPUs the worker should use: OMP_NUM_THREADS if set, else the CPUs this process may run on,
    capped by the container's CPU quota (torch's own default ignores the quota, and a pod limited to 4 CPUs
    on a 64-core node would otherwise start 64 threads)."""
    env = os.environ if env is None else env
    first = env.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if first.isdigit() and int(first) > 0:
        return int(first)
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpus(cgroup_root)
    if quota:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def compute_threads(n: int):
    """Initializer of an inference worker thread: the workers alone run torch with several intra-op threads."""

    def init() -> None:
        torch.set_num_threads(n)

    return init


def one_thread() -> None:
    """Initializer of every other thread that may touch torch."""
    torch.set_num_threads(1)


def helper_pool(max_workers: int | None = None, name: str = "adapterserve-helper") -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name, initializer=one_thread)
