"""Prefix tuning: per layer, P learned key and value vectors put before the text's inside self-attention.

Every query attends to them (they are never masked); nothing else in the layer changes. Both libraries
save enough to compute them once at load time (AdapterHub's reparameterisation MLP, PEFT's stored
projection output), so serving a prefix costs only the longer attention.

In a mixed batch rows have prefixes of different lengths, or none: each layer gets keys/values padded to
the batch's longest prefix, and a key mask that hides the padding (all of it for rows without a prefix),
so a row's attention is exactly its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import kinds


@dataclass(frozen=True)
class RowPrefix:
    keys: torch.Tensor  # [rows, P, H]
    values: torch.Tensor  # [rows, P, H]
    mask: torch.Tensor  # [rows, P] bool, True = attend


def row_prefix(segments: list, layer: int, batch_rows: int, like: torch.Tensor) -> RowPrefix | None:
    hits = [
        (seg.start, seg.stop, seg.adapter.prefix[layer])
        for seg in segments
        if seg.adapter is not None and layer in seg.adapter.prefix
    ]
    if not hits:
        return None
    P = max(kv[0].shape[0] for _, _, kv in hits)
    H = hits[0][2][0].shape[1]
    if len(hits) == 1 and hits[0][1] - hits[0][0] == batch_rows:
        k, v = (t.to(like.dtype).unsqueeze(0).expand(batch_rows, P, H) for t in hits[0][2])
        return RowPrefix(k, v, torch.ones((batch_rows, P), dtype=torch.bool, device=like.device))
    keys = like.new_zeros((batch_rows, P, H))
    values = like.new_zeros((batch_rows, P, H))
    mask = torch.zeros((batch_rows, P), dtype=torch.bool, device=like.device)
    for start, stop, (k, v) in hits:
        n = k.shape[0]
        keys[start:stop, :n] = k.to(like.dtype)
        values[start:stop, :n] = v.to(like.dtype)
        mask[start:stop, :n] = True
    return RowPrefix(keys, values, mask)


def extend(k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor, prefix: RowPrefix, heads: int):
    """k, v [B, heads, T, hd] and key_mask [B, T] bool -> the same with the prefix before the text."""
    B, P, H = prefix.keys.shape
    pk, pv = (t.reshape(B, P, heads, H // heads).transpose(1, 2) for t in (prefix.keys, prefix.values))
    return torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2), torch.cat([prefix.mask, key_mask], dim=1)


NAME = "prefix"


def _prefix(batch, layer: int, like: torch.Tensor) -> RowPrefix | None:
    if layer not in batch.sites[NAME]:
        return None
    return row_prefix(batch.segments, layer, like.shape[0], like)


def prefix_length(adapter) -> int:
    return next(iter(adapter.prefix.values()))[0].shape[0] if adapter.prefix else 0


KIND = kinds.Kind(
    NAME,
    weights=("prefix",),
    tensors=lambda adapter: (t for kv in adapter.prefix.values() for t in kv),
    move=lambda adapter, mv: dict(
        prefix={i: (mv(k), mv(v)) for i, (k, v) in adapter.prefix.items()},
        prefix_shifts_positions=adapter.prefix_shifts_positions,
    ),
    prefix=_prefix,
    # PEFT passes its prefix as past key values, so the text's position ids start after it (AdapterHub's do not)
    position_shift=lambda adapter: prefix_length(adapter) if adapter.prefix_shifts_positions else 0,
)
