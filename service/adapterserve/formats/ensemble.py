"""`ensemble.json`: an ensemble of published adapters, uploaded like an adapter folder (that one file).

{"members": ["a", "b", ...], "combine": "mean" | "vote", "weights": [...]} (weights optional, default equal).
adapterserve adds "task" and "labels" (the members', checked equal) when the upload is accepted.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import tasks
from ..adapters.ensemble import COMBINE, Ensemble
from ..errors import InvalidAdapter
from ..store.base import NAME_RE
from .fields import REQUIRED, Fields
from .weights import read_json

NAME = "ensemble"
FILE = "ensemble.json"
MAX_MEMBERS = 16
KEYS = {"members", "combine", "weights", "task", "labels", "description"}


def detect(folder: Path) -> bool:
    return (folder / FILE).is_file()


def load(folder: Path) -> Ensemble:
    others = sorted(p.name for p in folder.iterdir() if p.name != FILE)
    if others:
        raise InvalidAdapter(f"an ensemble folder holds {FILE} only; also found {others[:5]}")
    f = Fields(read_json(folder / FILE), FILE)
    unknown = sorted(set(f.data) - KEYS)
    if unknown:  # our own format: a misspelt key ("weight") must not be silently ignored
        raise f.fail(unknown[0], f"is not a key of {FILE}; keys: {sorted(KEYS)}")

    def member(key: str, value) -> str:
        if not isinstance(value, str) or not NAME_RE.match(value):
            raise f.fail(key, "must be an adapter name", value)
        return value

    members = f.list("members", REQUIRED, member)
    if not 2 <= len(members) <= MAX_MEMBERS or len(set(members)) != len(members):
        raise f.fail("members", f"must name 2 to {MAX_MEMBERS} different adapters", members)
    combine = f.choice("combine", "mean", COMBINE)
    weights = f.list("weights", [1.0] * len(members), f.a_number(min=0))
    if len(weights) != len(members) or sum(weights) <= 0:
        raise f.fail(
            "weights", f"must be {len(members)} non-negative numbers (one per member) with a positive sum", weights
        )
    task = f.choice("task", None, tasks.names(), nullable=True)
    labels = f.list("labels", None, f.a_str(nonempty=True), nullable=True)
    if combine == "vote" and task == "multilabel":
        raise f.fail(
            "combine", "must be 'mean' for multi-label members ('vote' needs single-label classifiers)", combine
        )
    return Ensemble(list(members), combine, [float(x) for x in weights], task, labels)


def write(folder: Path, ensemble: Ensemble) -> None:
    """Record the members' task and labels (checked at upload) in the folder to be published."""
    data = read_json(folder / FILE)
    data.update(task=ensemble.task, labels=ensemble.labels)
    (folder / FILE).write_text(json.dumps(data, indent=1))


def describe(folder: Path) -> dict:
    """What the listing shows (the file is all there is)."""
    e = load(folder)
    return {"kind": "ensemble", "task": e.task, "labels": e.labels, "members": e.members}
