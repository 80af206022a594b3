"""The encoder as one exportable graph with per-row adapter weights as inputs.

Each layer takes, per row, a LoRA pair at each of its six linear sites (A [B, r, in], B*scale [B, out, r]) and a
bottleneck at each of its two sub-layer sites (down [B, r, H], down bias [B, 1, r], up*scale [B, H, r], up
bias*scale [B, 1, H]): the weights as stored. That is the variant with every site; the others have a subset
(VARIANTS). The per-row variants take them per segment, [S, ...], with an `owner` input [B] that gives each row
its segment's, so a batch's inputs are one stack of each adapter's. A row without an
adapter, or whose adapter does not use a site, gets zeros there, which is exact: a zero LoRA adds nothing, and with
zero up-weights the bottleneck sub-layer below reduces to the pretrained LN(h + inp). The bottleneck is AdapterHub's
with residual_before_ln=True, original_ln_after=True and no adapter LayerNorms, at either site:
    LN(up(act(down(x))) * scale + h + inp),  x = LN(h + inp) (original_ln_before, `seq_bn`) or h (`double_seq_bn`)
Two per-row inputs say which: `bn.pre` (1: x = LN(h + inp), 0: x = h) and `bn.act` (one-hot over GRAPH_ACTS; the
graph computes each activation and keeps the row's, a multiply by exactly 1 or 0). Anything else (other bottleneck
options, bias sites, the pooler's or embeddings' sites, other kinds) runs on torch.

The token-wise work runs on the real tokens only (DeltaEncoder's docstring); padding costs only attention.

The graph comes in variants by which inputs it has (VARIANTS): a batch runs on the smallest one that covers its
sites, so a batch of bottleneck adapters does not pay for 36 LoRA sites' zero matmuls, a batch of `seq_bn` ones for
the attention sites' moves into rows and back, a batch of query/value LoRA for the other four linear sites' and the
bottlenecks', nor an embeddings batch for any. A batch whose rows all have one adapter (every one-row pass, and per-
adapter traffic) runs on a "1" variant: its inputs are that adapter's weights as stored, with no row axis, and its
matmuls run on the real tokens like the backbone's, with none of the per-row variant's moves into rows and back.
Which variant never depends on which adapters exist, only on the sites the batch uses and whether its rows share one
adapter. The inputs themselves are built in onnx_inputs.py.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from ..adapters.activations import get_activation
from ..adapters.batch import AdapterBatch
from ..adapters.model import LINEAR_SITES, Adapter, BottleneckConfig

BN_SITES = ("mh", "output")
# The bottleneck options the graph computes; non_linearity and original_ln_before vary per row (bn.act, bn.pre).
GRAPH_CONFIG = BottleneckConfig(
    non_linearity="relu", original_ln_before=True, original_ln_after=True, residual_before_ln=True
)
GRAPH_ACTS = (("relu",), ("swish", "silu"), ("gelu",))  # bn.act's columns, by the names configs use
ACT_INDEX = {name: i for i, names in enumerate(GRAPH_ACTS) for name in names}
ACTS = tuple(get_activation(names[0]) for names in GRAPH_ACTS)  # the functions the torch path uses


QV = ("attention.self.query", "attention.self.value")  # PEFT's default LoRA targets for BERT-family models

# name -> (the linear sites with LoRA inputs, the bottleneck sites with inputs, one adapter for every row: weights
# without a row axis). A per-row site costs its moves into rows and back even where its weights are zeros, so the
# common forms get graphs of their own: "bno", the output site only (AdapterHub's default `seq_bn`, and what
# `adapterserve train` writes), and "lqv", LoRA at query and value only.
VARIANTS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "plain": ((), (), False),
    "bno1": ((), ("output",), True),
    "bno": ((), ("output",), False),
    "bn1": ((), BN_SITES, True),
    "bn": ((), BN_SITES, False),
    "lqv1": (QV, (), True),
    "lqv": (QV, (), False),
    "delta1": (LINEAR_SITES, BN_SITES, True),
    "delta": (LINEAR_SITES, BN_SITES, False),
}


BASE_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "tokens", "slots")  # every variant's first inputs
BASE = len(BASE_INPUTS)


def input_names(
    layers: int, lora: tuple[str, ...] = LINEAR_SITES, bn: tuple[str, ...] = BN_SITES, one: bool = False
) -> list[str]:
    names = list(BASE_INPUTS)
    if (lora or bn) and layers and not one:
        names.append("owner")  # per row: each row's segment; the weights below come per segment
    if bn and layers:
        names += ["bn.pre", "bn.act"]
    for i in range(layers):
        names += [f"l{i}.{s}.{p}" for s in lora for p in ("a", "b")]
        names += [f"l{i}.{s}.{p}" for s in bn for p in ("dw", "db", "uw", "ub")]
    return names


def variant(plan: AdapterBatch) -> str:
    """The smallest graph variant for a batch in_graph accepts: the one with the fewest sites among those that have
    every site the batch's adapters use, per row or, when every row has the one adapter, its "1" form."""
    used = [s.adapter for s in plan.segments if s.adapter is not None]
    lora = {site for a in used for i, site in a.lora if i >= 0}  # the pooler's LoRA runs on torch after the graph
    bn = {site for a in used for _, site in a.bottleneck}
    if not lora and not bn:
        return "plain"
    one = len(plan.segments) == 1  # one segment: every row has the one adapter
    fits = [n for n, (ls, bs, o) in VARIANTS.items() if o == one and lora <= set(ls) and bn <= set(bs)]
    return min(fits, key=lambda n: len(VARIANTS[n][0]) + len(VARIANTS[n][1]))


