"""The graph's adapter inputs (onnx_graph.py): per segment, with each row's segment, for a batch of several
adapters, or one adapter's weights as stored for a batch whose rows all have it (the "1" variants)."""

from __future__ import annotations

import numpy as np
import torch

from ..adapters.batch import AdapterBatch
from ..adapters.grouped import pad_to
from ..adapters.model import LINEAR_SITES, Adapter
from .onnx_graph import ACT_INDEX, ACTS, BN_SITES


def pack(adapter: Adapter) -> dict:
    """An adapter's graph inputs per site, its weights as stored with the scale folded in: the tensors themselves
    where the scale is 1, so a runtime can keep one per adapter at little cost (OnnxRuntime caches them)."""
    out: dict = {}
    for (i, site), lo in adapter.lora.items():
        if i >= 0:  # the pooler's LoRA runs on torch after the graph
            out[(i, site)] = (lo.a, lo.b if lo.scaling == 1 else lo.b * lo.scaling)
    for (i, site), bn in adapter.bottleneck.items():
        scale = bn.scaling
        one = not isinstance(scale, torch.Tensor) and float(scale) == 1.0
        # the scale multiplies the output's channels: the rows of the up weight as stored, [H, r]
        uw = (
            bn.up_weight if one else bn.up_weight * (scale.reshape(-1, 1) if isinstance(scale, torch.Tensor) else scale)
        )
        ub = bn.up_bias if one else bn.up_bias * scale
        out[(i, site)] = (bn.down_weight, bn.down_bias, uw, ub)
    cfg = adapter.bottleneck_config if adapter.bottleneck else None
    out["pre"] = float(cfg is None or cfg.original_ln_before)
    out["act"] = ACT_INDEX[cfg.non_linearity.lower()] if cfg is not None else 0
    return out


NO_ADAPTER: dict = {"pre": 1.0, "act": 0}  # a row without an adapter: zeros at every site


def per_row_inputs(
    plan: AdapterBatch,
    layers: int,
    hidden: int,
    widths: dict[str, tuple[int, int]],
    lora: bool = True,
    bottleneck: tuple[str, ...] = BN_SITES,
    pack_of=pack,
) -> list[np.ndarray]:
    """The per-row graph's adapter inputs for this batch, in input_names order: `owner` [B], each row's segment,
    then per site each segment's weights as stored, stacked [S, ...]; the graph gives each row its segment's (a
    Gather, in ONNX Runtime's C++). One torch.stack per input: this runs on the inference thread for every mixed
    batch, and copying each segment's weights into its rows from Python cost 8.6 ms per pass of 32 rows of
    MiniLM bottlenecks (docs/runtimes.md). A site's rank is the largest of the batch's adapters there; a smaller
    one, or a segment without the site, is padded with zeros, which add nothing. `pack_of(adapter)` gives an
    adapter's packed sites (pack, or a runtime's cache of it)."""
    segs = plan.segments
    packs = [NO_ADAPTER if s.adapter is None else pack_of(s.adapter) for s in segs]
    zeros: dict[tuple, torch.Tensor] = {}

    def fit(part: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
        if part is None:
            if shape not in zeros:
                zeros[shape] = torch.zeros(shape)
            return zeros[shape]
        if tuple(part.shape) != shape:  # a rank below the batch's (whichever axis holds it): zeros after it
            for dim, size in enumerate(shape):
                part = pad_to(part, size, dim)
        return part

    def stack(parts: list, shape: tuple[int, ...]) -> np.ndarray:
        return torch.stack([fit(p, shape) for p in parts]).numpy()

    def rank(parts: list, axis: int) -> int:
        return max([p.shape[axis] for p in parts if p is not None], default=1)

    owner = np.repeat(np.arange(len(segs), dtype=np.int64), [s.stop - s.start for s in segs])
    out: list[np.ndarray] = [owner]
    if bottleneck:
        out.append(np.array([p["pre"] for p in packs], dtype=np.float32))
        out.append(np.eye(len(ACTS), dtype=np.float32)[[p["act"] for p in packs]])
    for i in range(layers):
        for site in LINEAR_SITES if lora else ():
            fan_in, fan_out = widths[site]
            los = [p.get((i, site)) for p in packs]
            a = [None if lo is None else lo[0] for lo in los]
            b = [None if lo is None else lo[1] for lo in los]
            r = rank(a, 0)
            out += [stack(a, (r, fan_in)), stack(b, (fan_out, r))]
        for site in bottleneck:
            bns = [p.get((i, site)) for p in packs]
            dw, db, uw, ub = ([None if bn is None else bn[j] for bn in bns] for j in range(4))
            r = rank(dw, 0)
            # the biases as [S, 1, .]: they broadcast over a row's positions in the graph without an Unsqueeze node
            db = [None if t is None else t.unsqueeze(0) for t in db]
            ub = [None if t is None else t.unsqueeze(0) for t in ub]
            out += [stack(dw, (r, hidden)), stack(db, (1, r)), stack(uw, (hidden, r)), stack(ub, (1, hidden))]
    return out


def one_adapter_inputs(
    packed: dict, layers: int, hidden: int, widths: dict[str, tuple[int, int]], lora: bool, bn: tuple[str, ...]
):
    """A "1" variant's adapter inputs, in input_names order, from one adapter's pack: its weights as stored, passed
    to the graph without a copy where the pack holds the tensors themselves; zeros of rank 1 at the sites it does
    not use. The runtime keeps them with the pack."""
    out: list[np.ndarray] = []

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.contiguous().numpy()

    if bn:
        out.append(np.array([packed["pre"]], dtype=np.float32))
        out.append(np.eye(len(ACTS), dtype=np.float32)[packed["act"]])
    for i in range(layers):
        for site in LINEAR_SITES if lora else ():
            fan_in, fan_out = widths[site]
            lo = packed.get((i, site))
            zeros = ((1, fan_in), (fan_out, 1))
            out += [arr(t) for t in lo] if lo else [np.zeros(shape, np.float32) for shape in zeros]
        for site in bn:
            site_bn = packed.get((i, site))
            if site_bn:
                out += [arr(t) for t in site_bn]
            else:
                zeros = ((1, hidden), (1,), (hidden, 1), (hidden,))
                out += [np.zeros(shape, np.float32) for shape in zeros]
    return out
