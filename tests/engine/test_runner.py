"""The runner: sub-batches of similar length give the same results as one padded batch."""

import asyncio
import time

import torch

from adapterserve.engine.runner import run_items, split_by_length
from adapterserve.engine.tokenize import tokenize
from adapterserve.engine.work import WorkItem
from adapterserve.formats import load_adapter
from adapterserve.snapshot import Snapshot
from adapterserve.store.base import VersionInfo

from ..conftest import GOLDEN, backbone_for


def test_split_by_length():
    assert split_by_length([5, 5, 6, 40, 41], 8) == [(0, 3), (3, 5)]
    assert split_by_length([5, 5, 6, 40, 41], 10**6) == [(0, 5)]
    assert split_by_length([7], 0) == [(0, 1)]
    runs = split_by_length(list(range(1, 50)), 0)
    assert runs == [(i, i + 1) for i in range(49)]
    # a runtime that computes only attention on the padding: 34 tokens of padding x 3 rows at 5% of a token's
    # cost is 5.1 tokens, under the pass's 8: one pass; at 40 rows of padding after them it is worth a split
    assert split_by_length([5, 5, 6, 40, 41], 8, lambda t: 0.05) == [(0, 5)]
    assert split_by_length([5, 5, 6, 40, 41, 400], 8, lambda t: 0.05) == [(0, 5), (5, 6)]
    # a pass-size limit cuts a long run into equal parts of real tokens under it, keeping the padding cuts
    assert split_by_length([30] * 59, 16, lambda t: 0.02, 512) == [(0, 15), (15, 30), (30, 45), (45, 59)]
    assert split_by_length([20] * 10, 0, None, 100) == [(0, 5), (5, 10)]
    assert split_by_length([5, 5, 6, 40, 41], 8, None, 1000) == [(0, 3), (3, 5)]
    assert split_by_length([600, 700], 0, None, 512) == [(0, 1), (1, 2)]  # a row over the limit runs alone
    assert split_by_length([1, 1, 1, 30], 0, None, 20) == [(0, 3), (3, 4)]  # no part over the limit


def test_split_runs_match_one_batch():
    bb = backbone_for("tiny-bert")
    loop = asyncio.new_event_loop()
    try:
        a = load_adapter(GOLDEN / "ah_seq_bn" / "adapter", bb.shape)
        t = load_adapter(GOLDEN / "ah_tagging" / "adapter", bb.shape)
        texts = ["x", "a much longer text " * 6, "mid sized text here", "y z", "another long one " * 5]
        items = []
        for k, (key, adapter, tagging) in enumerate([("a", a, False), ("t", t, True), ("", None, False)]):
            rows = tokenize(bb.tokenizer, texts[k:] + texts[:k], None, 128, True)
            snap = None if adapter is None else Snapshot(key, VersionInfo("v1", "0" * 64, 0.0, 0), adapter)
            items.append(WorkItem(key, snap, rows, tagging, time.monotonic() + 9, loop.create_future()))
        stats = []
        whole = run_items(bb, items)
        split = run_items(bb, items, lambda s, sec: stats.append(s), split_overhead_tokens=1)
        assert len(stats) > 1  # really cut into several passes
        unsplit_stats = []  # SPLIT_OVERHEAD_TOKENS=0 never splits for padding, with a pass limit or without
        run_items(bb, items, lambda s, sec: unsplit_stats.append(s), split_overhead_tokens=0, pass_tokens=10**6)
        assert len(unsplit_stats) == 1
        capped_stats = []
        capped = run_items(bb, items, lambda s, sec: capped_stats.append(s), pass_tokens=20)
        assert len(capped_stats) > 1 and all(s.tokens <= 20 or s.rows == 1 for s in capped_stats)
        for w_item, s_item, c_item in zip(whole, split, capped):
            for w, s, c in zip(w_item, s_item, c_item):
                assert (
                    w.shape == s.shape == c.shape
                    and torch.allclose(w, s, atol=1e-5)
                    and torch.allclose(w, c, atol=1e-5)
                )
    finally:
        loop.close()
