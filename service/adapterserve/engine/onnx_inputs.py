"""The graph's adapter inputs (onnx_graph.py): per row for a batch of several adapters, or one adapter's weights
as stored for a batch whose rows all have it (the "1" variants)."""

from __future__ import annotations

import numpy as np
import torch

from ..adapters.batch import AdapterBatch
from ..adapters.grouped import pad_to
from ..adapters.model import LINEAR_SITES, Adapter
from .onnx_graph import ACT_INDEX, ACTS, BN_SITES


def pack(adapter: Adapter) -> dict:
    """An adapter's graph inputs per site, in the graph's layout (transposed, scale folded in): views of its weights
    where the scale is 1, so a runtime can keep one per adapter at little cost (OnnxRuntime caches them)."""
    out: dict = {}
    for (i, site), lo in adapter.lora.items():
        if i >= 0:  # the pooler's LoRA runs on torch after the graph
            b = lo.b if lo.scaling == 1 else lo.b * lo.scaling
            out[(i, site)] = (lo.a.t(), b.t())
    for (i, site), bn in adapter.bottleneck.items():
        scale = bn.scaling
        one = not isinstance(scale, torch.Tensor) and float(scale) == 1.0
        uw = bn.up_weight.t() if one else bn.up_weight.t() * scale
        ub = bn.up_bias if one else bn.up_bias * scale
        out[(i, site)] = (bn.down_weight.t(), bn.down_bias, uw, ub)
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
    dtype,
    lora: bool = True,
    bottleneck: bool = True,
    pack_of=pack,
) -> list:
    """The graph's adapter inputs for this batch, in input_names order: per segment, stacked, repeated per row.
    `pack_of(adapter)` gives an adapter's packed sites (pack, or a runtime's cache of it)."""
    sizes = [s.stop - s.start for s in plan.segments]
    counts = torch.tensor(sizes)
    packs = [NO_ADAPTER if s.adapter is None else pack_of(s.adapter) for s in plan.segments]
    zeros: dict[tuple, torch.Tensor] = {}

    def zero(*shape) -> torch.Tensor:
        if shape not in zeros:
            zeros[shape] = torch.zeros(shape, dtype=dtype)
        return zeros[shape]

    def rows(per_seg: list[torch.Tensor]) -> torch.Tensor:
        if len(per_seg) == 1:
            return per_seg[0].unsqueeze(0).expand(sizes[0], *per_seg[0].shape)
        return torch.repeat_interleave(torch.stack(per_seg), counts, dim=0)

    out: list[torch.Tensor] = []
    if bottleneck:
        onehot = torch.eye(len(ACTS), dtype=dtype)
        out.append(rows([torch.tensor(p["pre"], dtype=dtype) for p in packs]))
        out.append(rows([onehot[p["act"]] for p in packs]))
    for i in range(layers):
        for site in LINEAR_SITES if lora else ():
            fan_in, fan_out = widths[site]
            los = [p.get((i, site)) for p in packs]
            r = max([lo[0].shape[1] for lo in los if lo is not None], default=1)
            out.append(rows([zero(fan_in, r) if lo is None else pad_to(lo[0], r, 1) for lo in los]))
            out.append(rows([zero(r, fan_out) if lo is None else pad_to(lo[1], r, 0) for lo in los]))
        for site in BN_SITES if bottleneck else ():
            bns = [p.get((i, site)) for p in packs]
            r = max([bn[0].shape[1] for bn in bns if bn is not None], default=1)
            out.append(rows([zero(hidden, r) if bn is None else pad_to(bn[0], r, 1) for bn in bns]))
            out.append(rows([zero(r) if bn is None else pad_to(bn[1], r, 0) for bn in bns]))
            out.append(rows([zero(r, hidden) if bn is None else pad_to(bn[2], r, 0) for bn in bns]))
            out.append(rows([zero(hidden) if bn is None else bn[3] for bn in bns]))
    return out


def one_adapter_inputs(
    packed: dict, layers: int, hidden: int, widths: dict[str, tuple[int, int]], lora: bool, bn: bool
):
    """A "1" variant's adapter inputs, in input_names order, from one adapter's pack: its weights as stored (the
    pack's transposed views transposed back), so they are passed to the graph without a copy where the pack holds
    views; zeros of rank 1 at the sites it does not use. The runtime keeps them with the pack."""
    out: list[np.ndarray] = []

    def arr(t: torch.Tensor) -> np.ndarray:
        return (t.t() if t.dim() == 2 else t).contiguous().numpy()

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
