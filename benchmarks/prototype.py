"""In-process measurements of the mixed-batch paths, on the same texts as the HTTP phases.

Cases, all through the same `Backbone.encode` on pre-tokenized batches (no HTTP, no tokenization):

- bare encode: the backbone alone.
- 1 adapter: adapterserve.engine.runner's path with every row on one adapter.
- N adapters, uniform or Zipf row assignment, two ways:
  - `loop`: adapterserve.adapters.batch.AdapterBatch with group_min = infinity (a few small ops per adapter per
    site);
  - `row-wise` (the service default): each row gets its adapter's weights stacked into [rows, out, in]
    tensors (service/adapterserve/adapters/grouped.py), a handful of bmm calls per site whatever the number of adapters.
- 1 adapter, bucketed: the same rows cut into batches after sorting each window of 4 batches by length
  (what the batcher's length bucketing can reach when enough is queued).

Every case's logits are checked against the per-segment loop.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import torch

from adapterserve.adapters.batch import GROUP_MIN
from adapterserve.engine.runner import pad, run_rows
from adapterserve.engine.tokenize import tokenize

from .adapters import AdapterSpec, write_adapter
from .load import zipf_weights
from .server import cpu_counters

NO_GROUPING = 10**9


def logits(backbone, rows, row_adapters, group_min=None) -> list[torch.Tensor]:
    """The service's run_rows for sequence-classification rows, with a given grouping threshold."""
    out, _ = run_rows(backbone, rows, row_adapters, [False] * len(rows), group_min)
    return out


# ---- measurement ------------------------------------------------------------------------------------------------
def _interleaved(cases: dict, budget_s: float, rounds_multiple: int = 1) -> tuple[dict, float]:
    """rows/s and padding per case. Cases take turns batch by batch over the same batches (paired, so machine
    drift hits every case alike) until `budget_s` is spent and the number of rounds is a multiple of
    `rounds_multiple` (every case then covers the same rows); each case's first batch is a warm-up."""
    for fn, batches in cases.values():
        fn(batches[0])
    rows = dict.fromkeys(cases, 0)
    secs = dict.fromkeys(cases, 0.0)
    real = dict.fromkeys(cases, 0)
    padded = dict.fromkeys(cases, 0)
    t_start, i = time.perf_counter(), 0
    (m0, st0), c0 = cpu_counters(), time.process_time()
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
    m1, st1 = cpu_counters()
    others = max(0.0, (m1 - m0) - (time.process_time() - c0)) / wall
    return {k: (rows[k] / secs[k], 1 - real[k] / max(1, padded[k])) for k in cases}, (others, (st1 - st0) / wall)


