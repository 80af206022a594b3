"""The task registry: one `Task` per task name (see base.py for the interface).

Add a task: write tasks/<name>.py with a Task subclass and `TASK = ...`, and add it to `_BUILTIN` below.
Everything that differs by task (scores, route, training loss/data/targets, metrics, file names of the
reference libraries) is then looked up here.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Task
from .classification import TASK as _classification
from .multilabel import TASK as _multilabel
from .qa import TASK as _qa
from .tagging import TASK as _tagging

REGISTRY: Registry[Task] = Registry("task")
register, get, names = REGISTRY.register, REGISTRY.get, REGISTRY.names


def by_adapterhub_head_type() -> dict[str, str]:
    """AdapterHub head_type -> task name (for reading head_config.json)."""
    return {t.adapterhub_head_type: t.name for t in REGISTRY.values()}


_BUILTIN = (_classification, _multilabel, _tagging, _qa)
for _task in _BUILTIN:
    register(_task)

__all__ = ["Task", "REGISTRY", "register", "get", "names", "by_adapterhub_head_type"]
