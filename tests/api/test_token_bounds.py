"""max_batch_tokens bounds every batch; a text pair counts once toward the per-request input limit."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from adapterserve.main import create_app
from adapterserve.state import build_state

from ..conftest import backbone_for
from .conftest import make_settings, publish_golden


def app(settings):
    return create_app(settings, lambda s: build_state(s, backbone=backbone_for("tiny-bert")))


def test_no_batch_pads_past_max_batch_tokens(tmp_path):
    settings = make_settings(tmp_path, max_batch_tokens=64, max_batch_size=64)
    publish_golden(settings.store)
    texts = [("word " * (i % 9 + 1)).strip() for i in range(100)]
    with TestClient(app(settings)) as client:
        r = client.post("/classify?adapter=sentiment", json={"inputs": texts})
        assert r.status_code == 200 and len(r.json()) == 100
        metrics = client.get("/metrics").text
    count = float(re.search(r"^adapterserve_batch_tokens_count (\S+)", metrics, re.M).group(1))
    within = float(re.search(r'^adapterserve_batch_tokens_bucket\{le="64.0"\} (\S+)', metrics, re.M).group(1))
    assert count > 1 and within == count  # every pass (and so every batch) padded to at most 64 tokens


def test_pairs_count_once_toward_the_input_limit(tmp_path):
    settings = make_settings(tmp_path, max_inputs_per_request=4)
    publish_golden(settings.store)
    with TestClient(app(settings)) as client:
        pairs = [["a premise", "a hypothesis"]] * 4
        assert client.post("/classify?adapter=pairs", json={"inputs": pairs}).status_code == 200
        r = client.post("/classify?adapter=pairs", json={"inputs": pairs + pairs[:1]})
        assert r.status_code == 413 and "5 inputs" in r.json()["message"]
