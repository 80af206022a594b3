"""What int8 costs: the shipped sentiment adapter on its own held-out test split, and the backbone's sentence
embeddings, under ADAPTERSERVE_DTYPE=int8 (the onnx runtime's quantized graph) vs fp32 (torch).

    python -m benchmarks.int8 [--embed-texts 1024]

The test split is rebuilt from the adapter's eval.json (the training command, its seed and split shares), so the
rows are the ones its published test figures were measured on.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time

import torch

from adapterserve.adapters.batch import AdapterBatch
from adapterserve.engine.runner import pad
from adapterserve.engine.runtime import make_runtime
from adapterserve.engine.tokenize import tokenize
from adapterserve.formats import load_adapter
from adapterserve.settings import REPO_ROOT, default_backbone
from adapterserve.store import open_store
from adapterserve.tasks import metrics


def test_split(eval_report: dict):
    from adapterserve.training import cli as train_cli
    from adapterserve.training.config import TrainConfig
    from adapterserve.training.runner import _load_splits

    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(shlex.split(eval_report["command"])[1:])
    config = TrainConfig.from_namespace(args)
    _, _, test, _ = _load_splits(config, config.columns)
    return test


def run(runtime, rows, row_adapter, batch: int = 64):
    """Per row: logits (row_adapter set) or the sentence embedding, in batches of length-sorted rows."""
    bb = runtime.backbone
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = [None] * len(rows)
    t0 = time.perf_counter()
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        ids, mask, types = pad([rows[i] for i in idx], bb.tokenizer.pad_token_id or 0, bb.device)
        plan = AdapterBatch.from_row_adapters([row_adapter] * len(idx))
        with torch.inference_mode():
            hidden, pooled = runtime.encode(ids, mask, types, plan)
            res = plan.heads(hidden, pooled)[0] if row_adapter is not None else bb.sentence_embeddings(hidden, mask)
        for j, i in enumerate(idx):
            out[i] = res[j]
    return out, time.perf_counter() - t0


def measure(embed_texts: int = 1024, threads: int = 1) -> dict:
    from adapterserve.engine.backbone import load_backbone

    torch.set_num_threads(threads)
    store = open_store(str(REPO_ROOT / "adapters_store"))
    folder = store.fetch("sentiment", store.current("sentiment").version)
    report = json.loads((folder / "eval.json").read_text())
    bb = load_backbone(default_backbone(), "cpu", "float32")
    adapter = load_adapter(folder, bb.shape)
    test = test_split(report)
    rows = tokenize(bb.tokenizer, [ex.text for ex in test], None, 64, True)  # --max-length 64, as trained
    truth = [adapter.labels.index(ex.label) for ex in test]
    runtimes = {
        "fp32 (torch)": make_runtime("torch", bb, threads),
        "int8 (onnx)": make_runtime("auto", bb, threads, int8=True),
    }
    out: dict = {"test_rows": len(test), "published_test": {k: report["test"][k] for k in ("accuracy", "macro_f1")}}
    emb_rows = tokenize(bb.tokenizer, [ex.text for ex in test[:embed_texts]], None, bb.info.max_length, True)
    embs = {}
    for name, rt in runtimes.items():
        logits, secs = run(rt, rows, adapter)
        m = metrics.single_label(truth, [int(lg.argmax(-1)) for lg in logits], adapter.labels)
        embs[name], esecs = run(rt, emb_rows, None)
        out[name] = {
            "accuracy": round(m["accuracy"], 4),
            "macro_f1": round(m["macro_f1"], 4),
            "classify_rows_per_s": round(len(rows) / secs, 1),
            "embed_rows_per_s": round(len(emb_rows) / esecs, 1),
        }
    a, b = torch.stack(embs["fp32 (torch)"]), torch.stack(embs["int8 (onnx)"])
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    out["embedding_cosine_int8_vs_fp32"] = {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5)}
    out["accuracy_points_lost"] = round(100 * (out["fp32 (torch)"]["accuracy"] - out["int8 (onnx)"]["accuracy"]), 2)
    out["macro_f1_points_lost"] = round(100 * (out["fp32 (torch)"]["macro_f1"] - out["int8 (onnx)"]["macro_f1"]), 2)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.int8", description=__doc__)
    p.add_argument("--embed-texts", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    print(json.dumps(measure(args.embed_texts, args.threads), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
