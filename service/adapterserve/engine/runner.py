"""One batch through the backbone, on an inference worker thread.

Rows are sorted by length and run through the backbone in one pass, or in a few passes of similar length
when the padding saved is worth another pass (`split_by_length`); within a pass they are grouped by adapter
and padded to the longest row, with per-row adapter deltas. Results are split back per item (logits for
adapter rows, pooled sentence embeddings for rows without an adapter).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..adapters.batch import AdapterBatch
from ..adapters.model import Adapter
from .backbone import Backbone
from .devices import DeviceTier
from .tokenize import Encoded


@dataclass(frozen=True)
class BatchStats:
    rows: int
    tokens: int  # real tokens
    padded_tokens: int
    segments: int


def pad(rows: list[Encoded], pad_id: int, device: torch.device, lead: list[int] | None = None):
    """Right-padded ids, mask and token types. `lead[i]` slots stand before row i's tokens (its adapter's
    prompt tokens: attended, token type 0; the backbone puts the prompt's embeddings there)."""
    lead = lead or [0] * len(rows)
    T = max(n + len(r) for n, r in zip(lead, rows))
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    types = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (r, s) in enumerate(zip(rows, lead)):
        n = len(r)
        ids[i, s : s + n] = torch.as_tensor(r.input_ids)
        mask[i, : s + n] = 1
        if r.token_type_ids is not None:
            types[i, s : s + n] = torch.as_tensor(r.token_type_ids)
    return ids.to(device, non_blocking=True), mask.to(device, non_blocking=True), types.to(device, non_blocking=True)


def run_rows(
    backbone: Backbone,
    rows: list[Encoded],
    row_adapters: list[Adapter | None],
    tagging: list[bool],
    group_min: int | None = None,
) -> tuple[list[torch.Tensor], BatchStats]:
    """Per row: logits [L] (sequence heads), [T_i, L] (tagging heads) or an embedding [H] (no adapter).

    `row_adapters` must already be grouped so equal adapters are contiguous. This is the one path from rows to
    answers: tests, training's export check and the benchmarks call it too. `group_min` (benchmarks only)
    overrides AdapterBatch's threshold for stacking segments.
    """
    plan = AdapterBatch.from_row_adapters(row_adapters, group_min)
    pad_id = backbone.tokenizer.pad_token_id or 0
    lead = [0 if a is None else a.virtual_tokens for a in row_adapters]
    ids, mask, types = pad(rows, pad_id, backbone.device, lead)
    with torch.inference_mode():
        hidden, pooled = backbone.runtime.encode(ids, mask, types, plan)
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
                # tagging answers the text's tokens only: prompt tokens before them are dropped
                out[row] = logits[j, lead[row] : lead[row] + len(rows[row])] if tagging[row] else logits[j]
        if emb is not None:
            for j, row in enumerate(embed_rows):
                out[row] = emb[j]
    tokens = sum(len(r) + n for r, n in zip(rows, lead))
    stats = BatchStats(len(rows), tokens, ids.shape[0] * ids.shape[1], len(plan.segments))
    return out, stats


