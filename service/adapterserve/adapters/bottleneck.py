"""Bottleneck adapter math with AdapterHub semantics (`adapters` 1.3.0, Adapter.pre/forward/post).

At the end of BertSelfOutput ("mh") and BertOutput ("output"), with h = dense(x) and inp the sub-layer's
residual input, the pretrained sub-layer computes LN(h + inp). An adapter there replaces that with the
sequence below (the option names are AdapterHub's). The same code runs one adapter on its rows, or a
group of adapters at once with stacked weights (see grouped.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import kinds
from .activations import get_activation
from .grouped import stack_bottleneck
from .model import BottleneckConfig, BottleneckSite

ADAPTER_LN_EPS = 1e-5  # adapters' own LayerNorms are nn.LayerNorm defaults, not the backbone's eps


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One adapter's Linear ([out, in] weight), or one per group member (stacked [k, out, in]; x [k, n, in])."""
    if w.dim() == 2:
        return F.linear(x, w, b)
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def _norm(x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    w, b = norm
    if w.dim() == 1:
        return F.layer_norm(x, (x.shape[-1],), w, b, ADAPTER_LN_EPS)
    return F.layer_norm(x, (x.shape[-1],), None, None, ADAPTER_LN_EPS) * w.unsqueeze(1) + b.unsqueeze(1)


def sublayer_output(
    h: torch.Tensor,
    inp: torch.Tensor,
    ln: tuple[torch.Tensor, torch.Tensor, float],
    cfg: BottleneckConfig,
    site: BottleneckSite,
) -> torch.Tensor:
    ln_w, ln_b, ln_eps = ln
    H = h.shape[-1]

    def layer_norm(t: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(t, (H,), ln_w, ln_b, ln_eps)

    residual = h if cfg.residual_before_ln is True else None
    if cfg.original_ln_before:
        h = h + inp
        if cfg.residual_before_ln == "post_add":
            residual = h
        h = layer_norm(h)
    if not cfg.residual_before_ln:
        residual = h
    if residual is None:  # "post_add" without original_ln_before: AdapterHub fails here too
        raise ValueError("residual_before_ln='post_add' requires original_ln_before=true")

    z = h if site.norm_before is None else _norm(h, site.norm_before)
    down = get_activation(cfg.non_linearity)(_linear(z, site.down_weight, site.down_bias))
    out = _linear(down, site.up_weight, site.up_bias) * site.scaling
    if cfg.adapter_residual_before_ln:
        out = out + residual
    if site.norm_after is not None:
        out = _norm(out, site.norm_after)
    if not cfg.adapter_residual_before_ln:
        out = out + residual
    if cfg.original_ln_after:
        out = layer_norm(out + inp)
    return out


NAME = "bottleneck"


def _sublayer(batch, h: torch.Tensor, inp: torch.Tensor, norm: torch.nn.LayerNorm, key, pretrained):
    """The sub-layer's output for every row, or None when no row has a bottleneck here. `pretrained()` is the
    pretrained sub-layer for the whole batch (computed only if some rows keep it)."""
    if key not in batch.sites[NAME]:
        return None
    H = h.shape[-1]
    ln = (norm.weight, norm.bias, norm.eps)
    groups: dict[tuple, list] = {}
    for seg in batch.segments:
        bn = seg.adapter.bottleneck.get(key) if seg.adapter is not None else None
        if bn is not None:
            sig = (seg.adapter.bottleneck_config, bn.norm_before is not None, bn.norm_after is not None)
            groups.setdefault(sig, []).append(seg)
    stacked = [segs for segs in groups.values() if len(segs) >= batch.group_min]
    looped = {id(seg) for segs in groups.values() if len(segs) < batch.group_min for seg in segs}
    out = None
    for segs in stacked:
        rows = batch.rows(segs, h)
        site_w = stack_bottleneck([seg.adapter.bottleneck[key] for seg in segs], H, rows)
        block = sublayer_output(rows.gather(h), rows.gather(inp), ln, segs[0].adapter.bottleneck_config, site_w)
        if rows.all:
            return block  # every row is in this group: the pretrained sub-layer is not needed
        out = rows.scatter(block, pretrained() if out is None else out)

    def seg_fn(seg):
        if id(seg) not in looped:
            return None
        sl = slice(seg.start, seg.stop)
        return sublayer_output(h[sl], inp[sl], ln, seg.adapter.bottleneck_config, seg.adapter.bottleneck[key])

    if out is None and any(id(seg) not in looped for seg in batch.segments):
        out = pretrained()  # some rows keep the pretrained sub-layer; otherwise every row has its own
    return batch.per_segment(out, seg_fn)


def _tensors(adapter):
    for s in adapter.bottleneck.values():
        yield from (s.down_weight, s.down_bias, s.up_weight, s.up_bias)
        if isinstance(s.scaling, torch.Tensor):
            yield s.scaling
        for norm in (s.norm_before, s.norm_after):
            if norm is not None:
                yield from norm


def _move(adapter, mv) -> dict:
    def site(s: BottleneckSite) -> BottleneckSite:
        return BottleneckSite(
            mv(s.down_weight),
            mv(s.down_bias),
            mv(s.up_weight),
            mv(s.up_bias),
            mv(s.scaling),
            None if s.norm_before is None else (mv(s.norm_before[0]), mv(s.norm_before[1])),
            None if s.norm_after is None else (mv(s.norm_after[0]), mv(s.norm_after[1])),
        )

    return dict(
        bottleneck={k: site(s) for k, s in adapter.bottleneck.items()},
        bottleneck_config=adapter.bottleneck_config,
    )


KIND = kinds.Kind(NAME, weights=("bottleneck",), tensors=_tensors, move=_move, sublayer=_sublayer)
