"""Fixtures for the offline validation of docker/ and deploy/ (no Docker, cluster or network; kubectl renders)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Make the helper modules importable whatever pytest's import mode is.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from deploy_helpers import DEPLOY, OVERLAYS, kustomize_build  # noqa: E402  (after the sys.path change)


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """Each overlay rendered once by `kubectl kustomize`: {"cpu": [objects], "gpu": [objects]}."""
    return {name: kustomize_build(DEPLOY / "overlays" / name) for name in OVERLAYS}
