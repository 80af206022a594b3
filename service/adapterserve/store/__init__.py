"""Where adapter files live: one small interface, several backends registered by URL scheme."""

from .base import NAME_PATTERN, VERSION_PATTERN, AdapterStore, VersionInfo, not_found, validate_name
from .registry import open_store, register_store

__all__ = [
    "NAME_PATTERN",
    "VERSION_PATTERN",
    "AdapterStore",
    "VersionInfo",
    "not_found",
    "open_store",
    "register_store",
    "validate_name",
]
