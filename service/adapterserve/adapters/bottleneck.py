"""Bottleneck adapter math with AdapterHub semantics (`adapters` 1.3.0, Adapter.pre/forward/post).

At the end of BertSelfOutput ("mh") and BertOutput ("output"), with h = dense(x) and inp the sub-layer's
residual input, the pretrained sub-layer computes LN(h + inp). An adapter there replaces that with the
sequence below (the option names are AdapterHub's). The same code runs one adapter on its rows, or a
group of adapters at once with stacked weights (see grouped.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .activations import get_activation
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
