"""Ensembles: several published adapters answering as one ("model fusion" by averaging or voting).

An ensemble holds no weights: it names its members, and is served by running them (one backbone pass,
one row per input and member) and combining their probabilities. It is published, versioned and rolled
back like an adapter; the members' task and labels are recorded at upload, so a member that later
changes them (or is deleted) makes the ensemble answer 409 rather than something silently different.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from .. import tasks

COMBINE = ("mean", "vote")


@dataclass
class Ensemble:
    members: list[str]
    combine: str  # "mean" | "vote"
    weights: list[float]
    task: str | None = None  # the members' task and labels, recorded at upload
    labels: list[str] | None = None
    format: str = "ensemble"
    warnings: list[str] = field(default_factory=list)

    # what the cache and the listing read of any adapter
    kind = "ensemble"
    num_parameters = 0
    nbytes = 0

    def tensors(self) -> Iterator[torch.Tensor]:
        return iter(())

    def to(self, device, dtype=None) -> Ensemble:
        return self


def combine(ensemble: Ensemble, member_logits: list[torch.Tensor]) -> list[tuple[int, float]]:
    """Members' logits [L] for one input -> (label index, score) best first.

    mean: the weighted mean of the members' probabilities (softmax, or sigmoid for multi-label).
    vote: each member votes for its best label with its weight; score = the label's share of the votes;
    ties go to the higher weighted mean probability.
    """
    w = torch.tensor(ensemble.weights, dtype=torch.float32)
    w = w / w.sum()
    scores = tasks.get(ensemble.task).scores
    probs = torch.stack([scores(lg.float()) for lg in member_logits])  # [M, L]
    mean = (w[:, None] * probs).sum(0)
    if ensemble.combine == "mean":
        order = torch.argsort(mean, descending=True).tolist()
        return [(i, float(mean[i])) for i in order]
    votes = torch.zeros_like(mean)
    votes.index_add_(0, probs.argmax(-1), w)
    order = sorted(range(len(mean)), key=lambda i: (float(votes[i]), float(mean[i])), reverse=True)
    return [(i, float(votes[i])) for i in order]
