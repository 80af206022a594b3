"""Examples -> token ids and targets, and padded batches of them (the task tokenizes and builds targets)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .. import tasks
from ..tasks.base import Example


@dataclass
class TrainingRow:
    input_ids: list[int]
    token_type_ids: list[int]
    target: object  # int (classification) | list[float] (multilabel) | list[int] (tagging, per token)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(examples: list[Example], tokenizer, task: str, labels: list[str], max_length: int) -> list[TrainingRow]:
    t = tasks.get(task)
    enc = t.tokenize(tokenizer, examples, max_length)
    targets = t.targets(enc, examples, {name: i for i, name in enumerate(labels)})
    return [TrainingRow(enc["input_ids"][i], enc["token_type_ids"][i], target) for i, target in enumerate(targets)]


def collate(items: list[TrainingRow], pad_id: int, task: str) -> dict[str, torch.Tensor]:
    T = max(len(e.input_ids) for e in items)
    B = len(items)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    types = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for i, e in enumerate(items):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        types[i, :n] = torch.tensor(e.token_type_ids)
        mask[i, :n] = 1
    target = tasks.get(task).stack_targets([e.target for e in items], T)
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "target": target}


def train_batches(data: list, batch_size: int, rng: random.Random, bucket: int = 50) -> list[list]:
    """Shuffled batches for one epoch. Items are shuffled, then sorted by length within chunks of `bucket`
    batches, and the batches shuffled again: random batches with little padding (about 1.5x faster on short,
    varied texts than plain shuffling)."""
    order = list(range(len(data)))
    rng.shuffle(order)
    chunk = batch_size * max(1, bucket)
    batches = []
    for s in range(0, len(order), chunk):
        part = sorted(order[s : s + chunk], key=lambda i: len(data[i]))
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return [[data[i] for i in b] for b in batches]


def eval_batches(data: list, batch_size: int) -> tuple[list[list], list[int]]:
    """Batches of similar length (little padding) and the original index of each item, in batch order."""
    order = sorted(range(len(data)), key=lambda i: len(data[i]))
    return [[data[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)], order


@dataclass
class FeatureItem:
    """A cached head input ([H], or [T, H] for tagging) with its target: head-only training skips the backbone."""

    features: torch.Tensor
    target: object

    def __len__(self) -> int:
        return 1 if self.features.dim() == 1 else self.features.shape[0]


def collate_features(items: list[FeatureItem], task: str) -> dict[str, torch.Tensor]:
    t = tasks.get(task)
    if not t.per_token:
        feats = torch.stack([it.features for it in items])
        return {"features": feats, "target": t.stack_targets([it.target for it in items], 1)}
    T = max(len(it) for it in items)
    H = items[0].features.shape[-1]
    feats = torch.zeros(len(items), T, H)
    for i, it in enumerate(items):
        feats[i, : len(it)] = it.features
    return {"features": feats, "target": t.stack_targets([it.target for it in items], T)}