class DeltaEncoder(torch.nn.Module):
    """Backbone.encode with dense per-row adapter inputs: LoRA pairs at the sites `lora` names, bottlenecks at the
    sites `bn` names (neither: the plain encoder, no extra inputs).

    The token-wise work (every linear layer, LayerNorm and the FFN: nearly all of the FLOPs) runs on the batch's
    real tokens only, [N, H] with N = mask.sum(), not on [B, T, H] with its padding. Two index inputs move between
    the layouts (see unpad_index): `tokens` [N] picks the real tokens out of the flattened padded batch, and
    `slots` [B, T] puts them back. Attention and the per-row adapter matmuls need rows, so their inputs are put back
    into [B, T, .] and their outputs taken out again. A padding slot holds a copy of the first token: attention
    masks it as a key, and what lands at a padding position is dropped when the real tokens are taken out.
    """

    def __init__(self, backbone, lora: tuple[str, ...], bn: tuple[str, ...], one: bool = False):
        super().__init__()
        self.m, self.bb, self.one = backbone.model, backbone, one
        self.lora_sites, self.lora = tuple(lora), bool(lora)
        self.bn_sites, self.bn = tuple(bn), bool(bn)
        self.inter = backbone.model.config.intermediate_size

    def forward(self, ids, mask, types, tokens, slots, *w):
        m, act = self.m, self.bb._act
        x = m.embeddings(input_ids=ids, token_type_ids=types)
        if self.bb._project is not None:  # ELECTRA with embedding_size != hidden_size (Backbone.encode does too)
            x = self.bb._project(x)
        H = self.bb.info.hidden_size  # a constant in the graph (LayerNorm's shape must be one)
        nh = self.bb._heads
        hd = H // nh
        # added to the attention scores, once for all layers: 0 for a real key, a large negative for padding
        key_bias = (1.0 - mask.to(x.dtype))[:, None, None, :] * torch.finfo(x.dtype).min
        scale = 1.0 / math.sqrt(hd)

        # The moves between layouts are one Gather each, with shapes that are constants or come from the inputs'
        # own: a reshape to a shape computed from B and T costs ONNX Runtime a Shape-Gather-Unsqueeze-Concat chain
        # per call, which was most of the per-row variant's overhead.
        def rows(t):  # [N, ...] -> [B, T, ...]; the padding gets a copy of token 0, which nothing keeps
            return t[slots]

        def real(t, width):  # [B, T, width] -> [N, width]
            return t.reshape(-1, width).index_select(0, tokens)

        x = real(x, H)
        k = 0

        def own(t):  # the one-adapter variants' weights serve every row as they are
            return t

        if not self.one and (self.lora or self.bn):
            owner = w[0]
            k = 1

            def own(t):  # per segment [S, ...] -> per row [B, ...]: each row its segment's
                return t[owner]

        if self.bn and self.one:  # [1] and [len(ACTS)]: the adapter's, for every token
            pre, acts = w[k], [w[k + 1][j] for j in range(len(ACTS))]
            k += 2
        elif self.bn:  # [S] and [S, len(ACTS)], each row's by owner; bn.pre goes to the tokens once, [N, 1]
            pre = real(own(w[k])[:, None, None] * torch.ones_like(mask, dtype=x.dtype)[:, :, None], 1)
            onehot = own(w[k + 1])
            acts = [onehot[:, j].view(-1, 1, 1) for j in range(len(ACTS))]
            k += 2
        if self.bn:
            keep = 1 - pre  # 1 where the bottleneck's input is h (double_seq_bn's), computed once

        def qkv_delta(t, d):  # zeros for a projection the variant has no inputs for ("lqv": the key)
            if d is None:
                return torch.zeros_like(t)
            if self.one:  # a [r, in], b [out, r], as stored
                return torch.matmul(torch.matmul(t, d[0].t()), d[1].t())
            return torch.matmul(torch.matmul(t, d[0].transpose(1, 2)), d[1].transpose(1, 2))

        for layer in m.encoder.layer:
            lo = {}
            bn = {}
            for s in self.lora_sites:
                lo[s] = (own(w[k]), own(w[k + 1]))
                k += 2
            for s in self.bn_sites:
                bn[s] = [own(wt) for wt in w[k : k + 4]]
                k += 4

            def lin(inp, mod, site, width, lo=lo):
                # MatMul + Add, not the Gemm a 2-D F.linear exports to: int8 quantization converts MatMuls only
                y = torch.matmul(inp, mod.weight.t())
                y = y if mod.bias is None else y + mod.bias
                if site in lo and self.one:  # a [r, in], b [out, r], as stored: the transposes fuse into the matmuls
                    a, b = lo[site]
                    y = y + torch.matmul(torch.matmul(inp, a.t()), b.t())
                elif site in lo:  # per row, as stored: a [B, r, in], b [B, out, r]
                    a, b = lo[site]
                    y = y + real(torch.matmul(torch.matmul(rows(inp), a.transpose(1, 2)), b.transpose(1, 2)), width)
                return y

            def sub(h, inp, norm, site, bn=bn):
                ln = lambda t: F.layer_norm(t, (H,), norm.weight, norm.bias, norm.eps)
                base = ln(h + inp)
                if site not in bn:
                    return base
                dw, db, uw, ub = bn[site]
                down_in = pre * base + keep * h  # exact: pre is 1 or 0
                if self.one:  # dw [r, H], db [r], uw [H, r], ub [H], as stored
                    u = torch.matmul(down_in, dw.t()) + db
                    z = sum(a * f(u) for a, f in zip(acts, ACTS))
                    return ln(torch.matmul(z, uw.t()) + ub + h + inp)
                # per row, as stored: dw [B, r, H], db [B, 1, r], uw [B, H, r], ub [B, 1, H]
                u = torch.matmul(rows(down_in), dw.transpose(1, 2)) + db
                z = sum(a * f(u) for a, f in zip(acts, ACTS))
                return ln(real(torch.matmul(z, uw.transpose(1, 2)) + ub, H) + h + inp)

            att = layer.attention
            mods = [getattr(att.self, n) for n in ("query", "key", "value")]
            # one Gemm for the three projections (the weights' concatenation is folded into one constant)
            wqkv = torch.cat([mo.weight for mo in mods]).t()
            qkv = torch.matmul(x, wqkv)
            if mods[0].bias is not None:
                qkv = qkv + torch.cat([mo.bias for mo in mods])
            deltas = [lo.get(f"attention.self.{n}") for n in ("query", "key", "value")]
            if any(deltas):
                src = x if self.one else rows(x)
                d = torch.cat([qkv_delta(src, dl) for dl in deltas], 1 if self.one else 2)
                qkv = qkv + (d if self.one else real(d, 3 * H))
            # to heads: rows [B, T, 3H] -> [B, T, 3, nh, hd] -> [3, B, nh, T, hd]; q @ k^T as one fused matmul. (The
            # Gather straight from [N, 3, nh, hd] gave the same speed and about 30 MB more peak memory at 32 rows.)
            q, kk, v = rows(qkv).unflatten(2, (3, nh, hd)).permute(2, 0, 3, 1, 4).unbind(0)
            probs = torch.softmax(torch.matmul(q, kk.transpose(2, 3)) * scale + key_bias, dim=-1)
            ctx = real(torch.matmul(probs, v).transpose(1, 2), H)
            x = sub(lin(ctx, att.output.dense, "attention.output.dense", H), x, att.output.LayerNorm, "mh")
            inter = act(lin(x, layer.intermediate.dense, "intermediate.dense", self.inter))
            x = sub(lin(inter, layer.output.dense, "output.dense", H), x, layer.output.LayerNorm, "output")
        return rows(x) * mask.unsqueeze(-1).to(x.dtype)  # zeros at the padding


def unpad_index(mask):
    """The graph's `tokens` and `slots` inputs for an attention mask [B, T] (numpy): the flat positions of the real
    tokens [N], and for each position of the batch its token's index [B, T] (0, any real token, for padding)."""
    flat = mask.reshape(-1) != 0
    tokens = np.flatnonzero(flat)
    slots = np.zeros(flat.shape[0], dtype=np.int64)
    slots[tokens] = np.arange(tokens.shape[0], dtype=np.int64)
    return tokens.astype(np.int64), slots.reshape(mask.shape)


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
        cfg = a.bottleneck_config
        if a.bottleneck and (
            cfg is None
            or cfg.non_linearity.lower() not in ACT_INDEX
            or replace(cfg, non_linearity="relu", original_ln_before=True) != GRAPH_CONFIG
            or any(s.norm_before is not None or s.norm_after is not None for s in a.bottleneck.values())
        ):
            return False
    return True
