"""Multi-label classification: any subset of the labels per input, sigmoid scores, binary cross-entropy."""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F

from . import metrics
from .base import Columns, Example, Skip, Task
from .classification import read_text


def as_list(value, separator: str) -> list[str] | None:
    """A JSON list, a JSON list in a string, or a `separator`-joined string -> label names."""
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    s = str(value).strip()
    if s.startswith("["):
        try:
            parsed = json.loads(s)
            if isinstance(parsed, list):
                return [str(v).strip() for v in parsed if str(v).strip()]
        except json.JSONDecodeError:
            pass
    return [p.strip() for p in s.split(separator) if p.strip()]


class Multilabel(Task):
    name = "multilabel"
    route = "classify"
    min_labels = 1
    adapterhub_head_type = "multilabel_classification"
    peft_task_type = "SEQ_CLS"

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def required_columns(self, cols: Columns) -> list[str]:
        return [cols.text, cols.labels] + ([cols.pair] if cols.pair else [])

    def example(self, rec: dict, cols: Columns, skip: Skip) -> Example | None:
        texts = read_text(rec, cols, skip)
        if texts is None:
            return None
        labels = as_list(rec.get(cols.labels), cols.labels_separator)
        if labels is None:
            skip("missing labels")
            return None
        return Example(text=texts[0], pair=texts[1], labels=sorted(set(labels)))  # an empty list is a valid answer

    def example_labels(self, ex: Example):
        return ex.labels or ()

    def targets(self, encoding, examples: list[Example], index: dict[str, int]) -> list:
        out = []
        for ex in examples:
            target = [0.0] * len(index)
            for name in ex.labels:
                if name in index:
                    target[index[name]] = 1.0
            out.append(target)
        return out

    def stack_targets(self, targets: list, length: int) -> torch.Tensor:
        return torch.tensor(targets, dtype=torch.float32)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target)

    def metrics(self, targets: list, logits: list[torch.Tensor], labels: list[str]) -> dict:
        return metrics.multilabel(targets, [(lg >= 0).int().tolist() for lg in logits], labels)


TASK = Multilabel()
