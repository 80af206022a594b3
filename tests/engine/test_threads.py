"""Torch CPU threads: the inference worker owns them, every other thread runs torch with one."""

from __future__ import annotations

import torch

from adapterserve.engine.threads import cgroup_cpus, compute_threads, cpu_budget, helper_pool


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert cgroup_cpus(tmp_path) == 2.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpus(tmp_path) is None


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpus(tmp_path) == 4.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpus(tmp_path) is None


def test_no_cgroup_files_means_unlimited(tmp_path):
    assert cgroup_cpus(tmp_path / "missing") is None


def test_budget_honours_omp_num_threads_then_the_quota(tmp_path):
    assert cpu_budget({"OMP_NUM_THREADS": "3"}, tmp_path) == 3
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one thread
    assert cpu_budget({}, tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    import os

    assert cpu_budget({"OMP_NUM_THREADS": "garbage"}, tmp_path) == len(os.sched_getaffinity(0))


def test_helper_threads_run_torch_with_one_thread_and_the_worker_with_its_budget():
    from concurrent.futures import ThreadPoolExecutor

    helpers = helper_pool(2)
    worker = ThreadPoolExecutor(1, initializer=compute_threads(3))
    try:
        assert helpers.submit(torch.get_num_threads).result() == 1
        # A helper setting one thread must not leak into a worker started afterwards.
        assert worker.submit(torch.get_num_threads).result() == 3
        assert helpers.submit(torch.get_num_threads).result() == 1
    finally:
        helpers.shutdown()
        worker.shutdown()
