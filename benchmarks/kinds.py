"""A mixed batch of bottleneck, LoRA, IA3 and prefix rows vs one adapter: in-process rows/s, paired.

    python -m benchmarks.kinds [--backbone PATH] [--seconds 60] [--batch 64] [--per-kind 4] [--json OUT]

Adapters: `--per-kind` of each kind (seq_bn, LoRA r 8 on query/value, IA3 on key/value/intermediate,
a flat prefix of 10 tokens), written by `adapterserve train`'s exporter with random weights and read back by
the service's loader. Rows: tweet-length texts (benchmarks/corpus.py), pre-tokenized, batches of `--batch`.
Cases run through adapterserve.engine.runner.run_rows (the service's batch path) and take turns batch by
batch over the same batches (benchmarks/prototype.py `_interleaved`), so machine drift hits them alike:

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
import tempfile
from pathlib import Path

import torch

from adapterserve.engine.backbone import load_backbone
from adapterserve.engine.runner import run_rows
from adapterserve.engine.tokenize import tokenize
from adapterserve.formats import load_adapter
from adapterserve.settings import default_backbone
from adapterserve.training.export import export
from adapterserve.training.model import Spec, build_adapter

from .corpus import load_texts
from .prototype import _interleaved

KINDS = ("seq_bn", "lora", "ia3", "prefix")


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default=default_backbone())
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--per-kind", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
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
    measured, (others, steal) = _interleaved(cases, a.seconds)
    base = measured["1 adapter (seq_bn)"][0]
    result = {
        "backbone": a.backbone,
        "texts": source,
        "batch": a.batch,
        "seconds": a.seconds,
        "torch_threads": torch.get_num_threads(),
        "mixed_vs_alone_max_abs_diff": max_diff,
        "others_cpu_cores": round(others, 3),
        "steal_cores": round(steal, 3),
        "cases": {
            k: {"rows_per_s": round(v[0], 2), "vs_1_adapter_seq_bn": round(v[0] / base, 3), "padding": round(v[1], 4)}
            for k, v in measured.items()
        },
    }
    text = json.dumps(result, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
