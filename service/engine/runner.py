"""One batch through the backbone, on the inference worker thread.

Rows arrive grouped by adapter; they are padded to the longest row, run once through the backbone with
per-row adapter deltas, and split back into per-item results (logits for adapter rows, pooled sentence
embeddings for rows without an adapter).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..adapters.batch import AdapterBatch
from ..adapters.model import Adapter
from .backbone import Backbone
from .tokenize import Encoded


@dataclass(frozen=True)
class BatchStats:
    rows: int
    tokens: int  # real tokens
    padded_tokens: int
    segments: int


def pad(rows: list[Encoded], pad_id: int, device: torch.device):
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    types = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r)
        ids[i, :n] = torch.as_tensor(r.input_ids)
        mask[i, :n] = 1
        if r.token_type_ids is not None:
            types[i, :n] = torch.as_tensor(r.token_type_ids)
    return ids.to(device, non_blocking=True), mask.to(device, non_blocking=True), types.to(device, non_blocking=True)


def run_rows(backbone: Backbone, rows: list[Encoded], row_adapters: list[Adapter | None],
             tagging: list[bool]) -> tuple[list[torch.Tensor], BatchStats]:
    """Per row: logits [L] (sequence heads), [T_i, L] (tagging heads) or an embedding [H] (no adapter).

    `row_adapters` must already be grouped so equal adapters are contiguous.
    """
    plan = AdapterBatch.from_row_adapters(row_adapters)
    pad_id = backbone.tokenizer.pad_token_id or 0
    ids, mask, types = pad(rows, pad_id, backbone.device)
    with torch.inference_mode():
        hidden, pooled = backbone.encode(ids, mask, types, adapters=plan)
        per_segment = plan.heads(hidden, pooled)
        embed_rows = [i for i, a in enumerate(row_adapters) if a is None]
        emb = None
        if embed_rows:
            idx = torch.as_tensor(embed_rows, device=hidden.device)
            emb = backbone.sentence_embeddings(hidden.index_select(0, idx), mask.index_select(0, idx))
            emb = emb.float().cpu()
        out: list[torch.Tensor] = [None] * len(rows)  # type: ignore[list-item]
        for seg, logits in zip(plan.segments, per_segment):
            if logits is None:
                continue
            logits = logits.float().cpu()
            for j, row in enumerate(range(seg.start, seg.stop)):
                out[row] = logits[j, : len(rows[row])] if tagging[row] else logits[j]
        if emb is not None:
            for j, row in enumerate(embed_rows):
                out[row] = emb[j]
    tokens = sum(len(r) for r in rows)
    stats = BatchStats(len(rows), tokens, ids.shape[0] * ids.shape[1], len(plan.segments))
    return out, stats


def run_items(backbone: Backbone, items, on_stats=None) -> list[list[torch.Tensor]]:
    """The batcher's runner: flatten work items into rows, run them, and split results back per item."""
    rows, adapters, tagging = [], [], []
    for item in items:
        rows.extend(item.rows)
        adapters.extend([item.adapter] * len(item.rows))
        tagging.extend([item.tagging] * len(item.rows))
    import time

    started = time.monotonic()
    out, stats = run_rows(backbone, rows, adapters, tagging)
    if on_stats is not None:
        on_stats(stats, time.monotonic() - started)
    results, i = [], 0
    for item in items:
        results.append(out[i:i + len(item.rows)])
        i += len(item.rows)
    return results
