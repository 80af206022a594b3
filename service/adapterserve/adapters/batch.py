"""Per-row adapters inside one backbone pass.

A batch's rows are grouped so that each adapter's rows are contiguous (the batcher sorts them); an
`AdapterBatch` holds those segments and applies each adapter's deltas to its own rows only, so the
backbone's big matmuls run once for the whole batch. Rows without an adapter (embeddings, or an
adapter that does not use a site) pass through the pretrained computation unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .bottleneck import sublayer_output
from .grouped import RowSet, head_signature, stack_bottleneck, stack_lora, stacked_heads
from .heads import apply_head, head_input
from .ia3 import apply_scale, row_scales
from .lora import lora_delta
from .model import Adapter
from .prefix import RowPrefix, row_prefix
from .prompt import insert_prompts

# From how many adapters at one site the row-wise path (grouped.py) replaces the loop over segments. The
# loop launches a few small ops per adapter per site; the row-wise path a few ops in all, plus one copy of
# each row's adapter weights. On this CPU the row-wise path measured faster from 2 adapters on (docs/
# benchmarks.md, "Mixed-batch paths"); a GPU, where every small op is a kernel launch, uses the same
# threshold (not measured there). Both paths give the same results (tests/adapters/test_batch.py).
GROUP_MIN = 2

LN_SITES = {"mh": "attention.output.LayerNorm", "output": "output.LayerNorm"}


@dataclass(frozen=True)
class Segment:
    start: int
    stop: int
    adapter: Adapter | None


class AdapterBatch:
    def __init__(self, segments: list[Segment], group_min: int | None = None):
        self.segments = segments
        self.group_min = group_min if group_min is not None else GROUP_MIN
        self._linear_sites = {k for s in segments if s.adapter for k in (*s.adapter.lora, *s.adapter.bias)}
        self._bn_sites = {k for s in segments if s.adapter for k in s.adapter.bottleneck}
        self._ia3_sites = {k for s in segments if s.adapter for k in s.adapter.ia3}
        self._prefix_layers = {i for s in segments if s.adapter for i in s.adapter.prefix}
        self._rowsets: dict[tuple, RowSet] = {}
        self._rows_total = segments[-1].stop if segments else 0
        # Per-row inputs a runtime must honour (it may route batches that have them to this PyTorch path):
        self.has_prompts = any(s.adapter is not None and s.adapter.prompt is not None for s in segments)
        self.has_prefixes = bool(self._prefix_layers)
        self.has_ia3 = bool(self._ia3_sites)

    def _rows(self, segs: list[Segment], x: torch.Tensor) -> RowSet:
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

    def _per_segment(self, full: torch.Tensor | None, fn) -> torch.Tensor:
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
        ia3 = key in self._ia3_sites
        if ia3:  # rows without an input scale here are multiplied by exactly one
            scale = row_scales(self.segments, key, True, x.shape[0], x)
            x = x if scale is None else apply_scale(x, scale)
        y = F.linear(x, module.weight, module.bias)
        if key in self._linear_sites:
            y = self._lora_and_bias(x, y, module, key)
        if ia3:
            scale = row_scales(self.segments, key, False, x.shape[0], y)
            y = y if scale is None else apply_scale(y, scale)
        return y

    def _lora_and_bias(self, x: torch.Tensor, y: torch.Tensor, module: torch.nn.Linear, key) -> torch.Tensor:
        lora_segs = [seg for seg in self.segments if seg.adapter is not None and key in seg.adapter.lora]
        grouped = len(lora_segs) >= self.group_min
        if grouped:
            rows = self._rows(lora_segs, x)
            a, b = stack_lora([seg.adapter.lora[key] for seg in lora_segs], rows)
            xs = rows.gather(x)
            xs3 = xs if xs.dim() == 3 else xs.unsqueeze(1)  # the pooler's [B, H] input
            delta = torch.bmm(torch.bmm(xs3, a.transpose(1, 2)), b.transpose(1, 2)).reshape(rows.n, *y.shape[1:])
            y = rows.add(y, delta)

        def seg_fn(seg: Segment):
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

        return self._per_segment(y, seg_fn)

    def prefix(self, layer: int, like: torch.Tensor) -> RowPrefix | None:
        """Per-row prefix keys/values for this layer's attention (padded and masked), or None."""
        if layer not in self._prefix_layers:
            return None
        return row_prefix(self.segments, layer, like.shape[0], like)

    def word_embeddings(self, words: torch.Tensor) -> torch.Tensor:
        return insert_prompts(words, self.segments) if self.has_prompts else words

    def position_shifts(self) -> list[int]:
        """Per row, where its position ids start (a PEFT prefix moves them right)."""
        shifts = [0] * self._rows_total
        for seg in self.segments:
            if seg.adapter is not None and seg.adapter.position_shift:
                shifts[seg.start : seg.stop] = [seg.adapter.position_shift] * (seg.stop - seg.start)
        return shifts

    def _bias_shift(self, y: torch.Tensor, old_bias: torch.Tensor, key: tuple[int, str]) -> torch.Tensor:
        """Rows whose adapter replaces this bias (PEFT bias="all"/"lora_only") get the new one."""
        if key not in self._linear_sites:
            return y

        def seg_fn(seg: Segment):
            new = seg.adapter.bias.get(key)
            return None if new is None else y[seg.start : seg.stop] - old_bias + new

        return self._per_segment(y, seg_fn)

    def embeddings(self, x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
        return self._bias_shift(x, norm.bias, (-1, "embeddings.LayerNorm"))

    def pooler(self, hidden: torch.Tensor, dense: torch.nn.Linear) -> torch.Tensor:
        return torch.tanh(self.linear(hidden[:, 0], dense, -1, "pooler.dense"))

    def sublayer(
        self, h: torch.Tensor, inp: torch.Tensor, norm: torch.nn.LayerNorm, layer: int, site: str
    ) -> torch.Tensor:
        H = h.shape[-1]
        ln = (norm.weight, norm.bias, norm.eps)

        def pretrained() -> torch.Tensor:
            base = F.layer_norm(h + inp, (H,), norm.weight, norm.bias, norm.eps)
            return self._bias_shift(base, norm.bias, (layer, LN_SITES[site]))

        key = (layer, site)
        if key not in self._bn_sites:
            return pretrained()
        groups: dict[tuple, list[Segment]] = {}
        for seg in self.segments:
            bn = seg.adapter.bottleneck.get(key) if seg.adapter is not None else None
            if bn is not None:
                sig = (seg.adapter.bottleneck_config, bn.norm_before is not None, bn.norm_after is not None)
                groups.setdefault(sig, []).append(seg)
        stacked = [segs for segs in groups.values() if len(segs) >= self.group_min]
        looped = {id(seg) for segs in groups.values() if len(segs) < self.group_min for seg in segs}
        out = None
        for segs in stacked:
            rows = self._rows(segs, h)
            site_w = stack_bottleneck([seg.adapter.bottleneck[key] for seg in segs], H, rows)
            block = sublayer_output(rows.gather(h), rows.gather(inp), ln, segs[0].adapter.bottleneck_config, site_w)
            if rows.all:
                return block  # every row is in this group: the pretrained sub-layer is not needed
            out = rows.scatter(block, pretrained() if out is None else out)

        def seg_fn(seg: Segment):
            if id(seg) not in looped:
                return None
            sl = slice(seg.start, seg.stop)
            return sublayer_output(h[sl], inp[sl], ln, seg.adapter.bottleneck_config, seg.adapter.bottleneck[key])

        if out is None and any(id(seg) not in looped for seg in self.segments):
            out = pretrained()  # some rows keep the pretrained sub-layer; otherwise every row has its own
        return self._per_segment(out, seg_fn)

    def heads(self, hidden: torch.Tensor, pooled: torch.Tensor | None) -> list[torch.Tensor | None]:
        """Logits per segment (None for rows without an adapter), in segment order."""
        out: list[torch.Tensor | None] = [None] * len(self.segments)
        groups: dict[tuple, list[int]] = {}
        for j, seg in enumerate(self.segments):
            if seg.adapter is not None:
                groups.setdefault(head_signature(seg.adapter.head), []).append(j)
        for members in groups.values():
            segs = [self.segments[j] for j in members]
            if len(segs) < self.group_min:
                for j, seg in zip(members, segs):
                    sl = slice(seg.start, seg.stop)
                    x = head_input(seg.adapter.head, hidden[sl], None if pooled is None else pooled[sl])
                    out[j] = apply_head(seg.adapter.head, x)
                continue
            rows = self._rows(segs, hidden)
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
