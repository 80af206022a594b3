"""Many adapters in one set of batched matmuls (the gather path for mixed batches).

With many adapters in a batch, a Python loop over segments launches a few small ops per adapter per
site. Here the adapters of a group (same bottleneck options) are stacked per site, padded to the
largest width with zeros — exact, since a zero down-row feeds a zero up-column — and each adapter's
rows are gathered into a [k, rows_max * T, H] block, so every site costs a handful of bmm calls
whatever the number of adapters. LoRA deltas are done the same way (scaling folded into B).
"""

from __future__ import annotations

import torch

from .model import BottleneckSite, LoraSite


def _pad_to(t: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    missing = size - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t, t.new_zeros(shape)], dim=dim)


def stack_bottleneck(sites: list[BottleneckSite], hidden: int) -> BottleneckSite:
    r = max(s.down_weight.shape[0] for s in sites)
    ref = sites[0].down_weight

    def scaling(s: BottleneckSite) -> torch.Tensor:
        if isinstance(s.scaling, torch.Tensor):
            return s.scaling.to(ref.dtype).expand(hidden)
        return ref.new_full((hidden,), float(s.scaling))

    def norms(attr: str):
        if getattr(sites[0], attr) is None:
            return None
        return (torch.stack([getattr(s, attr)[0] for s in sites]), torch.stack([getattr(s, attr)[1] for s in sites]))

    return BottleneckSite(
        down_weight=torch.stack([_pad_to(s.down_weight, r, 0) for s in sites]),
        down_bias=torch.stack([_pad_to(s.down_bias, r, 0) for s in sites]),
        up_weight=torch.stack([_pad_to(s.up_weight, r, 1) for s in sites]),
        up_bias=torch.stack([s.up_bias for s in sites]),
        scaling=torch.stack([scaling(s) for s in sites]).unsqueeze(1),
        norm_before=norms("norm_before"), norm_after=norms("norm_after"),
    )


def stack_lora(sites: list[LoraSite]) -> tuple[torch.Tensor, torch.Tensor]:
    r = max(s.a.shape[0] for s in sites)
    a = torch.stack([_pad_to(s.a, r, 0) for s in sites])  # [k, r, in]
    b = torch.stack([_pad_to(s.b * s.scaling, r, 1) for s in sites])  # [k, out, r]
    return a, b


class RowGroups:
    """Gathers the rows of segments into a padded [k, m, ...] block and scatters results back.

    Segments longer than the average are cut into pieces of at most m rows (m = the mean segment
    length, rounded up), so one hot adapter cannot pad every other adapter's block to its size: the
    block holds at most about twice the real rows. `owner[j]` is the segment of piece j.
    """

    def __init__(self, spans: list[tuple[int, int]], batch_rows: int, device: torch.device):
        total = sum(stop - start for start, stop in spans)
        self.m = max(1, -(-total // len(spans)))
        pieces = [(lo, min(lo + self.m, stop), j) for j, (start, stop) in enumerate(spans)
                  for lo in range(start, stop, self.m)]
        self.owner = [j for _, _, j in pieces]
        self.k = len(pieces)
        index = torch.full((self.k, self.m), batch_rows, dtype=torch.long)  # batch_rows = a zero pad row
        for j, (start, stop, _) in enumerate(pieces):
            index[j, : stop - start] = torch.arange(start, stop)
        valid = index < batch_rows
        self.index = index.to(device)
        self.valid = valid.to(device)
        self.rows = self.index[self.valid]  # the batch rows, in block order

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, H] -> [k, m * T, H]"""
        padded = torch.cat([x, x.new_zeros((1, *x.shape[1:]))], dim=0)
        block = padded.index_select(0, self.index.reshape(-1))
        return block.reshape(self.k, self.m * x.shape[1], x.shape[2])

    def scatter(self, block: torch.Tensor, into: torch.Tensor) -> torch.Tensor:
        """Write a [k, m * T, H] block's valid rows into a copy of `into` [B, T, H]."""
        T, H = into.shape[1], into.shape[2]
        rows = block.reshape(self.k, self.m, T, H)[self.valid]
        return into.index_copy(0, self.rows, rows)
