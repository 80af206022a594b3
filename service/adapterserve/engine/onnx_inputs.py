"""The graph's adapter inputs (onnx_graph.py): per segment, with each row's segment, for a batch of several
adapters, or one adapter's weights as stored for a batch whose rows all have it (the "1" variants)."""

from __future__ import annotations

import math

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
    # per site, each input flattened (views), with the shape the per-row feed places it at ([1, .] for a bias)
    out["flat"] = {
        key: tuple((t.reshape(-1), (1, t.shape[0]) if t.dim() == 1 else tuple(t.shape)) for t in tensors)
        for key, tensors in out.items()
        if isinstance(key, tuple)
    }
    return out


NO_ADAPTER: dict = {"pre": 1.0, "act": 0}  # a row without an adapter: zeros at every site


def per_row_inputs(
    plan: AdapterBatch,
    layers: int,
    hidden: int,
    widths: dict[str, tuple[int, int]],
    lora: tuple[str, ...] = LINEAR_SITES,
    bottleneck: tuple[str, ...] = BN_SITES,
    pack_of=pack,
) -> list[np.ndarray]:
    """The per-row graph's adapter inputs for this batch, in input_names order: `owner` [B], each row's segment,
    then per site each segment's weights as stored, stacked [S, ...]; the graph gives each row its segment's (a
    Gather, in ONNX Runtime's C++). A site's rank is the largest of the batch's adapters there; a smaller one, or a
    segment without the site, is padded with zeros, which add nothing. `pack_of(adapter)` gives an adapter's packed
    sites (pack, or a runtime's cache of it).

    Every stack comes out of one torch.cat, into one buffer the inputs are views of. This runs on the inference
    thread for every mixed batch, and each torch op gives up the GIL and must take it back: under load the event
    loop holds it meanwhile, and the feed's 26 stacks per MiniLM batch took twice their CPU time in wall time
    (docs/runtimes.md)."""
    segs = plan.segments
    packs = [NO_ADAPTER if s.adapter is None else pack_of(s.adapter) for s in segs]
    zeros: dict[int, torch.Tensor] = {}
    parts: list[torch.Tensor] = []  # input by input, segment by segment: each input's [S, ...] is one run
    shapes: list[tuple[int, ...]] = []

    def place(site_parts: list, j: int, shape: tuple[int, ...]) -> None:
        """Input j of a site, every segment's, flat; `site_parts` holds each segment's pack["flat"] entry or None."""
        size = math.prod(shape)
        for entry in site_parts:
            if entry is None:
                if size not in zeros:
                    zeros[size] = torch.zeros(size)
                parts.append(zeros[size])
                continue
            flat, own = entry[j]
            if own == shape:
                parts.append(flat)
            else:  # a rank below the batch's (whichever axis holds it): zeros after it
                part = flat.view(own)
                for dim, n in enumerate(shape):
                    part = pad_to(part, n, dim)
                parts.append(part.reshape(-1))
        shapes.append(shape)

    def rank(site_parts: list) -> int:  # the first input's first axis: LoRA's A [r, in], a bottleneck's down [r, H]
        return max([e[0][1][0] for e in site_parts if e is not None], default=1)

    owner = np.repeat(np.arange(len(segs), dtype=np.int64), [s.stop - s.start for s in segs])
    out: list[np.ndarray] = [owner]
    if bottleneck:
        out.append(np.array([p["pre"] for p in packs], dtype=np.float32))
        out.append(np.eye(len(ACTS), dtype=np.float32)[[p["act"] for p in packs]])
    flats = [p.get("flat", {}) for p in packs]
    for i in range(layers):
        for site in lora:
            fan_in, fan_out = widths[site]
            los = [f.get((i, site)) for f in flats]
            r = rank(los)
            place(los, 0, (r, fan_in))
            place(los, 1, (fan_out, r))
        for site in bottleneck:
            bns = [f.get((i, site)) for f in flats]
            r = rank(bns)
            # the biases as [S, 1, .]: they broadcast over a row's positions in the graph without an Unsqueeze node
            for j, shape in enumerate(((r, hidden), (1, r), (hidden, r), (1, hidden))):
                place(bns, j, shape)
    if not shapes:
        return out
    buf = torch.cat(parts).numpy()
    offset, S = 0, len(segs)
    for shape in shapes:
        n = S * math.prod(shape)
        out.append(buf[offset : offset + n].reshape(S, *shape))
        offset += n
    return out


def one_adapter_inputs(
    packed: dict,
    layers: int,
    hidden: int,
    widths: dict[str, tuple[int, int]],
    lora: tuple[str, ...],
    bn: tuple[str, ...],
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
        for site in lora:
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
