"""Fan-out rows: one work item carrying several adapters runs in ONE backbone pass, one segment per adapter,
and each adapter's rows equal that adapter run alone. Ensemble combination rules."""

import asyncio
import time

import pytest
import torch

from adapterserve.adapters.ensemble import Ensemble, combine
from adapterserve.engine.batcher import WorkItem
from adapterserve.engine.fanout import parse_names
from adapterserve.engine.runner import run_items
from adapterserve.engine.tokenize import tokenize
from adapterserve.errors import BadRequest, InvalidName, PayloadTooLarge
from adapterserve.formats import load_adapter
from adapterserve.snapshot import Snapshot
from adapterserve.store.base import VersionInfo

from ..conftest import GOLDEN, backbone_for


def test_one_item_with_row_adapters_is_one_pass_with_one_segment_per_adapter():
    bb = backbone_for("tiny-bert")
    loop = asyncio.new_event_loop()
    try:
        adapters = {
            c: Snapshot(c, VersionInfo("v1", "0" * 64, 0.0, 0), load_adapter(GOLDEN / c / "adapter", bb.shape))
            for c in ("ah_seq_bn", "peft_lora_list")
        }
        rows = tokenize(bb.tokenizer, ["x", "a longer text " * 5, "mid text"], None, 128, True)
        order = sorted(adapters)
        item = WorkItem("a,b", None, rows * len(order), False, time.monotonic() + 9, loop.create_future())
        item.row_adapters = [(n, adapters[n]) for n in order for _ in rows]
        stats = []
        (out,) = run_items(bb, [item], lambda s, sec: stats.append(s))
        assert len(stats) == 1 and stats[0].segments == 2 and stats[0].rows == 6
        for k, name in enumerate(order):
            alone = WorkItem(name, adapters[name], rows, False, time.monotonic() + 9, loop.create_future())
            (want,) = run_items(bb, [alone])
            for got, w in zip(out[k * len(rows) : (k + 1) * len(rows)], want):
                assert torch.allclose(got, w, atol=1e-5)
    finally:
        loop.close()


def test_parse_names():
    assert parse_names("a,b", 2) == ["a", "b"]
    with pytest.raises(PayloadTooLarge):
        parse_names("a,b,c", 2)
    with pytest.raises(BadRequest):
        parse_names("a,a", 4)
    with pytest.raises(InvalidName):
        parse_names("a,,b", 4)


def test_vote_ties_go_to_the_higher_mean_probability():
    ens = Ensemble(["a", "b"], "vote", [1.0, 1.0], "classification", ["x", "y", "z"])
    a = torch.tensor([2.0, 0.0, -5.0])  # votes x (p~0.88)
    b = torch.tensor([0.0, 3.0, 0.0])  # votes y (p~0.91): a tie, y has the higher mean
    ranked = combine(ens, [a, b])
    assert [i for i, _ in ranked] == [1, 0, 2]
    assert [s for _, s in ranked] == [0.5, 0.5, 0.0]
    ens.weights = [3.0, 1.0]
    assert combine(ens, [a, b])[0] == (0, 0.75)


def test_mean_is_weighted_and_multilabel_uses_sigmoid():
    a, b = torch.tensor([1.0, -1.0]), torch.tensor([-2.0, 2.0])
    ens = Ensemble(["a", "b"], "mean", [1.0, 3.0], "multilabel", ["x", "y"])
    got = dict(combine(ens, [a, b]))
    want = 0.25 * torch.sigmoid(a) + 0.75 * torch.sigmoid(b)
    assert abs(got[0] - float(want[0])) < 1e-6 and abs(got[1] - float(want[1])) < 1e-6
