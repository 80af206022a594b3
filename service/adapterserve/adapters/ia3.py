"""IA3 math: a learned vector scales a linear's output (bias included) or, for PEFT's feed-forward modules,
its input. AdapterHub's `IA3Config` always scales outputs by lora_B * alpha (alpha folded in at load time);
PEFT scales key/value outputs and feed-forward inputs.

In a mixed batch every row gets its own scale vector ([rows, D], ones for rows whose adapter has no IA3 at
the site), so the pretrained linear still runs once over the whole batch: scaling a row's input by ones or
its output by ones leaves it bit-identical, whatever other rows do.
"""

from __future__ import annotations

import torch

from . import kinds
from .model import Ia3Site


def row_scales(
    segments: list, key: tuple[int, str], on_input: bool, batch_rows: int, like: torch.Tensor
) -> torch.Tensor | None:
    """Per-row scale [rows or 1, D] for one site and side (input or output), or None when no row has one.

    `segments` are the batch's (start, stop, adapter) segments; one segment covering every row needs no
    [rows, D] tensor: its vector broadcasts."""
    hits: list[tuple[int, int, Ia3Site]] = []
    for seg in segments:
        site = None if seg.adapter is None else seg.adapter.ia3.get(key)
        if site is not None and site.on_input == on_input:
            hits.append((seg.start, seg.stop, site))
    if not hits:
        return None
    if len(hits) == 1 and hits[0][1] - hits[0][0] == batch_rows:
        return hits[0][2].scale.to(like.dtype).unsqueeze(0)
    scale = like.new_ones((batch_rows, hits[0][2].scale.shape[0]))
    for start, stop, site in hits:
        scale[start:stop] = site.scale.to(like.dtype)
    return scale


def apply_scale(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [rows, T, D] or [rows, D] times a per-row [rows or 1, D] scale."""
    return x * (scale.unsqueeze(1) if x.dim() == 3 else scale)


NAME = "ia3"


def _linear_input(batch, x: torch.Tensor, key) -> torch.Tensor:
    """Rows without an input scale here are multiplied by exactly one."""
    if key not in batch.sites[NAME]:
        return x
    scale = row_scales(batch.segments, key, True, x.shape[0], x)
    return x if scale is None else apply_scale(x, scale)


def _linear_output(batch, x: torch.Tensor, y: torch.Tensor, module, key) -> torch.Tensor:
    if key not in batch.sites[NAME]:
        return y
    scale = row_scales(batch.segments, key, False, x.shape[0], y)
    return y if scale is None else apply_scale(y, scale)


KIND = kinds.Kind(
    NAME,
    weights=("ia3",),
    tensors=lambda adapter: (s.scale for s in adapter.ia3.values()),
    move=lambda adapter, mv: dict(ia3={k: Ia3Site(mv(s.scale), s.on_input) for k, s in adapter.ia3.items()}),
    linear_input=_linear_input,
    linear_output=_linear_output,
)
