"""Single-label classification: one label per input, softmax scores, cross-entropy."""

from __future__ import annotations

import torch

from . import metrics
from .base import IGNORE, Columns, Example, Skip, Task


def read_text(rec: dict, cols: Columns, skip: Skip) -> tuple[str, str | None] | None:
    """(text, pair) of a record, or None after `skip` when either is empty."""
    text = rec.get(cols.text)
    text = "" if text is None else str(text).strip()
    if not text:
        skip("empty text")
        return None
    pair = None
    if cols.pair:
        pair = rec.get(cols.pair)
        pair = "" if pair is None else str(pair).strip()
        if not pair:
            skip("empty text pair")
            return None
    return text, pair


class Classification(Task):
    name = "classification"
    data_formats = ("csv", "jsonl", "folders")  # folders: one sub-folder of .txt files per label
    route = "classify"
    adapterhub_head_type = "classification"
    peft_task_type = "SEQ_CLS"

    def example(self, rec: dict, cols: Columns, skip: Skip) -> Example | None:
        texts = read_text(rec, cols, skip)
        if texts is None:
            return None
        label = rec.get(cols.label)
        label = "" if label is None else str(label).strip()
        if not label:
            skip("missing label")
            return None
        return Example(text=texts[0], pair=texts[1], label=label)

    def example_labels(self, ex: Example):
        return (ex.label,)

    def targets(self, encoding, examples: list[Example], index: dict[str, int]) -> list:
        return [index.get(ex.label, IGNORE) for ex in examples]  # a label unseen in training cannot be predicted

    def metrics(self, targets: list, logits: list[torch.Tensor], labels: list[str]) -> dict:
        return metrics.single_label(list(targets), [int(lg.argmax(-1)) for lg in logits], labels)


TASK = Classification()
