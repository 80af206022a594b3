"""Per-row adapters inside one backbone pass.

A batch's rows are grouped so that each adapter's rows are contiguous (the batcher sorts them); an
`AdapterBatch` holds those segments and applies each adapter's deltas to its own rows only, so the
backbone's big matmuls run once for the whole batch. Rows without an adapter (embeddings, or an
adapter that does not use a site) pass through the pretrained computation unchanged. What each adapter
kind does at a hook is the kind's (adapters/kinds.py); this class finds which kinds a batch uses and calls
their hooks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import kinds
from .grouped import RowSet, head_signature, stacked_heads
from .heads import apply_head, head_input
from .model import Adapter
from .prefix import RowPrefix

# From how many adapters at one site the row-wise path (grouped.py) replaces the loop over segments. The
# loop launches a few small ops per adapter per site; the row-wise path a few ops in all, plus one copy of
# each row's adapter weights. On this CPU the row-wise path measured faster from 2 adapters on (docs/
# benchmarks.md, "Mixed-batch paths"); a GPU, where every small op is a kernel launch, uses the same
# threshold (not measured there). Both paths give the same results (tests/adapters/test_batch.py).
GROUP_MIN = 2
# Heads are the exception on a CPU: their weights are large (H x H for AdapterHub's classification heads), and the
# row-wise path copies them once per row, so the loop, which reads each head once, measured faster at every count
# (MiniLM, 32 rows: 24 adapters 5.0 ms row-wise against 1.9 ms looped; 18 adapters 4.2 against 0.8; docs/runtimes.md).
# A GPU keeps GROUP_MIN for heads (not measured there).
CPU_HEAD_GROUP_MIN = math.inf

LN_SITES = {"mh": "attention.output.LayerNorm", "output": "output.LayerNorm"}


@dataclass(frozen=True)
class Segment:
    start: int
    stop: int
    adapter: Adapter | None


class AdapterBatch:
    """The batch's segments and, per kind present (adapters/kinds.py), the sites its rows use; each hook
    below calls the present kinds that define it, in registration order."""

    def __init__(self, segments: list[Segment], group_min: int | None = None):
        self.segments = segments
        self.group_min = group_min if group_min is not None else GROUP_MIN
        self._head_group_min = group_min  # None: by the device (CPU_HEAD_GROUP_MIN), decided in heads()
        adapters = [s.adapter for s in segments if s.adapter is not None]
        # kind name -> the (layer, site) keys or layers where some row uses it; only kinds some row uses
        self.sites: dict[str, set] = {}
        for kind in kinds.all_kinds():
            used = set().union(*(kind.sites(a) for a in adapters))
            if used:
                self.sites[kind.name] = used
        present = [kinds.get(name) for name in self.sites]
        self._linear_input = [k for k in present if k.linear_input is not None]
        self._linear_output = [k for k in present if k.linear_output is not None]
        self._norm_bias = [k for k in present if k.norm_bias is not None]
        self._sublayer = [k for k in present if k.sublayer is not None]
        self._prefix = [k for k in present if k.prefix is not None]
        self._word_embeddings = [k for k in present if k.word_embeddings is not None]
        self._rowsets: dict[tuple, RowSet] = {}
        self._rows_total = segments[-1].stop if segments else 0
        # Per-row inputs a runtime must honour (it may route batches that have them to this PyTorch path):
        self.has_prompts = bool(self._word_embeddings)
        self.has_prefixes = bool(self._prefix)
        self.has_ia3 = "ia3" in self.sites

    def rows(self, segs: list[Segment], x: torch.Tensor) -> RowSet:
        """One RowSet per group of segments and pass: most sites share it, and on a GPU each new one costs
        host-to-device copies of its indices."""
        spans = tuple((seg.start, seg.stop) for seg in segs)
        if spans not in self._rowsets:
            self._rowsets[spans] = RowSet(list(spans), x.shape[0], x.device)
        return self._rowsets[spans]

    @classmethod
    def from_row_adapters(cls, adapters: list[Adapter | None], group_min: int | None = None) -> AdapterBatch:
        """Segments from a per-row list whose equal adapters are already contiguous."""
        segments: list[Segment] = []
        start = 0
        for i in range(1, len(adapters) + 1):
            if i == len(adapters) or adapters[i] is not adapters[start]:
                segments.append(Segment(start, i, adapters[start]))
                start = i
        return cls(segments, group_min)

    def per_segment(self, full: torch.Tensor | None, fn) -> torch.Tensor:
        """Replace each segment's rows of `full` by fn(segment) where fn returns a tensor, else keep.
        `full` may be None when fn answers for every segment."""
        pieces, changed = [], False
        for seg in self.segments:
            out = fn(seg) if seg.adapter is not None else None
            if out is None:
                pieces.append(full[seg.start : seg.stop])
            else:
                pieces.append(out)
                changed = True
        if not changed:
            return full
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)

    def linear(self, x: torch.Tensor, module: torch.nn.Linear, layer: int, site: str) -> torch.Tensor:
        key = (layer, site)
        for kind in self._linear_input:
            x = kind.linear_input(self, x, key)
        y = F.linear(x, module.weight, module.bias)
        for kind in self._linear_output:
            y = kind.linear_output(self, x, y, module, key)
        return y

    def prefix(self, layer: int, like: torch.Tensor) -> RowPrefix | None:
        """Per-row prefix keys/values for this layer's attention (padded and masked), or None."""
        for kind in self._prefix:
            out = kind.prefix(self, layer, like)
            if out is not None:
                return out
        return None

    def word_embeddings(self, words: torch.Tensor) -> torch.Tensor:
        for kind in self._word_embeddings:
            words = kind.word_embeddings(self, words)
        return words

    def position_shifts(self) -> list[int]:
        """Per row, where its position ids start (a PEFT prefix moves them right)."""
        shifts = [0] * self._rows_total
        for seg in self.segments:
            if seg.adapter is not None and seg.adapter.position_shift:
                shifts[seg.start : seg.stop] = [seg.adapter.position_shift] * (seg.stop - seg.start)
        return shifts

    def _norm_biases(self, y: torch.Tensor, old_bias: torch.Tensor, key: tuple[int, str]) -> torch.Tensor:
        for kind in self._norm_bias:
            y = kind.norm_bias(self, y, old_bias, key)
        return y

    def embeddings(self, x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
        return self._norm_biases(x, norm.bias, (-1, "embeddings.LayerNorm"))

    def pooler(self, hidden: torch.Tensor, dense: torch.nn.Linear) -> torch.Tensor:
        return torch.tanh(self.linear(hidden[:, 0], dense, -1, "pooler.dense"))

    def sublayer(
        self, h: torch.Tensor, inp: torch.Tensor, norm: torch.nn.LayerNorm, layer: int, site: str
    ) -> torch.Tensor:
        def pretrained() -> torch.Tensor:
            base = F.layer_norm(h + inp, (h.shape[-1],), norm.weight, norm.bias, norm.eps)
            return self._norm_biases(base, norm.bias, (layer, LN_SITES[site]))

        # A kind that replaces the sub-layer answers for every row (calling `pretrained` for rows it leaves
        # alone); the first that answers wins: kinds that replace a sub-layer do not compose (only bottleneck does).
        for kind in self._sublayer:
            out = kind.sublayer(self, h, inp, norm, (layer, site), pretrained)
            if out is not None:
                return out
        return pretrained()

    def heads(self, hidden: torch.Tensor, pooled: torch.Tensor | None) -> list[torch.Tensor | None]:
        """Logits per segment (None for rows without an adapter), in segment order."""
        out: list[torch.Tensor | None] = [None] * len(self.segments)
        groups: dict[tuple, list[int]] = {}
        for j, seg in enumerate(self.segments):
            if seg.adapter is not None:
                groups.setdefault(head_signature(seg.adapter.head), []).append(j)
        group_min = self._head_group_min
        if group_min is None:
            group_min = CPU_HEAD_GROUP_MIN if hidden.device.type == "cpu" else GROUP_MIN
        for members in groups.values():
            segs = [self.segments[j] for j in members]
            if len(segs) < group_min:
                for j, seg in zip(members, segs):
                    sl = slice(seg.start, seg.stop)
                    x = head_input(seg.adapter.head, hidden[sl], None if pooled is None else pooled[sl])
                    out[j] = apply_head(seg.adapter.head, x)
                continue
            rows = self.rows(segs, hidden)
            x = rows.gather(head_input(segs[0].adapter.head, hidden, pooled))
            logits = stacked_heads([seg.adapter.head for seg in segs], x, rows)
            offset = 0
            for j, seg, n in zip(members, segs, rows.sizes):
                out[j] = logits[offset : offset + n, ..., : seg.adapter.head.num_labels]
                offset += n
        return out

    @property
    def needs_pooler(self) -> bool:
        return any(s.adapter is not None and s.adapter.head.pooling == "pooler" for s in self.segments)


EMPTY = AdapterBatch([])
