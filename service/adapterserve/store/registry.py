"""Stores by URL scheme: `adapters_store/` or `file:///x` -> local, `s3://bucket/prefix` -> S3."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from urllib.parse import urlparse

from .base import AdapterStore

_BACKENDS: dict[str, Callable[..., AdapterStore]] = {}


def register_store(scheme: str, factory: Callable[..., AdapterStore]) -> None:
    _BACKENDS[scheme] = factory


def open_store(url: str, **options) -> AdapterStore:
    scheme = urlparse(url).scheme if "://" in url else "file"
    if scheme not in _BACKENDS:
        _load_builtin(scheme)
    try:
        factory = _BACKENDS[scheme]
    except KeyError:
        raise ValueError(f"no adapter store for {scheme!r} URLs; known: {sorted(_BACKENDS)}") from None
    return factory(url, **options)


# Built-in backends import lazily (each module registers itself), so `boto3` is only needed by S3 users.
_BUILTIN = {"file": "local", "s3": "s3"}


def _load_builtin(scheme: str) -> None:
    if scheme in _BUILTIN:
        importlib.import_module(f"{__package__}.{_BUILTIN[scheme]}")
