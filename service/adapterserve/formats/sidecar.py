"""`adapterserve.json`: optional metadata an uploader adds beside any adapter folder.

PEFT does not save label names, and neither format says "multi-label" for a PEFT classifier, so users
may add {"labels": [...], "task": <a registered task name>, "description": "..."}.
"""

from __future__ import annotations

from pathlib import Path

from .. import tasks
from ..errors import InvalidAdapter
from .weights import read_json

SIDECAR = "adapterserve.json"


def read_sidecar(folder: Path) -> dict:
    path = folder / SIDECAR
    if not path.is_file():
        return {}
    data = read_json(path)
    labels = data.get("labels")
    if labels is not None and (
        not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or len(set(labels)) != len(labels)
    ):
        raise InvalidAdapter(f"{SIDECAR}: 'labels' must be a list of distinct strings", file=SIDECAR)
    task = data.get("task")
    if task is not None and task not in tasks.REGISTRY:
        raise InvalidAdapter(f"{SIDECAR}: 'task' must be one of {tasks.names()}, got {task!r}", file=SIDECAR)
    return data


def apply_labels(labels: list[str] | None, num_labels: int, source: str) -> list[str]:
    if labels is None:
        return [f"LABEL_{i}" for i in range(num_labels)]
    if len(labels) != num_labels:
        raise InvalidAdapter(
            f"{source} names {len(labels)} labels but the head has {num_labels} outputs",
            labels=len(labels),
            outputs=num_labels,
        )
    return list(labels)
