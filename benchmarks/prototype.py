"""In-process prototypes of service changes, measured on the same texts as the HTTP phases.

1. Grouped adapters: `GroupedAdapterBatch` computes every segment's bottleneck (and head) at once with
   batched matmuls over per-row gathered weights, instead of one small call chain per adapter per layer
   (service/adapters/batch.py `_per_segment`). Its logits are checked against the service's own.
2. Length bucketing: batches cut from a window of queued rows sorted by length, instead of arrival order
   (what service/engine/batcher.py could do when more rows are queued than one batch holds).

Each case runs whole batches through the same `Backbone.encode` for a few seconds and reports rows/s of
compute (no HTTP, no tokenization: rows are tokenized once up front).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from service.adapters.activations import get_activation
from service.adapters.batch import LN_SITES, AdapterBatch, Segment
from service.adapters.heads import apply_head, head_input
from service.engine.runner import pad, run_rows
from service.engine.tokenize import tokenize

from .adapters import AdapterSpec, write_adapter
from .server import machine_busy_seconds

GROUP_MIN_SEGMENTS = 3  # below this the per-segment loop is as cheap


class GroupedAdapterBatch(AdapterBatch):
    """AdapterBatch whose bottleneck sites and heads run all segments together (falls back when they differ)."""

    def __init__(self, segments: list[Segment]):
        super().__init__(segments)
        self._grouped = len(segments) >= GROUP_MIN_SEGMENTS and all(s.adapter is not None for s in segments)
        self._cache: dict = {}
        if self._grouped:
            sizes = torch.tensor([s.stop - s.start for s in segments])
            self._row_seg = torch.repeat_interleave(torch.arange(len(segments)), sizes)

    @classmethod
    def from_row_adapters(cls, adapters):
        base = AdapterBatch.from_row_adapters(adapters)
        return cls(base.segments)

    def _site(self, key):
        if key in self._cache:
            return self._cache[key]
        group = None
        sites = [s.adapter.bottleneck.get(key) for s in self.segments]
        cfgs = {s.adapter.bottleneck_config for s in self.segments}
        if (all(x is not None for x in sites) and len(cfgs) == 1
                and len({tuple(x.down_weight.shape) for x in sites}) == 1
                and all(x.norm_before is None and x.norm_after is None and not isinstance(x.scaling, torch.Tensor)
                        for x in sites)):
            idx = self._row_seg.to(sites[0].down_weight.device)
            group = (torch.stack([x.down_weight for x in sites])[idx],  # [B, r, H]
                     torch.stack([x.down_bias for x in sites])[idx][:, None, :],  # [B, 1, r]
                     torch.stack([x.up_weight for x in sites])[idx],  # [B, H, r]
                     torch.stack([x.up_bias for x in sites])[idx][:, None, :],  # [B, 1, H]
                     torch.tensor([float(x.scaling) for x in sites], dtype=sites[0].down_weight.dtype,
                                  device=idx.device)[idx][:, None, None],
                     cfgs.pop())
        self._cache[key] = group
        return group

    def sublayer(self, h, inp, norm, layer, site):
        key = (layer, site)
        group = self._site(key) if (self._grouped and key in self._bn_sites
                                    and (layer, LN_SITES[site]) not in self._linear_sites) else None
        if group is None:
            return super().sublayer(h, inp, norm, layer, site)
        dw, db, uw, ub, scale, cfg = group
        H = h.shape[-1]

        def layer_norm(t):
            return F.layer_norm(t, (H,), norm.weight, norm.bias, norm.eps)

        # service/adapters/bottleneck.sublayer_output, with the two linears batched over rows
        residual = h if cfg.residual_before_ln is True else None
        if cfg.original_ln_before:
            h = h + inp
            if cfg.residual_before_ln == "post_add":
                residual = h
            h = layer_norm(h)
        if not cfg.residual_before_ln:
            residual = h
        down = get_activation(cfg.non_linearity)(torch.baddbmm(db, h, dw.transpose(1, 2)))
        out = torch.baddbmm(ub, down, uw.transpose(1, 2)) * scale
        if cfg.adapter_residual_before_ln:
            out = out + residual
        if not cfg.adapter_residual_before_ln:
            out = out + residual
        if cfg.original_ln_after:
            out = layer_norm(out + inp)
        return out

    def heads(self, hidden, pooled):
        heads = [s.adapter.head for s in self.segments] if self._grouped else []
        same = (heads and len({(h.pooling, h.activation, len(h.layers)) for h in heads}) == 1
                and heads[0].pooling != "tokens"
                and all(len({tuple(h.layers[i][0].shape) for h in heads}) == 1 and
                        all(h.layers[i][1] is not None for h in heads) for i in range(len(heads[0].layers))))
        if not same:
            return super().heads(hidden, pooled)
        x = head_input(heads[0], hidden, pooled)[:, None, :]  # [B, 1, H]
        idx = self._row_seg.to(x.device)
        act = get_activation(heads[0].activation)
        last = len(heads[0].layers) - 1
        for i in range(last + 1):
            w = torch.stack([h.layers[i][0] for h in heads])[idx]
            b = torch.stack([h.layers[i][1] for h in heads])[idx][:, None, :]
            x = torch.baddbmm(b, x, w.transpose(1, 2))
            if i < last:
                x = act(x)
        x = x[:, 0]
        return [x[s.start:s.stop] for s in self.segments]


def run_rows_grouped(backbone, rows, row_adapters):
    """service.engine.runner.run_rows for classification rows, with GroupedAdapterBatch."""
    plan = GroupedAdapterBatch.from_row_adapters(row_adapters)
    ids, mask, types = pad(rows, backbone.tokenizer.pad_token_id or 0, backbone.device)
    with torch.inference_mode():
        hidden, pooled = backbone.encode(ids, mask, types, adapters=plan)
        per_segment = plan.heads(hidden, pooled)
        out = []
        for seg, logits in zip(plan.segments, per_segment):
            out.extend(logits.float().cpu())
    return out


# ---- measurement ------------------------------------------------------------------------------------------------
def _interleaved(cases: dict, budget_s: float, rounds_multiple: int = 1) -> dict[str, tuple[float, float]]:
    """rows/s and padding per case. Cases take turns batch by batch over the same batches (paired, so machine
    drift hits every case alike), until `budget_s` is spent and the number of rounds is a multiple of
    `rounds_multiple` (so that every case has covered the same rows); each case's first batch is a warm-up."""
    for fn, batches in cases.values():
        fn(batches[0])
    rows = {k: 0 for k in cases}
    secs = {k: 0.0 for k in cases}
    real = {k: 0 for k in cases}
    padded = {k: 0 for k in cases}
    t_start, i = time.perf_counter(), 0
    m0, c0 = machine_busy_seconds(), time.process_time()
    while time.perf_counter() - t_start < budget_s or i == 0 or i % rounds_multiple:
        for name, (fn, batches) in cases.items():
            b = batches[i % len(batches)]
            t = time.perf_counter()
            fn(b)
            secs[name] += time.perf_counter() - t
            rows[name] += len(b[0])
            real[name] += sum(len(r) for r in b[0])
            padded[name] += len(b[0]) * max(len(r) for r in b[0])
        i += 1
    wall = time.perf_counter() - t_start
    others = max(0.0, (machine_busy_seconds() - m0) - (time.process_time() - c0)) / wall
    out = {k: (rows[k] / secs[k], 1 - real[k] / max(1, padded[k])) for k in cases}
    out["_others_cpu_cores"] = (others, 0.0)
    return out


