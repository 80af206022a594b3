"""LoRA math with PEFT semantics: y = base(x) + B(A(x)) * scaling (dropout is identity at inference).

The kind also carries PEFT's bias="all"/"lora_only": a LoRA adapter's rows may replace a linear's or a
LayerNorm's bias (`Adapter.bias`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import kinds
from .grouped import stack_lora
from .model import LoraSite

NAME = "lora"


def lora_scaling(r: int, alpha: float, use_rslora: bool) -> float:
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def lora_delta(x: torch.Tensor, site: LoraSite) -> torch.Tensor:
    return F.linear(F.linear(x, site.a), site.b) * site.scaling


def _linear_output(batch, x: torch.Tensor, y: torch.Tensor, module: torch.nn.Linear, key) -> torch.Tensor:
    if key not in batch.sites[NAME]:
        return y
    lora_segs = [seg for seg in batch.segments if seg.adapter is not None and key in seg.adapter.lora]
    grouped = len(lora_segs) >= batch.group_min
    if grouped:
        rows = batch.rows(lora_segs, x)
        a, b = stack_lora([seg.adapter.lora[key] for seg in lora_segs], rows)
        xs = rows.gather(x)
        xs3 = xs if xs.dim() == 3 else xs.unsqueeze(1)  # the pooler's [B, H] input
        delta = torch.bmm(torch.bmm(xs3, a.transpose(1, 2)), b.transpose(1, 2)).reshape(rows.n, *y.shape[1:])
        y = rows.add(y, delta)

    def seg_fn(seg):
        a = seg.adapter
        lo, bias = (None if grouped else a.lora.get(key)), a.bias.get(key)
        if lo is None and bias is None:
            return None
        ys = y[seg.start : seg.stop]
        if bias is not None:
            ys = ys - module.bias + bias if module.bias is not None else ys + bias
        if lo is not None:
            ys = ys + lora_delta(x[seg.start : seg.stop], lo)
        return ys

    return batch.per_segment(y, seg_fn)


def _norm_bias(batch, y: torch.Tensor, old_bias: torch.Tensor, key) -> torch.Tensor:
    """Rows whose adapter replaces this LayerNorm's bias (PEFT bias="all"/"lora_only") get the new one."""
    if key not in batch.sites[NAME]:
        return y

    def seg_fn(seg):
        new = seg.adapter.bias.get(key)
        return None if new is None else y[seg.start : seg.stop] - old_bias + new

    return batch.per_segment(y, seg_fn)


def _tensors(adapter):
    for lo in adapter.lora.values():
        yield from (lo.a, lo.b)
    yield from adapter.bias.values()


def _move(adapter, mv) -> dict:
    return dict(
        lora={k: LoraSite(mv(s.a), mv(s.b), s.scaling) for k, s in adapter.lora.items()},
        bias={k: mv(t) for k, t in adapter.bias.items()},
    )


KIND = kinds.Kind(
    NAME,
    weights=("lora", "bias"),
    tensors=_tensors,
    move=_move,
    linear_output=_linear_output,
    norm_bias=_norm_bias,
)
