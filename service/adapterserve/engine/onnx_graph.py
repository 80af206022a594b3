"""The encoder as one exportable graph with per-row adapter weights as inputs.

Each layer takes, per row, a LoRA pair at each of its six linear sites (A^T [B, in, r], B^T*scale [B, r, out])
and a bottleneck at each of its two sub-layer sites (down^T [B, H, r], down bias [B, r], up^T*scale [B, r, H],
up bias*scale [B, H]). A row without an adapter, or whose adapter does not use a site, gets zeros there, which
is exact: a zero LoRA adds nothing, and with zero up-weights the bottleneck sub-layer below reduces to the
pretrained LN(h + inp). The bottleneck is AdapterHub's `seq_bn` (Pfeiffer) form: original_ln_before=True,
residual_before_ln=True, original_ln_after=True, relu, no adapter LayerNorms, at either site:
    LN(up(relu(down(LN(h + inp)))) * scale + h + inp)
Anything else (other bottleneck options, bias sites, the pooler's or embeddings' sites, other kinds) runs on
torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..adapters.batch import AdapterBatch
from ..adapters.model import LINEAR_SITES, Adapter, BottleneckConfig

BN_SITES = ("mh", "output")
GRAPH_CONFIG = BottleneckConfig(
    non_linearity="relu", original_ln_before=True, original_ln_after=True, residual_before_ln=True
)


def input_names(layers: int) -> list[str]:
    names = ["input_ids", "attention_mask", "token_type_ids"]
    for i in range(layers):
        names += [f"l{i}.{s}.{p}" for s in LINEAR_SITES for p in ("a", "b")]
        names += [f"l{i}.{s}.{p}" for s in BN_SITES for p in ("dw", "db", "uw", "ub")]
    return names


class DeltaEncoder(torch.nn.Module):
    """Backbone.encode with dense per-row adapter inputs (deltas=False: the plain encoder, no extra inputs)."""

    def __init__(self, backbone, deltas: bool):
        super().__init__()
        self.m, self.bb, self.deltas = backbone.model, backbone, deltas

    def forward(self, ids, mask, types, *w):
        m, act = self.m, self.bb._act
        x = m.embeddings(input_ids=ids, token_type_ids=types)
        if self.bb._project is not None:  # ELECTRA with embedding_size != hidden_size (Backbone.encode does too)
            x = self.bb._project(x)
        B, T, _ = x.shape
        H = self.bb.info.hidden_size  # a constant in the graph (LayerNorm's shape must be one)
        nh = self.bb._heads
        hd = H // nh
        key_mask = mask.bool()[:, None, None, :]
        k = 0
        for layer in m.encoder.layer:
            lo = {}
            bn = {}
            if self.deltas:
                for s in LINEAR_SITES:
                    lo[s] = (w[k], w[k + 1])
                    k += 2
                for s in BN_SITES:
                    bn[s] = w[k : k + 4]
                    k += 4

            def lin(inp, mod, site, lo=lo):
                y = F.linear(inp, mod.weight, mod.bias)
                if site in lo:
                    a, b = lo[site]
                    y = y + torch.matmul(torch.matmul(inp, a), b)
                return y

            def sub(h, inp, norm, site, bn=bn):
                ln = lambda t: F.layer_norm(t, (H,), norm.weight, norm.bias, norm.eps)
                base = ln(h + inp)
                if site not in bn:
                    return base
                dw, db, uw, ub = bn[site]
                z = torch.relu(torch.matmul(base, dw) + db.unsqueeze(1))
                return ln(torch.matmul(z, uw) + ub.unsqueeze(1) + h + inp)

            att = layer.attention
            q, kk, v = (
                lin(x, getattr(att.self, n), f"attention.self.{n}").view(B, T, nh, hd).transpose(1, 2)
                for n in ("query", "key", "value")
            )
            ctx = F.scaled_dot_product_attention(q, kk, v, attn_mask=key_mask).transpose(1, 2).reshape(B, T, H)
            x = sub(lin(ctx, att.output.dense, "attention.output.dense"), x, att.output.LayerNorm, "mh")
            inter = act(lin(x, layer.intermediate.dense, "intermediate.dense"))
            x = sub(lin(inter, layer.output.dense, "output.dense"), x, layer.output.LayerNorm, "output")
        return x


def in_graph(plan: AdapterBatch) -> bool:
    """Whether every adapter of this batch is one the graph expresses (see the module docstring)."""
    for seg in plan.segments:
        a: Adapter | None = seg.adapter
        if a is None:
            continue
        if a.kind not in ("bottleneck", "lora") or a.bias or any(k[0] < 0 and k[1] != "pooler.dense" for k in a.lora):
            return False
        if a.ia3 or a.prefix or a.prompt is not None:  # attention internals and virtual tokens: torch only
            return False
        if a.bottleneck and (
            a.bottleneck_config != GRAPH_CONFIG
            or any(s.norm_before is not None or s.norm_after is not None for s in a.bottleneck.values())
        ):
            return False
    return True


def per_row_inputs(plan: AdapterBatch, layers: int, hidden: int, widths: dict[str, tuple[int, int]], dtype) -> list:
    """The graph's adapter inputs for this batch, in input_names order: per segment, stacked, repeated per row."""
    sizes = torch.tensor([s.stop - s.start for s in plan.segments])
    zero_row = lambda *shape: torch.zeros(shape, dtype=dtype)

    def rows(per_seg: list[torch.Tensor]) -> torch.Tensor:
        return torch.repeat_interleave(torch.stack(per_seg), sizes, dim=0)

    out: list[torch.Tensor] = []
    for i in range(layers):
        for site in LINEAR_SITES:
            fan_in, fan_out = widths[site]
            los = [None if s.adapter is None else s.adapter.lora.get((i, site)) for s in plan.segments]
            r = max([lo.a.shape[0] for lo in los if lo is not None], default=1)
            a = [zero_row(fan_in, r) if lo is None else _pad(lo.a.t(), r, 1) for lo in los]
            b = [zero_row(r, fan_out) if lo is None else _pad((lo.b * lo.scaling).t(), r, 0) for lo in los]
            out += [rows(a), rows(b)]
        for site in BN_SITES:
            bns = [None if s.adapter is None else s.adapter.bottleneck.get((i, site)) for s in plan.segments]
            r = max([bn.down_weight.shape[0] for bn in bns if bn is not None], default=1)
            dw, db, uw, ub = [], [], [], []
            for bn in bns:
                if bn is None:
                    dw.append(zero_row(hidden, r))
                    db.append(zero_row(r))
                    uw.append(zero_row(r, hidden))
                    ub.append(zero_row(hidden))
                    continue
                scale = bn.scaling if isinstance(bn.scaling, torch.Tensor) else float(bn.scaling)
                dw.append(_pad(bn.down_weight.t(), r, 1))
                db.append(_pad(bn.down_bias, r, 0))
                uw.append(_pad(bn.up_weight.t() * scale, r, 0))
                ub.append(bn.up_bias * scale)
            out += [rows(dw), rows(db), rows(uw), rows(ub)]
    return out


def _pad(t: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    missing = size - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t, t.new_zeros(shape)], dim=dim)
