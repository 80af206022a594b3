"""Token tagging (NER and similar): one label per word, scored on the first word piece of each word.

Words are tokenized with is_split_into_words; the first word piece of each word carries the word's tag, the
other pieces and the special tokens get IGNORE (skipped by the loss and the metrics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import metrics
from .base import IGNORE, Columns, Example, Skip, Task

OUTSIDE = "O"  # the tag of words outside every entity; left out of macro-F1


class Tagging(Task):
    name = "tagging"
    route = "tag"
    per_token = True
    default_head_layers = 1
    data_formats = ("jsonl",)
    data_help = "with a list of words and a list of tags per line"
    adapterhub_head_type = "tagging"
    peft_task_type = "TOKEN_CLS"

    def required_columns(self, cols: Columns) -> list[str]:
        return [cols.tokens, cols.tags]

    def example(self, rec: dict, cols: Columns, skip: Skip) -> Example | None:
        tokens, tags = rec.get(cols.tokens), rec.get(cols.tags)
        if not isinstance(tokens, list) or not isinstance(tags, list) or not tokens:
            skip("tokens/tags are not non-empty lists")
            return None
        if len(tokens) != len(tags):
            skip("tokens and tags differ in length")
            return None
        return Example(tokens=[str(t) for t in tokens], tags=[str(t) for t in tags])

    def example_labels(self, ex: Example):
        return ex.tags or ()

    def tokenize(self, tokenizer, examples: list[Example], max_length: int):
        return tokenizer(
            [ex.tokens for ex in examples],
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
            return_token_type_ids=True,
        )

    def targets(self, encoding, examples: list[Example], index: dict[str, int]) -> list:
        out = []
        for i, ex in enumerate(examples):
            targets, previous = [], None
            for w in encoding.word_ids(i):
                targets.append(IGNORE if w is None or w == previous else index.get(ex.tags[w], IGNORE))
                previous = w
            out.append(targets)
        return out

    def stack_targets(self, targets: list, length: int) -> torch.Tensor:
        out = torch.full((len(targets), length), IGNORE, dtype=torch.long)
        for i, t in enumerate(targets):
            out[i, : len(t)] = torch.tensor(t)
        return out

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE)

    def metrics(self, targets: list, logits: list[torch.Tensor], labels: list[str]) -> dict:
        y_true, y_pred = [], []
        for t, lg in zip(targets, logits):
            pred = lg.argmax(-1).tolist()
            for a, b in zip(t, pred):
                if a != IGNORE:
                    y_true.append(a)
                    y_pred.append(b)
        exclude = {labels.index(OUTSIDE)} if OUTSIDE in labels and len(labels) > 1 else set()
        return metrics.single_label(y_true, y_pred, labels, exclude)


TASK = Tagging()
