"""The graph's adapter inputs (onnx_graph.py): per row for a batch of several adapters, or one adapter's weights
as stored for a batch whose rows all have it (the "1" variants)."""

from __future__ import annotations

import numpy as np
import torch

from ..adapters.batch import AdapterBatch
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
    bottleneck: bool = True,
    pack_of=pack,
) -> list[np.ndarray]:
    """The graph's adapter inputs for this batch, in input_names order, per row: each segment's weights copied once
    into its rows (one copy of contiguous memory: this runs on the inference thread for every mixed batch). A site's
    rank is the largest of the batch's adapters there; a smaller one, or a row without the site, is padded with
    zeros, which add nothing. `pack_of(adapter)` gives an adapter's packed sites (pack, or a runtime's cache)."""
    segs = plan.segments
    packs = [NO_ADAPTER if s.adapter is None else pack_of(s.adapter) for s in segs]

    def fill(parts: list, shape: tuple[int, ...]) -> np.ndarray:
        # torch's allocator, not numpy's: numpy's fresh megabytes page-faulted on every batch (1,900 faults and
        # 5 ms for 32 rows of MiniLM bottlenecks), torch's are reused
        out = torch.empty((segs[-1].stop, *shape)).numpy()
        for seg, part in zip(segs, parts):
            dst = out[seg.start : seg.stop]
            if part is None or tuple(part.shape) != shape:
                dst[...] = 0
            if part is not None:
                dst[(slice(None), *(slice(0, n) for n in part.shape))] = part.numpy()
        return out

    def rank(parts: list, axis: int) -> int:
        return max([p.shape[axis] for p in parts if p is not None], default=1)

    out: list[np.ndarray] = []
    if bottleneck:
        onehot = torch.eye(len(ACTS))
        out.append(fill([torch.tensor(p["pre"]) for p in packs], ()))
        out.append(fill([onehot[p["act"]] for p in packs], (len(ACTS),)))
    for i in range(layers):
        for site in LINEAR_SITES if lora else ():
            fan_in, fan_out = widths[site]
            los = [p.get((i, site)) for p in packs]
            a = [None if lo is None else lo[0] for lo in los]
            b = [None if lo is None else lo[1] for lo in los]
            r = rank(a, 0)
            out += [fill(a, (r, fan_in)), fill(b, (fan_out, r))]
        for site in BN_SITES if bottleneck else ():
            bns = [p.get((i, site)) for p in packs]
            dw, db, uw, ub = ([None if bn is None else bn[j] for bn in bns] for j in range(4))
            r = rank(dw, 0)
            # the biases as [B, 1, .]: they broadcast over a row's positions in the graph without an Unsqueeze node
            db = [None if t is None else t.unsqueeze(0) for t in db]
            ub = [None if t is None else t.unsqueeze(0) for t in ub]
            out += [fill(dw, (r, hidden)), fill(db, (1, r)), fill(uw, (hidden, r)), fill(ub, (1, hidden))]
    return out


def one_adapter_inputs(
    packed: dict, layers: int, hidden: int, widths: dict[str, tuple[int, int]], lora: bool, bn: bool
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
        for site in BN_SITES if bn else ():
            site_bn = packed.get((i, site))
            if site_bn:
                out += [arr(t) for t in site_bn]
            else:
                zeros = ((1, hidden), (1,), (hidden, 1), (hidden,))
                out += [np.zeros(shape, np.float32) for shape in zeros]
    return out