def load_adapters(n: int, spec: AdapterSpec, backbone) -> list:
    from adapterserve.formats.registry import load_adapter

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
    n_most = max(cfg.adapter_counts)
    rows = tokenize(backbone.tokenizer, texts, None, backbone.info.max_length, True)
    adapters = load_adapters(max(n_adapters, n_most), spec, backbone)
    window = 4 * bs
    n_batches = max(4, min(len(rows) // bs // 4 * 4, 16))
    arrival = [rows[k * bs : (k + 1) * bs] for k in range(n_batches)]
    rng = random.Random(cfg.seed)
    zipf = zipf_weights(n_adapters, cfg.zipf_s)

    def assign(batch, dist, n=n_adapters):
        if dist == "uniform":
            chosen = [rng.randrange(n) for _ in batch]
        else:
            chosen = rng.choices(range(n_adapters), weights=zipf, k=len(batch))
        order = sorted(range(len(batch)), key=lambda j: chosen[j])  # grouped by adapter, as the batcher sorts
        return [batch[j] for j in order], [adapters[chosen[j]] for j in order]

    def bucketed():
        out = []
        for start in range(0, n_batches * bs, window):
            w = sorted(rows[start : start + window], key=len)
            out += [w[k : k + bs] for k in range(0, len(w), bs)]
        return [b for b in out if len(b) == bs]

    pad_id = backbone.tokenizer.pad_token_id or 0

    def sync():
        if backbone.device.type == "cuda":
            torch.cuda.synchronize()

    def bare(item):
        with torch.inference_mode():
            backbone.encode(*pad(item[0], pad_id, backbone.device))
        sync()

    service_min = GROUP_MIN

    def with_plan(group_min=service_min):
        def fn(item):
            logits(backbone, item[0], item[1], group_min)
            sync()

        return fn

    one = [(b, [adapters[0]] * len(b)) for b in arrival]
    uni = [assign(b, "uniform") for b in arrival]
    zpf = [assign(b, "zipf") for b in arrival]
    cases = {"bare encode (no adapter, no head)": (bare, [(b, None) for b in arrival]), "1 adapter": (with_plan(), one)}
    for dist, batches in (("uniform", uni), ("Zipf", zpf)):
        cases[f"{n_adapters} adapters {dist}: loop"] = (with_plan(NO_GROUPING), batches)
        cases[f"{n_adapters} adapters {dist}: row-wise (service default)"] = (with_plan(), batches)
    most = None
    if n_most > n_adapters:
        most = [assign(b, "uniform", n_most) for b in arrival]
        cases[f"{n_most} adapters uniform: loop"] = (with_plan(NO_GROUPING), most)
        cases[f"{n_most} adapters uniform: row-wise (service default)"] = (with_plan(), most)
    bb = bucketed()
    if bb:
        cases[f"1 adapter, bucketed by length within {window} rows"] = (
            with_plan(),
            [(b, [adapters[0]] * len(b)) for b in bb],
        )

    # every path must give the per-segment loop's logits
    tol = 1e-4 if backbone.dtype == torch.float32 else 3e-2
    max_diff = 0.0
    for batch in (uni[0], zpf[0]):
        ref = logits(backbone, batch[0], batch[1], NO_GROUPING)
        for group_min in (service_min, 1):
            got = logits(backbone, batch[0], batch[1], group_min)
            max_diff = max(max_diff, max(float((a - b).abs().max()) for a, b in zip(ref, got)))
    measured, (others, steal) = _interleaved(cases, seconds, rounds_multiple=window // bs)
    segs = {
        f"{n_adapters} {d}": sum(len(set(map(id, b[1]))) for b in batches) / len(batches)
        for d, batches in (("uniform", uni), ("Zipf", zpf))
    }
    if most:
        segs[f"{n_most} uniform"] = sum(len(set(map(id, b[1]))) for b in most) / len(most)
    return {
        "batch_size": bs,
        "adapters": n_adapters,
        "seconds": seconds,
        "max_abs_diff": max_diff,
        "matches": max_diff <= tol,
        "others_cpu_cores": round(others, 3),
        "steal_cores": round(steal, 3),
        "segments_per_batch": segs,
        "cases": {k: {"rows_per_s": round(v[0], 2), "padding": round(v[1], 4)} for k, v in measured.items()},
    }


def render_prototypes(p: dict) -> list[str]:
    base = p["cases"].get("1 adapter", {}).get("rows_per_s")
    segs = ", ".join(f"{d} {n:.1f}" for d, n in p.get("segments_per_batch", {}).items())
    lines = [
        f"Batches of {p['batch_size']} pre-tokenized rows; the cases take turns batch by batch over the same "
        f"batches for {p['seconds']:g} s in all (so drift hits them alike). Distinct adapters per batch: "
        f"{segs}. Logits of the row-wise path vs the loop: max |diff| {p['max_abs_diff']:.1e} "
        f"({'match' if p['matches'] else 'MISMATCH'}). Other processes used {p.get('others_cpu_cores', 0):.2f} "
        f"cores meanwhile (hypervisor steal {p.get('steal_cores') or 0:.2f}).",
        "",
        "| case | rows/s | vs 1 adapter | padding |",
        "|---|---:|---:|---:|",
    ]
    for name, c in p["cases"].items():
        rel = f"{c['rows_per_s'] / base:.3f}x" if base else "-"
        lines.append(f"| {name} | {c['rows_per_s']:,.1f} | {rel} | {c['padding']:.0%} |")
    return lines
