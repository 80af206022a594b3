"""The `Task` interface: everything that differs between tasks, in one object per task.

A task decides how a head's logits become scores, which route serves it, how its training rows are read,
encoded, batched and scored, and what the reference libraries call it. Code elsewhere asks the task
(`tasks.get(name)`) instead of comparing names. Only torch and plain data here: the serving engine, the
formats and training all import this, so it imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -100  # a target the loss and the metrics skip (a label unseen in training, a continuation word piece)


@dataclass
class Example:
    """One training row, as read from CSV/JSONL; which fields are set depends on the task."""

    text: str | None = None
    pair: str | None = None
    label: str | None = None  # classification
    labels: list[str] | None = None  # multilabel
    tokens: list[str] | None = None  # tagging: words
    tags: list[str] | None = None  # tagging: one label per word
    answer_start: int | None = None  # qa: text = question, pair = context, label = the answer's text


@dataclass
class Columns:
    """Where each field of an Example is found in a data file."""

    text: str = "text"
    pair: str | None = None
    label: str = "label"
    labels: str = "labels"
    labels_separator: str = ","
    tokens: str = "tokens"
    tags: str = "tags"
    delimiter: str | None = None  # CSV only; None: "\t" for .tsv, "," otherwise
    question: str = "question"  # qa
    context: str = "context"  # qa
    answer: str = "answers"  # qa: {"text": [...], "answer_start": [...]}, [{"text", "answer_start"}], or a text
    answer_start: str = "answer_start"  # qa, with a plain answer text


Skip = Callable[[str], None]  # counts a skipped row under a reason


class Task:
    """Base class; a task subclasses it, sets the attributes and overrides what differs, then registers."""

    name: str
    route: str  # the endpoint that serves it: POST /<route>?adapter=NAME
    per_token: bool = False  # the head runs over every token ([T, L] logits) instead of one vector per input
    default_head_layers: int = 2  # flex head depth `adapterserve train` uses unless told
    min_labels: int = 2  # fewer distinct labels in the training data is refused
    data_formats: tuple[str, ...] = ("csv", "jsonl")  # training data file formats it can read
    data_help: str = ""  # what one row holds, for the refusal of another format
    adapterhub_head_type: str  # head_config.json "head_type" in AdapterHub flex heads
    peft_task_type: str  # PEFT adapter_config.json "task_type" written on export
    peft_head_module: str = "classifier"  # the head's module name in PEFT files (modules_to_save)
    head_outputs: int | None = None  # a fixed number of head outputs (qa: start and end), else one per label

    # -- serving
    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities over the last dimension (softmax unless the task says otherwise)."""
        return torch.softmax(logits, dim=-1)

    # -- training data
    def required_columns(self, cols: Columns) -> list[str]:
        return [cols.text, cols.label] + ([cols.pair] if cols.pair else [])

    def example(self, rec: dict, cols: Columns, skip: Skip) -> Example | None:
        """One record -> an Example, or None (after `skip(reason)`) when the row is unusable."""
        raise NotImplementedError

    def json_records(self, doc) -> Iterable[dict]:
        """The records of a .json file holding one JSON document: a list of records, or one record (a file of
        JSON lines is read line by line instead)."""
        if isinstance(doc, dict):
            return [doc]
        if not isinstance(doc, list):
            raise ValueError("a .json data file must hold a list of records (or use JSONL, one per line)")
        return (rec for rec in doc if isinstance(rec, dict))

    def label_names(self, names: set[str]) -> list[str]:
        """The head's output order from the labels the data uses: sorted."""
        return sorted(names)

    def example_labels(self, ex: Example) -> Iterable[str]:
        """The label names one example uses (the label vocabulary is their sorted union)."""
        raise NotImplementedError

    def tokenize(self, tokenizer, examples: list[Example], max_length: int):
        """The tokenizer's output for a list of examples (input_ids and token_type_ids per example)."""
        texts = [ex.text for ex in examples]
        pairs = [ex.pair for ex in examples] if examples and examples[0].pair is not None else None
        return tokenizer(texts, pairs, truncation=True, max_length=max_length, return_token_type_ids=True)

    def targets(self, encoding, examples: list[Example], index: dict[str, int]) -> list:
        """The training target of each example (what `stack_targets` batches); `encoding` is `tokenize`'s."""
        raise NotImplementedError

    def stack_targets(self, targets: list, length: int) -> torch.Tensor:
        """A batch's targets as one tensor; `length` is the padded token length (per-token tasks)."""
        return torch.tensor(targets, dtype=torch.long)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, ignore_index=IGNORE)

    def metrics(self, targets: list, logits: list[torch.Tensor], labels: list[str]) -> dict:
        """Metrics from per-item targets and raw logits (see tasks/metrics.py for the definitions)."""
        raise NotImplementedError