def load_adapters(n: int, spec: AdapterSpec, backbone) -> list:
    from service.formats.registry import load_adapter

    out = []
    with tempfile.TemporaryDirectory(prefix="bench-proto-") as tmp:
        for i in range(n):
            folder = Path(tmp) / f"p{i}"
            write_adapter(folder, f"p{i}", spec, seed=10_000 + i)
            a = load_adapter(folder, backbone.shape)
            out.append(a.to(backbone.device, backbone.dtype) if backbone.device.type != "cpu" else a)
    return out


def run_prototypes(backbone, texts: list[str], spec: AdapterSpec, cfg, seconds: float = 40.0) -> dict:
    """All cases interleaved batch by batch for about `seconds` in all."""
    bs = cfg.max_batch_size
    n_adapters = 64 if cfg.device == "cpu" else 100
    rows = tokenize(backbone.tokenizer, texts, None, backbone.info.max_length, True)
    adapters = load_adapters(n_adapters, spec, backbone)
    n_batches = max(1, min(len(rows) // bs, 32))
    arrival = [rows[k * bs:(k + 1) * bs] for k in range(n_batches)]

    def assign(batch, k):
        """Row j of a batch goes to adapter (j mod k); rows grouped by adapter as the batcher sorts them."""
        order = sorted(range(len(batch)), key=lambda j: j % k)
        return [batch[j] for j in order], [adapters[j % k] for j in order]

    def bucketed(window: int):
        out = []
        for start in range(0, n_batches * bs, window):
            w = sorted(rows[start:start + window], key=len)
            out += [w[k:k + bs] for k in range(0, len(w), bs)]
        return [b for b in out if len(b) == bs]

    one = [(b, [adapters[0]] * len(b)) for b in arrival]
    many = [assign(b, n_adapters) for b in arrival]
    pad_id = backbone.tokenizer.pad_token_id or 0

    def bare(item):
        with torch.inference_mode():
            backbone.encode(*pad(item[0], pad_id, backbone.device))
        if backbone.device.type == "cuda":
            torch.cuda.synchronize()

    def served(item):
        run_rows(backbone, item[0], item[1], [False] * len(item[0]))

    def grouped(item):
        run_rows_grouped(backbone, item[0], item[1])

    # the prototype must give the service's logits
    ref, _ = run_rows(backbone, many[0][0], many[0][1], [False] * len(many[0][0]))
    got = run_rows_grouped(backbone, many[0][0], many[0][1])
    tol = 1e-4 if backbone.dtype == torch.float32 else 2e-2
    max_diff = max(float((a - b).abs().max()) for a, b in zip(ref, got))
    cases = {"bare encode, arrival order": (bare, [(b, None) for b in arrival]),
             "run_rows, 1 adapter": (served, one),
             f"run_rows, {n_adapters} adapters (today's per-segment loop)": (served, many),
             f"grouped prototype, {n_adapters} adapters": (grouped, many)}
    window = 4 * bs
    bb = bucketed(window)
    if bb:  # the same rows, cut into batches after sorting each window of queued rows by length
        cases[f"run_rows, 1 adapter, bucketed by length within {window} queued rows"] = \
            (served, [(b, [adapters[0]] * len(b)) for b in bb])
    measured = _interleaved(cases, seconds, rounds_multiple=window // bs)
    others = measured.pop("_others_cpu_cores")[0]
    return {"batch_size": bs, "adapters": n_adapters, "seconds_each": seconds, "max_abs_diff": max_diff,
            "matches": max_diff <= tol, "others_cpu_cores": round(others, 3),
            "cases": {k: {"rows_per_s": round(v[0], 2), "padding": round(v[1], 4)} for k, v in measured.items()}}


def render_prototypes(p: dict) -> list[str]:
    base = p["cases"].get("run_rows, 1 adapter", {}).get("rows_per_s")
    lines = [f"Batches of {p['batch_size']} pre-tokenized rows through `Backbone.encode` (+ adapters and heads where "
             f"named); the cases take turns batch by batch over the same batches for {p['seconds_each']:g} s in all. "
             "Grouped prototype logits vs the service's: max |diff| "
             f"{p['max_abs_diff']:.2e} ({'match' if p['matches'] else 'MISMATCH'}). Other processes used "
             f"{p.get('others_cpu_cores', 0):.2f} cores meanwhile.", "",
             "| case | rows/s | vs run_rows, 1 adapter | padding |", "|---|---:|---:|---:|"]
    for name, c in p["cases"].items():
        rel = f"{c['rows_per_s'] / base:.3f}x" if base else "-"
        lines.append(f"| {name} | {c['rows_per_s']:,.1f} | {rel} | {c['padding']:.0%} |")
    return lines
