"""Fixtures for the offline validation of docker/ and deploy/ (no Docker, kubectl or network)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Make the helper modules importable whatever pytest's import mode is.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import kustomize_render  # noqa: E402  (after the sys.path change)
from deploy_helpers import DEPLOY, OVERLAYS  # noqa: E402


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """Each overlay rendered once: {"cpu": [objects], "gpu": [objects]}."""
    return {name: kustomize_render.build(DEPLOY / "overlays" / name) for name in OVERLAYS}