def split_by_length(
    lengths: list[int], overhead_tokens: float, pad_cost=None, pass_tokens: int = 0
) -> list[tuple[int, int]]:
    """Cut length-sorted rows into runs: a run closes when growing it would pad more tokens than
    running another sub-batch costs (`overhead_tokens`, the fixed cost of one backbone pass).
    `pad_cost(T)`: what a padding position costs next to a real token in a pass padded to T (the runtime's;
    1 when a pass costs its padded tokens, far less when only attention sees the padding).
    `pass_tokens` (0: no limit): a run of more real tokens is cut into equal parts under it, since on a CPU
    passes of a few hundred tokens keep their working set in cache and compute more tokens per second."""
    runs, start = [], 0
    for j in range(1, len(lengths)):
        padding = (lengths[j] - lengths[j - 1]) * (j - start)
        if padding and padding * (1.0 if pad_cost is None else pad_cost(lengths[j])) > overhead_tokens:
            runs.append((start, j))
            start = j
    runs.append((start, len(lengths)))
    if pass_tokens <= 0:
        return runs
    out = []
    for a, b in runs:
        total = sum(lengths[a:b])
        target = total / -(-total // pass_tokens)  # equal parts, each under the limit
        cut, run = a, 0
        for j in range(a, b):
            if j > cut and (run + lengths[j] > pass_tokens or run >= target):
                out.append((cut, j))
                cut, run = j, 0
            run += lengths[j]
        out.append((cut, b))
    return out


def run_items(
    backbone: Backbone,
    items,
    on_stats=None,
    split_overhead_tokens: int = 0,
    devices: DeviceTier | None = None,
    pass_tokens: int = 0,
) -> list[list[torch.Tensor]]:
    """The batcher's run_batch: flatten work items into rows, run them, and split results back per item.

    Each item carries the snapshot its request resolved; the device tier places the batch's snapshots here,
    on the inference thread, and holds them until the batch is done (engine/devices.py).

    Rows are sorted by length and, where the padding saved is worth another backbone pass, run as
    several sub-batches of similar length (on a CPU a pass costs little beyond its tokens, so this
    cuts the padding of a mixed-length batch; the onnx runtime computes only attention on the padding,
    so it splits only where long rows would pad many short ones; on a GPU it never splits). On a CPU a
    sub-batch also stays under `pass_tokens` real tokens. Within a sub-batch rows are grouped by adapter,
    one segment each.
    """
    snapshots = [item.adapter for item in items if item.adapter is not None]
    snapshots += [snap for item in items for _, snap in item.row_adapters or ()]
    placed = devices.acquire(snapshots) if devices is not None else {s: s.adapter for s in snapshots}
    try:
        return _run_placed(backbone, items, placed, on_stats, split_overhead_tokens, pass_tokens)
    finally:
        if devices is not None:
            devices.release(snapshots)


def _run_placed(backbone: Backbone, items, placed: dict, on_stats, split_overhead_tokens: int, pass_tokens: int):
    rows, adapters, tagging, keys = [], [], [], []
    group: dict[int, int] = {}  # one segment per snapshot, even for two versions of one name in a batch
    for item in items:
        n = len(item.rows)
        adapter = None if item.adapter is None else placed[item.adapter]
        rows.extend(item.rows)
        tagging.extend([item.tagging] * n)
        if item.row_adapters is not None:  # fan-out: each row its own snapshot
            for key, snap in item.row_adapters:
                adapters.append(placed[snap])
                keys.append((key, group.setdefault(id(placed[snap]), len(group))))
        else:
            adapters.extend([adapter] * n)
            keys.extend([(item.key, group.setdefault(id(adapter), len(group)))] * n)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    # split_overhead_tokens 0 means never cut for padding (the setting's meaning), not "cut at every length"
    overhead = split_overhead_tokens or math.inf
    runs = (
        split_by_length([len(rows[i]) for i in order], overhead, backbone.runtime.pad_cost, pass_tokens)
        if split_overhead_tokens or pass_tokens
        else [(0, len(order))]
    )
    out: list[torch.Tensor] = [None] * len(rows)  # type: ignore[list-item]
    for start, stop in runs:
        idx = sorted(order[start:stop], key=lambda i: keys[i])
        started = time.monotonic()
        part, stats = run_rows(backbone, [rows[i] for i in idx], [adapters[i] for i in idx], [tagging[i] for i in idx])
        if on_stats is not None:
            on_stats(stats, time.monotonic() - started)
        for i, result in zip(idx, part):
            out[i] = result
    results, i = [], 0
    for item in items:
        chunk = out[i : i + len(item.rows)]
        i += len(item.rows)
        if item.post is not None:
            try:
                chunk = item.post(chunk)
            except Exception as e:  # this item's answer fails; the batch's other items still get theirs
                chunk = e
        results.append(chunk)
    return results
