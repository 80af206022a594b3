"""Shared fixtures: the tiny random BERT (fast), the real MiniLM (marked), golden cases."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "backbones" / "tiny-bert"
TINY_NOPOOLER = FIXTURES / "backbones" / "tiny-bert-nopooler"
GOLDEN = FIXTURES / "golden"


@cache
def backbone_for(name: str):
    from adapterserve.engine.backbone import load_backbone
    from adapterserve.settings import default_backbone

    path = {"tiny-bert": str(TINY), "tiny-bert-nopooler": str(TINY_NOPOOLER), "minilm": default_backbone()}[name]
    return load_backbone(path, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_backbone():
    return backbone_for("tiny-bert")


@pytest.fixture(scope="session")
def minilm_backbone():
    return backbone_for("minilm")


# Marks that follow from a test's fixtures, so that `make test-fast` (-m "not slow and not s3 and not minilm and
# not reference") cannot miss one: the loopback S3 server is a process, MiniLM is a real model.
FIXTURE_MARKS = {"moto_server": "s3", "s3_url": "s3", "minilm_backbone": "minilm"}


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, mark in FIXTURE_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(mark)


def golden_cases() -> list[str]:
    return sorted(p.name for p in GOLDEN.iterdir() if (p / "expected.json").is_file()) if GOLDEN.is_dir() else []


def golden(case: str) -> tuple[Path, dict]:
    return GOLDEN / case / "adapter", json.loads((GOLDEN / case / "expected.json").read_text())


from .s3server import moto_server, s3_url  # noqa: E402,F401  (a loopback S3 API for store tests, session-wide)
