"""Prediction heads: a Linear stack over the [CLS] vector, the pooler output, or every token."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .activations import get_activation
from .model import Head


def head_input(head: Head, hidden: torch.Tensor, pooled: torch.Tensor | None) -> torch.Tensor:
    if head.pooling == "tokens":
        return hidden
    if head.pooling == "pooler":
        if pooled is None:
            raise ValueError("this head needs the backbone's pooler, which the checkpoint does not have")
        return pooled
    return hidden[:, 0]


def apply_head(head: Head, x: torch.Tensor) -> torch.Tensor:
    act = get_activation(head.activation)
    last = len(head.layers) - 1
    for i, (w, b) in enumerate(head.layers):
        x = F.linear(x, w, b)
        if i < last:
            x = act(x)
    return x
