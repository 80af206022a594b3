"""Lifespan wiring: warm-up and the preload list."""

from fastapi.testclient import TestClient

from service.main import create_app
from service.state import build_state

from .api.conftest import make_settings, publish_golden
from .conftest import backbone_for


def test_preload_loads_and_pins_before_ready(tmp_path):
    s = make_settings(tmp_path, preload="multi,ner", warmup=True)
    publish_golden(s.store)
    app = create_app(s, lambda st: build_state(st, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as c:
        assert c.get("/health/ready").status_code == 200
        info = {a["name"]: a for a in c.get("/adapters").json()["adapters"]}
        assert info["multi"]["pinned"] and info["multi"]["residency"] == "device"
        assert info["ner"]["pinned"] and not info["sentiment"]["pinned"]
        assert info["sentiment"]["residency"] == "store"
