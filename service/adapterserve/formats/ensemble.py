"""`ensemble.json`: an ensemble of published adapters, uploaded like an adapter folder (that one file).

{"members": ["a", "b", ...], "combine": "mean" | "vote", "weights": [...]} (weights optional, default equal).
adapterserve adds "task" and "labels" (the members', checked equal) when the upload is accepted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..adapters.ensemble import COMBINE, Ensemble
from ..errors import InvalidAdapter
from ..store.base import NAME_RE
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
    data = read_json(folder / FILE)
    if not isinstance(data, dict):
        raise InvalidAdapter(f"{FILE} must be a JSON object")
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise InvalidAdapter(f"{FILE}: unknown key {unknown[0]!r}; keys: {sorted(KEYS)}", key=unknown[0])
    members = data.get("members")
    if not isinstance(members, list) or not all(isinstance(m, str) and NAME_RE.match(m) for m in members):
        raise InvalidAdapter(f"{FILE}: 'members' must be a list of adapter names")
    if not 2 <= len(members) <= MAX_MEMBERS or len(set(members)) != len(members):
        raise InvalidAdapter(f"{FILE}: 'members' must name 2 to {MAX_MEMBERS} different adapters, got {members}")
    combine = data.get("combine", "mean")
    if combine not in COMBINE:
        raise InvalidAdapter(f"{FILE}: 'combine' must be one of {list(COMBINE)}, got {combine!r}", key="combine")
    weights = data.get("weights", [1.0] * len(members))
    if (
        not isinstance(weights, list)
        or len(weights) != len(members)
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in weights)
        or any(x < 0 for x in weights)
        or sum(weights) <= 0
    ):
        raise InvalidAdapter(
            f"{FILE}: 'weights' must be {len(members)} non-negative numbers (one per member) with a positive sum",
            key="weights",
        )
    task, labels = data.get("task"), data.get("labels")
    if combine == "vote" and task == "multilabel":
        raise InvalidAdapter(f"{FILE}: 'vote' needs single-label classifiers; combine multi-label ones by 'mean'")
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
