"""The runtimes side by side in-process (engine/runtime.py): the same pre-tokenized batches through each runtime's
encode and the adapters' heads, interleaved batch by batch (paired: machine drift hits every runtime alike), at
one torch/ONNX thread as each of the server's two CPU workers has.

    python -m benchmarks.runtimes [--seconds 60] [--batch 32] [--threads 1]

Cases: no adapter (embeddings), 1 adapter, 64 adapters mixed (uniform), each on torch and on onnx. The onnx
results are checked against torch's (max |difference| of the logits / hidden states).
"""

from __future__ import annotations

import argparse
import json
import random

import torch

from adapterserve.adapters.batch import AdapterBatch
from adapterserve.engine.runner import pad
from adapterserve.engine.runtime import RUNTIMES
from adapterserve.engine.tokenize import tokenize

from .adapters import AdapterSpec
from .corpus import load_texts
from .prototype import _interleaved, load_adapters


def sorted_halves(rows: list, batch: int) -> list[list]:
    """Batches as the batcher makes them under the peers' load: two batches' worth of queued rows, sorted by length
    and split (a global sort of the corpus would leave almost no padding, which no server sees). Only whole pools."""
    out = []
    for i in range(0, len(rows) - 2 * batch + 1, 2 * batch):
        pool = sorted(rows[i : i + 2 * batch], key=len)
        out += [pool[:batch], pool[batch:]]
    return out


def measure(backbone_path: str, seconds: float, batch: int, threads: int, n_adapters: int = 64) -> dict:
    from adapterserve.engine.backbone import load_backbone

    torch.set_num_threads(threads)
    bb = load_backbone(backbone_path, "cpu", "float32")
    runtimes = {name: RUNTIMES[name](bb, threads) for name in ("torch", "onnx")}
    cfg = bb.model.config
    adapters = load_adapters(n_adapters, AdapterSpec(cfg.hidden_size, cfg.num_hidden_layers, 16, head_layers=1), bb)
    texts, _ = load_texts(batch * 32, 0)
    rows = tokenize(bb.tokenizer, texts, None, bb.info.max_length, True)
    rng = random.Random(0)
    batches = sorted_halves(rows, batch)
    order = {id(a): i for i, a in enumerate(adapters)}
    mixes = {
        "embeddings": lambda b: [None] * len(b),
        "1 adapter": lambda b: [adapters[0]] * len(b),
        f"{n_adapters} adapters": lambda b: sorted((rng.choice(adapters) for _ in b), key=lambda a: order[id(a)]),
    }
    pad_id = bb.tokenizer.pad_token_id or 0

    def case(runtime, mix):
        def fn(item):
            b, row_adapters = item
            ids, mask, types = pad(b, pad_id, bb.device)
            plan = AdapterBatch.from_row_adapters(row_adapters)
            with torch.inference_mode():
                hidden, pooled = runtime.encode(ids, mask, types, plan)
                plan.heads(hidden, pooled)
            return hidden[mask.bool()]  # the real tokens (the onnx graph leaves zeros at the padding)

        return fn

    cases, diffs = {}, {}
    for mix, assign in mixes.items():
        items = [(b, assign(b)) for b in batches]
        with torch.inference_mode():
            got = [case(runtimes[n], mix)(items[0]) for n in ("torch", "onnx")]
        diffs[mix] = float((got[0] - got[1]).abs().max())
        for name, rt in runtimes.items():
            cases[f"{mix} | {name}"] = (case(rt, mix), items)
    rates, (others, steal) = _interleaved(cases, seconds)
    out = {
        "threads": threads,
        "batch": batch,
        "rows_per_s": {k: round(v[0], 1) for k, v in rates.items()},
        "onnx_vs_torch": {m: round(rates[f"{m} | onnx"][0] / rates[f"{m} | torch"][0], 3) for m in mixes},
        "max_abs_diff_hidden": diffs,
        "graph_batches": runtimes["onnx"].graph_batches,
        "torch_batches_on_onnx": runtimes["onnx"].torch_batches,
        "others_cpu_cores": round(others, 2),
        "steal_cores": round(steal, 2),
    }
    return out


def main(argv=None) -> int:
    from adapterserve.settings import default_backbone

    p = argparse.ArgumentParser(prog="python -m benchmarks.runtimes", description=__doc__)
    p.add_argument("--backbone", default=None)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    print(json.dumps(measure(args.backbone or default_backbone(), args.seconds, args.batch, args.threads), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def render(r: dict) -> list[str]:
    out = [
        f"Pre-tokenized batches of {r['batch']} (each the shorter or longer half of {2 * r['batch']} sorted rows) "
        "through each runtime's encode and the heads, "
        f"{r['threads']} thread, interleaved batch by batch (`python -m benchmarks.runtimes`). Other processes used "
        f"{r['others_cpu_cores']} cores meanwhile.",
        "",
        "| rows | torch rows/s | onnx rows/s | onnx / torch | max abs diff (hidden) |",
        "|---|---:|---:|---:|---:|",
    ]
    for mix, ratio in r["onnx_vs_torch"].items():
        out.append(
            f"| {mix} | {r['rows_per_s'][f'{mix} | torch']:.1f} | {r['rows_per_s'][f'{mix} | onnx']:.1f} | "
            f"{ratio:.3f}x | {r['max_abs_diff_hidden'][mix]:.1e} |"
        )
    return out
