"""Many adapters in one set of batched matmuls: the row-wise path for mixed batches.

With several adapters at a site, a loop over segments launches a few small ops per adapter. Here each
row carries its own adapter's weights, stacked into [rows, out, in] tensors (padded to the widest
adapter with zeros, which is exact: a zero down-row feeds a zero up-column, a zero LoRA rank adds
nothing), so a site costs a handful of bmm calls whatever the number of adapters. Only the rows of the
group are touched; when the group is the whole batch nothing is gathered or scattered at all.
"""

from __future__ import annotations

import torch

from .activations import get_activation
from .model import BottleneckSite, Head, LoraSite


def pad_to(t: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """`t` grown to `size` along `dim` with zeros (a lower-rank adapter among higher-rank ones: exact)."""
    missing = size - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t, t.new_zeros(shape)], dim=dim)


class RowSet:
    """The batch rows of some segments (each a (start, stop) span, in batch order).

    Per-segment stacks ([segments, ...]) become per-row ones with `expand`: one index_select on the device
    rather than a Python list of one tensor per row (a GPU batch has hundreds of rows).
    """

    def __init__(self, spans: list[tuple[int, int]], batch_rows: int, device: torch.device):
        self.sizes = [stop - start for start, stop in spans]
        self.n = sum(self.sizes)
        self.all = self.n == batch_rows  # spans are disjoint: covering B rows means every row
        self.index = None if self.all else torch.cat([torch.arange(start, stop) for start, stop in spans]).to(device)
        self.owner = (
            None
            if all(k == 1 for k in self.sizes)
            else torch.repeat_interleave(torch.arange(len(spans)), torch.tensor(self.sizes)).to(device)
        )

    def expand(self, per_segment: torch.Tensor) -> torch.Tensor:
        return per_segment if self.owner is None else per_segment.index_select(0, self.owner)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.all else x.index_select(0, self.index)

    def scatter(self, rows: torch.Tensor, into: torch.Tensor) -> torch.Tensor:
        return rows if self.all else into.index_copy(0, self.index, rows)

    def add(self, into: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return into + delta if self.all else into.index_add(0, self.index, delta)


def stack_bottleneck(sites: list[BottleneckSite], hidden: int, rows: RowSet) -> BottleneckSite:
    """One BottleneckSite whose tensors have a leading axis with one entry per row (sites: one per segment)."""
    r = max(s.down_weight.shape[0] for s in sites)
    ref = sites[0].down_weight

    def scaling(s: BottleneckSite) -> torch.Tensor:
        if isinstance(s.scaling, torch.Tensor):
            return s.scaling.to(ref.dtype).expand(hidden)
        return ref.new_full((hidden,), float(s.scaling))

    def stack(ts: list[torch.Tensor]) -> torch.Tensor:
        return rows.expand(torch.stack(ts))

    def norms(attr: str):
        if getattr(sites[0], attr) is None:
            return None
        return stack([getattr(s, attr)[0] for s in sites]), stack([getattr(s, attr)[1] for s in sites])

    if all(not isinstance(s.scaling, torch.Tensor) for s in sites) and len({float(s.scaling) for s in sites}) == 1:
        scale = float(sites[0].scaling)  # the common case: no [rows, 1, H] tensor to build or multiply by
    else:
        scale = stack([scaling(s) for s in sites]).unsqueeze(1)
    return BottleneckSite(
        down_weight=stack([pad_to(s.down_weight, r, 0) for s in sites]),
        down_bias=stack([pad_to(s.down_bias, r, 0) for s in sites]),
        up_weight=stack([pad_to(s.up_weight, r, 1) for s in sites]),
        up_bias=stack([s.up_bias for s in sites]),
        scaling=scale,
        norm_before=norms("norm_before"),
        norm_after=norms("norm_after"),
    )


def stack_lora(sites: list[LoraSite], rows: RowSet) -> tuple[torch.Tensor, torch.Tensor]:
    """A [rows, r, in] and B [rows, out, r] with each site's scaling folded into B (sites: one per segment)."""
    r = max(s.a.shape[0] for s in sites)
    a = torch.stack([pad_to(s.a, r, 0) for s in sites])
    b = torch.stack([pad_to(s.b * s.scaling if s.scaling != 1 else s.b, r, 1) for s in sites])
    return rows.expand(a), rows.expand(b)


def head_signature(head: Head) -> tuple:
    """Heads with equal signatures stack: same input, activation, layer shapes (but the label count)."""
    last = len(head.layers) - 1
    return (
        head.pooling,
        head.activation,
        tuple((w.shape[1], None if i == last else w.shape[0], b is None) for i, (w, b) in enumerate(head.layers)),
    )


def stacked_heads(heads: list[Head], x: torch.Tensor, rows: RowSet) -> torch.Tensor:
    """Heads of one signature (one per segment) on their rows' x [rows, H] or [rows, T, H]; the labels padded
    to the most."""
    act = get_activation(heads[0].activation)
    h = x if x.dim() == 3 else x.unsqueeze(1)
    last = len(heads[0].layers) - 1
    labels = max(hd.layers[-1][0].shape[0] for hd in heads)
    for i in range(last + 1):
        size = labels if i == last else heads[0].layers[i][0].shape[0]
        w = rows.expand(torch.stack([pad_to(hd.layers[i][0], size, 0) for hd in heads])).transpose(1, 2)
        if heads[0].layers[i][1] is None:
            h = torch.bmm(h, w)
        else:
            b = rows.expand(torch.stack([pad_to(hd.layers[i][1], size, 0) for hd in heads])).unsqueeze(1)
            h = torch.baddbmm(b, h, w)
        if i < last:
            h = act(h)
    return h if x.dim() == 3 else h.squeeze(1)
