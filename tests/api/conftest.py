"""An app on the tiny random BERT with a few golden adapters published into a temporary store."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from adapterserve.main import create_app
from adapterserve.settings import Settings
from adapterserve.state import build_state
from adapterserve.store import open_store

from ..conftest import GOLDEN, TINY, backbone_for

TOKEN = "test-admin-token"
PUBLISHED = {
    "sentiment": "ah_seq_bn",
    "multi": "ah_multilabel",
    "ner": "ah_tagging",
    "lora": "peft_lora_list",
    "pairs": "ah_text_pair",
    "lora-ner": "peft_token_cls",
}


def make_settings(tmp_path, **overrides) -> Settings:
    base = dict(
        backbone=str(TINY),
        store=str(tmp_path / "store"),
        admin_token=TOKEN,
        warmup=False,
        max_wait_ms=1.0,
        log_json=False,
    )
    base.update(overrides)
    return Settings(**base)


def publish_golden(store_url: str) -> None:
    store = open_store(store_url)
    for name, case in PUBLISHED.items():
        store.publish(name, GOLDEN / case / "adapter")


@pytest.fixture
def settings(tmp_path):
    s = make_settings(tmp_path)
    publish_golden(s.store)
    return s


@pytest.fixture
def client(settings):
    app = create_app(settings, lambda s: build_state(s, backbone=backbone_for("tiny-bert")))
    with TestClient(app) as c:
        yield c


@pytest.fixture
def admin():
    return {"Authorization": f"Bearer {TOKEN}"}


def golden_files(case: str) -> list[tuple[str, tuple[str, bytes]]]:
    folder = GOLDEN / case / "adapter"
    return [("files", (p.name, p.read_bytes())) for p in sorted(folder.iterdir()) if p.is_file()]


def copy_golden(case: str, dest):
    shutil.copytree(GOLDEN / case / "adapter", dest)
    return dest


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """A real `adapterserve serve` (uvicorn) on 127.0.0.1 with the golden adapters: what the real client
    packages (huggingface_hub, openai, tritonclient) talk to."""
    from benchmarks.server import adapterserve_process

    root = tmp_path_factory.mktemp("live")
    publish_golden(str(root / "store"))
    server = adapterserve_process(
        root / "store", str(TINY), root / "server.log", admin_token=TOKEN, warmup="false", max_wait_ms=1
    )
    server.start(timeout=120)
    try:
        yield server
    finally:
        server.stop()
