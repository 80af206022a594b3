"""What `adapterserve train` does: data -> training -> test metrics -> export + self-check -> eval.json -> publish."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import torch

from .. import tasks
from ..tasks import metrics
from . import kinds
from .config import TrainConfig
from .data import Columns, DataError, label_names, load_examples, resolve_path, split
from .export import self_check
from .features import collate, collate_features, encode
from .kinds import build_adapter, export
from .loop import LoopConfig, cache_features, evaluate, log, train
from .model import Spec, TrainModel


def _store_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._") or "adapter"
    return name[:128]


def _load_splits(config: TrainConfig, cols: Columns):
    examples, report = load_examples(config.data, config.task, cols, dedupe=config.dedupe, max_rows=config.max_rows)
    reports = {"train": report}
    val_share = 0.0 if config.validation_file else config.validation_split
    test_share = 0.0 if config.test_file else config.test_split
    train_ex, val_ex, test_ex = split(examples, val_share, test_share, config.seed)
    if config.max_train_rows and len(train_ex) > config.max_train_rows:
        log(f"training split capped at {config.max_train_rows} of {len(train_ex)} rows (--max-train-rows)")
        train_ex = train_ex[: config.max_train_rows]
    if config.validation_file:
        val_ex, reports["validation"] = load_examples(config.validation_file, config.task, cols)
    if config.test_file:
        test_ex, reports["test"] = load_examples(config.test_file, config.task, cols)
    for r in reports.values():
        if r.lines_with_bad_bytes or r.rows_skipped or r.duplicates_dropped:
            log(
                f"{r.path}: {r.lines_with_bad_bytes} lines with bytes that are not UTF-8 (replaced), "
                f"{r.rows_skipped} rows skipped {r.skipped_reasons or ''}, {r.duplicates_dropped} duplicates dropped"
            )
    return train_ex, val_ex, test_ex, {k: vars(r) for k, r in reports.items()}


def train_command(config: TrainConfig) -> int:
    try:
        return _train(config)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _train(config: TrainConfig) -> int:
    from ..engine.backbone import load_backbone
    from ..settings import default_backbone

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    kind = kinds.get(config.kind)
    if config.publish and not kind.servable:
        print(f"error: --kind {config.kind} reports metrics only and cannot be published", file=sys.stderr)
        return 2
    name = _store_name(config.name or Path(config.data.removeprefix("pkg://")).stem)
    output = Path(config.output) if config.output else Path("runs") / name
    progress = not config.no_progress
    cols = config.columns
    resolve_path(config.data)  # fail on a missing file before loading the backbone

    backbone_name = config.backbone or default_backbone()
    backbone = load_backbone(backbone_name, device=config.device, dtype="float32")
    timings["load_backbone_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    train_ex, val_ex, test_ex, data_reports = _load_splits(config, cols)
    labels = label_names(train_ex + val_ex + test_ex, config.task)
    need = tasks.get(config.task).min_labels
    if len(labels) < need:
        raise DataError(f"{config.task} needs at least {need} distinct labels, found {labels}")
    max_length = min(config.max_length, backbone.info.max_length)
    tok = backbone.tokenizer
    train_enc, val_enc, test_enc = (
        encode(x, tok, config.task, labels, max_length) for x in (train_ex, val_ex, test_ex)
    )
    timings["data_s"] = time.perf_counter() - t
    sizes = {"train": len(train_enc), "validation": len(val_enc), "test": len(test_enc)}
    log(f"data: {sizes}, {len(labels)} labels: {labels[:20]}{' ...' if len(labels) > 20 else ''}")

    spec = Spec(
        kind=config.kind,
        task=config.task,
        labels=labels,
        reduction_factor=config.reduction_factor,
        lora_r=config.lora_r,
        prefix_length=config.prefix_length,
        lora_alpha=config.lora_alpha,
        lora_targets=config.lora_targets,
        head_layers=config.head_layers,
        dropout=config.dropout,
    )
    shape = backbone.shape
    adapter = build_adapter(
        spec, shape.hidden_size, shape.num_layers, shape.linear_shapes, shape.has_pooler, config.seed, backbone.device
    )
    model = TrainModel(backbone, adapter, kind, config.dropout)
    head_params = sum(w.numel() + (0 if b is None else b.numel()) for w, b in adapter.head.layers)
    trainable = model.num_trainable
    log(
        f"{config.kind}: {trainable:,} trainable parameters (head {head_params:,}); "
        f"backbone {sum(p.numel() for p in backbone.model.parameters()):,}"
    )

    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    coll = lambda items: collate(items, pad_id, config.task)
    splits = {"train": train_enc, "validation": val_enc, "test": test_enc}
    if kind.head_only:  # the backbone is frozen and unchanged: run it once per example, train on the result
        t = time.perf_counter()
        splits = {
            k: cache_features(model, v, coll, config.eval_batch_size, progress, f"backbone ({k})")
            for k, v in splits.items()
        }
        coll = lambda items: collate_features(items, config.task)
        timings["backbone_features_s"] = time.perf_counter() - t

    cfg = LoopConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size,
        lr=config.peak_lr,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        patience=config.patience,
        eval_steps=config.eval_steps,
        seed=config.seed,
        progress=progress,
    )
    result = train(model, splits["train"], splits["validation"], coll, config.task, labels, cfg)
    timings["train_s"], timings["validation_s"] = result.train_s, result.eval_s

    t = time.perf_counter()
    test_m = (
        evaluate(model, splits["test"], coll, config.task, labels, cfg.eval_batch_size, progress, "test")
        if splits["test"]
        else None
    )
    timings["test_s"] = time.perf_counter() - t

    output.mkdir(parents=True, exist_ok=True)
    check = None
    if kind.servable:
        t = time.perf_counter()
        description = config.description or f"{config.kind} {config.task} adapter trained with adapterserve train"
        export(output, adapter, spec, name.replace(".", "_").replace("-", "_"), backbone_name, description)
        sample = (val_enc or test_enc or train_enc)[:16]
        check = self_check(output, backbone, adapter, collate(sample, pad_id, config.task))
        timings["export_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0

    report = {
        "kind": config.kind,
        "task": config.task,
        "backbone": backbone_name,
        "labels": labels,
        "command": config.command_line,
        "seed": config.seed,
        "splits": sizes,
        "trainable_parameters": trainable,
        "head_parameters": head_params,
        "backbone_parameters": sum(p.numel() for p in backbone.model.parameters()),
        "validation": result.best_validation,
        "test": test_m,
        "training": {
            "steps": result.steps,
            "best_step": result.best_step,
            "epochs_run": round(result.epochs_run, 3),
            "stopped_early": result.stopped_early,
            "history": result.history,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
            "max_length": max_length,
            "threads": torch.get_num_threads(),
        },
        "data": data_reports,
        "self_check_max_abs_diff": check,
        "servable": kind.servable,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "versions": {"torch": torch.__version__, "transformers": _version("transformers")},
        "metric_definitions": "see service/adapterserve/tasks/metrics.py (macro-F1 over labels present in truth or "
        "predictions; tagging: first word piece per word, macro-F1 over non-O tags)",
    }
    (output / "eval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(
        f"{config.kind} {config.task}: {trainable:,} trainable parameters, {result.steps} steps, "
        f"{timings['train_s']:.0f}s training" + ("  (early stop)" if result.stopped_early else "")
    )
    if result.best_validation:
        print(f"validation: {metrics.summary(result.best_validation)}")
    if test_m:
        print(f"test:       {metrics.summary(test_m)}")
    print(
        f"wrote {output / 'eval.json'}"
        + (
            f" and the adapter (self-check max |diff| {check:.1e})"
            if check is not None
            else " (metrics only: not a servable adapter)"
        )
    )
    if config.publish:
        from ..store import open_store

        info = open_store(config.publish).publish(name, output)
        print(f"published {name}@{info.version} to {config.publish}")
    return 0


def _version(package: str) -> str:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # pragma: no cover
        return "unknown"
