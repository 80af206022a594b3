"""`adapterserve.json`: optional metadata an uploader adds beside any adapter folder.

PEFT does not save label names, and neither format says "multi-label" for a PEFT classifier, so users
may add {"labels": [...], "task": <a registered task name>, "description": "..."}.
"""

from __future__ import annotations

from pathlib import Path

from .. import tasks
from ..errors import InvalidAdapter
from .fields import Fields
from .weights import read_json

SIDECAR = "adapterserve.json"


def read_sidecar(folder: Path) -> dict:
    path = folder / SIDECAR
    if not path.is_file():
        return {}
    data = read_json(path)
    f = Fields(data, SIDECAR)
    labels = f.list("labels", None, f.a_str(), nullable=True)
    if labels is not None and len(set(labels)) != len(labels):
        raise f.fail("labels", "must be a list of distinct strings", labels)
    f.choice("task", None, tasks.names(), nullable=True)
    f.str("description", None, nullable=True)
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
