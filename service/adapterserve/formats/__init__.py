"""Adapter folders on disk (AdapterHub, PEFT) -> the canonical `Adapter`, validated against a backbone."""

from .registry import FORMATS, detect_format, load_adapter

__all__ = ["FORMATS", "detect_format", "load_adapter"]
