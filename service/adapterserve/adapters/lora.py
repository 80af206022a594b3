"""LoRA math with PEFT semantics: y = base(x) + B(A(x)) * scaling (dropout is identity at inference)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .model import LoraSite


def lora_scaling(r: int, alpha: float, use_rslora: bool) -> float:
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def lora_delta(x: torch.Tensor, site: LoraSite) -> torch.Tensor:
    return F.linear(F.linear(x, site.a), site.b) * site.scaling
